/*
 * facepay-bench - latency of models, kernels, a checkout and the server,
 * recorded per commit (docs/benchmarks.md).
 *
 *   facepay-bench SUITE [OPTION...] [MODEL...]     run one suite, print a table
 *   facepay-bench record [--history FILE] [OPTION...] SUITE...
 *                                                  run suites, append JSON rows
 *   facepay-bench compare [--history FILE] A B     ratios, noise, regressions
 *   facepay-bench track [--repo DIR] [--last N] [REV...] [-- OPTION...]
 *   facepay-bench plot [--history FILE] --out DIR  SVG per commit
 *   facepay-bench table MODEL...                   models x every ISA x 1,2 threads
 *   facepay-bench backends MODEL                   every backend side by side
 *
 * SUITE: kernels, models, checkout, server. OPTIONs (lists comma-separated):
 *   --runs N --warmup N --threads 1,2 --batches 1,8 --backends cpu,xnnpack
 *   --isa ref,avx2 --models pnet,rnet --models-dir DIR --faces-dir DIR --cold-runs N
 *   --terminals 1,2,4 --duration S --load-client PATH --facepay PATH --json
 * (--batch, --backend: the same with one value.)
 */
#include "facepay/facepay.h"
#include "bench.h"
#include "bench_backends.h" /* facepay-bench backends MODEL */
#include "fpay_cpu.h"       /* ISAs for `table` */

#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: facepay-bench SUITE [OPTION...] [MODEL...]   (SUITE: kernels models checkout "
    "server)\n"
    "       facepay-bench record [--history FILE] [OPTION...] SUITE...\n"
    "       facepay-bench compare [--history FILE] [--metric M] [--all] [--strict] [--allow-mixed] "
    "A B\n"
    "       facepay-bench track [--repo DIR] [--history FILE] [--suites LIST] [--last N] "
    "[REV...] [-- OPTION...]\n"
    "       facepay-bench plot [--history FILE] --out DIR [--batch B]\n"
    "       facepay-bench table [--runs N] [--warmup N] MODEL...\n"
    "       facepay-bench backends [--runs N] [--warmup N] [--batches 1,8] [--threads 1,2] "
    "[--json] MODEL\n"
    "OPTION: --runs N --warmup N --threads 1,2 --batches 1,8 --backends cpu,xnnpack --isa "
    "LIST\n"
    "        --models NAME,... --models-dir DIR --faces-dir DIR --cold-runs N --terminals 1,2,4 --duration S\n"
    "        --load-client PATH --facepay PATH --json\n"
    "History default: $FPAY_BENCH_HISTORY or ./bench-history.jsonl\n";

static int parse_long(const char *s, long *v, long min)
{
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s || *end || x < min || x > 1000000)
        return -1;
    *v = x;
    return 0;
}

/* Parses argv[*i] (and its value) into o; 1 if it was an option, 0 if not,
 * -1 if bad. */
static int parse_option(fpay_bench_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strncmp(a, "--", 2) != 0)
        return 0;
    if (!strcmp(a, "--json")) {
        o->json = 1;
        return 1;
    }
    if (!v)
        return -1;
    int ok;
    if (!strcmp(a, "--runs"))
        ok = parse_long(v, &o->runs, 1) == 0;
    else if (!strcmp(a, "--warmup"))
        ok = parse_long(v, &o->warmup, 0) == 0;
    else if (!strcmp(a, "--cold-runs"))
        ok = parse_long(v, &o->cold_runs, 0) == 0;
    else if (!strcmp(a, "--terminals")) {
        int n = fpay_bench_parse_longs(v, o->terminals, FPAY_BENCH_MAX_LIST);
        ok = n > 0;
        if (!ok) {
            fprintf(stderr,
                    "facepay-bench: --terminals takes a count or a list of up to %d counts, "
                    "each 1 or more (e.g. 4 or 1,2,4), not '%s'\n",
                    FPAY_BENCH_MAX_LIST, v);
            return -1;
        }
        o->n_terminals = n;
    }
    else if (!strcmp(a, "--duration"))
        ok = parse_long(v, &o->duration_s, 1) == 0;
    else if (!strcmp(a, "--threads"))
        ok = (o->n_threads = fpay_bench_parse_longs(v, o->threads, FPAY_BENCH_MAX_LIST)) > 0;
    else if (!strcmp(a, "--batches") || !strcmp(a, "--batch"))
        ok = (o->n_batches = fpay_bench_parse_longs(v, o->batches, FPAY_BENCH_MAX_LIST)) > 0;
    else if (!strcmp(a, "--backends") || !strcmp(a, "--backend"))
        ok = (o->n_backends = fpay_bench_split(v, o->backends, FPAY_BENCH_MAX_LIST)) > 0;
    else if (!strcmp(a, "--isa"))
        ok = (o->n_isas = fpay_bench_split(v, o->isas, FPAY_BENCH_MAX_LIST)) > 0;
    else if (!strcmp(a, "--models"))
        ok = (o->n_models = fpay_bench_split(v, o->models, 32)) > 0;
    else if (!strcmp(a, "--models-dir"))
        ok = (o->models_dir = v) != NULL;
    else if (!strcmp(a, "--faces-dir"))
        ok = (o->faces_dir = v) != NULL;
    else if (!strcmp(a, "--load-client"))
        ok = (o->load_client = v) != NULL;
    else if (!strcmp(a, "--facepay"))
        ok = (o->facepay_cli = v) != NULL;
    else
        return -1;
    if (!ok)
        return -1;
    (*i)++;
    return 1;
}

