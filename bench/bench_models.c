/*
 * bench_models.c - the `models` suite: each bundled model x each backend x
 * threads x batch (x ISA when asked), one session per configuration.
 *
 * Method: the session is created and the inputs filled once; `warmup` runs
 * are discarded (caches, page faults, lazy allocation, plugin JIT); then
 * `runs` timed runs with CLOCK_MONOTONIC around fpay_session_run only. Rows
 * carry every sample, so `compare` can test a difference against the noise.
 * GFLOP/s is 2 x MACs x batch / median. Memory: the session's planned
 * activation arena, and the process's resident high-water mark over the
 * configuration (VmHWM, reset before each one where Linux allows).
 */
#include "bench.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* The bundled models, in pipeline order. */
static const char *const bundled[] = {"pnet.tflite", "rnet.tflite", "onet.tflite",
                                      "MobileFaceNet.tflite", "FaceAntiSpoofing.tflite"};

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A backend that emulates a GPU on the CPU (Vulkan on llvmpipe) takes
 * seconds per run: left out unless named. */
static int software_device(const fpay_backend_iface *b)
{
    return b->version && strstr(b->version, "device ") &&
           !(b->caps & FPAY_BACKEND_CAP_ACCELERATOR);
}

static void fill_inputs(fpay_session *s, int *ok)
{
    *ok = 1;
    for (int k = 0; k < fpay_session_input_count(s); k++) {
        fpay_tensor_info in;
        fpay_session_input_info(s, k, &in);
        float *x = malloc(in.count * sizeof(float));
        if (!x) {
            *ok = 0;
            return;
        }
        for (size_t i = 0; i < in.count; i++)
            x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
        if (fpay_session_set_input(s, k, x, in.count) != FPAY_OK)
            *ok = 0;
        free(x);
    }
}

