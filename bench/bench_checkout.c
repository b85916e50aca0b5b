/*
 * bench_checkout.c - the `checkout` suite: a full verify of real photos,
 * stage by stage and end to end, warm; and the cold start apart.
 *
 * Through the service (facepay/service.h) when the library has it: a temp
 * SQLite store and a temp master key, one account enrolled per person of
 * the photo set (its first photo), then verifies of every other photo
 * against its own account (APPROVE expected) and against another person's
 * (DECLINE expected), in turn. Stages come from fpay_service_result.times
 * (decode, detect, select, quality, align, liveness, embed, match); the end
 * to end time is CLOCK_MONOTONIC around fpay_service_verify, so what no
 * stage accounts for (decision, audit log write) shows as "other".
 *
 * Without the service (the library before issue 7): the same flow through
 * the pipeline (facepay/pipeline.h), with a match stage of our own (cosine
 * against the enrolled embedding and the threshold).
 *
 * Cold start: `cold_runs` fresh processes (this executable, hidden
 * subcommand _checkout-cold), each creating the service or pipeline (model
 * loading, session prepare) and running one verify; a process of its own,
 * since a warm process keeps pages, plugins and caches a terminal just
 * switched on does not have (the OS page cache stays warm).
 */
#include "bench.h"

#include "facepay/facepay.h"
#include "facepay/pipeline.h"
#ifdef FPAY_BENCH_HAVE_SERVICE
#include "facepay/service.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_STAGES 10
static const char *const stage_names[N_STAGES] = {"decode", "detect", "select", "quality",
                                                  "align", "liveness", "embed", "match",
                                                  "other", "total"};

typedef struct photo {
    char path[1024];
    char person[128];
    unsigned char *data;
    size_t size;
    int enrolled;  /* the photo that made its person's template */
} photo;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int read_file(const char *path, unsigned char **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            unsigned char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *data = buf;
    *size = n;
    return 0;
}

/* The LFW-style photos of the set: First_Last_NNNN.jpg, at least two per
 * person (the person is the first two '_' fields). */
/* The default set: the bundled photos that pass every gate of a payment
 * capture (the LFW crops are too blurry for the liveness model and stop
 * there): two people enrolled, the third photo verified against its own
 * account and the other one, so every stage runs on every verify. */
static const char *const curated[][3] = {{"obama.jpg", "obama", "1"},
                                         {"obama1.jpg", "obama", "0"},
                                         {"Tom_Cruise_avp_2014_4.jpg", "cruise", "1"}};

static int load_curated(const char *dir, photo **out)
{
    int n = (int)(sizeof curated / sizeof curated[0]);
    photo *p = calloc((size_t)n, sizeof *p);
    if (!p)
        return -1;
    for (int i = 0; i < n; i++) {
        snprintf(p[i].path, sizeof p[i].path, "%s/%s", dir, curated[i][0]);
        snprintf(p[i].person, sizeof p[i].person, "%s", curated[i][1]);
        p[i].enrolled = curated[i][2][0] == '1';
        if (read_file(p[i].path, &p[i].data, &p[i].size) != 0) {
            for (int k = 0; k < i; k++)
                free(p[k].data);
            free(p);
            return -1;
        }
    }
    *out = p;
    return n;
}

static int load_photos(const char *dir, photo **out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char *names[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;) {
        const char *dot = strrchr(e->d_name, '.');
        const char *us = strchr(e->d_name, '_');
        if (!dot || !us || strchr(us + 1, '_') == NULL ||
            (strcmp(dot, ".jpg") != 0 && strcmp(dot, ".png") != 0))
            continue;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    photo *p = calloc((size_t)(n ? n : 1), sizeof *p);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (p) {
            photo *ph = &p[k];
            snprintf(ph->path, sizeof ph->path, "%s/%s", dir, names[i]);
            const char *us = strchr(names[i], '_');
            us = strchr(us + 1, '_');
            snprintf(ph->person, sizeof ph->person, "%.*s", (int)(us - names[i]), names[i]);
            if (read_file(ph->path, &ph->data, &ph->size) == 0)
                k++;
        }
        free(names[i]);
    }
    if (!p)
        return -1;
    /* Keep the persons with two photos or more; the first one enrolls. */
    int m = 0;
    for (int i = 0; i < k; i++) {
        int same = 0;
        for (int j = 0; j < k; j++)
            same += !strcmp(p[i].person, p[j].person);
        if (same >= 2) {
            p[i].enrolled = m == 0 || strcmp(p[m - 1].person, p[i].person) != 0;
            p[m++] = p[i];
        } else {
            free(p[i].data);
        }
    }
    *out = p;
    return m;
}

