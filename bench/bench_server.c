/*
 * bench_server.c - the `server` suite: loopback HTTP with N terminals.
 *
 * Starts `facepay serve --port 0` (the HTTP service, issue 7) on a temp
 * store and key, reads the port it bound from its output, and runs the load
 * client `facepay-load --url URL --terminals N --duration S --json`
 * against it. The load client's JSON (one object) becomes the row: its
 * numbers as metrics, an array "latencies_ms" (if any) as samples. The
 * server's own options can be added with FPAY_BENCH_SERVE_ARGS, the load
 * client's with FPAY_BENCH_LOAD_ARGS (split on spaces).
 *
 * When either program is missing (a build without the service), the suite
 * says so and is skipped: exit 0, no row.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int executable(const char *p)
{
    return p && access(p, X_OK) == 0;
}

/* dirname(self)/rel, if executable. */
static const char *sibling(const char *rel, char *buf, size_t len)
{
    const char *self = fpay_bench_self_path();
    const char *slash = strrchr(self, '/');
    if (!slash)
        return NULL;
    snprintf(buf, len, "%.*s/%s", (int)(slash - self), self, rel);
    return executable(buf) ? buf : NULL;
}

/* argv from a fixed head plus the words of an environment variable. */
static int add_env_words(const char **argv, int n, int max, const char *var)
{
    const char *v = getenv(var);
    if (!v)
        return n;
    static char copy[4096]; /* the words live until the exec */
    snprintf(copy, sizeof copy, "%s", v);
    for (char *w = strtok(copy, " "); w && n < max - 1; w = strtok(NULL, " "))
        argv[n++] = w;
    return n;
}

static pid_t spawn(const char *const *argv, int *out_fd)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        setpgid(0, 0);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    if (pid < 0) {
        close(fd[0]);
        return -1;
    }
    *out_fd = fd[0];
    return pid;
}

/* After the port line the server keeps logging (an operator line per
 * request): unread, its pipe fills after a few hundred requests and the
 * server blocks in write(), stalling every request and its shutdown. This
 * thread reads and drops the rest until the server exits. */
static void *drain_output(void *arg)
{
    int fd = *(const int *)arg;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    return NULL;
}

/* Reads the server's output until a line names its port (":PORT" after
 * 127.0.0.1/localhost, or "port PORT"), for up to timeout_ms. */
