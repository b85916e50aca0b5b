/*
 * bench_backends.c - `facepay-bench backends [--runs N] [--warmup N]
 *                    [--batches 1,8] [--threads 1,2] [--json] MODEL`
 *
 * Every backend the registry holds (built-in CPU plus the plugins it
 * loaded), side by side in one run, at each batch x thread count: min,
 * median, p90 (nearest rank) of fpay_session_run, how many nodes the backend
 * ran itself and which ops fell back to the CPU backend
 * (fpay_session_node_backend). Same method as `models`: session created and
 * input filled once, warm-up runs discarded, CLOCK_MONOTONIC around
 * fpay_session_run only, no means.
 */
#include "bench_backends.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"
#include "model_impl.h" /* node ops, for the fallback column */

#include <errno.h>
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int parse_list(const char *s, long *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 1 || v > 4096)
            return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

/* "ADD x3, RESHAPE" for the nodes not on `backend`. */
static void fallback_ops(const fpay_session *s, const char *backend, char *buf, size_t len,
                         int *nodes, int *mine)
{
    int count[FPAY_OP_COUNT_] = {0};
    *nodes = *mine = 0;
    for (int i = 0; fpay_session_node_backend(s, i); i++, (*nodes)++) {
        if (strcmp(fpay_session_node_backend(s, i), backend) == 0)
            (*mine)++;
        else
            count[s->graph.nodes[i].op]++;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int op = 0; op < FPAY_OP_COUNT_; op++) {
        if (!count[op])
            continue;
        int w = snprintf(buf + used, len - used, "%s%s%s", used ? " " : "",
                         fpay_op_name((fpay_op)op), "");
        if (w > 0 && (size_t)w < len - used)
            used += (size_t)w;
        if (count[op] > 1 && used < len) {
            w = snprintf(buf + used, len - used, "x%d", count[op]);
            if (w > 0 && (size_t)w < len - used)
                used += (size_t)w;
        }
    }
    if (!used)
        snprintf(buf, len, "-");
}

static int run_one(const fpay_model *m, const char *model_name, const char *backend,
                   long batch, long threads, long warmup, long runs, int json)
{
    char err[320];
    fpay_session_options o;
    fpay_session_options_init(&o);
    o.backend = backend;
    o.threads = (int)threads;
    fpay_session *s = NULL;
    if (fpay_session_create(m, &o, &s, err, sizeof err) != FPAY_OK) {
        fprintf(stderr, "facepay-bench: %s: %s\n", backend, err);
        return 1;
    }
    int rc = 1;
    float *x = NULL;
    double *t = malloc((size_t)runs * sizeof(double));
    if (!t || fpay_session_set_batch(s, (int)batch) != FPAY_OK) {
        fprintf(stderr, "facepay-bench: %s\n", fpay_session_errmsg(s));
        goto out;
    }
    for (int k = 0; k < fpay_session_input_count(s); k++) {
        fpay_tensor_info in;
        fpay_session_input_info(s, k, &in);
        free(x);
        if (!(x = malloc(in.count * sizeof(float))))
            goto out;
        for (size_t i = 0; i < in.count; i++)
            x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        fpay_session_set_input(s, k, x, in.count);
    }
    for (long i = 0; i < warmup + runs; i++) {
        double t0 = fpay_bench_now_ms();
        if (fpay_session_run(s) != FPAY_OK) {
            fprintf(stderr, "facepay-bench: %s: %s\n", backend, fpay_session_errmsg(s));
            goto out;
        }
        if (i >= warmup)
            t[i - warmup] = fpay_bench_now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof(double), fpay_bench_cmp_double);
    char fb[256];
    int nodes, mine;
    fallback_ops(s, backend, fb, sizeof fb, &nodes, &mine);
    double med = fpay_bench_percentile(t, (int)runs, 50), p90 = fpay_bench_percentile(t, (int)runs, 90);
    if (json)
        printf("{\"suite\":\"backends\",\"model\":\"%s\",\"backend\":\"%s\",\"batch\":%ld,"
               "\"threads\":%ld,\"runs\":%ld,\"warmup\":%ld,\"min_ms\":%.4f,"
               "\"median_ms\":%.4f,\"p90_ms\":%.4f,\"median_ms_per_image\":%.4f,"
               "\"nodes\":%d,\"nodes_on_backend\":%d,\"fallback_ops\":\"%s\","
               "\"build\":\"%s\"}\n",
               model_name, backend, batch, threads, runs, warmup, t[0], med, p90,
               med / (double)batch, nodes, mine, fb, fpay_build_id());
    else
        printf("%-9s %5ld %7ld %9.3f %9.3f %9.3f %9.3f   %3d/%-3d  %s\n", backend, batch,
               threads, t[0], med, p90, med / (double)batch, mine, nodes, fb);
    fflush(stdout);
    rc = 0;
out:
    free(t);
    free(x);
    fpay_session_free(s);
    return rc;
}

int fpay_bench_backends(int argc, char **argv)
{
    long runs = 20, warmup = 3, batches[8] = {1, 8}, threads[8] = {1, 2};
    int nb = 2, nt = 2, json = 0, i = 0;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long one;
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (v && !strcmp(argv[i], "--batches") && (nb = parse_list(v, batches, 8)) > 0) {
            i++;
        } else if (v && !strcmp(argv[i], "--threads") && (nt = parse_list(v, threads, 8)) > 0) {
            i++;
        } else if (v && (!strcmp(argv[i], "--runs") || !strcmp(argv[i], "--warmup")) &&
                   parse_list(v, &one, 1) == 1) {
            *(!strcmp(argv[i], "--runs") ? &runs : &warmup) = one;
            i++;
        } else {
            fprintf(stderr, "facepay-bench backends: bad option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (i + 1 != argc) {
        fprintf(stderr, "usage: facepay-bench backends [--runs N] [--warmup N] "
                        "[--batches 1,8] [--threads 1,2] [--json] MODEL\n");
        return 2;
    }
    char err[320];
    fpay_model *m = NULL;
    if (fpay_model_load_file(argv[i], 0, &m, err, sizeof err) != FPAY_OK) {
        fprintf(stderr, "facepay-bench: %s\n", err);
        return 1;
    }
    const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
    int n_backends = fpay_backend_count();
    if (!json) {
        printf("# facepay-bench backends %s | build %s\n", name, fpay_build_id());
        for (int k = 0; k < n_backends; k++)
            printf("#   %-8s %s (%s)\n", fpay_backend_get(k)->name,
                   fpay_backend_get(k)->version, fpay_backend_origin(k));
        for (int k = 0; k < fpay_backend_rejected_count(); k++) {
            const char *p, *r;
            fpay_backend_rejected(k, &p, &r);
            printf("#   rejected %s: %s\n", p, r);
        }
        printf("# %ld warm-up runs discarded, %ld timed runs; times in ms\n", warmup, runs);
        printf("%-9s %5s %7s %9s %9s %9s %9s   %-7s  %s\n", "backend", "batch", "threads",
               "min", "median", "p90", "med/img", "nodes", "fell back to cpu");
    }
    int rc = 0;
    for (int b = 0; b < nb; b++)
        for (int t = 0; t < nt; t++)
            for (int k = 0; k < n_backends; k++)
                rc |= run_one(m, name, fpay_backend_get(k)->name, batches[b], threads[t],
                              warmup, runs, json);
    fpay_model_free(m);
    return rc;
}