/* A phone number per person, valid E.164. */
static void account_of(const photo *set, int n, const char *person, char *buf, size_t len)
{
    int idx = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(set[i].person, person))
            break;
        idx += set[i].enrolled;
    }
    snprintf(buf, len, "+861380013%04d", idx);
}

/* ------------------------------------------------------------ one engine */

typedef struct engine {
#ifdef FPAY_BENCH_HAVE_SERVICE
    fpay_service *svc;
    char dir[256];
#endif
    fpay_pipeline *pipe;
    float templates[64][FPAY_EMBED_DIM];
    char template_person[64][128];
    int n_templates;
} engine;

typedef struct verify_out {
    double stage[N_STAGES]; /* ms, stage_names order */
    int approved;
    char reason[48];
} verify_out;

static void engine_close(engine *e)
{
#ifdef FPAY_BENCH_HAVE_SERVICE
    if (e->svc)
        fpay_service_close(e->svc);
    if (e->dir[0]) {
        char path[512];
        const char *files[] = {"store.db", "store.db-wal", "store.db-shm", "master.key"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", e->dir, files[i]);
            unlink(path);
        }
        rmdir(e->dir);
    }
#endif
    fpay_pipeline_free(e->pipe);
    memset(e, 0, sizeof *e);
}

static int engine_open(engine *e, const char *models_dir, const char *backend, long threads,
                       char *err, size_t err_len)
{
    memset(e, 0, sizeof *e);
#ifdef FPAY_BENCH_HAVE_SERVICE
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/facepay-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(e->dir)) {
        snprintf(err, err_len, "mkdtemp: %s", strerror(errno));
        e->dir[0] = '\0';
        return -1;
    }
    char db[320], key[320];
    snprintf(db, sizeof db, "%s/store.db", e->dir);
    snprintf(key, sizeof key, "%s/master.key", e->dir);
    if (fpay_keygen(key, err, err_len) != FPAY_OK)
        return -1;
    fpay_service_config cfg;
    fpay_service_config_init(&cfg);
    cfg.db_path = db;
    cfg.key_file = key;
    cfg.pipeline.models_dir = models_dir;
    cfg.pipeline.backend = backend;
    cfg.pipeline.threads = (int)threads;
    cfg.default_country_code = "86";
    /* The benchmark declines on purpose, again and again: throttling
     * would turn the later verifies into lookups of a counter. */
    cfg.backoff_after = 1000000;
    cfg.lock_after = 2000000;
    cfg.terminal_max_failures = 1000000;
    return fpay_service_open(&cfg, &e->svc, err, err_len) == FPAY_OK ? 0 : -1;
#else
    fpay_pipeline_config cfg;
    fpay_pipeline_config_init(&cfg, FPAY_CAMERA_DEFAULT);
    cfg.models_dir = models_dir;
    cfg.backend = backend;
    cfg.threads = (int)threads;
    /* Embed even a refused capture: the embed stage is then timed on every
     * photo, as the service would for an approved one. */
    cfg.embed_rejected = 1;
    return fpay_pipeline_create(&cfg, &e->pipe, err, err_len) == FPAY_OK ? 0 : -1;
#endif
}

/* Without the service: the cosine threshold of our own match stage (the
 * value the pipeline's evaluation uses for MobileFaceNet). */
#define PIPELINE_MATCH_THRESHOLD 0.6f

