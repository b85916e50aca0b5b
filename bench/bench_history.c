/*
 * bench_history.c - the history file and `compare`.
 *
 * A history is a JSON-lines file, one result row per line (bench_env.c
 * writes them; docs/benchmarks.md lists the fields). `compare A B` takes two
 * result files, or two commits (hash prefixes, "+" suffix for a dirty
 * build of it) looked up in the history; for each configuration ("key")
 * present on both sides it takes each side's latest run and prints, per
 * metric, the ratio B/A with its 95 % bootstrap interval and the
 * Mann-Whitney p value. A metric is called a regression (or an
 * improvement) only when both tests agree that it is outside the noise:
 *
 *   p < 0.01  AND  the whole 95 % interval of the median ratio lies beyond
 *   the 3 % band around 1 (above 1.03 for worse, below 1/1.03 for better).
 *
 * Anything else is "~" (within noise). Metrics stored without samples
 * (legacy rows, derived numbers such as GFLOP/s) are shown as "info" and
 * never flagged.
 *
 * Rows of one key measured on different kernel paths ("isa") or backends
 * are not compared: each such configuration is printed as REFUSED with
 * both sides' values, and compare exits 4, unless --allow-mixed (then they
 * are compared and marked). A row without an "isa" field (older history)
 * is compared and marked "ISA not recorded". Configurations present on
 * one side only are counted, never dropped silently.
 */
#include "bench.h"
#include "fpay_cpu.h" /* ISA names, for matching keys */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MIN_EFFECT 1.03
#define MAX_P 0.01

/* Checkout keys were "checkout/API/BACKEND/tN" before they named the ISA
 * ("checkout/API/BACKEND/ISA/tN"): an old row gets its ISA (its "isa"
 * field, "?" when it has none) put into its key, so that it matches the
 * new rows of the same kernel path and no other. */
static void upgrade_checkout_key(cJSON *row)
{
    const cJSON *suite = cJSON_GetObjectItem(row, "suite");
    const char *key = cJSON_GetObjectItem(row, "key")->valuestring;
    if (!cJSON_IsString(suite) || strcmp(suite->valuestring, "checkout") != 0)
        return;
    int slashes = 0;
    for (const char *c = key; *c; c++)
        slashes += *c == '/';
    const char *last = strrchr(key, '/');
    if (slashes != 3 || !last || last[1] != 't')
        return;
    const cJSON *isa = cJSON_GetObjectItem(row, "isa");
    char nk[512];
    snprintf(nk, sizeof nk, "%.*s/%s%s", (int)(last - key), key,
             cJSON_IsString(isa) && *isa->valuestring ? isa->valuestring : "?", last);
    cJSON_ReplaceItemInObject(row, "key", cJSON_CreateString(nk));
}

cJSON *fpay_bench_read_rows(const char *path, int *bad)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    cJSON *rows = cJSON_CreateArray();
    char *line = NULL;
    size_t cap = 0;
    *bad = 0;
    for (ssize_t n; (n = getline(&line, &cap, f)) > 0;) {
        if (n <= 1)
            continue;
        cJSON *r = cJSON_Parse(line);
        if (r && cJSON_IsObject(r) && cJSON_IsString(cJSON_GetObjectItem(r, "key"))) {
            upgrade_checkout_key(r);
            cJSON_AddItemToArray(rows, r);
        }
        else {
            cJSON_Delete(r);
            (*bad)++;
        }
    }
    free(line);
    fclose(f);
    return rows;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* "abc123" or "abc123+" (dirty) matches a row's commit. */
static int commit_matches(const cJSON *row, const char *want)
{
    size_t n = strlen(want);
    int want_dirty = n && want[n - 1] == '+';
    if (want_dirty)
        n--;
    if (n < 4 || strncmp(str(row, "commit"), want, n) != 0)
        return 0;
    return cJSON_IsTrue(cJSON_GetObjectItem(row, "dirty")) == want_dirty;
}

/* What compare matches: the key with its kernel-path segment (an ISA name,
 * or "?" for an old checkout row that did not record one) made "*", so
 * that the rows of one configuration on two kernel paths meet, and are
 * refused or marked instead of being left out without a word. Stored in
 * the row as "_match". */
