/* bench.h - suites of facepay-bench besides `models` (internal). */
#ifndef FACEPAY_BENCH_H
#define FACEPAY_BENCH_H

/* Wall clock (CLOCK_MONOTONIC) in ms, for latency. */
double fpay_bench_now_ms(void);
/* This thread's CPU time in s: time spent waiting for a CPU on a shared
 * machine does not count (for kernel micro-benchmarks). */
double fpay_bench_thread_cpu_s(void);
/* qsort comparator for doubles, and the nearest-rank percentile of sorted
 * values (p in 0..100). */
int fpay_bench_cmp_double(const void *a, const void *b);
double fpay_bench_percentile(const double *sorted, int n, double p);

/* `facepay-bench kernels`: GFLOP/s per SIMD kernel (bench_kernels.c). */
int fpay_bench_kernels(void);

#endif
