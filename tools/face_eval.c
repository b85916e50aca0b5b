/*
 * face_eval.c - `facepay eval`: verification accuracy of the face pipeline
 * on LFW-style pairs files.
 *
 *   facepay eval [OPTIONS] --pairs FILE --root DIR [--roc OUT.svg]
 *                [--threshold T] [--fmr F] [--enroll K[,K...]] [--flip]
 *                [--dump FILE]
 *
 * The pairs file is View 1 ("N", then N same and N different pairs) or
 * View 2 ("FOLDS N", then per fold N same and N different pairs); images are
 * ROOT/name/name_NNNN.jpg. Every distinct image goes through the whole
 * pipeline once (in --threads workers, one pipeline each); the report gives
 * accuracy, ROC AUC, EER and TAR at FAR 1e-2/1e-3. --threshold T adds the
 * accuracy at a fixed cosine, so that a threshold chosen on one file (LFW
 * pairsDevTrain) can be tested on another (pairsDevTest): the best-threshold
 * accuracy alone picks its threshold on the pairs it scores.
 *
 * Beyond the listed pairs, the same embeddings give the tail a payment
 * threshold lives in: every cross-identity pair of the images as impostors
 * and every same-identity pair as genuines, with the FNMR at FMR 1e-4, 1e-5
 * and 1e-6 (and --fmr F) and how many impostors reach each threshold;
 * --enroll K scores templates of K photos against the other photos;
 * --flip averages each embedding with its mirror image's; --dump FILE
 * writes the embeddings for outside analysis.
 */
#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"
#include "face_commands.h"
#include "face_common.h"

#include "facepay/facepay.h"
#include "facepay/pipeline.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct pair_rec {
    int a, b;                  /* image indices */
    int same;
    int fold;
} pair_rec;

typedef struct img_rec {
    char *path;
    char *name;                /* identity: the folder name */
    int ident;                 /* identity index (names in strcmp order) */
    int has;                   /* embedding present */
    int result;                /* fpay_face_result, -1 = decode error */
    unsigned quality;
    int liveness;
    float e[FPAY_EMBED_DIM];
} img_rec;

typedef struct eval_set {
    img_rec *imgs;
    int nimgs, cap;
    pair_rec *pairs;
    int npairs;
    int folds;                 /* 0 = View 1 (no folds) */
} eval_set;

static int find_or_add(eval_set *s, const char *root, const char *name, int num)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s_%04d.jpg", root, name, name, num);
    for (int i = s->nimgs - 1; i >= 0 && i >= s->nimgs - 4; i--)
        if (!strcmp(s->imgs[i].path, path))
            return i;
    for (int i = 0; i < s->nimgs; i++)
        if (!strcmp(s->imgs[i].path, path))
            return i;
    if (s->nimgs == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        img_rec *n = realloc(s->imgs, (size_t)cap * sizeof *n);
        if (!n)
            return -1;
        s->imgs = n;
        s->cap = cap;
    }
    img_rec *r = &s->imgs[s->nimgs];
    memset(r, 0, sizeof *r);
    r->path = strdup(path);
    r->name = strdup(name);
    if (!r->path || !r->name) {
        free(r->path);
        free(r->name);
        return -1;
    }
    return s->nimgs++;
}

