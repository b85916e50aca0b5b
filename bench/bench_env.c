/*
 * bench_env.c - what every result row says about where it was measured:
 * the commit (configure time) and dirty flag, build id, compiler and flags,
 * CPU model and the kernel ISA, backend version and device, UTC date and
 * host; and the peak resident memory of the process.
 */
#include "bench.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"
#include "fpay_cpu.h" /* the ISA the kernels dispatch to */

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef FPAY_BENCH_GIT_COMMIT
#define FPAY_BENCH_GIT_COMMIT "unknown"
#endif
#ifndef FPAY_BENCH_GIT_DIRTY
#define FPAY_BENCH_GIT_DIRTY 0
#endif
#ifndef FPAY_BENCH_COMPILER
#define FPAY_BENCH_COMPILER "unknown"
#endif
#ifndef FPAY_BENCH_CFLAGS
#define FPAY_BENCH_CFLAGS ""
#endif
#ifndef FPAY_BENCH_MODELS_DIR
#define FPAY_BENCH_MODELS_DIR "models"
#endif
#ifndef FPAY_BENCH_FACES_DIR
#define FPAY_BENCH_FACES_DIR "tests/data/faces"
#endif

const char *fpay_bench_git_commit(void) { return FPAY_BENCH_GIT_COMMIT; }
int fpay_bench_git_dirty(void) { return FPAY_BENCH_GIT_DIRTY; }
const char *fpay_bench_compiler(void) { return FPAY_BENCH_COMPILER; }
const char *fpay_bench_cflags(void) { return FPAY_BENCH_CFLAGS; }

const char *fpay_bench_cpu_model(void)
{
    static char model[256];
    if (model[0])
        return model;
    snprintf(model, sizeof model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return model;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        /* x86: "model name"; arm64 kernels have no name, only part ids. */
        char *colon = strchr(line, ':');
        if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "Hardware", 8))) {
            colon++;
            while (*colon == ' ' || *colon == '\t')
                colon++;
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(model, sizeof model, "%s", colon);
            break;
        }
    }
    fclose(f);
    return model;
}

const char *fpay_bench_isa(void)
{
    fpay_isa chosen = FPAY_ISA_REF;
    char err[256];
    return fpay_cpu_choose_isa(&chosen, err, sizeof err) == 0 ? fpay_isa_name(chosen) : "invalid";
}

void fpay_bench_device(const char *backend, char *buf, size_t len)
{
    const fpay_backend_iface *b = backend ? fpay_backend_find(backend) : NULL;
    /* The Vulkan plugin's version reads "vulkan-1 (device 0: NAME, type,
     * driver ...)": the device is what follows "device N: ". */
    const char *d = b && b->version ? strstr(b->version, "device ") : NULL;
    const char *colon = d ? strstr(d, ": ") : NULL;
    if (colon) {
        colon += 2;
        size_t n = strcspn(colon, ",)");
        snprintf(buf, len, "%.*s", (int)n, colon);
        return;
    }
    snprintf(buf, len, "CPU: %s", fpay_bench_cpu_model());
}

/* Writing 5 to clear_refs resets VmHWM (Linux >= 4.0): each row then gets
 * its own peak rather than the process's. */
int fpay_bench_rss_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

long long fpay_bench_rss_peak(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long long kb = -1;
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmHWM:", 6))
                kb = atoll(line + 6);
        fclose(f);
        if (kb >= 0)
            return kb * 1024;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        return (long long)ru.ru_maxrss * 1024;
    return -1;
}

const char *fpay_bench_models_dir(const fpay_bench_opts *o)
{
    if (o && o->models_dir)
        return o->models_dir;
    const char *env = getenv("FPAY_MODELS_DIR");
    if (!env || !*env)
        env = getenv("FACEPAY_MODELS_DIR");
    return env && *env ? env : FPAY_BENCH_MODELS_DIR;
}

const char *fpay_bench_faces_dir(const fpay_bench_opts *o)
{
    if (o && o->faces_dir)
        return o->faces_dir;
    const char *env = getenv("FPAY_FACES_DIR");
    return env && *env ? env : FPAY_BENCH_FACES_DIR;
}

