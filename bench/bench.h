/* bench.h - suites of facepay-bench besides `models` (internal). */
#ifndef FACEPAY_BENCH_H
#define FACEPAY_BENCH_H

/* `facepay-bench kernels`: GFLOP/s per SIMD kernel (bench_kernels.c). */
int fpay_bench_kernels(void);

#endif