static int bench_one(const fpay_bench_opts *o, const fpay_model *m, const char *path,
                     const char *backend, const char *isa, long threads, long batch, long warmup,
                     long runs)
{
    if (isa)
        setenv("FACEPAY_ISA", isa, 1);
    int rss_own = fpay_bench_rss_reset() == 0;
    char err[320];
    fpay_session_options so;
    fpay_session_options_init(&so);
    so.backend = backend;
    so.threads = (int)threads;
    fpay_session *s = NULL;
    if (fpay_session_create(m, &so, &s, err, sizeof err) != FPAY_OK) {
        fprintf(stderr, "facepay-bench models: %s on %s: %s\n", base_name(path), backend, err);
        return 1;
    }
    int rc = 1, ok;
    double *t = malloc((size_t)runs * sizeof *t);
    if (!t)
        goto out;
    /* stats.macs counts the declared input shape (MobileFaceNet declares
     * batch 2): per image that is macs / the declared batch. */
    fpay_tensor_info declared;
    fpay_session_input_info(s, 0, &declared);
    double declared_batch = declared.rank > 0 && declared.dims[0] > 0 ? (double)declared.dims[0] : 1;
    /* pnet declares a 1280x960 input; in the pipeline it runs on the
     * levels of an image pyramid. We time it on 320x240, the first level of
     * a VGA frame; stats.macs scales with the pixels. */
    double macs_scale = 1;
    if (!strcmp(base_name(path), "pnet.tflite") && declared.rank == 4) {
        int64_t dims[4] = {declared.dims[0], 240, 320, declared.dims[3]};
        macs_scale = 240.0 * 320.0 / ((double)declared.dims[1] * (double)declared.dims[2]);
        if (fpay_session_set_input_shape(s, 0, 4, dims) != FPAY_OK) {
            fprintf(stderr, "facepay-bench models: pnet 320x240: %s\n", fpay_session_errmsg(s));
            goto out;
        }
    }
    if (fpay_session_set_batch(s, (int)batch) != FPAY_OK) {
        fprintf(stderr, "facepay-bench models: %s batch %ld: %s\n", base_name(path), batch,
                fpay_session_errmsg(s));
        goto out;
    }
    fill_inputs(s, &ok);
    if (!ok)
        goto out;
    for (long i = 0; i < warmup + runs; i++) {
        double t0 = fpay_bench_now_ms();
        if (fpay_session_run(s) != FPAY_OK) {
            fprintf(stderr, "facepay-bench models: %s on %s: %s\n", base_name(path), backend,
                    fpay_session_errmsg(s));
            goto out;
        }
        if (i >= warmup)
            t[i - warmup] = fpay_bench_now_ms() - t0;
    }
    fpay_model_stats st = {.struct_size = sizeof st};
    fpay_model_stats_get(m, &st);
    fpay_tensor_info in;
    fpay_session_input_info(s, 0, &in);
    char key[512];
    snprintf(key, sizeof key, "models/%s/%s/%s/t%ld/b%ld", base_name(path), backend,
             isa ? isa : fpay_bench_isa(), threads, batch);
    cJSON *row = fpay_bench_row("models", fpay_session_backend(s), key);
    cJSON *p = cJSON_GetObjectItem(row, "params");
    cJSON_AddStringToObject(p, "model", base_name(path));
    cJSON_AddStringToObject(p, "model_sha256", st.sha256);
    cJSON_AddNumberToObject(p, "threads", (double)threads);
    cJSON_AddNumberToObject(p, "batch", (double)batch);
    cJSON_AddNumberToObject(p, "runs", (double)runs);
    cJSON_AddNumberToObject(p, "warmup", (double)warmup);
    char shape[96] = "";
    for (int d = 0; d < in.rank; d++) {
        size_t u = strlen(shape);
        snprintf(shape + u, sizeof shape - u, "%s%lld", d ? "x" : "", (long long)in.dims[d]);
    }
    cJSON_AddStringToObject(p, "input_shape", shape);
    int nodes = 0, mine = 0;
    for (const char *nb; (nb = fpay_session_node_backend(s, nodes)); nodes++)
        mine += !strcmp(nb, fpay_session_backend(s));
    cJSON_AddNumberToObject(p, "nodes", nodes);
    cJSON_AddNumberToObject(p, "nodes_on_backend", mine);

    double *sorted = malloc((size_t)runs * sizeof *sorted);
    if (!sorted) {
        cJSON_Delete(row);
        goto out;
    }
    memcpy(sorted, t, (size_t)runs * sizeof *sorted);
    fpay_bench_summary sum;
    fpay_bench_summarize(sorted, (int)runs, &sum);
    free(sorted);
    double per_image_macs = (double)st.macs * macs_scale / declared_batch;
    double gflops = sum.p50 > 0 ? 2.0 * per_image_macs * (double)batch / (sum.p50 * 1e6) : 0;
    long long rss = fpay_bench_rss_peak();
    size_t act = fpay_session_peak_activation_bytes(s);
    fpay_bench_add_samples(row, "latency_ms", "ms", "lower", t, (int)runs);
    fpay_bench_add_value(row, "gflops", "GFLOP/s", "higher", gflops);
    fpay_bench_add_value(row, "activation_bytes", "B", "lower", (double)act);
    fpay_bench_add_value(row, "peak_rss_bytes", "B", "lower", (double)rss);
    cJSON_AddBoolToObject(p, "rss_per_config", rss_own);
    if (!o->json) {
        printf("%-24s %-8s %-7s %3ld %5ld %5ld %9.3f %9.3f %9.3f %9.3f %8.3f %8.2f %8.1f %8.1f\n",
               base_name(path), fpay_session_backend(s), isa ? isa : fpay_bench_isa(), threads,
               batch, runs, sum.min, sum.p50, sum.p90, sum.p99, sum.mad, gflops,
               (double)act / (1 << 20), (double)rss / (1 << 20));
        fflush(stdout);
    }
    fpay_bench_emit(o, row);
    rc = 0;
out:
    free(t);
    fpay_session_free(s);
    return rc;
}

