/*
 * bench.h - the parts of facepay-bench shared by its suites (internal).
 *
 * Every suite produces result rows (cJSON objects, one per configuration)
 * through fpay_bench_emit: a row carries the configuration ("params"), its
 * metrics and the environment it was measured in (bench_env.c). The row
 * format is described in docs/benchmarks.md ("History file").
 */
#ifndef FACEPAY_BENCH_H
#define FACEPAY_BENCH_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* ------------------------------------------------------------ clocks, stats */

/* Wall clock (CLOCK_MONOTONIC) in ms, for latency. */
double fpay_bench_now_ms(void);
/* This thread's CPU time in s: time spent waiting for a CPU on a shared
 * machine does not count (for kernel micro-benchmarks). */
double fpay_bench_thread_cpu_s(void);
/* qsort comparator for doubles, and the nearest-rank percentile of sorted
 * values (p in 0..100). */
int fpay_bench_cmp_double(const void *a, const void *b);
double fpay_bench_percentile(const double *sorted, int n, double p);

/* Order statistics of n samples (sorted in place). */
typedef struct fpay_bench_summary {
    int n;
    double min, p50, p90, p99, max;
    double mad;  /* median absolute deviation from p50 (unscaled) */
    double iqr;  /* p75 - p25 */
} fpay_bench_summary;
void fpay_bench_summarize(double *v, int n, fpay_bench_summary *out);

/* Mann-Whitney U test of a against b (normal approximation with the tie
 * correction): two-sided p value; 1 when either sample has < 2 values. */
double fpay_bench_mann_whitney_p(const double *a, int na, const double *b, int nb);
/* Percentile bootstrap (resamples, fixed seed) of median(b) / median(a):
 * the 95 % interval goes to lo, hi and the point estimate is returned. */
double fpay_bench_median_ratio_ci(const double *a, int na, const double *b, int nb,
                                  int resamples, double *lo, double *hi);

/* ------------------------------------------------------------ options */

#define FPAY_BENCH_MAX_LIST 8

/* Options shared by every suite (one parser, bench_main.c). Lists are
 * comma-separated on the command line. */
typedef struct fpay_bench_opts {
    long runs;          /* timed runs; -1 = the suite's default */
    long warmup;        /* discarded runs; -1 = the suite's default */
    long cold_runs;     /* checkout: fresh processes for the cold start */
    long threads[FPAY_BENCH_MAX_LIST];
    int n_threads;      /* 0 = the suite's default */
    long batches[FPAY_BENCH_MAX_LIST];
    int n_batches;
    const char *backends[FPAY_BENCH_MAX_LIST];
    int n_backends;     /* 0 = every registered backend (models) or cpu */
    const char *isas[FPAY_BENCH_MAX_LIST];
    int n_isas;         /* 0 = the best ISA (or FACEPAY_ISA) */
    const char *models_dir;
    const char *faces_dir;
    const char *models[32];
    int n_models;       /* 0 = every bundled model in models_dir */
    const char *load_client;  /* server: path of facepay-load */
    const char *facepay_cli;  /* server: path of facepay */
    long terminals[FPAY_BENCH_MAX_LIST]; /* server: concurrent terminals, one load each */
    int n_terminals;    /* 0 = the suite's default (4) */
    long duration_s;    /* server: seconds of load */
    int json;           /* rows as JSON lines on stdout instead of tables */
    FILE *history;      /* record: rows are appended here too */
} fpay_bench_opts;

/* ------------------------------------------------------------ rows */

/* A new row for `suite` whose "key" (what compare matches across runs) is
 * built from the parts given (NULL-terminated), with the environment
 * (commit, build, compiler, CPU, ISA, date...) filled in; backend may be
 * NULL (then "cpu"/the CPU is the device). The caller adds "params" and
 * "metrics" and hands it to fpay_bench_emit. */
cJSON *fpay_bench_row(const char *suite, const char *backend, const char *key);
/* Adds metrics[name] = {unit, better, n, min, p50, p90, p99, max, mad, iqr,
 * samples} from n samples (sorted here); `better` is "lower" or "higher". */
void fpay_bench_add_samples(cJSON *row, const char *name, const char *unit,
                            const char *better, double *samples, int n);
/* Adds metrics[name] = {unit, better, value}: a single derived number. */
void fpay_bench_add_value(cJSON *row, const char *name, const char *unit,
                          const char *better, double value);
/* Prints the row as a JSON line (opts->json), appends it to the history
 * (opts->history) and frees it. */
void fpay_bench_emit(const fpay_bench_opts *opts, cJSON *row);

/* ------------------------------------------------------------ environment */

/* Static strings of the build (compile-time) and the machine. */
const char *fpay_bench_git_commit(void);   /* full hash or "unknown" */
int fpay_bench_git_dirty(void);
const char *fpay_bench_compiler(void);
const char *fpay_bench_cflags(void);
const char *fpay_bench_cpu_model(void);
/* The kernel ISA sessions created now would use ("avx512", ...). */
const char *fpay_bench_isa(void);
/* The device a backend runs on: the GPU name from the backend's version
 * string, else "CPU: <model>". */
void fpay_bench_device(const char *backend, char *buf, size_t len);
/* Peak resident set of this process in bytes since the last reset
 * (VmHWM); fpay_bench_rss_reset starts a new high-water mark where the
 * kernel allows it (returns 0 then, -1 when the peak is the process's). */
int fpay_bench_rss_reset(void);
long long fpay_bench_rss_peak(void);
/* Where the models and face photos are (options, FPAY_MODELS_DIR, the
 * build's default). */
const char *fpay_bench_models_dir(const fpay_bench_opts *o);
const char *fpay_bench_faces_dir(const fpay_bench_opts *o);
/* This executable's path (for self-spawning and sibling tools). */
const char *fpay_bench_self_path(void);

/* ------------------------------------------------------------ suites */

/* `facepay-bench kernels`: GFLOP/s per SIMD kernel (bench_kernels.c);
 * prints a table. */
int fpay_bench_kernels(void);
/* The kernels table re-run opts->runs times, as rows (bench_kernel_rows.c). */
int fpay_bench_suite_kernels(const fpay_bench_opts *o);
int fpay_bench_suite_models(const fpay_bench_opts *o);
int fpay_bench_suite_checkout(const fpay_bench_opts *o);
/* The hidden child of checkout's cold start (one fresh process). */
int fpay_bench_checkout_cold_child(int argc, char **argv);
int fpay_bench_suite_server(const fpay_bench_opts *o);

/* History: record/compare (bench_history.c), plot (bench_plot.c), track
 * (bench_track.c). argv starts after the subcommand. */
int fpay_bench_compare(int argc, char **argv);
int fpay_bench_plot(int argc, char **argv);
int fpay_bench_track(int argc, char **argv);
int fpay_bench_import_legacy(int argc, char **argv);

/* Reads a JSON-lines file into an array of rows (skips blank and bad lines,
 * counting them in *bad). NULL if the file cannot be opened. */
cJSON *fpay_bench_read_rows(const char *path, int *bad);
/* "a,b,c" into up to max strings (pointers into a copy in a static pool:
 * options live for the process). Returns the count or -1. */
int fpay_bench_split(const char *s, const char **out, int max);
int fpay_bench_parse_longs(const char *s, long *out, int max);

#endif