static int engine_enroll(engine *e, const photo *ph, const char *account, char *err,
                         size_t err_len)
{
#ifdef FPAY_BENCH_HAVE_SERVICE
    fpay_request req = {"bench", FPAY_ID_PHONE, account};
    fpay_capture_source src = {ph->data, ph->size, NULL};
    fpay_service_result r;
    fpay_status st = fpay_service_enroll(e->svc, &req, &src, 1, &r);
    if (st != FPAY_OK || r.decision != FPAY_APPROVE) {
        snprintf(err, err_len, "enroll %.300s: %s (%.100s)", ph->path, fpay_reason_name(r.reason),
                 r.message);
        return -1;
    }
    return 0;
#else
    (void)account;
    static fpay_capture cap; /* 40 KB: not on the stack */
    if (fpay_pipeline_process_encoded(e->pipe, ph->data, ph->size, &cap) != FPAY_OK ||
        !cap.has_embedding || e->n_templates == 64) {
        snprintf(err, err_len, "enroll %.300s: %s", ph->path,
                 cap.has_embedding ? fpay_pipeline_errmsg(e->pipe)
                                   : fpay_face_result_str(cap.result));
        return -1;
    }
    memcpy(e->templates[e->n_templates], cap.embedding, sizeof cap.embedding);
    snprintf(e->template_person[e->n_templates], sizeof e->template_person[0], "%s",
             ph->person);
    e->n_templates++;
    return 0;
#endif
}

static int engine_verify(engine *e, const photo *ph, const char *person, const char *account,
                         unsigned serial, verify_out *v, char *err, size_t err_len)
{
    memset(v, 0, sizeof *v);
#ifdef FPAY_BENCH_HAVE_SERVICE
    (void)person;
    /* The service refuses a capture it has seen (replay): each run gets
     * bytes of its own, the serial appended after the image's end, where
     * decoders never look. */
    unsigned char *buf = malloc(ph->size + 16);
    if (!buf)
        return -1;
    memcpy(buf, ph->data, ph->size);
    size_t size = ph->size + (size_t)snprintf((char *)buf + ph->size, 16, "%08x", serial);
    fpay_request req = {"bench", FPAY_ID_PHONE, account};
    fpay_capture_source src = {buf, size, NULL};
    fpay_service_result r;
    double t0 = fpay_bench_now_ms();
    fpay_status st = fpay_service_verify(e->svc, &req, &src, &r);
    double t1 = fpay_bench_now_ms();
    free(buf);
    if (st != FPAY_OK) {
        snprintf(err, err_len, "verify %.300s: %s (%.100s)", ph->path, fpay_status_str(st), r.message);
        return -1;
    }
    const fpay_stage_times *t = &r.times;
    double s[8] = {t->decode, t->detect,   t->select, t->quality,
                   t->align,  t->liveness, t->embed,  t->match};
    memcpy(v->stage, s, sizeof s);
    v->approved = r.decision == FPAY_APPROVE;
    snprintf(v->reason, sizeof v->reason, "%s", fpay_reason_name(r.reason));
    v->stage[9] = t1 - t0;
#else
    (void)account;
    (void)serial;
    static fpay_capture cap;
    double t0 = fpay_bench_now_ms();
    if (fpay_pipeline_process_encoded(e->pipe, ph->data, ph->size, &cap) != FPAY_OK) {
        snprintf(err, err_len, "verify %.300s: %s", ph->path, fpay_pipeline_errmsg(e->pipe));
        return -1;
    }
    double tm = fpay_bench_now_ms();
    float score = -2;
    for (int i = 0; i < e->n_templates; i++)
        if (!strcmp(e->template_person[i], person) && cap.has_embedding)
            score = fpay_embedding_cosine(cap.embedding, e->templates[i], FPAY_EMBED_DIM);
    v->approved = cap.result == FPAY_FACE_OK && score >= PIPELINE_MATCH_THRESHOLD;
    double t1 = fpay_bench_now_ms();
    const fpay_timings *t = &cap.timings;
    double s[8] = {t->decode, t->detect,   t->select, t->quality,
                   t->align,  t->liveness, t->embed,  t1 - tm};
    memcpy(v->stage, s, sizeof s);
    snprintf(v->reason, sizeof v->reason, "%s",
             cap.result != FPAY_FACE_OK ? fpay_face_result_str(cap.result)
             : v->approved              ? "NONE"
                                        : "NO_MATCH");
    v->stage[9] = t1 - t0;
#endif
    double sum = 0;
    for (int i = 0; i < 8; i++)
        sum += v->stage[i];
    v->stage[8] = v->stage[9] - sum > 0 ? v->stage[9] - sum : 0;
    return 0;
}

