/*
 * bench_plot.c - `facepay-bench plot --history FILE --out DIR [--batch B]`
 *
 * Small SVG files written here, no plotting library:
 *   models-<model>.svg    p50 latency per commit, one line per
 *                         backend/threads (batch B, default 1)
 *   checkout-e2e.svg      checkout p50 end to end per commit, one line per
 *                         api/backend/threads; cold first verify dashed
 *   checkout-stages.svg   stacked bars: p50 of each stage of the latest
 *                         checkout of each commit and backend
 * Commits are in the order they first appear in the history (a dirty build
 * is its commit with a "+"); for each commit and series the latest run is
 * drawn.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_COMMITS 64
#define MAX_SERIES 32

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_COLORS (sizeof palette / sizeof palette[0])

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static double metric_p50(const cJSON *row, const char *name)
{
    const cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "metrics"), name);
    return m ? num(m, "p50") : NAN;
}

typedef struct series {
    char name[128];
    double y[MAX_COMMITS];
    char date[MAX_COMMITS][32]; /* of the row drawn, to keep the latest */
} series;

typedef struct chart {
    char commits[MAX_COMMITS][96]; /* commit labels, or a bar's label */
    int n_commits;
    series s[MAX_SERIES];
    int n_series;
} chart;

static void commit_label(const cJSON *row, char *buf, size_t len)
{
    snprintf(buf, len, "%.8s%s", str(row, "commit"),
             cJSON_IsTrue(cJSON_GetObjectItem(row, "dirty")) ? "+" : "");
}

static int commit_index(chart *c, const char *label)
{
    for (int i = 0; i < c->n_commits; i++)
        if (!strcmp(c->commits[i], label))
            return i;
    if (c->n_commits == MAX_COMMITS)
        return -1;
    snprintf(c->commits[c->n_commits], sizeof c->commits[0], "%s", label);
    return c->n_commits++;
}

static void chart_put(chart *c, const char *series_name, int commit, const char *date, double y)
{
    if (commit < 0 || isnan(y))
        return;
    int k = 0;
    while (k < c->n_series && strcmp(c->s[k].name, series_name))
        k++;
    if (k == c->n_series) {
        if (k == MAX_SERIES)
            return;
        memset(&c->s[k], 0, sizeof c->s[k]);
        snprintf(c->s[k].name, sizeof c->s[k].name, "%s", series_name);
        for (int i = 0; i < MAX_COMMITS; i++)
            c->s[k].y[i] = NAN;
        c->n_series++;
    }
    if (strcmp(date, c->s[k].date[commit]) >= 0) {
        c->s[k].y[commit] = y;
        snprintf(c->s[k].date[commit], sizeof c->s[k].date[0], "%s", date);
    }
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

/* A "nice" step for about 5 ticks up to max. */
static double tick_step(double max)
{
    double raw = max / 5, mag = pow(10, floor(log10(raw)));
    double r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
}

/* The layout of one chart, sized to its labels so that none is clipped:
 * the plot area is fixed (PW x PH); the margins grow with the longest
 * x label (drawn at -45 degrees, so it reaches down and to the left) and
 * the longest legend entry. Text widths are estimated from the character
 * count: 6.7 px per character of 11 px monospace (x labels), 6.5 px of
 * 11 px sans-serif (legend, upper bound for the usual glyphs). */
enum { PW = 480, PH = 280, MT = 40 };
static struct {
    int w, h, ml, mr, mb;
} g;

/* x of slot i of n: slots centred in equal parts of the width, so that no
 * point, bar or label sits on the plot's edges. */
static double slot_x(int i, int n)
{
    return g.ml + (i + 0.5) * PW / (n > 0 ? n : 1);
}

static void layout(const chart *c, const char *const *legend_names, int n_legend)
{
    size_t lx = 0, lg = 0;
    for (int i = 0; i < c->n_commits; i++)
        lx = strlen(c->commits[i]) > lx ? strlen(c->commits[i]) : lx;
    for (int k = 0; k < n_legend; k++)
        lg = strlen(legend_names[k]) > lg ? strlen(legend_names[k]) : lg;
    const double reach = 0.7071 * 6.7 * (double)lx + 6; /* of a -45 degree label */
    const double first = 0.5 * PW / (c->n_commits > 0 ? c->n_commits : 1);
    g.ml = 70;
    if (reach - first + 8 > g.ml)
        g.ml = (int)(reach - first + 8);
    g.mb = (int)(reach + 14 + 30); /* the labels, then the axis name */
    g.mr = (int)(36 + 6.5 * (double)lg + 12);
    if (g.mr < 60)
        g.mr = 60;
    g.w = g.ml + PW + g.mr;
    g.h = MT + PH + g.mb;
}

static void axes(FILE *f, const char *title, const char *xlabel, const char *ylabel,
                 double ymax, const chart *c)
{
    const int title_w = (int)(20 + 8.0 * (double)strlen(title)); /* 14 px sans-serif */
    if (title_w > g.w)
        g.w = title_w;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n",
            g.w, g.h, g.w, g.h);
    fprintf(f, "<!-- generated by facepay-bench plot -->\n");
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", g.w, g.h);
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\">", 10);
    xml_text(f, title);
    fprintf(f, "</text>\n");
    const int ml = g.ml, pw = PW, ph = PH;
    double step = tick_step(ymax);
    for (double y = 0; y <= ymax + 1e-9; y += step) {
        double py = MT + ph - y / ymax * ph;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", ml,
                py, ml + pw, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ml - 6, py + 4,
                y);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", ml, MT, ml,
            MT + ph);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", ml, MT + ph,
            ml + pw, MT + ph);
    /* The y axis's name, rotated, left of the tick labels. */
    fprintf(f, "<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\">",
            ml - 48 > 14 ? ml - 48 : 14, MT + ph / 2);
    xml_text(f, ylabel);
    fprintf(f, "</text>\n");
    for (int i = 0; i < c->n_commits; i++) {
        fprintf(f, "<text transform=\"translate(%.1f %d) rotate(-45)\" text-anchor=\"end\" "
                   "font-family=\"monospace\">",
                slot_x(i, c->n_commits), MT + ph + 14);
        xml_text(f, c->commits[i]);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", ml + pw / 2, g.h - 10);
    xml_text(f, xlabel);
    fprintf(f, "</text>\n");
}

