/*
 * facepay-bench - latency of a model on a backend.
 *
 *   facepay-bench models [--runs N] [--warmup N] [--batch B] [--threads T]
 *                        [--backend NAME] [--isa ref|avx2|avx512|neon] [--json] MODEL...
 *   facepay-bench table [--runs N] [--warmup N] MODEL...
 *                        batch 1, every ISA this CPU has x 1 and 2 threads
 *   facepay-bench kernels
 *                        GFLOP/s and fraction of peak per SIMD kernel
 *
 * --isa sets FACEPAY_ISA for the sessions it creates (the CPU backend reads
 * it at every session prepare).
 *
 * Method: the session is created and the input filled once; `warmup` runs
 * are discarded (caches, page faults, lazy allocation); then `runs` timed
 * runs with CLOCK_MONOTONIC around fpay_session_run only. We report min,
 * median, p90 and max, never a mean: the machines are shared and noisy, and
 * one preempted run must not move the headline number.
 */
#include "facepay/facepay.h"
#include "bench.h"
#include "bench_backends.h" /* facepay-bench backends MODEL */
#include "fpay_cpu.h" /* ISAs for `table` and the isa column */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Nearest-rank percentile of sorted v[0..n). */
static int parse_pos(const char *s, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < 1 || x > 1000000)
        return -1;
    *v = x;
    return 0;
}

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && !strncmp(line, "model name", 10)) {
            colon++;
            while (*colon == ' ')
                colon++;
            colon[strcspn(colon, "\n")] = '\0';
            snprintf(buf, len, "%s", colon);
            break;
        }
    }
    fclose(f);
}

static int bench_model(const char *path, const char *backend, long batch, long threads,
                       long warmup, long runs, int json, const char *cpu, const char *isa)
{
    if (isa)
        setenv("FACEPAY_ISA", isa, 1);
    fpay_isa chosen = FPAY_ISA_REF;
    char isa_err[256];
    const char *isa_name =
        fpay_cpu_choose_isa(&chosen, isa_err, sizeof isa_err) == 0 ? fpay_isa_name(chosen) : "?";
    char err[320];
    fpay_model *m = NULL;
    fpay_session *s = NULL;
    float *x = NULL;
    double *t = NULL;
    int rc = 1;
    if (fpay_model_load_file(path, 0, &m, err, sizeof err) != FPAY_OK) {
        fprintf(stderr, "facepay-bench: %s\n", err);
        return 1;
    }
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = backend;
    o.threads = (int)threads;
    if (fpay_session_create(m, &o, &s, err, sizeof err) != FPAY_OK) {
        fprintf(stderr, "facepay-bench: %s\n", err);
        goto out;
    }
    if (batch && fpay_session_set_batch(s, (int)batch) != FPAY_OK) {
        fprintf(stderr, "facepay-bench: %s\n", fpay_session_errmsg(s));
        goto out;
    }
    for (int k = 0; k < fpay_session_input_count(s); k++) {
        fpay_tensor_info in;
        fpay_session_input_info(s, k, &in);
        free(x);
        x = malloc(in.count * sizeof(float));
        if (!x)
            goto out;
        for (size_t i = 0; i < in.count; i++)
            x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        fpay_session_set_input(s, k, x, in.count);
    }
    t = malloc((size_t)runs * sizeof(double));
    if (!t)
        goto out;
    for (long i = 0; i < warmup + runs; i++) {
        double t0 = fpay_bench_now_ms();
        if (fpay_session_run(s) != FPAY_OK) {
            fprintf(stderr, "facepay-bench: %s\n", fpay_session_errmsg(s));
            goto out;
        }
        if (i >= warmup)
            t[i - warmup] = fpay_bench_now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof(double), fpay_bench_cmp_double);
    fpay_tensor_info in;
    fpay_session_input_info(s, 0, &in);
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    double med = fpay_bench_percentile(t, (int)runs, 50), p90 = fpay_bench_percentile(t, (int)runs, 90);
    if (json)
        printf("{\"suite\":\"models\",\"model\":\"%s\",\"backend\":\"%s\",\"isa\":\"%s\","
               "\"threads\":%ld,"
               "\"batch\":%lld,\"runs\":%ld,\"warmup\":%ld,\"min_ms\":%.4f,"
               "\"median_ms\":%.4f,\"p90_ms\":%.4f,\"max_ms\":%.4f,\"peak_bytes\":%zu,"
               "\"build\":\"%s\",\"cpu\":\"%s\"}\n",
               name, fpay_session_backend(s), isa_name, threads, (long long)in.dims[0], runs,
               warmup,
               t[0], med, p90, t[runs - 1], fpay_session_peak_activation_bytes(s),
               fpay_build_id(), cpu);
    else
        printf("%-24s %-8s %-7s %7ld %5lld %5ld %10.3f %10.3f %10.3f %10.3f\n", name,
               fpay_session_backend(s), isa_name, threads, (long long)in.dims[0], runs, t[0], med, p90,
               t[runs - 1]);
    rc = 0;
out:
    free(t);
    free(x);
    fpay_session_free(s);
    fpay_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "backends"))
        return fpay_bench_backends(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "kernels"))
        return fpay_bench_kernels();
    const int table = argc >= 2 && !strcmp(argv[1], "table");
    if (argc < 2 || (strcmp(argv[1], "models") != 0 && !table)) {
        fprintf(stderr, "usage: facepay-bench models [--runs N] [--warmup N] [--batch B] "
                        "[--threads T] [--backend NAME] [--isa ISA] [--json] MODEL...\n"
                        "       facepay-bench table [--runs N] [--warmup N] MODEL...\n"
                        "       facepay-bench kernels\n");
        return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    long runs = table ? 50 : 20, warmup = table ? 5 : 3, batch = table ? 1 : 0, threads = 1;
    const char *backend = "cpu", *isa = NULL;
    int json = 0, i = 2;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        long *target = !strcmp(argv[i], "--runs")      ? &runs
                       : !strcmp(argv[i], "--warmup")  ? &warmup
                       : !strcmp(argv[i], "--batch")   ? &batch
                       : !strcmp(argv[i], "--threads") ? &threads
                                                       : NULL;
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            isa = argv[++i];
        } else if (target && i + 1 < argc && parse_pos(argv[i + 1], target) == 0) {
            i++;
        } else {
            fprintf(stderr, "facepay-bench: bad option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (i == argc) {
        fprintf(stderr, "facepay-bench: no MODEL given\n");
        return 2;
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    if (!json) {
        printf("# facepay-bench models | build %s | cpu %s\n", fpay_build_id(), cpu);
        printf("# %ld warm-up runs discarded, %ld timed runs, times in ms\n", warmup, runs);
        printf("%-24s %-8s %-7s %7s %5s %5s %10s %10s %10s %10s\n", "model", "backend",
               "isa", "threads", "batch", "runs", "min", "median", "p90", "max");
    }
    int rc = 0;
    for (; i < argc; i++) {
        if (!table) {
            rc |= bench_model(argv[i], backend, batch, threads, warmup, runs, json, cpu, isa);
            continue;
        }
        /* Every ISA this CPU can run, at 1 and 2 threads. */
        for (int k = 0; k < FPAY_ISA_COUNT_; k++) {
            if (!fpay_isa_supported((fpay_isa)k))
                continue;
            for (long t = 1; t <= 2; t++)
                rc |= bench_model(argv[i], backend, batch, t, warmup, runs, json, cpu,
                                  fpay_isa_name((fpay_isa)k));
        }
    }
    return rc;
}