static const char *api_name(void)
{
#ifdef FPAY_BENCH_HAVE_SERVICE
    return "service";
#else
    return "pipeline";
#endif
}

/* ------------------------------------------------------------ cold start */

/* _checkout-cold MODELS_DIR BACKEND THREADS PHOTO: prints
 * "create_ms first_ms" on stdout. */
int fpay_bench_checkout_cold_child(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    double t0 = fpay_bench_now_ms();
    engine e;
    char err[512];
    if (engine_open(&e, argv[0], argv[1], atol(argv[2]), err, sizeof err) != 0) {
        fprintf(stderr, "facepay-bench checkout (cold): %s\n", err);
        engine_close(&e);
        return 1;
    }
    double t1 = fpay_bench_now_ms();
    photo ph;
    memset(&ph, 0, sizeof ph);
    snprintf(ph.path, sizeof ph.path, "%s", argv[3]);
    snprintf(ph.person, sizeof ph.person, "cold");
    verify_out v;
    int rc = read_file(argv[3], &ph.data, &ph.size) == 0 &&
                     engine_verify(&e, &ph, "cold", "+8613800139999", 1, &v, err, sizeof err) == 0
                 ? 0
                 : 1;
    double t2 = fpay_bench_now_ms();
    if (rc)
        fprintf(stderr, "facepay-bench checkout (cold): %s\n", err);
    else
        printf("%.4f %.4f\n", t1 - t0, t2 - t1);
    free(ph.data);
    engine_close(&e);
    return rc;
}

static int cold_run(const char *models_dir, const char *backend, long threads,
                    const char *photo_path, double *create_ms, double *first_ms)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    char thr[32];
    snprintf(thr, sizeof thr, "%ld", threads);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl(fpay_bench_self_path(), "facepay-bench", "_checkout-cold", models_dir, backend,
              thr, photo_path, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[128] = "";
    ssize_t n = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    buf[n > 0 ? n : 0] = '\0';
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(buf, "%lf %lf", create_ms, first_ms) != 2)
        return -1;
    return 0;
}

/* ------------------------------------------------------------ the suite */