const char *fpay_bench_self_path(void)
{
    static char path[4096];
    if (!path[0]) {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
        path[n > 0 ? n : 0] = '\0';
    }
    return path;
}

/* ------------------------------------------------------------ rows */

cJSON *fpay_bench_row(const char *suite, const char *backend, const char *key)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "schema", 1);
    cJSON_AddStringToObject(r, "suite", suite);
    cJSON_AddStringToObject(r, "key", key);
    /* One id per process: the rows of one record share it. */
    static char run_id[64];
    if (!run_id[0]) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(run_id, sizeof run_id, "%lld-%ld", (long long)ts.tv_sec, (long)getpid());
    }
    cJSON_AddStringToObject(r, "run", run_id);
    cJSON_AddStringToObject(r, "commit", fpay_bench_git_commit());
    cJSON_AddBoolToObject(r, "dirty", fpay_bench_git_dirty());
    cJSON_AddStringToObject(r, "build_id", fpay_build_id());
    cJSON_AddStringToObject(r, "version", fpay_version());
    cJSON_AddStringToObject(r, "compiler", fpay_bench_compiler());
    cJSON_AddStringToObject(r, "cflags", fpay_bench_cflags());
    cJSON_AddStringToObject(r, "cpu", fpay_bench_cpu_model());
    cJSON_AddStringToObject(r, "isa", fpay_bench_isa());
    const char *bname = backend ? backend : "cpu";
    const fpay_backend_iface *b = fpay_backend_find(bname);
    cJSON_AddStringToObject(r, "backend", bname);
    cJSON_AddStringToObject(r, "backend_version", b && b->version ? b->version : "");
    char dev[320];
    fpay_bench_device(bname, dev, sizeof dev);
    cJSON_AddStringToObject(r, "device", dev);
    time_t now = time(NULL);
    struct tm tm;
    char date[32];
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(r, "date", date);
    char host[256] = "";
    if (!getenv("FPAY_BENCH_NO_HOST") && gethostname(host, sizeof host - 1) == 0)
        cJSON_AddStringToObject(r, "host", host);
    cJSON_AddObjectToObject(r, "params");
    cJSON_AddObjectToObject(r, "metrics");
    return r;
}

static cJSON *metric(cJSON *row, const char *name, const char *unit, const char *better)
{
    cJSON *m = cJSON_AddObjectToObject(cJSON_GetObjectItem(row, "metrics"), name);
    cJSON_AddStringToObject(m, "unit", unit);
    cJSON_AddStringToObject(m, "better", better);
    return m;
}

void fpay_bench_add_samples(cJSON *row, const char *name, const char *unit,
                            const char *better, double *samples, int n)
{
    fpay_bench_summary s;
    fpay_bench_summarize(samples, n, &s);
    cJSON *m = metric(row, name, unit, better);
    cJSON_AddNumberToObject(m, "n", n);
    cJSON_AddNumberToObject(m, "min", s.min);
    cJSON_AddNumberToObject(m, "p50", s.p50);
    cJSON_AddNumberToObject(m, "p90", s.p90);
    cJSON_AddNumberToObject(m, "p99", s.p99);
    cJSON_AddNumberToObject(m, "max", s.max);
    cJSON_AddNumberToObject(m, "mad", s.mad);
    cJSON_AddNumberToObject(m, "iqr", s.iqr);
    cJSON *arr = cJSON_AddArrayToObject(m, "samples");
    for (int i = 0; i < n; i++) { /* 6 significant digits keep lines short */
        char num[32];
        snprintf(num, sizeof num, "%.6g", samples[i]);
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(strtod(num, NULL)));
    }
}

void fpay_bench_add_value(cJSON *row, const char *name, const char *unit,
                          const char *better, double value)
{
    cJSON *m = metric(row, name, unit, better);
    cJSON_AddNumberToObject(m, "value", value);
}

void fpay_bench_emit(const fpay_bench_opts *opts, cJSON *row)
{
    char *text = cJSON_PrintUnformatted(row);
    if (text) {
        if (opts->json) {
            puts(text);
            fflush(stdout);
        }
        if (opts->history) {
            fputs(text, opts->history);
            fputc('\n', opts->history);
            fflush(opts->history);
        }
        cJSON_free(text);
    }
    cJSON_Delete(row);
}