static int read_pairs(const char *file, const char *root, eval_set *s)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return fpay_cli_die(1, "%s: %s", file, strerror(errno));
    char line[1024];
    int folds = 0, per = 0, rc = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return fpay_cli_die(1, "%s: empty pairs file", file);
    }
    int k = sscanf(line, "%d %d", &folds, &per);
    if (k == 1) {
        per = folds;
        folds = 0;
    }
    if (k < 1 || per < 1 || per > 100000 || folds < 0 || folds > 100) {
        fclose(f);
        return fpay_cli_die(1, "%s: first line must be 'N' (View 1) or 'FOLDS N' (View 2)", file);
    }
    const int nf = folds ? folds : 1;
    s->folds = folds;
    s->npairs = 2 * per * nf;
    s->pairs = calloc((size_t)s->npairs, sizeof *s->pairs);
    if (!s->pairs) {
        fclose(f);
        return fpay_cli_die(1, "out of memory");
    }
    for (int i = 0; i < s->npairs; i++) {
        char n1[256], n2[256];
        int i1, i2, i3;
        if (!fgets(line, sizeof line, f)) {
            rc = fpay_cli_die(1, "%s: %d pairs announced, file ends after %d", file, s->npairs, i);
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        const int same = (i % (2 * per)) < per;
        pair_rec *p = &s->pairs[i];
        p->same = same;
        p->fold = i / (2 * per);
        if (same ? sscanf(line, "%255s %d %d", n1, &i1, &i2) != 3
                 : sscanf(line, "%255s %d %255s %d", n1, &i1, n2, &i3) != 4) {
            rc = fpay_cli_die(1, "%s: line %d is not a %s pair: %.60s", file, i + 2,
                               same ? "'name i j'" : "'name1 i name2 j'", line);
            break;
        }
        p->a = find_or_add(s, root, n1, i1);
        p->b = same ? find_or_add(s, root, n1, i2) : find_or_add(s, root, n2, i3);
        if (p->a < 0 || p->b < 0) {
            rc = fpay_cli_die(1, "out of memory");
            break;
        }
    }
    fclose(f);
    return rc;
}

/* e := normalise(e + embedding of the mirrored aligned crop). */
static fpay_status flip_embed(fpay_pipeline *p, const fpay_capture *c, float *e)
{
    enum { S = FPAY_ALIGNED_SIDE };
    uint8_t m[S * S * 3];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            memcpy(&m[(y * S + x) * 3], &c->aligned[(y * S + (S - 1 - x)) * 3], 3);
    float f[FPAY_EMBED_DIM];
    fpay_status st = fpay_pipeline_embed_aligned(p, m, 1, f, NULL);
    if (st != FPAY_OK)
        return st;
    double n = 0;
    for (int i = 0; i < FPAY_EMBED_DIM; i++) {
        e[i] += f[i];
        n += (double)e[i] * e[i];
    }
    n = sqrt(n);
    for (int i = 0; i < FPAY_EMBED_DIM; i++)
        e[i] = n > 0 ? (float)(e[i] / n) : 0.0f;
    return FPAY_OK;
}

typedef struct worker {
    const opts *o;
    eval_set *s;
    int id, nworkers;
    int rc;
    char err[600];
    int *done;
    pthread_mutex_t *mu;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    fpay_pipeline_config cfg = w->o->cfg;
    cfg.embed_rejected = 1; /* score every pair; the gate's view is reported */
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    fpay_status st = c ? fpay_pipeline_create(&cfg, &p, w->err, sizeof w->err) : FPAY_OUT_OF_MEMORY;
    if (st != FPAY_OK) {
        w->rc = 1;
        free(c);
        return NULL;
    }
    for (int i = w->id; i < w->s->nimgs; i += w->nworkers) {
        img_rec *r = &w->s->imgs[i];
        st = fpay_pipeline_process_file(p, r->path, c);
        if (st != FPAY_OK) {
            r->result = -1;
            fprintf(stderr, "facepay: eval: %s (%s)\n", fpay_pipeline_errmsg(p),
                    fpay_status_str(st));
        } else {
            r->result = (int)c->result;
            r->quality = c->quality.reasons;
            r->liveness = (int)c->liveness.state;
            r->has = c->has_embedding;
            memcpy(r->e, c->embedding, sizeof r->e);
            if (r->has && w->o->flip && flip_embed(p, c, r->e) != FPAY_OK) {
                w->rc = 1;
                snprintf(w->err, sizeof w->err, "%s: --flip: %s", r->path,
                         fpay_pipeline_errmsg(p));
                break;
            }
        }
        pthread_mutex_lock(w->mu);
        int d = ++*w->done;
        pthread_mutex_unlock(w->mu);
        if (d % 200 == 0)
            fprintf(stderr, "  %d / %d images\n", d, w->s->nimgs);
    }
    fpay_pipeline_free(p);
    free(c);
    return NULL;
}

typedef struct scored {
    float s;
    int same;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return x < y ? -1 : x > y;
}

/* Accuracy of threshold t (same if score >= t) over v[0..n). */
static double acc_at(const scored *v, int n, float t)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += (v[i].s >= t) == v[i].same;
    return n ? (double)ok / n : 0;
}