static int checkout_one(const fpay_bench_opts *o, const photo *set, int n_set,
                        const char *backend, long threads, long warmup, long runs,
                        long cold_runs)
{
    /* The kernel path of this configuration (FACEPAY_ISA, set by the
     * caller for --isa): in the key, the row and the table, so that a
     * checkout on AVX2 is never matched with one on AVX-512. */
    const char *isa = fpay_bench_isa();
    const char *models_dir = fpay_bench_models_dir(o);
    /* Cold first, before this process has loaded anything of its own. */
    double *cold_create = calloc((size_t)cold_runs + 1, sizeof(double));
    double *cold_first = calloc((size_t)cold_runs + 1, sizeof(double));
    int n_cold = 0;
    const photo *probe = NULL;
    for (int i = 0; i < n_set && !probe; i++)
        if (!set[i].enrolled)
            probe = &set[i];
    for (long i = 0; probe && cold_create && cold_first && i < cold_runs; i++)
        if (cold_run(models_dir, backend, threads, probe->path, &cold_create[n_cold],
                     &cold_first[n_cold]) == 0)
            n_cold++;
    if (cold_runs && n_cold < cold_runs)
        fprintf(stderr, "facepay-bench checkout: %ld of %ld cold runs failed\n",
                cold_runs - n_cold, cold_runs);

    int rc = 1, rss_own = fpay_bench_rss_reset() == 0;
    engine e;
    char err[512];
    double *samples[N_STAGES] = {0};
    if (engine_open(&e, models_dir, backend, threads, err, sizeof err) != 0) {
        fprintf(stderr, "facepay-bench checkout: %s: %s\n", backend, err);
        goto out;
    }
    /* Enroll one photo per person; then the plan: each other photo against
     * its own account and against the next person's. */
    int plan_photo[512], plan_own[512], n_plan = 0;
    for (int i = 0; i < n_set; i++) {
        char acc[32];
        account_of(set, n_set, set[i].person, acc, sizeof acc);
        /* A refused enrollment is not fatal: that person's verifies then
         * meet the decoy template of an unknown account, which takes the
         * same path and time by design. */
        if (set[i].enrolled && engine_enroll(&e, &set[i], acc, err, sizeof err) != 0 &&
            !o->json)
            printf("# not enrolled (verifies go to an unknown account): %s\n", err);
    }
    for (int i = 0; i < n_set && n_plan < 510; i++)
        if (!set[i].enrolled) {
            plan_photo[n_plan] = i, plan_own[n_plan++] = 1;
            plan_photo[n_plan] = i, plan_own[n_plan++] = 0;
        }
    if (!n_plan) {
        fprintf(stderr, "facepay-bench checkout: no photo to verify\n");
        goto out;
    }
    for (int s = 0; s < N_STAGES; s++)
        if (!(samples[s] = malloc((size_t)runs * sizeof(double))))
            goto out;
    int approved = 0, expected = 0;
    unsigned serial = 1;
    for (long i = 0; i < warmup + runs; i++) {
        int k = (int)(i % n_plan);
        const photo *ph = &set[plan_photo[k]];
        const char *person = ph->person;
        if (!plan_own[k]) { /* the next enrolled person after this one */
            for (int j = 1; j <= n_set; j++) {
                const photo *q = &set[(plan_photo[k] + j) % n_set];
                if (q->enrolled && strcmp(q->person, ph->person) != 0) {
                    person = q->person;
                    break;
                }
            }
        }
        char acc[32];
        account_of(set, n_set, person, acc, sizeof acc);
        verify_out v;
        if (engine_verify(&e, ph, person, acc, serial++, &v, err, sizeof err) != 0) {
            fprintf(stderr, "facepay-bench checkout: %s\n", err);
            goto out;
        }
        if (i < warmup)
            continue;
        for (int s = 0; s < N_STAGES; s++)
            samples[s][i - warmup] = v.stage[s];
        approved += v.approved;
        expected += v.approved == plan_own[k];
    }

    char key[256];
    snprintf(key, sizeof key, "checkout/%s/%s/%s/t%ld", api_name(), backend, isa, threads);
    cJSON *row = fpay_bench_row("checkout", backend, key);
    cJSON *p = cJSON_GetObjectItem(row, "params");
    cJSON_AddStringToObject(p, "api", api_name());
    cJSON_AddNumberToObject(p, "threads", (double)threads);
    cJSON_AddNumberToObject(p, "runs", (double)runs);
    cJSON_AddNumberToObject(p, "warmup", (double)warmup);
    cJSON_AddNumberToObject(p, "cold_runs", n_cold);
    cJSON_AddNumberToObject(p, "photos", n_set);
    cJSON_AddNumberToObject(p, "approved", approved);
    cJSON_AddNumberToObject(p, "decisions_as_expected", expected);
    cJSON_AddBoolToObject(p, "rss_per_config", rss_own);
    if (!o->json) {
        printf("# checkout via %s | backend %s | ISA %s | %ld thread(s) | %d photos, %ld warm "
               "verifies after %ld warm-up, %d/%ld approved, %d/%ld as expected\n",
               api_name(), backend, isa, threads, n_set, runs, warmup, approved, runs, expected,
               runs);
        printf("%-12s %9s %9s %9s %9s %9s %9s %6s\n", "stage", "min", "p50", "p90", "p99",
               "mad", "iqr", "share");
    }
    double p50_total = 0;
    fpay_bench_summary sums[N_STAGES];
    for (int s = 0; s < N_STAGES; s++) {
        double *copy = malloc((size_t)runs * sizeof(double));
        if (copy) {
            memcpy(copy, samples[s], (size_t)runs * sizeof(double));
            fpay_bench_summarize(copy, (int)runs, &sums[s]);
            free(copy);
        }
        if (s == 9)
            p50_total = sums[s].p50;
    }
    for (int s = 0; s < N_STAGES; s++) {
        char name[48];
        snprintf(name, sizeof name, s == 9 ? "e2e_ms" : "stage_%s_ms", stage_names[s]);
        fpay_bench_add_samples(row, name, "ms", "lower", samples[s], (int)runs);
        if (!o->json)
            printf("%-12s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %5.1f%%\n",
                   s == 9 ? "END TO END" : stage_names[s], sums[s].min, sums[s].p50,
                   sums[s].p90, sums[s].p99, sums[s].mad, sums[s].iqr,
                   p50_total > 0 ? 100.0 * sums[s].p50 / p50_total : 0);
    }
    if (n_cold) {
        double *cc = malloc((size_t)n_cold * sizeof(double));
        fpay_bench_summary sc, sf;
        memcpy(cc, cold_create, (size_t)n_cold * sizeof(double));
        fpay_bench_summarize(cc, n_cold, &sc);
        memcpy(cc, cold_first, (size_t)n_cold * sizeof(double));
        fpay_bench_summarize(cc, n_cold, &sf);
        free(cc);
        if (!o->json) {
            printf("%-12s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f  (cold: %s open, fresh process "
                   "x%d)\n",
                   "COLD create", sc.min, sc.p50, sc.p90, sc.p99, sc.mad, sc.iqr, api_name(),
                   n_cold);
            printf("%-12s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f  (cold: first verify)\n",
                   "COLD verify", sf.min, sf.p50, sf.p90, sf.p99, sf.mad, sf.iqr);
        }
        fpay_bench_add_samples(row, "cold_create_ms", "ms", "lower", cold_create, n_cold);
        fpay_bench_add_samples(row, "cold_first_verify_ms", "ms", "lower", cold_first, n_cold);
    }
    long long rss = fpay_bench_rss_peak();
    fpay_bench_add_value(row, "peak_rss_bytes", "B", "lower", (double)rss);
    if (!o->json) {
        printf("# peak RSS %.1f MiB (warm process)\n", (double)rss / (1 << 20));
        fflush(stdout);
    }
    fpay_bench_emit(o, row);
    rc = 0;
out:
    for (int s = 0; s < N_STAGES; s++)
        free(samples[s]);
    free(cold_create);
    free(cold_first);
    engine_close(&e);
    return rc;
}