static void add_match_key(cJSON *row)
{
    const char *key = str(row, "key");
    char m[512] = "";
    for (const char *seg = key; seg;) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        int is_isa = n == 1 && seg[0] == '?';
        for (int k = 0; k < FPAY_ISA_COUNT_ && !is_isa; k++)
            is_isa = strlen(fpay_isa_name((fpay_isa)k)) == n &&
                     !strncmp(seg, fpay_isa_name((fpay_isa)k), n);
        size_t used = strlen(m);
        snprintf(m + used, sizeof m - used, "%s%.*s", used ? "/" : "", is_isa ? 1 : (int)n,
                 is_isa ? "*" : seg);
        seg = end ? end + 1 : NULL;
    }
    cJSON_DeleteItemFromObject(row, "_match");
    cJSON_AddStringToObject(row, "_match", m);
}

/* Side A or B: the rows of a file, or the history's rows of a commit; for
 * each key only the rows of the latest date. Returns a new array of
 * references (free with cJSON_Delete; the rows stay in `owner`). */
static cJSON *select_side(const char *spec, const char *history, cJSON **owner)
{
    struct stat st;
    int bad = 0;
    int is_file = stat(spec, &st) == 0 && S_ISREG(st.st_mode);
    *owner = fpay_bench_read_rows(is_file ? spec : history, &bad);
    if (!*owner) {
        fprintf(stderr, "facepay-bench compare: cannot read %s\n", is_file ? spec : history);
        return NULL;
    }
    cJSON *out = cJSON_CreateArray(), *r;
    cJSON_ArrayForEach(r, *owner)
    add_match_key(r);
    cJSON_ArrayForEach(r, *owner)
    {
        if (!is_file && !commit_matches(r, spec))
            continue;
        /* Latest date per key wins; equal dates (one run) both stay. */
        const char *key = str(r, "key"), *date = str(r, "date");
        int keep = 1;
        for (int i = 0; i < cJSON_GetArraySize(out);) {
            cJSON *o = cJSON_GetArrayItem(out, i);
            if (strcmp(str(o, "key"), key) != 0 || strcmp(str(o, "run"), str(r, "run")) == 0) {
                i++;
                continue;
            }
            if (strcmp(str(o, "date"), date) > 0) {
                keep = 0;
                i++;
            } else {
                cJSON_DeleteItemFromArray(out, i);
            }
        }
        if (keep)
            cJSON_AddItemReferenceToArray(out, r);
    }
    return out;
}

/* All samples of metric `name` across the rows of `key` (a match key) on
 * one side. */
static int gather(cJSON *side, const char *key, const char *name, double **v, double *value,
                  const char **better)
{
    int n = 0, cap = 0;
    *v = NULL;
    *value = NAN;
    cJSON *r;
    cJSON_ArrayForEach(r, side)
    {
        if (strcmp(str(r, "_match"), key) != 0)
            continue;
        cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "metrics"), name);
        if (!m)
            continue;
        *better = str(m, "better");
        cJSON *s = cJSON_GetObjectItem(m, "samples"), *x;
        cJSON *val = cJSON_GetObjectItem(m, "value");
        if (!val)
            val = cJSON_GetObjectItem(m, "p50");
        if (cJSON_IsNumber(val))
            *value = val->valuedouble;
        cJSON_ArrayForEach(x, s)
        {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                double *nv = realloc(*v, (size_t)cap * sizeof **v);
                if (!nv)
                    return n;
                *v = nv;
            }
            (*v)[n++] = x->valuedouble;
        }
    }
    return n;
}

/* The distinct values of field k over a side's rows, comma-separated
 * ("?" for rows without it). */