static void legend(FILE *f, int k, const char *name, const char *dash)
{
    int y = MT + 10 + k * 16, x = g.ml + PW + 12;
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"%s/>\n",
            x, y, x + 20, y, palette[k % N_COLORS], dash);
    fprintf(f, "<text x=\"%d\" y=\"%d\">", x + 24, y + 4);
    xml_text(f, name);
    fprintf(f, "</text>\n");
}

static const char commit_axis[] = "commit, oldest first (+: built with uncommitted changes)";

static int write_lines(const char *path, const char *title, const char *ylabel, const chart *c)
{
    if (!c->n_series)
        return 0;
    double ymax = 0;
    for (int k = 0; k < c->n_series; k++)
        for (int i = 0; i < c->n_commits; i++)
            if (!isnan(c->s[k].y[i]) && c->s[k].y[i] > ymax)
                ymax = c->s[k].y[i];
    if (ymax <= 0)
        ymax = 1;
    ymax *= 1.1;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "facepay-bench plot: %s: %s\n", path, strerror(errno));
        return 1;
    }
    const char *names[MAX_SERIES];
    for (int k = 0; k < c->n_series; k++)
        names[k] = c->s[k].name;
    layout(c, names, c->n_series);
    axes(f, title, commit_axis, ylabel, ymax, c);
    const int ph = PH;
    for (int k = 0; k < c->n_series; k++) {
        const char *dash = strstr(c->s[k].name, "cold") ? " stroke-dasharray=\"5 3\"" : "";
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                palette[k % N_COLORS], dash);
        for (int i = 0; i < c->n_commits; i++) {
            if (isnan(c->s[k].y[i]))
                continue;
            fprintf(f, "%.1f,%.1f ", slot_x(i, c->n_commits), MT + ph - c->s[k].y[i] / ymax * ph);
        }
        fprintf(f, "\"/>\n");
        for (int i = 0; i < c->n_commits; i++) {
            if (isnan(c->s[k].y[i]))
                continue;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%.3f</title>"
                       "</circle>\n",
                    slot_x(i, c->n_commits), MT + ph - c->s[k].y[i] / ymax * ph,
                    palette[k % N_COLORS], c->s[k].y[i]);
        }
        legend(f, k, c->s[k].name, dash);
    }
    fprintf(f, "</svg>\n");
    fclose(f);
    printf("wrote %s\n", path);
    return 0;
}