/* The threshold of best accuracy over v (midpoints between sorted scores). */
static float best_threshold(scored *v, int n, double *acc)
{
    qsort(v, (size_t)n, sizeof *v, cmp_scored);
    int pos = 0;
    for (int i = 0; i < n; i++)
        pos += v[i].same;
    /* Threshold below v[i]: positives at >= i accepted, negatives below rejected. */
    int neg_below = 0, pos_below = 0;
    double best = -1;
    float bt = v[0].s - 1e-3f;
    for (int i = 0; i <= n; i++) {
        if (i == 0 || i == n || v[i].s != v[i - 1].s) {
            double a = (double)(neg_below + (pos - pos_below)) / n;
            if (a > best) {
                best = a;
                bt = i == 0 ? v[0].s - 1e-3f : i == n ? v[n - 1].s + 1e-3f
                                                      : 0.5f * (v[i - 1].s + v[i].s);
            }
        }
        if (i < n) {
            neg_below += !v[i].same;
            pos_below += v[i].same;
        }
    }
    *acc = best;
    return bt;
}

typedef struct roc_pt {
    double far, tar;
    float t;
} roc_pt;

/* x: log10 FAR from the smallest FAR the impostor pairs can measure (one
 * accepted impostor: 1/nneg) to 1; below it the curve would be drawn from
 * no data. A FAR of 0 (no impostor accepted) is drawn at that edge. y: TAR
 * 0..1 (0.8..1 would hide failures). */
static void write_roc_svg(const char *path, const roc_pt *r, int n, int nneg, double auc,
                          double eer)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fpay_cli_die(1, "%s: %s", path, strerror(errno));
        return;
    }
    const double W = 520, H = 430, L = 64, T = 20, PW = 420, PH = 340;
    const double lmin = nneg > 1 ? -log10((double)nneg) : -1; /* log10 of the left edge */
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
               "font-family='sans-serif' font-size='11'>\n<rect width='%.0f' height='%.0f' "
               "fill='white'/>\n", W, H, W, H);
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n",
            L, T, PW, PH);
#define ROC_X(lg) (L + ((lg) - lmin) / -lmin * PW)
    for (int e = (int)ceil(lmin - 1e-9); e <= 0; e++) {
        double x = ROC_X(e);
        fprintf(f, "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#ddd'/>", x, T, x,
                T + PH);
        /* The decade labels, unless they would overlap the 1/N one. */
        if (x - L > 28)
            fprintf(f, "<text x='%.1f' y='%.0f' text-anchor='middle'>%s%d</text>",
                    x, T + PH + 14, e ? "1e" : "", e ? e : 1);
        fputc('\n', f);
    }
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='start'>1/%d</text>\n", L, T + PH + 14,
            nneg);
    for (int k = 0; k <= 10; k += 2) {
        double y = T + PH - k / 10.0 * PH;
        fprintf(f, "<line x1='%.0f' y1='%.1f' x2='%.0f' y2='%.1f' stroke='#ddd'/>"
                   "<text x='%.0f' y='%.1f' text-anchor='end'>%.1f</text>\n",
                L, y, L + PW, y, L - 4, y + 4, k / 10.0);
    }
    fprintf(f, "<polyline fill='none' stroke='#c00' stroke-width='1.5' points='");
    for (int i = 0; i < n; i++) {
        double lg = r[i].far > 0 ? log10(r[i].far) : lmin;
        double x = ROC_X(lg < lmin ? lmin : lg), y = T + PH - r[i].tar * PH;
        fprintf(f, "%.1f,%.1f ", x, y);
    }
#undef ROC_X
    fprintf(f, "'/>\n<text x='%.0f' y='%.0f' text-anchor='middle'>false accept rate "
               "(impostor pairs accepted, of %d; log scale from 1/%d)</text>\n",
            L + PW / 2, T + PH + 34, nneg, nneg);
    fprintf(f, "<text x='16' y='%.0f' transform='rotate(-90 16 %.0f)' text-anchor='middle'>"
               "true accept rate (genuine pairs accepted)</text>\n", T + PH / 2, T + PH / 2);
    fprintf(f, "<text x='%.0f' y='%.0f' text-anchor='end'>AUC %.4f, EER %.2f%%</text>\n</svg>\n",
            L + PW - 8, T + PH - 12, auc, 100 * eer);
    fclose(f);
}