static void field_set(cJSON *side, const char *k, char *buf, size_t len)
{
    buf[0] = '\0';
    cJSON *r;
    cJSON_ArrayForEach(r, side)
    {
        const char *v = *str(r, k) ? str(r, k) : "?";
        size_t n = strlen(v);
        int seen = 0;
        for (const char *p = buf; (p = strstr(p, v)) != NULL; p += n)
            if ((p == buf || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
                seen = 1;
        if (!seen && strlen(buf) + n + 2 < len)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? "," : "", v);
    }
}

/* The first row of `key` (a match key) on a side, or NULL. */
static cJSON *row_of(cJSON *side, const char *key)
{
    cJSON *r;
    cJSON_ArrayForEach(r, side)
    if (!strcmp(str(r, "_match"), key))
        return r;
    return NULL;
}

/* Lists up to 3 keys of `side` that `other` lacks; returns their count. */
static int only_on(cJSON *side, cJSON *other, const char *name)
{
    int n = 0;
    cJSON *r;
    cJSON_ArrayForEach(r, side)
    {
        const char *key = str(r, "_match");
        if (row_of(other, key) || row_of(side, key) != r)
            continue;
        if (n < 3)
            printf("# only in %s: %s (ISA %s, backend %s)\n", name, str(r, "key"),
                   *str(r, "isa") ? str(r, "isa") : "not recorded", str(r, "backend"));
        n++;
    }
    if (n > 3)
        printf("# only in %s: %d more\n", name, n - 3);
    return n;
}

static int primary_metric(const char *name)
{
    return !strcmp(name, "latency_ms") || !strcmp(name, "e2e_ms") ||
           !strncmp(name, "stage_", 6) || !strcmp(name, "time_us") ||
           !strncmp(name, "cold_", 5) || !strcmp(name, "activation_bytes");
}

int fpay_bench_compare(int argc, char **argv)
{
    const char *history = getenv("FPAY_BENCH_HISTORY");
    if (!history)
        history = "bench-history.jsonl";
    const char *only = NULL, *sides[2] = {NULL, NULL};
    int all = 0, strict = 0, mixed_ok = 0, ns = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--history") && i + 1 < argc)
            history = argv[++i];
        else if (!strcmp(argv[i], "--metric") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--all"))
            all = 1;
        else if (!strcmp(argv[i], "--strict"))
            strict = 1;
        else if (!strcmp(argv[i], "--allow-mixed"))
            mixed_ok = 1;
        else if (argv[i][0] != '-' && ns < 2)
            sides[ns++] = argv[i];
        else {
            fprintf(stderr, "usage: facepay-bench compare [--history FILE] [--metric NAME] "
                            "[--all] [--strict] [--allow-mixed] A B\n"
                            "  A, B: result files, or commits (prefix; '+' for its dirty "
                            "build) in the history\n");
            return 2;
        }
    }
    if (ns != 2) {
        fprintf(stderr, "facepay-bench compare: give two commits or two result files\n");
        return 2;
    }
    cJSON *own[2] = {NULL, NULL}, *side[2];
    for (int s = 0; s < 2; s++) {
        side[s] = select_side(sides[s], history, &own[s]);
        if (!side[s] || cJSON_GetArraySize(side[s]) == 0) {
            fprintf(stderr, "facepay-bench compare: no rows for %s%s%s\n", sides[s],
                    side[s] ? " in " : "", side[s] ? history : "");
            for (int k = 0; k <= s; k++) {
                cJSON_Delete(side[k]);
                cJSON_Delete(own[k]);
            }
            return 1;
        }
    }
    cJSON *a0 = cJSON_GetArrayItem(side[0], 0), *b0 = cJSON_GetArrayItem(side[1], 0);
    printf("# A: %s (commit %.12s%s, %s, %s)\n", sides[0], str(a0, "commit"),
           cJSON_IsTrue(cJSON_GetObjectItem(a0, "dirty")) ? "-dirty" : "", str(a0, "date"),
           str(a0, "cpu"));
    printf("# B: %s (commit %.12s%s, %s, %s)\n", sides[1], str(b0, "commit"),
           cJSON_IsTrue(cJSON_GetObjectItem(b0, "dirty")) ? "-dirty" : "", str(b0, "date"),
           str(b0, "cpu"));
    if (strcmp(str(a0, "cpu"), str(b0, "cpu")) != 0 || strcmp(str(a0, "host"), str(b0, "host")))
        printf("# WARNING: A and B were measured on different machines\n");
    char isas[2][256], backs[2][256];
    for (int s = 0; s < 2; s++) {
        field_set(side[s], "isa", isas[s], sizeof isas[s]);
        field_set(side[s], "backend", backs[s], sizeof backs[s]);
        printf("# %c: ISA %s | backend %s\n", "AB"[s], isas[s], backs[s]);
    }
    if (strcmp(isas[0], isas[1]) != 0 || strcmp(backs[0], backs[1]) != 0)
        printf("# WARNING: A and B do not hold the same kernel paths (ISA) and backends; "
               "rows of one configuration that differ in either are %s\n",
               mixed_ok ? "compared anyway (--allow-mixed) and marked MIXED" : "REFUSED");
    printf("# ratio = B/A of the medians, [95%% bootstrap interval], Mann-Whitney p; flagged "
           "only when p < %.2f and the interval clears +/-%.0f%%\n",
           MAX_P, (MIN_EFFECT - 1) * 100);
    printf("%-52s %-22s %10s %10s %7s %17s %8s  %s\n", "configuration", "metric", "A p50", "B p50",
           "ratio", "95% interval", "p", "verdict");
    int regressions = 0, improvements = 0, compared = 0, refused = 0, unrecorded = 0;
    cJSON *ra;
    cJSON_ArrayForEach(ra, side[0])
    {
        const char *key = str(ra, "_match");
        /* Each key once (a side may hold several rows of it). */
        int first = 1;
        for (cJSON *q = side[0]->child; q && q != ra; q = q->next)
            if (!strcmp(str(q, "_match"), key))
                first = 0;
        if (!first)
            continue;
        /* Same configuration, same kernel path and backend, or say why not. */
        cJSON *rb = row_of(side[1], key);
        char mixed[160] = "";
        if (rb) {
            const char *ia = str(ra, "isa"), *ib = str(rb, "isa");
            const char *ba = str(ra, "backend"), *bb = str(rb, "backend");
            if (*ia && *ib && strcmp(ia, ib) != 0)
                snprintf(mixed, sizeof mixed, "ISA %s (A) vs %s (B)", ia, ib);
            if (strcmp(ba, bb) != 0)
                snprintf(mixed + strlen(mixed), sizeof mixed - strlen(mixed),
                         "%sbackend %s (A) vs %s (B)", mixed[0] ? ", " : "", ba, bb);
            if (mixed[0] && !mixed_ok) {
                printf("%-52.52s %-22s %10s %10s %7s %17s %8s  REFUSED: %s\n", str(ra, "key"), "-", "-",
                       "-", "-", "-", "-", mixed);
                refused++;
                continue;
            }
            if (!*ia || !*ib)
                unrecorded++;
        }
        cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(ra, "metrics"))
        {
            const char *name = m->string;
            if (only ? strcmp(name, only) != 0 : !all && !primary_metric(name))
                continue;
            double *va, *vb, xa, xb;
            const char *better = "lower", *bb = "lower";
            int na = gather(side[0], key, name, &va, &xa, &better);
            int nb = gather(side[1], key, name, &vb, &xb, &bb);
            if (isnan(xb) && nb == 0) {
                free(va);
                free(vb);
                continue; /* not measured on B */
            }
            compared++;
            double lo = NAN, hi = NAN, p = NAN, ratio = xa > 0 ? xb / xa : NAN;
            const char *verdict = "info (no samples)";
            if (na >= 2 && nb >= 2) {
                ratio = fpay_bench_median_ratio_ci(va, na, vb, nb, 2000, &lo, &hi);
                p = fpay_bench_mann_whitney_p(va, na, vb, nb);
                int lower_better = strcmp(better, "higher") != 0;
                int up = p < MAX_P && lo > MIN_EFFECT, down = p < MAX_P && hi < 1 / MIN_EFFECT;
                if ((up && lower_better) || (down && !lower_better)) {
                    verdict = "REGRESSION";
                    regressions++;
                } else if (up || down) {
                    verdict = "improved";
                    improvements++;
                } else {
                    verdict = "~ (within noise)";
                }
            }
            char verdict_buf[256];
            if (mixed[0]) {
                snprintf(verdict_buf, sizeof verdict_buf, "%s  MIXED: %s", verdict, mixed);
                verdict = verdict_buf;
            } else if (!*str(ra, "isa") || !*str(rb, "isa")) {
                snprintf(verdict_buf, sizeof verdict_buf, "%s  (ISA not recorded on %s)", verdict,
                         !*str(ra, "isa") && !*str(rb, "isa") ? "A and B"
                         : !*str(ra, "isa")                   ? "A"
                                                              : "B");
                verdict = verdict_buf;
            }
            char ci[40] = "-", ps[16] = "-";
            if (!isnan(lo))
                snprintf(ci, sizeof ci, "[%.3f, %.3f]", lo, hi);
            if (!isnan(p))
                snprintf(ps, sizeof ps, "%.2g", p);
            printf("%-52.52s %-22.22s %10.4g %10.4g %7.3f %17s %8s  %s\n", str(ra, "key"), name, xa, xb,
                   ratio, ci, ps, verdict);
            free(va);
            free(vb);
        }
    }
    printf("# %d metrics compared: %d regression(s), %d improvement(s) outside the noise\n",
           compared, regressions, improvements);
    only_on(side[0], side[1], "A");
    only_on(side[1], side[0], "B");
    if (unrecorded)
        printf("# %d configuration(s) compared whose rows do not record their ISA (older "
               "history): the kernel paths may differ\n",
               unrecorded);
    if (refused)
        printf("# REFUSED %d configuration(s): A and B ran them on different ISAs or backends; "
               "--allow-mixed compares them anyway\n",
               refused);
    for (int s = 0; s < 2; s++) {
        cJSON_Delete(side[s]);
        cJSON_Delete(own[s]);
    }
    return strict && regressions ? 3 : refused ? 4 : 0;
}