/* Stacked bars: one bar per (commit, series), segments = stages. */
static const char *const stages[] = {"decode", "detect", "select", "quality", "align",
                                     "liveness", "embed", "match", "other"};
#define N_STAGES (sizeof stages / sizeof stages[0])

typedef struct bar {
    char label[160];
    char date[32];
    double v[N_STAGES];
} bar;

static int write_stages(const char *path, cJSON *rows)
{
    bar bars[48];
    int nb = 0;
    cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        if (strcmp(str(r, "suite"), "checkout") != 0)
            continue;
        char label[160], c[24];
        commit_label(r, c, sizeof c);
        snprintf(label, sizeof label, "%s %.40s %.20s t%.0f", c, str(r, "backend"),
                 *str(r, "isa") ? str(r, "isa") : "?",
                 num(cJSON_GetObjectItem(r, "params"), "threads"));
        int k = 0;
        while (k < nb && strcmp(bars[k].label, label))
            k++;
        if (k == nb) {
            if (nb == 48)
                continue;
            memset(&bars[nb], 0, sizeof bars[nb]);
            nb++;
        } else if (strcmp(str(r, "date"), bars[k].date) < 0) {
            continue;
        }
        snprintf(bars[k].label, sizeof bars[k].label, "%s", label);
        snprintf(bars[k].date, sizeof bars[k].date, "%s", str(r, "date"));
        for (size_t s = 0; s < N_STAGES; s++) {
            char name[48];
            snprintf(name, sizeof name, "stage_%s_ms", stages[s]);
            double v = metric_p50(r, name);
            bars[k].v[s] = isnan(v) ? 0 : v;
        }
    }
    if (!nb)
        return 0;
    double ymax = 0;
    for (int k = 0; k < nb; k++) {
        double t = 0;
        for (size_t s = 0; s < N_STAGES; s++)
            t += bars[k].v[s];
        ymax = t > ymax ? t : ymax;
    }
    ymax = ymax > 0 ? ymax * 1.1 : 1;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "facepay-bench plot: %s: %s\n", path, strerror(errno));
        return 1;
    }
    static chart labels; /* 100 KB: not on the stack */
    memset(&labels, 0, sizeof labels);
    for (int k = 0; k < nb && k < MAX_COMMITS; k++)
        snprintf(labels.commits[labels.n_commits++], sizeof labels.commits[0], "%.95s",
                 bars[k].label);
    layout(&labels, (const char *const *)stages, (int)N_STAGES);
    axes(f, "checkout: p50 per stage, stacked (latest run per commit and configuration)",
         "commit, backend, ISA, threads (+: built with uncommitted changes)",
         "p50 per stage, stacked (ms)", ymax, &labels);
    const int ph = PH;
    double slot = (double)PW / nb, bw = slot * 0.6 < 40 ? slot * 0.6 : 40;
    for (int k = 0; k < nb; k++) {
        double px = slot_x(k, nb), y = 0;
        for (size_t s = 0; s < N_STAGES; s++) {
            double h = bars[k].v[s] / ymax * ph;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.2f\" fill=\"%s\">"
                       "<title>%s %.3f ms</title></rect>\n",
                    px - bw / 2, MT + ph - y - h, bw, h, palette[s % N_COLORS], stages[s],
                    bars[k].v[s]);
            y += h;
        }
    }
    for (size_t s = 0; s < N_STAGES; s++)
        legend(f, (int)s, stages[s], "");
    fprintf(f, "</svg>\n");
    fclose(f);
    printf("wrote %s\n", path);
    return 0;
}

