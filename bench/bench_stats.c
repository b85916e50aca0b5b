/* bench_stats.c - clocks, order statistics and the two tests `compare` uses
 * to tell a change from noise (docs/benchmarks.md, "Comparing"). */
#include "bench.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double fpay_bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

double fpay_bench_thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int fpay_bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double fpay_bench_percentile(const double *sorted, int n, double p)
{
    if (n <= 0)
        return 0;
    int rank = (int)(p / 100.0 * n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void fpay_bench_summarize(double *v, int n, fpay_bench_summary *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n <= 0)
        return;
    qsort(v, (size_t)n, sizeof *v, fpay_bench_cmp_double);
    out->min = v[0];
    out->max = v[n - 1];
    out->p50 = fpay_bench_percentile(v, n, 50);
    out->p90 = fpay_bench_percentile(v, n, 90);
    out->p99 = fpay_bench_percentile(v, n, 99);
    out->iqr = fpay_bench_percentile(v, n, 75) - fpay_bench_percentile(v, n, 25);
    double *dev = malloc((size_t)n * sizeof *dev);
    if (!dev)
        return;
    for (int i = 0; i < n; i++)
        dev[i] = fabs(v[i] - out->p50);
    qsort(dev, (size_t)n, sizeof *dev, fpay_bench_cmp_double);
    out->mad = fpay_bench_percentile(dev, n, 50);
    free(dev);
}

/* Ranks of the pooled samples with ties sharing their mean rank. */
typedef struct {
    double v;
    int from_a;
} tagged;

static int cmp_tagged(const void *x, const void *y)
{
    const tagged *a = x, *b = y;
    return (a->v > b->v) - (a->v < b->v);
}

double fpay_bench_mann_whitney_p(const double *a, int na, const double *b, int nb)
{
    if (na < 2 || nb < 2)
        return 1.0;
    int n = na + nb;
    tagged *t = malloc((size_t)n * sizeof *t);
    if (!t)
        return 1.0;
    for (int i = 0; i < na; i++)
        t[i] = (tagged){a[i], 1};
    for (int i = 0; i < nb; i++)
        t[na + i] = (tagged){b[i], 0};
    qsort(t, (size_t)n, sizeof *t, cmp_tagged);
    double rank_sum_a = 0, tie_term = 0;
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && t[j + 1].v == t[i].v)
            j++;
        double rank = (i + j) / 2.0 + 1.0; /* 1-based mean rank of the tie */
        for (int k = i; k <= j; k++)
            if (t[k].from_a)
                rank_sum_a += rank;
        double ties = j - i + 1;
        tie_term += ties * ties * ties - ties;
        i = j + 1;
    }
    free(t);
    double u = rank_sum_a - na * (na + 1) / 2.0;
    double mu = na * (double)nb / 2.0;
    double var = na * (double)nb / 12.0 * ((n + 1) - tie_term / ((double)n * (n - 1)));
    if (var <= 0)
        return 1.0; /* every value equal */
    double z = (fabs(u - mu) - 0.5) / sqrt(var); /* continuity correction */
    if (z < 0)
        z = 0;
    return erfc(z / sqrt(2.0));
}

/* xorshift64*: a fixed seed makes the interval reproducible. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double resampled_median(const double *v, int n, double *scratch, uint64_t *seed)
{
    for (int i = 0; i < n; i++)
        scratch[i] = v[next_rand(seed) % (uint64_t)n];
    qsort(scratch, (size_t)n, sizeof *scratch, fpay_bench_cmp_double);
    return fpay_bench_percentile(scratch, n, 50);
}

double fpay_bench_median_ratio_ci(const double *a, int na, const double *b, int nb,
                                  int resamples, double *lo, double *hi)
{
    *lo = *hi = NAN;
    if (na < 1 || nb < 1 || resamples < 10)
        return NAN;
    double *sa = malloc((size_t)na * sizeof *sa), *sb = malloc((size_t)nb * sizeof *sb);
    double *r = malloc((size_t)resamples * sizeof *r);
    double est = NAN;
    if (!sa || !sb || !r)
        goto out;
    memcpy(sa, a, (size_t)na * sizeof *sa);
    memcpy(sb, b, (size_t)nb * sizeof *sb);
    qsort(sa, (size_t)na, sizeof *sa, fpay_bench_cmp_double);
    qsort(sb, (size_t)nb, sizeof *sb, fpay_bench_cmp_double);
    double ma = fpay_bench_percentile(sa, na, 50), mb = fpay_bench_percentile(sb, nb, 50);
    est = ma > 0 ? mb / ma : NAN;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int k = 0;
    for (int i = 0; i < resamples; i++) {
        double x = resampled_median(a, na, sa, &seed), y = resampled_median(b, nb, sb, &seed);
        if (x > 0)
            r[k++] = y / x;
    }
    if (k) {
        qsort(r, (size_t)k, sizeof *r, fpay_bench_cmp_double);
        *lo = r[(int)(0.025 * (k - 1))];
        *hi = r[(int)(0.975 * (k - 1) + 0.5)];
    }
out:
    free(sa);
    free(sb);
    free(r);
    return est;
}

int fpay_bench_split(const char *s, const char **out, int max)
{
    /* Option values live for the process: a static pool, nothing to free. */
    static char pool[16384];
    static size_t used;
    size_t len = strlen(s) + 1;
    if (len > sizeof pool - used)
        return -1;
    char *copy = memcpy(pool + used, s, len);
    used += len;
    int n = 0;
    for (char *tok = strtok(copy, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max)
            return -1;
        out[n++] = tok;
    }
    return n ? n : -1;
}

int fpay_bench_parse_longs(const char *s, long *out, int max)
{
    const char *parts[FPAY_BENCH_MAX_LIST];
    int n = fpay_bench_split(s, parts, max < FPAY_BENCH_MAX_LIST ? max : FPAY_BENCH_MAX_LIST);
    for (int i = 0; i < n; i++) {
        char *end;
        long v = strtol(parts[i], &end, 10);
        if (end == parts[i] || *end || v < 1 || v > 1000000)
            return -1;
        out[i] = v;
    }
    return n;
}