static int read_port(int fd, int timeout_ms, char *log, size_t log_len)
{
    size_t used = 0;
    log[0] = '\0';
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    double t0 = fpay_bench_now_ms();
    while (fpay_bench_now_ms() - t0 < timeout_ms) {
        ssize_t n = used + 1 < log_len ? read(fd, log + used, log_len - used - 1) : 0;
        if (n > 0) {
            used += (size_t)n;
            log[used] = '\0';
            const char *keys[] = {"127.0.0.1:", "localhost:", "port ", "port=", "\"port\":"};
            for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
                const char *at = strstr(log, keys[k]);
                if (at) {
                    int port = atoi(at + strlen(keys[k]));
                    if (port > 0 && port < 65536)
                        return port;
                }
            }
        } else if (n == 0) {
            return -1; /* exited */
        } else {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return -1;
}

/* One load: `terminals` concurrent terminals for `duration` s against the
 * running server at url, one row. */
static int load_one(const fpay_bench_opts *o, const char *load, const char *url,
                    const char *api_key, const char *verify_img, long terminals, long duration)
{
    char term[32], dur[32];
    snprintf(term, sizeof term, "%ld", terminals);
    snprintf(dur, sizeof dur, "%ld", duration);
    const char *largv[48] = {load, "--url", url, "--terminals", term, "--duration", dur,
                             "--json", "--terminal", "bench", "--key", api_key,
                             "--phone", "+15550100", "--image", verify_img};
    int ln = add_env_words(largv, 16, 48, "FPAY_BENCH_LOAD_ARGS");
    largv[ln] = NULL;
    if (!o->json)
        printf("# server: %s on %s, %ld terminals for %ld s\n", load, url, terminals, duration);
    int lfd = -1;
    pid_t client = spawn(largv, &lfd);
    char out[65536];
    size_t used = 0;
    for (ssize_t n; client > 0 && used + 1 < sizeof out &&
                    (n = read(lfd, out + used, sizeof out - used - 1)) > 0;)
        used += (size_t)n;
    out[used] = '\0';
    int status = 0;
    if (client > 0) {
        close(lfd);
        waitpid(client, &status, 0);
    }
    /* The last line that parses as a JSON object. */
    cJSON *res = NULL;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *j = line[0] == '{' ? cJSON_Parse(line) : NULL;
        if (j) {
            cJSON_Delete(res);
            res = j;
        }
    }
    if (!res || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "facepay-bench server: facepay-load failed (exit %d)\n",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        cJSON_Delete(res);
        return 1;
    }
    char k[128];
    snprintf(k, sizeof k, "server/t%ld", terminals);
    cJSON *row = fpay_bench_row("server", "cpu", k);
    cJSON *p = cJSON_GetObjectItem(row, "params");
    cJSON_AddNumberToObject(p, "terminals", (double)terminals);
    cJSON_AddNumberToObject(p, "duration_s", (double)duration);
    cJSON *item;
    cJSON_ArrayForEach(item, res)
    {
        if (cJSON_IsNumber(item)) {
            const char *n = item->string;
            int higher = strstr(n, "rps") || strstr(n, "per_s") || strstr(n, "ok");
            fpay_bench_add_value(row, n, strstr(n, "_ms") ? "ms" : "", higher ? "higher" : "lower",
                                 item->valuedouble);
            if (!o->json)
                printf("%-24s %12.3f\n", n, item->valuedouble);
        } else if (cJSON_IsObject(item)) {
            /* {"latency_ms": {"p50": ..}} -> "latency_ms.p50" in ms. */
            cJSON *sub;
            cJSON_ArrayForEach(sub, item)
            {
                if (!cJSON_IsNumber(sub))
                    continue;
                char name[128];
                snprintf(name, sizeof name, "%s.%s", item->string, sub->string);
                fpay_bench_add_value(row, name, strstr(name, "_ms") ? "ms" : "", "lower",
                                     sub->valuedouble);
                if (!o->json)
                    printf("%-24s %12.3f\n", name, sub->valuedouble);
            }
        } else if (cJSON_IsArray(item) && !strcmp(item->string, "latencies_ms")) {
            int n = cJSON_GetArraySize(item);
            double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
            for (int i = 0; v && i < n; i++)
                v[i] = cJSON_GetArrayItem(item, i)->valuedouble;
            if (v && n)
                fpay_bench_add_samples(row, "latency_ms", "ms", "lower", v, n);
            free(v);
        }
    }
    cJSON_Delete(res);
    fpay_bench_emit(o, row);
    return 0;
}