/* ------------------------------------------------------------ legacy rows */

/* `import-legacy --history FILE`: rows printed by the `models --json` or
 * `backends --json` of a facepay-bench older than `record` (read on stdin)
 * become history rows: min/median/p90/max without samples, the commit taken
 * from their build id. bench_track.sh uses it for old commits. */
int fpay_bench_import_legacy(int argc, char **argv)
{
    const char *history = NULL;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--history") && i + 1 < argc)
            history = argv[++i];
    if (!history) {
        fprintf(stderr, "usage: facepay-bench import-legacy --history FILE < rows.jsonl\n");
        return 2;
    }
    FILE *h = fopen(history, "a");
    if (!h) {
        fprintf(stderr, "facepay-bench import-legacy: cannot open %s\n", history);
        return 1;
    }
    fpay_bench_opts o;
    memset(&o, 0, sizeof o);
    o.history = h;
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    for (ssize_t len; (len = getline(&line, &cap, stdin)) > 0;) {
        cJSON *in = cJSON_Parse(line);
        if (!in || !cJSON_GetObjectItem(in, "median_ms")) {
            cJSON_Delete(in);
            continue;
        }
        const char *model = str(in, "model"), *backend = str(in, "backend");
        const char *isa = str(in, "isa");
        double threads = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "threads"));
        double batch = cJSON_GetNumberValue(cJSON_GetObjectItem(in, "batch"));
        char key[512];
        snprintf(key, sizeof key, "models/%s/%s/%s/t%.0f/b%.0f", model, backend,
                 *isa ? isa : "?", threads, batch);
        cJSON *row = fpay_bench_row("models", backend, key);
        /* The environment of the old build, from its build id:
         * "<hash>[-dirty] <compiler> <type> ...". */
        char build[256], commit[64] = "unknown", compiler[64] = "";
        snprintf(build, sizeof build, "%s", str(in, "build"));
        sscanf(build, "%63s %63s", commit, compiler);
        int dirty = strstr(commit, "-dirty") != NULL;
        if (dirty)
            *strstr(commit, "-dirty") = '\0';
        cJSON_ReplaceItemInObject(row, "commit", cJSON_CreateString(commit));
        cJSON_ReplaceItemInObject(row, "dirty", cJSON_CreateBool(dirty));
        cJSON_ReplaceItemInObject(row, "build_id", cJSON_CreateString(build));
        cJSON_ReplaceItemInObject(row, "compiler", cJSON_CreateString(compiler));
        cJSON_ReplaceItemInObject(row, "cflags", cJSON_CreateString("?"));
        if (*isa)
            cJSON_ReplaceItemInObject(row, "isa", cJSON_CreateString(isa));
        cJSON_AddBoolToObject(row, "legacy", 1);
        cJSON *p = cJSON_GetObjectItem(row, "params");
        cJSON_AddStringToObject(p, "model", model);
        cJSON_AddNumberToObject(p, "threads", threads);
        cJSON_AddNumberToObject(p, "batch", batch);
        cJSON_AddNumberToObject(p, "runs", cJSON_GetNumberValue(cJSON_GetObjectItem(in, "runs")));
        cJSON *m = cJSON_AddObjectToObject(cJSON_GetObjectItem(row, "metrics"), "latency_ms");
        cJSON_AddStringToObject(m, "unit", "ms");
        cJSON_AddStringToObject(m, "better", "lower");
        const char *from[] = {"min_ms", "median_ms", "p90_ms", "max_ms"};
        const char *to[] = {"min", "p50", "p90", "max"};
        for (int k = 0; k < 4; k++) {
            cJSON *v = cJSON_GetObjectItem(in, from[k]);
            if (cJSON_IsNumber(v))
                cJSON_AddNumberToObject(m, to[k], v->valuedouble);
        }
        cJSON *pb = cJSON_GetObjectItem(in, "peak_bytes");
        if (cJSON_IsNumber(pb))
            fpay_bench_add_value(row, "activation_bytes", "B", "lower", pb->valuedouble);
        fpay_bench_emit(&o, row);
        cJSON_Delete(in);
        n++;
    }
    free(line);
    fclose(h);
    fprintf(stderr, "facepay-bench import-legacy: %d row(s) appended to %s\n", n, history);
    return n ? 0 : 1;
}
