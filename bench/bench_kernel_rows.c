/*
 * bench_kernel_rows.c - the `kernels` suite as result rows.
 *
 * bench_kernels.c prints its table (kernel, shape, median us, GFLOP/s,
 * % of peak, min us, % at min); it is tuned by whoever tunes the kernels and
 * stays a plain printer. Here the table is run `runs` times with stdout
 * captured, and each kernel x shape becomes one row whose samples are the
 * per-pass medians: `compare` then tests a kernel like any other metric.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct krow {
    char kernel[64], shape[64];
    double us[64], gflops[64], peak[64];
    int n;
} krow;

/* "name   shape words   us  gflops  peak%  min_us  at_min%" */
static int parse_line(char *line, char *kernel, char *shape, double v[5])
{
    char *tok[32];
    int n = 0;
    for (char *t = strtok(line, " \t\n"); t && n < 32; t = strtok(NULL, " \t\n"))
        tok[n++] = t;
    if (n < 7 || line[0] == '#')
        return -1;
    for (int i = 0; i < 5; i++) {
        char *end;
        v[i] = strtod(tok[n - 5 + i], &end);
        if (end == tok[n - 5 + i] || (*end && *end != '%'))
            return -1;
    }
    snprintf(kernel, 64, "%s", tok[0]);
    shape[0] = '\0';
    for (int i = 1; i < n - 5; i++) {
        size_t u = strlen(shape);
        snprintf(shape + u, 64 - u, "%s%s", i > 1 ? " " : "", tok[i]);
    }
    return 0;
}

int fpay_bench_suite_kernels(const fpay_bench_opts *o)
{
    long runs = o->runs > 0 ? o->runs : 3;
    if (runs > 64)
        runs = 64;
    krow *rows = calloc(256, sizeof *rows);
    int nrows = 0;
    if (!rows)
        return 1;
    int rc = 0;
    for (long r = 0; r < runs; r++) {
        FILE *cap = tmpfile();
        if (!cap) {
            rc = 1;
            break;
        }
        fflush(stdout);
        int saved = dup(1);
        dup2(fileno(cap), 1);
        rc |= fpay_bench_kernels();
        fflush(stdout);
        dup2(saved, 1);
        close(saved);
        rewind(cap);
        char line[512];
        while (fgets(line, sizeof line, cap)) {
            if (r == 0 && !o->json && runs == 1)
                fputs(line, stdout);
            char kernel[64], shape[64];
            double v[5];
            if (parse_line(line, kernel, shape, v) != 0)
                continue;
            int k = 0;
            while (k < nrows && (strcmp(rows[k].kernel, kernel) || strcmp(rows[k].shape, shape)))
                k++;
            if (k == nrows) {
                if (nrows == 256)
                    continue;
                snprintf(rows[k].kernel, sizeof rows[k].kernel, "%s", kernel);
                snprintf(rows[k].shape, sizeof rows[k].shape, "%s", shape);
                nrows++;
            }
            krow *kr = &rows[k];
            kr->us[kr->n] = v[0];
            kr->gflops[kr->n] = v[1];
            kr->peak[kr->n] = v[2];
            kr->n++;
        }
        fclose(cap);
    }
    if (!o->json && runs > 1) {
        printf("# facepay-bench kernels | %ld passes | per kernel: median over passes of each "
               "pass's median us\n",
               runs);
        printf("%-32s %-30s %9s %9s %9s %7s\n", "kernel", "shape", "p50_us", "min_us", "GFLOP/s",
               "peak");
    }
    for (int k = 0; k < nrows; k++) {
        krow *kr = &rows[k];
        char key[192];
        snprintf(key, sizeof key, "kernels/%s/%s", kr->kernel, kr->shape);
        cJSON *row = fpay_bench_row("kernels", "cpu", key);
        cJSON *p = cJSON_GetObjectItem(row, "params");
        cJSON_AddStringToObject(p, "kernel", kr->kernel);
        cJSON_AddStringToObject(p, "shape", kr->shape);
        cJSON_AddNumberToObject(p, "passes", kr->n);
        fpay_bench_summary su, sg, sp;
        double g[64], pk[64];
        memcpy(g, kr->gflops, sizeof g);
        memcpy(pk, kr->peak, sizeof pk);
        fpay_bench_summarize(g, kr->n, &sg);
        fpay_bench_summarize(pk, kr->n, &sp);
        double u[64];
        memcpy(u, kr->us, sizeof u);
        fpay_bench_summarize(u, kr->n, &su);
        fpay_bench_add_samples(row, "time_us", "us", "lower", kr->us, kr->n);
        fpay_bench_add_value(row, "gflops", "GFLOP/s", "higher", sg.p50);
        fpay_bench_add_value(row, "peak_fraction", "", "higher", sp.p50 / 100.0);
        if (!o->json && runs > 1)
            printf("%-32s %-30s %9.2f %9.2f %9.2f %6.0f%%\n", kr->kernel, kr->shape, su.p50,
                   su.min, sg.p50, sp.p50);
        fpay_bench_emit(o, row);
    }
    free(rows);
    return rc;
}