static void opts_init(fpay_bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->runs = o->warmup = o->cold_runs = -1;
}

typedef int (*suite_fn)(const fpay_bench_opts *o);

static suite_fn find_suite(const char *name)
{
    return !strcmp(name, "kernels")    ? fpay_bench_suite_kernels
           : !strcmp(name, "models")   ? fpay_bench_suite_models
           : !strcmp(name, "checkout") ? fpay_bench_suite_checkout
           : !strcmp(name, "server")   ? fpay_bench_suite_server
                                       : NULL;
}

/* facepay-bench SUITE [OPTION...] [MODEL...] */
static int run_suite(const char *name, int argc, char **argv)
{
    fpay_bench_opts o;
    opts_init(&o);
    for (int i = 0; i < argc; i++) {
        int r = parse_option(&o, argc, argv, &i);
        if (r < 0) {
            fprintf(stderr, "facepay-bench %s: bad option '%s'\n%s", name, argv[i], usage);
            return 2;
        }
        if (r == 0) {
            if (strcmp(name, "models") != 0 || o.n_models == 32) {
                fprintf(stderr, "facepay-bench %s: unexpected '%s'\n", name, argv[i]);
                return 2;
            }
            o.models[o.n_models++] = argv[i];
        }
    }
    /* `kernels` with no option is the kernel tuner's table, as before. */
    if (!strcmp(name, "kernels") && o.runs < 0 && !o.json)
        return fpay_bench_kernels();
    return find_suite(name)(&o);
}

/* record [--history FILE] [OPTION...] SUITE... */
static int record(int argc, char **argv)
{
    fpay_bench_opts o;
    opts_init(&o);
    const char *history = getenv("FPAY_BENCH_HISTORY"), *suites[8];
    if (!history)
        history = "bench-history.jsonl";
    int ns = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--history") && i + 1 < argc) {
            history = argv[++i];
            continue;
        }
        int r = parse_option(&o, argc, argv, &i);
        if (r < 0 || (r == 0 && (!find_suite(argv[i]) || ns == 8))) {
            fprintf(stderr, "facepay-bench record: bad argument '%s'\n%s", argv[i], usage);
            return 2;
        }
        if (r == 0)
            suites[ns++] = argv[i];
    }
    if (!ns) {
        fprintf(stderr, "facepay-bench record: no SUITE given\n%s", usage);
        return 2;
    }
    o.history = fopen(history, "a");
    if (!o.history) {
        perror(history);
        return 1;
    }
    int rc = 0;
    for (int s = 0; s < ns; s++) {
        rc |= find_suite(suites[s])(&o);
        printf("\n");
    }
    fclose(o.history);
    printf("# recorded %d suite(s) into %s (commit %.12s%s)\n", ns, history,
           fpay_bench_git_commit(), fpay_bench_git_dirty() ? "-dirty" : "");
    return rc;
}

/* table [--runs N] [--warmup N] MODEL...: every ISA this CPU has. */
static int table(int argc, char **argv)
{
    fpay_bench_opts o;
    opts_init(&o);
    for (int i = 0; i < argc; i++) {
        int r = parse_option(&o, argc, argv, &i);
        if (r < 0 || (r == 0 && o.n_models == 32)) {
            fprintf(stderr, "facepay-bench table: bad argument '%s'\n", argv[i]);
            return 2;
        }
        if (r == 0)
            o.models[o.n_models++] = argv[i];
    }
    if (!o.n_backends) {
        o.backends[0] = "cpu";
        o.n_backends = 1;
    }
    if (!o.n_batches) {
        o.batches[0] = 1;
        o.n_batches = 1;
    }
    if (!o.n_isas)
        for (int k = 0; k < FPAY_ISA_COUNT_; k++)
            if (fpay_isa_supported((fpay_isa)k))
                o.isas[o.n_isas++] = fpay_isa_name((fpay_isa)k);
    return fpay_bench_suite_models(&o);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "backends"))
        return fpay_bench_backends(argc - 2, argv + 2);
    if (!strcmp(cmd, "record"))
        return record(argc - 2, argv + 2);
    if (!strcmp(cmd, "compare"))
        return fpay_bench_compare(argc - 2, argv + 2);
    if (!strcmp(cmd, "plot"))
        return fpay_bench_plot(argc - 2, argv + 2);
    if (!strcmp(cmd, "track"))
        return fpay_bench_track(argc - 2, argv + 2);
    if (!strcmp(cmd, "import-legacy"))
        return fpay_bench_import_legacy(argc - 2, argv + 2);
    if (!strcmp(cmd, "table"))
        return table(argc - 2, argv + 2);
    if (!strcmp(cmd, "_checkout-cold"))
        return fpay_bench_checkout_cold_child(argc - 2, argv + 2);
    if (find_suite(cmd))
        return run_suite(cmd, argc - 2, argv + 2);
    fprintf(stderr, "facepay-bench: unknown command '%s'\n%s", cmd, usage);
    return 2;
}
