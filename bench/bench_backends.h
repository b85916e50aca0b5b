/* bench_backends.h - `facepay-bench backends` (bench_backends.c). */
#ifndef FPAY_BENCH_BACKENDS_H
#define FPAY_BENCH_BACKENDS_H

/* argv: options and MODEL (after the subcommand). Returns the exit code. */
int fpay_bench_backends(int argc, char **argv);

#endif