int fpay_bench_suite_checkout(const fpay_bench_opts *o)
{
    long runs = o->runs > 0 ? o->runs : 40, warmup = o->warmup >= 0 ? o->warmup : 4;
    long cold_runs = o->cold_runs >= 0 ? o->cold_runs : 3;
    photo *set = NULL;
    int n = o->faces_dir ? -1 : load_curated(fpay_bench_faces_dir(o), &set);
    if (n < 0)
        n = load_photos(fpay_bench_faces_dir(o), &set);
    if (n < 2) {
        fprintf(stderr, "facepay-bench checkout: no pairs of First_Last_NNNN photos in %s\n",
                fpay_bench_faces_dir(o));
        free(set);
        return 1;
    }
    if (!o->json)
        printf("# facepay-bench checkout | commit %.12s%s | %s | %s\n", fpay_bench_git_commit(),
               fpay_bench_git_dirty() ? "-dirty" : "", fpay_build_id(), fpay_bench_cpu_model());
    long def_threads[1] = {1};
    const long *threads = o->n_threads ? o->threads : def_threads;
    int nt = o->n_threads ? o->n_threads : 1;
    const char *def_backends[1] = {"cpu"};
    const char *const *backends = o->n_backends ? o->backends : def_backends;
    int nb = o->n_backends ? o->n_backends : 1;
    /* --isa: one configuration per kernel path, through FACEPAY_ISA (the
     * cold-start children inherit it); only the built-in CPU backend has
     * kernel paths. */
    const char *saved_isa = getenv("FACEPAY_ISA");
    char saved[32] = "";
    if (saved_isa)
        snprintf(saved, sizeof saved, "%s", saved_isa);
    int rc = 0;
    for (int b = 0; b < nb; b++)
        for (int is = 0; is < (o->n_isas ? o->n_isas : 1); is++) {
            const char *isa = o->n_isas && !strcmp(backends[b], "cpu") ? o->isas[is] : NULL;
            if (is > 0 && !isa)
                break;
            if (isa)
                setenv("FACEPAY_ISA", isa, 1);
            for (int t = 0; t < nt; t++)
                rc |= checkout_one(o, set, n, backends[b], threads[t], warmup, runs, cold_runs);
            if (saved_isa)
                setenv("FACEPAY_ISA", saved, 1);
            else
                unsetenv("FACEPAY_ISA");
        }
    for (int i = 0; i < n; i++)
        free(set[i].data);
    free(set);
    return rc;
}