/* ------------------------------------------------ the impostor tail */

static const double fmr_levels[3] = {1e-4, 1e-5, 1e-6};

static int cmp_fdesc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* "1e-4" for a power of ten, else %g. */
static const char *fmr_str(double f, char *buf, size_t len)
{
    double lg = log10(f);
    if (fabs(lg - round(lg)) < 1e-9 && lg < 0)
        snprintf(buf, len, "1e%d", (int)round(lg));
    else
        snprintf(buf, len, "%g", f);
    return buf;
}

static long long count_below(const float *v, long long n, float t)
{
    long long k = 0;
    for (long long i = 0; i < n; i++)
        k += v[i] < t;
    return k;
}

/* For each FMR: the smallest threshold t with at most floor(f * nimp) of
 * the impostor scores >= t (imp sorted descending; the same counting rule
 * as calibrate), how many impostors still reach it, and the FNMR it costs
 * on the genuine scores (and on the listed ones, when given). A rate with
 * f * nimp < 1 has no impostor to spare: not measurable. */
static void report_tail(const float *imp, long long nimp, const float *gen, long long ngen,
                        const float *listed, long long nlisted, double extra)
{
    double fs[4] = {fmr_levels[0], fmr_levels[1], fmr_levels[2], extra};
    const int nf = extra > 0 ? 4 : 3;
    for (int i = 0; i < nf; i++) {
        char b[32], need[32];
        const double f = fs[i];
        fmr_str(f, b, sizeof b);
        if (nimp < 1 || f * (double)nimp < 1) {
            snprintf(need, sizeof need, "%.0f", ceil(1 / f));
            printf("  FMR=%s: not measurable (%lld impostor pairs, at least %s needed)\n", b, nimp,
                   need);
            continue;
        }
        const long long allowed = (long long)floor(f * (double)nimp);
        const float t = nextafterf(imp[allowed], INFINITY);
        long long above = 0;
        while (above < nimp && imp[above] >= t)
            above++;
        const long long rej = count_below(gen, ngen, t);
        printf("  FMR=%s: threshold %.4f, %lld of %lld impostors >= it, FNMR %.2f%% "
               "(%lld of %lld genuine below)", b, (double)t, above, nimp,
               ngen ? 100.0 * (double)rej / (double)ngen : 0.0, rej, ngen);
        if (listed) {
            const long long lrej = count_below(listed, nlisted, t);
            printf(", listed pairs %.2f%% (%lld of %lld)",
                   nlisted ? 100.0 * (double)lrej / (double)nlisted : 0.0, lrej, nlisted);
        }
        putchar('\n');
    }
}

static int cmp_img_name(const void *a, const void *b)
{
    const img_rec *const *x = a, *const *y = b;
    int c = strcmp((*x)->name, (*y)->name);
    return c ? c : strcmp((*x)->path, (*y)->path);
}

/* Sets ident (names in strcmp order) and fills order with the images by
 * name, then path (so an identity's photos are in file-name order).
 * Returns the number of identities. */
static int number_identities(eval_set *s, img_rec **order)
{
    for (int i = 0; i < s->nimgs; i++)
        order[i] = &s->imgs[i];
    qsort(order, (size_t)s->nimgs, sizeof *order, cmp_img_name);
    int ident = -1;
    for (int i = 0; i < s->nimgs; i++) {
        if (i == 0 || strcmp(order[i]->name, order[i - 1]->name))
            ident++;
        order[i]->ident = ident;
    }
    return ident + 1;
}

/* Every cross-identity pair of the images with a face as impostors, every
 * same-identity pair as genuines. listed: the scores of the file's same
 * pairs. Returns 0 or 1 (out of memory). */