int fpay_bench_plot(int argc, char **argv)
{
    const char *history = getenv("FPAY_BENCH_HISTORY"), *out = NULL;
    if (!history)
        history = "bench-history.jsonl";
    long batch = 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--history") && i + 1 < argc)
            history = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atol(argv[++i]);
        else {
            out = NULL;
            break;
        }
    }
    if (!out) {
        fprintf(stderr, "usage: facepay-bench plot [--history FILE] --out DIR [--batch B]\n");
        return 2;
    }
    int bad = 0;
    cJSON *rows = fpay_bench_read_rows(history, &bad);
    if (!rows) {
        fprintf(stderr, "facepay-bench plot: cannot read %s\n", history);
        return 1;
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "facepay-bench plot: %s: %s\n", out, strerror(errno));
        cJSON_Delete(rows);
        return 1;
    }
    /* The commit axis is shared by every chart. */
    chart *base = calloc(1, sizeof *base);
    chart *c = calloc(1, sizeof *c);
    int rc = 0;
    if (!base || !c) {
        free(base);
        free(c);
        cJSON_Delete(rows);
        return 1;
    }
    cJSON *r;
    cJSON_ArrayForEach(r, rows)
    {
        char label[24];
        commit_label(r, label, sizeof label);
        commit_index(base, label);
    }
    /* One chart per model. */
    char models[16][128];
    int nm = 0;
    cJSON_ArrayForEach(r, rows)
    {
        const char *m = str(cJSON_GetObjectItem(r, "params"), "model");
        if (strcmp(str(r, "suite"), "models") != 0 || !*m)
            continue;
        int k = 0;
        while (k < nm && strcmp(models[k], m))
            k++;
        if (k == nm && nm < 16)
            snprintf(models[nm++], sizeof models[0], "%s", m);
    }
    for (int k = 0; k < nm; k++) {
        memcpy(c, base, sizeof *c);
        cJSON_ArrayForEach(r, rows)
        {
            cJSON *p = cJSON_GetObjectItem(r, "params");
            if (strcmp(str(r, "suite"), "models") != 0 || strcmp(str(p, "model"), models[k]) ||
                num(p, "batch") != (double)batch)
                continue;
            char label[24], name[128];
            commit_label(r, label, sizeof label);
            snprintf(name, sizeof name, "%.40s %.20s t%.0f", str(r, "backend"),
                     *str(r, "isa") ? str(r, "isa") : "?", num(p, "threads"));
            chart_put(c, name, commit_index(c, label), str(r, "date"), metric_p50(r, "latency_ms"));
        }
        char path[1024], title[256], stem[128];
        snprintf(stem, sizeof stem, "%.100s", models[k]);
        if (strstr(stem, ".tflite"))
            *strstr(stem, ".tflite") = '\0';
        snprintf(path, sizeof path, "%.900s/models-%.100s.svg", out, stem);
        snprintf(title, sizeof title, "%.100s, batch %ld: p50 latency per commit", stem, batch);
        rc |= write_lines(path, title, "p50 latency of one run (ms)", c);
    }
    memcpy(c, base, sizeof *c);
    cJSON_ArrayForEach(r, rows)
    {
        if (strcmp(str(r, "suite"), "checkout") != 0)
            continue;
        char label[24], name[128];
        commit_label(r, label, sizeof label);
        cJSON *p = cJSON_GetObjectItem(r, "params");
        snprintf(name, sizeof name, "%.20s %.40s %.20s t%.0f", str(p, "api"), str(r, "backend"),
                 *str(r, "isa") ? str(r, "isa") : "?", num(p, "threads"));
        int ci = commit_index(c, label);
        chart_put(c, name, ci, str(r, "date"), metric_p50(r, "e2e_ms"));
        char cold[160];
        snprintf(cold, sizeof cold, "%.120s cold", name);
        chart_put(c, cold, ci, str(r, "date"), metric_p50(r, "cold_first_verify_ms"));
    }
    char path[1024];
    snprintf(path, sizeof path, "%.900s/checkout-e2e.svg", out);
    rc |= write_lines(path, "checkout: p50 end to end per commit (dashed: cold first verify)",
                      "p50 time of one verify (ms)", c);
    snprintf(path, sizeof path, "%.900s/checkout-stages.svg", out);
    rc |= write_stages(path, rows);
    free(base);
    free(c);
    cJSON_Delete(rows);
    return rc;
}