int fpay_bench_suite_models(const fpay_bench_opts *o)
{
    long runs = o->runs > 0 ? o->runs : 50, warmup = o->warmup >= 0 ? o->warmup : 5;
    const char *paths[32];
    char owned[32][1024];
    int n = 0;
    if (o->n_models) {
        for (int i = 0; i < o->n_models && n < 32; i++) {
            if (strchr(o->models[i], '/')) {
                paths[n++] = o->models[i];
            } else {
                snprintf(owned[n], sizeof owned[n], "%s/%s%s", fpay_bench_models_dir(o),
                         o->models[i], strstr(o->models[i], ".tflite") ? "" : ".tflite");
                paths[n] = owned[n];
                n++;
            }
        }
    } else {
        for (size_t i = 0; i < sizeof bundled / sizeof bundled[0]; i++) {
            snprintf(owned[n], sizeof owned[n], "%s/%s", fpay_bench_models_dir(o), bundled[i]);
            paths[n] = owned[n];
            n++;
        }
    }
    const char *backends[16];
    int nb = 0;
    if (o->n_backends) {
        for (int i = 0; i < o->n_backends; i++)
            backends[nb++] = o->backends[i];
    } else {
        for (int k = 0; k < fpay_backend_count() && nb < 16; k++) {
            const fpay_backend_iface *b = fpay_backend_get(k);
            char why[256] = "";
            if (b->probe && b->probe(why, sizeof why) != FPAY_OK) {
                printf("# skipped %s: %s\n", b->name, why);
                continue;
            }
            if (software_device(b)) {
                printf("# skipped %s: software device (%s); name it with --backends\n",
                       b->name, b->version);
                continue;
            }
            backends[nb++] = b->name;
        }
    }
    long def_threads[2] = {1, 2};
    const long *threads = o->n_threads ? o->threads : def_threads;
    int nt = o->n_threads ? o->n_threads : 2;
    if (!o->json) {
        printf("# facepay-bench models | commit %.12s%s | %s | %s\n", fpay_bench_git_commit(),
               fpay_bench_git_dirty() ? "-dirty" : "", fpay_build_id(), fpay_bench_cpu_model());
        printf("# %ld warm-up runs discarded, %ld timed runs; latency in ms (CLOCK_MONOTONIC); "
               "MiB for memory\n",
               warmup, runs);
        printf("%-24s %-8s %-7s %3s %5s %5s %9s %9s %9s %9s %8s %8s %8s %8s\n", "model",
               "backend", "isa", "thr", "batch", "runs", "min", "p50", "p90", "p99", "mad",
               "GFLOP/s", "act_MiB", "rss_MiB");
    }
    int rc = 0;
    const char *saved_isa = getenv("FACEPAY_ISA");
    char saved[32] = "";
    if (saved_isa)
        snprintf(saved, sizeof saved, "%s", saved_isa);
    for (int i = 0; i < n; i++) {
        char err[320];
        fpay_model *m = NULL;
        if (fpay_model_load_file(paths[i], 0, &m, err, sizeof err) != FPAY_OK) {
            fprintf(stderr, "facepay-bench models: %s\n", err);
            rc = 1;
            continue;
        }
        /* Batches: the detectors' second stages and the embedder run
         * batched in the pipeline; pnet (one image) and the liveness model
         * (one face) at batch 1, unless --batches says otherwise. */
        long def_b[2] = {1, 8};
        int bundled_single = strstr(paths[i], "pnet") || strstr(paths[i], "FaceAntiSpoofing");
        const long *batches = o->n_batches ? o->batches : def_b;
        int nbat = o->n_batches ? o->n_batches : (bundled_single ? 1 : 2);
        for (int b = 0; b < nb; b++)
            for (int is = 0; is < (o->n_isas ? o->n_isas : 1); is++) {
                /* The ISA only matters to the built-in CPU backend. */
                if (is > 0 && strcmp(backends[b], "cpu") != 0)
                    continue;
                const char *isa = o->n_isas && !strcmp(backends[b], "cpu") ? o->isas[is] : NULL;
                for (int t = 0; t < nt; t++)
                    for (int k = 0; k < nbat; k++)
                        rc |= bench_one(o, m, paths[i], backends[b], isa, threads[t],
                                        batches[k], warmup, runs);
                if (saved[0])
                    setenv("FACEPAY_ISA", saved, 1);
                else
                    unsetenv("FACEPAY_ISA");
            }
        fpay_model_free(m);
    }
    return rc;
}