int fpay_bench_suite_server(const fpay_bench_opts *o)
{
    char lbuf[4096], fbuf[4096];
    const char *load = o->load_client ? o->load_client : getenv("FPAY_LOAD_CLIENT");
    /* Built next to facepay (build/tools/), and so installed. */
    if (!executable(load))
        load = sibling("../tools/facepay-load", lbuf, sizeof lbuf);
    const char *cli = o->facepay_cli ? o->facepay_cli : sibling("../tools/facepay", fbuf, sizeof fbuf);
    if (!load || !cli) {
        printf("# server: SKIPPED: %s not found (built from tools/server/ with the service, "
               "issue 7; or give --load-client PATH --facepay PATH)\n",
               !load ? "the load client facepay-load" : "the facepay CLI");
        return 0;
    }
    static const long def_terms[1] = {4};
    const long *terms = o->n_terminals ? o->terminals : def_terms;
    int nterm = o->n_terminals ? o->n_terminals : 1;
    long duration = o->duration_s > 0 ? o->duration_s : 10;
    const char *tmp = getenv("TMPDIR");
    char dir[256], db[320], key[320], cmd[10000];
    snprintf(dir, sizeof dir, "%s/facepay-bench-srv-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "facepay-bench server: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    pid_t server = -1;
    int sfd = -1, rc = 1;
    pthread_t drainer;
    bool drain_started = false;
    snprintf(db, sizeof db, "%s/store.db", dir);
    snprintf(key, sizeof key, "%s/master.key", dir);
    snprintf(cmd, sizeof cmd, "'%s' keygen '%s' >/dev/null 2>&1 || '%s' keygen --out '%s' >/dev/null 2>&1",
             cli, key, cli, key);
    if (system(cmd) != 0)
        printf("# server: `facepay keygen` failed; the server may read FACEPAY_MASTER_KEY\n");
    /* A terminal and one enrolled account for the load client: the photos
     * pass liveness (the LFW crops are too small for it), so a verify costs
     * what it costs at a real checkout. */
    const char *faces = fpay_bench_faces_dir(o), *models = fpay_bench_models_dir(o);
    char api_key[128] = "", enroll_img[1200], verify_img[1200];
    snprintf(enroll_img, sizeof enroll_img, "%s/obama.jpg", faces);
    snprintf(verify_img, sizeof verify_img, "%s/obama1.jpg", faces);
    snprintf(cmd, sizeof cmd, "'%s' serve --db '%s' --key-file '%s' --models '%s' --add-terminal bench",
             cli, db, key, models);
    FILE *pf = popen(cmd, "r");
    if (pf) {
        char line[512];
        /* "terminal bench key KEY": the key is the fourth word. */
        while (fgets(line, sizeof line, pf))
            if (sscanf(line, "%*s %*s %*s %127s", api_key) == 1)
                break;
        pclose(pf);
    }
    snprintf(cmd, sizeof cmd,
             "'%s' enroll --db '%s' --key-file '%s' --models '%s' --phone +15550100 '%s' >/dev/null 2>&1",
             cli, db, key, models, enroll_img);
    if (!api_key[0] || system(cmd) != 0) {
        printf("# server: SKIPPED: could not add a terminal or enroll %s\n", enroll_img);
        rc = 0;
        goto out;
    }
    const char *sargv[48] = {cli, "serve", "--port", "0", "--db", db, "--key-file", key,
                             "--models", models};
    int sn = add_env_words(sargv, 10, 48, "FPAY_BENCH_SERVE_ARGS");
    sargv[sn] = NULL;
    server = spawn(sargv, &sfd);
    char log[8192];
    int port = server > 0 ? read_port(sfd, 60000, log, sizeof log) : -1;
    if (port < 0) {
        printf("# server: SKIPPED: `facepay serve --port 0` did not report a port "
               "(output: %.300s)\n",
               server > 0 ? log : "could not start");
        rc = 0;
        goto out;
    }
    drain_started = pthread_create(&drainer, NULL, drain_output, &sfd) == 0;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    /* --terminals 1,2,4: one load (and one row) per count, against the
     * same server, in the order given. */
    rc = 0;
    for (int t = 0; t < nterm; t++)
        rc |= load_one(o, load, url, api_key, verify_img, terms[t], duration);
out:
    if (server > 0) {
        kill(-server, SIGTERM);
        waitpid(server, NULL, 0);
        if (drain_started)
            pthread_join(drainer, NULL); /* EOF once the server is gone */
        close(sfd);
    }
    const char *files[] = {db, key};
    for (size_t i = 0; i < 2; i++)
        unlink(files[i]);
    snprintf(cmd, sizeof cmd, "%s-wal", db);
    unlink(cmd);
    snprintf(cmd, sizeof cmd, "%s-shm", db);
    unlink(cmd);
    rmdir(dir);
    return rc;
}