static int eval_all_pairs(const eval_set *s, const float *listed, long long nlisted,
                          double extra)
{
    long long nimp = 0, ngen = 0;
    int nface = 0;
    for (int i = 0; i < s->nimgs; i++) {
        if (!s->imgs[i].has)
            continue;
        nface++;
        for (int j = i + 1; j < s->nimgs; j++)
            if (s->imgs[j].has) {
                if (s->imgs[i].ident == s->imgs[j].ident)
                    ngen++;
                else
                    nimp++;
            }
    }
    float *imp = malloc((size_t)(nimp ? nimp : 1) * sizeof *imp);
    float *gen = malloc((size_t)(ngen ? ngen : 1) * sizeof *gen);
    if (!imp || !gen) {
        free(imp);
        free(gen);
        return fpay_cli_die(1, "out of memory for %lld impostor scores", nimp);
    }
    long long ki = 0, kg = 0;
    for (int i = 0; i < s->nimgs; i++) {
        if (!s->imgs[i].has)
            continue;
        for (int j = i + 1; j < s->nimgs; j++) {
            if (!s->imgs[j].has)
                continue;
            float c = fpay_embedding_cosine(s->imgs[i].e, s->imgs[j].e, FPAY_EMBED_DIM);
            if (s->imgs[i].ident == s->imgs[j].ident)
                gen[kg++] = c;
            else
                imp[ki++] = c;
        }
    }
    qsort(imp, (size_t)nimp, sizeof *imp, cmp_fdesc);
    printf("all pairs:  %d images with a face (%d without left out): %lld impostor pairs "
           "(every cross-identity pair), %lld genuine pairs (every same-identity pair; "
           "%lld listed)\n", nface, s->nimgs - nface, nimp, ngen, nlisted);
    report_tail(imp, nimp, gen, ngen, listed, nlisted, extra);
    free(imp);
    free(gen);
    return 0;
}

/* Multi-capture protocol: per identity with more than P (>= K) photos with
 * a face, the template is the L2-normalised mean of its first K (by file
 * name); its photos after the first P are genuine probes, every photo of
 * every other identity an impostor probe. P = K uses every person who can
 * give K photos and a probe; one P for several K compares them on the same
 * people and the same genuine probes. */
static int eval_enroll(const eval_set *s, img_rec *const *order, int nident, int K, int P,
                       double extra)
{
    int *first = malloc((size_t)(nident + 1) * sizeof *first);   /* into order */
    int *nface = calloc((size_t)nident + 1, sizeof *nface);
    float(*tmpl)[FPAY_EMBED_DIM] = malloc((size_t)(nident ? nident : 1) * sizeof *tmpl);
    int *tid = malloc((size_t)(nident ? nident : 1) * sizeof *tid);
    float *imp = NULL, *gen = NULL;
    int rc = 0;
    if (!first || !nface || !tmpl || !tid) {
        rc = fpay_cli_die(1, "out of memory");
        goto out;
    }
    for (int i = s->nimgs - 1; i >= 0; i--)
        first[order[i]->ident] = i;
    int nface_all = 0;
    for (int i = 0; i < s->nimgs; i++)
        if (order[i]->has) {
            nface[order[i]->ident]++;
            nface_all++;
        }
    int nt = 0;
    long long ngen = 0;
    for (int id = 0; id < nident; id++) {
        if (nface[id] <= P)
            continue;
        double m[FPAY_EMBED_DIM] = {0};
        int used = 0;
        for (int i = first[id]; i < s->nimgs && order[i]->ident == id && used < K; i++)
            if (order[i]->has) {
                for (int d = 0; d < FPAY_EMBED_DIM; d++)
                    m[d] += order[i]->e[d];
                used++;
            }
        double n = 0;
        for (int d = 0; d < FPAY_EMBED_DIM; d++)
            n += m[d] * m[d];
        n = sqrt(n);
        for (int d = 0; d < FPAY_EMBED_DIM; d++)
            tmpl[nt][d] = n > 0 ? (float)(m[d] / n) : 0.0f;
        tid[nt++] = id;
        ngen += nface[id]; /* room for all; the first P photos are not probes */
    }
    long long nimp = 0;
    for (int t = 0; t < nt; t++)
        nimp += nface_all - nface[tid[t]];
    imp = malloc((size_t)(nimp ? nimp : 1) * sizeof *imp);
    gen = malloc((size_t)(ngen ? ngen : 1) * sizeof *gen);
    if (!imp || !gen) {
        rc = fpay_cli_die(1, "out of memory for %lld impostor scores", nimp);
        goto out;
    }
    long long ki = 0, kg = 0;
    for (int t = 0; t < nt; t++) {
        int seen = 0;
        for (int i = 0; i < s->nimgs; i++) {
            const img_rec *r = order[i];
            if (!r->has)
                continue;
            float c = fpay_embedding_cosine(tmpl[t], r->e, FPAY_EMBED_DIM);
            if (r->ident != tid[t])
                imp[ki++] = c;
            else if (++seen > P)
                gen[kg++] = c;
        }
    }
    qsort(imp, (size_t)ki, sizeof *imp, cmp_fdesc);
    ngen = kg;
    nimp = ki;
    if (P == K)
        printf("enroll %d:   %d people with more than %d photos with a face: template = mean of "
               "the first %d by file name; probes: %lld genuine (their other photos), %lld "
               "impostor (every photo of another person against each template)\n", K, nt, K, K,
               ngen, nimp);
    else
        printf("enroll %d of %d: the same %d people (more than %d photos with a face): template "
               "= mean of the first %d by file name; probes: %lld genuine (their photos after "
               "the first %d), %lld impostor\n", K, P, nt, P, K, ngen, P, nimp);
    report_tail(imp, nimp, gen, ngen, NULL, 0, extra);
out:
    free(first);
    free(nface);
    free(tmpl);
    free(tid);
    free(imp);
    free(gen);
    return rc;
}

/* --dump: a header line, then per image path, identity, usable (1: a face
 * was found and embedded; 0: the 192 values are 0), 192 floats; tabs. */
static int write_dump(const char *file, img_rec *const *order, int n)
{
    FILE *f = fopen(file, "w");
    if (!f)
        return fpay_cli_die(1, "%s: %s", file, strerror(errno));
    fprintf(f, "path\tidentity\tusable");
    for (int d = 0; d < FPAY_EMBED_DIM; d++)
        fprintf(f, "\te%d", d);
    fputc('\n', f);
    for (int i = 0; i < n; i++) {
        const img_rec *r = order[i];
        fprintf(f, "%s\t%s\t%d", r->path, r->name, r->has);
        for (int d = 0; d < FPAY_EMBED_DIM; d++)
            fprintf(f, "\t%.9g", r->has ? (double)r->e[d] : 0.0);
        fputc('\n', f);
    }
    if (fclose(f) != 0)
        return fpay_cli_die(1, "%s: %s", file, strerror(errno));
    return 0;
}

int fpay_cmd_eval(int argc, char **argv)
{
    opts o;
    int rc = fpay_face_parse_opts(argc, argv, &o, 0, "eval");
    if (rc)
        return rc;
    if (!o.pairs || !o.root)
        return fpay_cli_die(EXIT_USAGE, "eval needs --pairs FILE and --root DIR");
    eval_set s;
    memset(&s, 0, sizeof s);
    scored *v = NULL, *tmp = NULL;
    roc_pt *roc = NULL;
    img_rec **order = NULL;
    float *listed = NULL;
    if ((rc = read_pairs(o.pairs, o.root, &s)))
        goto out;
    int nw = o.workers;
    if (nw <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        nw = nc > 0 ? (int)(nc < 16 ? nc : 16) : 1;
    }
    char layout[80] = "View 1 (no folds)";
    if (s.folds)
        snprintf(layout, sizeof layout, "View 2, folds: %d of %d pairs", s.folds,
                 s.npairs / s.folds);
    printf("pairs:      %s: %d pairs (%d same, %d different), %s, %d distinct images\n",
           o.pairs, s.npairs, s.npairs / 2, s.npairs / 2, layout, s.nimgs);
    printf("pipeline:   min face %s, liveness %s, %d worker%s\n",
           o.cfg.min_face_px ? "fixed" : "0.2 x width", o.cfg.liveness ? "on" : "off", nw,
           nw == 1 ? "" : "s");
    {
        worker ws[16];
        pthread_t th[16];
        pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
        int done = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < nw; i++) {
            ws[i] = (worker){&o, &s, i, nw, 0, "", &done, &mu};
            if (pthread_create(&th[i], NULL, worker_main, &ws[i]))
                return fpay_cli_die(1, "cannot start a thread");
        }
        for (int i = 0; i < nw; i++)
            pthread_join(th[i], NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int i = 0; i < nw; i++)
            if (ws[i].rc) {
                rc = fpay_cli_die(1, "%s", ws[i].err);
                goto out;
            }
        double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf("processed:  %d images in %.1f s (%.1f ms per image per worker)\n", s.nimgs, sec,
               1e3 * sec * nw / (s.nimgs ? s.nimgs : 1));
    }
    int noface = 0, decode_err = 0, ok = 0, ambiguous = 0, qual = 0, spoof = 0, unsure = 0;
    for (int i = 0; i < s.nimgs; i++) {
        const img_rec *r = &s.imgs[i];
        noface += r->result == FPAY_FACE_NO_FACE;
        decode_err += r->result < 0;
        ok += r->result == FPAY_FACE_OK;
        ambiguous += r->result == FPAY_FACE_AMBIGUOUS_MULTIPLE_FACES;
        qual += r->result == FPAY_FACE_QUALITY_REJECTED;
        spoof += r->result == FPAY_FACE_SPOOF_SUSPECTED;
        unsure += r->result == FPAY_FACE_LIVENESS_UNSURE;
    }
    printf("captures:   ok %d, no face %d, unreadable %d, ambiguous %d, quality rejected %d, "
           "spoof %d, liveness unsure %d\n", ok, noface, decode_err, ambiguous, qual, spoof,
           unsure);
    for (int i = 0; i < s.nimgs; i++)
        if (!s.imgs[i].has)
            printf("  no face:  %s\n", s.imgs[i].path);
    v = malloc((size_t)s.npairs * sizeof *v);
    tmp = malloc((size_t)s.npairs * sizeof *tmp);
    roc = malloc(((size_t)s.npairs + 2) * sizeof *roc);
    if (!v || !tmp || !roc) {
        rc = fpay_cli_die(1, "out of memory");
        goto out;
    }
    int missing_pairs = 0, npos = 0, nneg = 0;
    for (int i = 0; i < s.npairs; i++) {
        const img_rec *a = &s.imgs[s.pairs[i].a], *b = &s.imgs[s.pairs[i].b];
        v[i].same = s.pairs[i].same;
        npos += v[i].same;
        nneg += !v[i].same;
        if (a->has && b->has) {
            v[i].s = fpay_embedding_cosine(a->e, b->e, FPAY_EMBED_DIM);
        } else {
            v[i].s = -1.0f; /* a missing face counts against the engine */
            missing_pairs++;
        }
    }
    /* ROC AUC (Mann-Whitney, ties half), EER, TAR at FAR. */
    memcpy(tmp, v, (size_t)s.npairs * sizeof *v);
    qsort(tmp, (size_t)s.npairs, sizeof *tmp, cmp_scored);
    double rank_sum = 0;
    for (int i = 0; i < s.npairs;) {
        int j = i;
        while (j < s.npairs && tmp[j].s == tmp[i].s)
            j++;
        double avg = 0.5 * (i + 1 + j);
        for (int k = i; k < j; k++)
            if (tmp[k].same)
                rank_sum += avg;
        i = j;
    }
    double auc = (rank_sum - (double)npos * (npos + 1) / 2) / ((double)npos * nneg);
    /* Sweep the threshold from high to low. */
    int nroc = 0, tp = 0, fp = 0;
    double eer = 1, eer_gap = 2, tar2 = 0, tar3 = 0;
    float t2 = 0, t3 = 0;
    roc[nroc++] = (roc_pt){0, 0, tmp[s.npairs - 1].s + 1e-3f};
    for (int i = s.npairs - 1; i >= 0;) {
        int j = i;
        while (j >= 0 && tmp[j].s == tmp[i].s) {
            tp += tmp[j].same;
            fp += !tmp[j].same;
            j--;
        }
        double far = (double)fp / nneg, tar = (double)tp / npos;
        roc[nroc++] = (roc_pt){far, tar, tmp[i].s};
        double frr = 1 - tar;
        if (fabs(far - frr) < eer_gap) {
            eer_gap = fabs(far - frr);
            eer = 0.5 * (far + frr);
        }
        if (far <= 1e-2) {
            tar2 = tar;
            t2 = tmp[i].s;
        }
        if (far <= 1e-3) {
            tar3 = tar;
            t3 = tmp[i].s;
        }
        i = j;
    }
    double best_acc;
    memcpy(tmp, v, (size_t)s.npairs * sizeof *v);
    float bt = best_threshold(tmp, s.npairs, &best_acc);
    printf("pairs without a face: %d of %d (scored -1, i.e. counted as errors)\n", missing_pairs,
           s.npairs);
    printf("ROC AUC:    %.4f\n", auc);
    printf("EER:        %.2f%%\n", 100 * eer);
    printf("TAR@FAR=1e-2: %.2f%% (threshold %.4f)\n", 100 * tar2, (double)t2);
    printf("TAR@FAR=1e-3: %.2f%% (threshold %.4f)%s\n", 100 * tar3, (double)t3,
           nneg < 1000 ? ", note: with fewer than 1000 different pairs this means no false accept at all"
                       : "");
    printf("best-threshold accuracy: %.2f%% at cosine %.4f (threshold chosen on the same pairs: optimistic)\n",
           100 * best_acc, (double)bt);
    if (o.has_threshold)
        printf("accuracy at the given threshold: %.2f%% at cosine %.4f\n",
               100 * acc_at(v, s.npairs, o.threshold), (double)o.threshold);
    /* k-fold: the file's folds, else 10 folds by pair index (not the official split). */
    const int K = s.folds ? s.folds : 10;
    double mean = 0, sq = 0;
    for (int k = 0; k < K; k++) {
        int ntr = 0, nte = 0;
        for (int i = 0; i < s.npairs; i++) {
            int fold = s.folds ? s.pairs[i].fold : i % 10;
            if (fold != k)
                tmp[ntr++] = v[i];
        }
        double tr_acc;
        float t = best_threshold(tmp, ntr, &tr_acc);
        for (int i = 0; i < s.npairs; i++) {
            int fold = s.folds ? s.pairs[i].fold : i % 10;
            if (fold == k)
                tmp[nte++] = v[i];
        }
        double a = acc_at(tmp, nte, t);
        mean += a;
        sq += a * a;
    }
    mean /= K;
    double sd = sqrt(fmax(0.0, sq / K - mean * mean));
    printf("%d-fold accuracy: %.2f%% +- %.2f%% (%s)\n", K, 100 * mean, 100 * sd,
           s.folds ? "the file's folds, threshold from the other folds"
                   : "no folds in the file: folds by pair index, threshold from the other 9; "
                     "use pairsDevTrain to pick a threshold for a clean train/test split");
    if (o.roc) {
        write_roc_svg(o.roc, roc, nroc, nneg, auc, eer);
        printf("ROC:        %s\n", o.roc);
    }
    /* Beyond the listed pairs: the tail of every cross-identity pair, the
     * multi-capture protocol, the embeddings. */
    order = malloc((size_t)(s.nimgs ? s.nimgs : 1) * sizeof *order);
    listed = malloc((size_t)(npos ? npos : 1) * sizeof *listed);
    if (!order || !listed) {
        rc = fpay_cli_die(1, "out of memory");
        goto out;
    }
    int nlisted = 0;
    for (int i = 0; i < s.npairs; i++)
        if (v[i].same)
            listed[nlisted++] = v[i].s;
    const int nident = number_identities(&s, order);
    if ((rc = eval_all_pairs(&s, listed, nlisted, o.fmr_extra)))
        goto out;
    for (int i = 0; i < o.nenroll; i++)
        if ((rc = eval_enroll(&s, order, nident, o.enroll[i], o.enroll[i], o.fmr_extra)))
            goto out;
    /* Several K: again on the people and probes of the largest, so that the
     * K differ only in the template. */
    int kmax = 0;
    for (int i = 0; i < o.nenroll; i++)
        kmax = o.enroll[i] > kmax ? o.enroll[i] : kmax;
    for (int i = 0; o.nenroll > 1 && i < o.nenroll; i++)
        if (o.enroll[i] < kmax &&
            (rc = eval_enroll(&s, order, nident, o.enroll[i], kmax, o.fmr_extra)))
            goto out;
    if (o.dump) {
        if ((rc = write_dump(o.dump, order, s.nimgs)))
            goto out;
        printf("dump:       %s (%d images, tab-separated: path, identity, usable, 192 floats)\n",
               o.dump, s.nimgs);
    }
out:
    for (int i = 0; i < s.nimgs; i++) {
        free(s.imgs[i].path);
        free(s.imgs[i].name);
    }
    free(order);
    free(listed);
    free(s.imgs);
    free(s.pairs);
    free(v);
    free(tmp);
    free(roc);
    return rc;
}
