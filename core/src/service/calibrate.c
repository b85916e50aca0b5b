/*
 * calibrate.c - the verification threshold from labelled photos
 * (fpay_calibrate, service.h).
 *
 * A threshold is a promise about impostors: "at most this fraction of
 * people who are not the account holder get through". So it is chosen on
 * impostor scores alone, as many of them as the data allows: every pair of
 * images of two different people (n images give about n^2/2 pairs, far
 * more than the listed "different" pairs). The false non-match rate it
 * costs is reported on the listed same-person pairs and on every
 * same-person pair of the images.
 *
 * The pairs files and every image are outside input: bad lines stop the
 * run with the line number, unreadable images and images without a face
 * are counted and left out.
 */
#define _POSIX_C_SOURCE 200809L
#include "service_internal.h"

#include "status.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGES 200000
#define NAME_MAX_LEN 255

typedef struct cal_img {
    char *path;
    char *name;                /* identity (folder name) */
    int ident;                 /* identity index, set after reading */
    int usable;
    float e[FPAY_EMBED_DIM];
} cal_img;

typedef struct cal_set {
    cal_img *imgs;
    int n, cap;
    int (*same)[2];
    long nsame, same_cap;
    char err[512];
    /* progress: images embedded so far, reported under mu */
    fpay_progress_fn progress;
    void *progress_ctx;
    pthread_mutex_t mu;
    int done;
} cal_set;

/* A name as it appears in LFW: letters, digits, '_', '-', '.', but no
 * path separators or "..", so a hostile pairs file cannot point outside
 * root. */
static int name_ok(const char *s)
{
    if (!s[0] || !strcmp(s, ".") || !strcmp(s, ".."))
        return 0;
    for (const char *p = s; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return 0;
    return 1;
}

static int find_or_add(cal_set *s, const char *root, const char *name, int num)
{
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s/%s_%04d.jpg", root, name, name, num);
    if (len < 0 || (size_t)len >= sizeof path)
        return -1;
    /* Pairs files list an image many times, mostly close together. */
    for (int i = s->n - 1; i >= 0; i--)
        if (!strcmp(s->imgs[i].path, path))
            return i;
    if (s->n >= MAX_IMAGES)
        return -1;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 256;
        cal_img *g = realloc(s->imgs, (size_t)cap * sizeof *g);
        if (!g)
            return -1;
        s->imgs = g;
        s->cap = cap;
    }
    cal_img *r = &s->imgs[s->n];
    memset(r, 0, sizeof *r);
    r->path = strdup(path);
    r->name = strdup(name);
    if (!r->path || !r->name) {
        free(r->path);
        free(r->name);
        return -1;
    }
    return s->n++;
}

static fpay_status read_pairs(const char *file, const char *root, cal_set *s)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(s->err, sizeof s->err, "calibrate: %s: %s", file, strerror(errno));
        return FPAY_IO_ERROR;
    }
    char line[1024];
    int folds = 0, per = 0;
    fpay_status st = FPAY_OK;
    if (!fgets(line, sizeof line, f)) {
        snprintf(s->err, sizeof s->err, "calibrate: %s: empty pairs file", file);
        fclose(f);
        return FPAY_INVALID_ARGUMENT;
    }
    int k = sscanf(line, "%d %d", &folds, &per);
    if (k == 1) {
        per = folds;
        folds = 1;
    }
    if (k < 1 || per < 1 || per > 100000 || folds < 1 || folds > 100) {
        snprintf(s->err, sizeof s->err,
                 "calibrate: %s: first line must be 'N' (View 1) or 'FOLDS N' (View 2)", file);
        fclose(f);
        return FPAY_INVALID_ARGUMENT;
    }
    long total = 2L * per * folds;
    for (long i = 0; i < total && st == FPAY_OK; i++) {
        char n1[NAME_MAX_LEN + 1], n2[NAME_MAX_LEN + 1];
        int i1, i2, i3;
        if (!fgets(line, sizeof line, f)) {
            snprintf(s->err, sizeof s->err, "calibrate: %s: %ld pairs announced, file ends after %ld",
                     file, total, i);
            st = FPAY_INVALID_ARGUMENT;
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        const int same = (i % (2L * per)) < per;
        int ok = same ? sscanf(line, "%255s %d %d", n1, &i1, &i2) == 3
                      : sscanf(line, "%255s %d %255s %d", n1, &i1, n2, &i3) == 4;
        if (ok && same)
            ok = name_ok(n1) && i1 > 0 && i2 > 0 && i1 < 10000 && i2 < 10000;
        else if (ok)
            ok = name_ok(n1) && name_ok(n2) && i1 > 0 && i3 > 0 && i1 < 10000 && i3 < 10000;
        if (!ok) {
            snprintf(s->err, sizeof s->err, "calibrate: %s: line %ld is not a %s pair",
                     file, i + 2, same ? "'name i j'" : "'name1 i name2 j'");
            st = FPAY_INVALID_ARGUMENT;
            break;
        }
        int a = find_or_add(s, root, n1, i1);
        int b = find_or_add(s, root, same ? n1 : n2, same ? i2 : i3);
        if (a < 0 || b < 0) {
            snprintf(s->err, sizeof s->err, "calibrate: out of memory or too many images");
            st = FPAY_OUT_OF_MEMORY;
            break;
        }
        if (same && a != b) {
            if (s->nsame == s->same_cap) {
                long cap = s->same_cap ? 2 * s->same_cap : 256;
                int(*g)[2] = realloc(s->same, (size_t)cap * sizeof *g);
                if (!g) {
                    st = FPAY_OUT_OF_MEMORY;
                    snprintf(s->err, sizeof s->err, "calibrate: out of memory");
                    break;
                }
                s->same = g;
                s->same_cap = cap;
            }
            s->same[s->nsame][0] = a;
            s->same[s->nsame][1] = b;
            s->nsame++;
        }
    }
    fclose(f);
    return st;
}

typedef struct cal_worker {
    const fpay_pipeline_config *cfg;
    cal_set *s;
    int id, nworkers;
    fpay_status st;
    char err[512];
    char sha[65];
} cal_worker;

static void *cal_worker_main(void *arg)
{
    cal_worker *w = arg;
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    if (!c) {
        w->st = FPAY_OUT_OF_MEMORY;
        snprintf(w->err, sizeof w->err, "calibrate: out of memory");
        return NULL;
    }
    w->st = fpay_pipeline_create(w->cfg, &p, w->err, sizeof w->err);
    if (w->st != FPAY_OK) {
        free(c);
        return NULL;
    }
    snprintf(w->sha, sizeof w->sha, "%s", fpay_pipeline_model_sha256(p));
    for (int i = w->id; i < w->s->n; i += w->nworkers) {
        cal_img *r = &w->s->imgs[i];
        fpay_status st = fpay_pipeline_process_file(p, r->path, c);
        if (st == FPAY_OK && c->has_embedding) {
            memcpy(r->e, c->embedding, sizeof r->e);
            r->usable = 1;
        } else if (st != FPAY_OK && st != FPAY_IMAGE_INVALID && st != FPAY_LIMIT_EXCEEDED &&
                   st != FPAY_NOT_FOUND && st != FPAY_IO_ERROR) {
            /* Not the photo's fault: stop rather than calibrate on less. */
            w->st = st;
            snprintf(w->err, sizeof w->err, "calibrate: %s: %s", r->path,
                     fpay_pipeline_errmsg(p));
            break;
        }
        if (w->s->progress) {
            pthread_mutex_lock(&w->s->mu);
            w->s->progress(w->s->progress_ctx, ++w->s->done, w->s->n);
            pthread_mutex_unlock(&w->s->mu);
        }
    }
    fpay_pipeline_free(p);
    free(c);
    return NULL;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int cmp_name(const void *a, const void *b)
{
    const cal_img *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static void cal_set_free(cal_set *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->imgs[i].path);
        free(s->imgs[i].name);
    }
    free(s->imgs);
    free(s->same);
}

fpay_status fpay_calibrate(const fpay_pipeline_config *pipeline, int threads,
                           const char *const *pairs_files, int n_files, const char *root,
                           double target_fmr, fpay_calibration *out, char *err,
                           size_t err_len)
{
    return fpay_calibrate_progress(pipeline, threads, pairs_files, n_files, root, target_fmr,
                                   NULL, NULL, out, err, err_len);
}

fpay_status fpay_calibrate_progress(const fpay_pipeline_config *pipeline, int threads,
                                    const char *const *pairs_files, int n_files,
                                    const char *root, double target_fmr,
                                    fpay_progress_fn progress, void *progress_ctx,
                                    fpay_calibration *out, char *err, size_t err_len)
{
    if (!pipeline || !pairs_files || n_files < 1 || n_files > 64 || !root || !out ||
        !(target_fmr > 0 && target_fmr < 1) || threads < 0 || threads > 64) {
        fpay_set_err(err, err_len, "calibrate: pipeline, 1..64 pairs files, root, "
                                   "0 < fmr < 1 and 0..64 threads please");
        return FPAY_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    out->target_fmr = target_fmr;
    cal_set s;
    memset(&s, 0, sizeof s);
    s.progress = progress;
    s.progress_ctx = progress_ctx;
    pthread_mutex_init(&s.mu, NULL);
    fpay_status st = FPAY_OK;
    float *imp = NULL;
    cal_worker *ws = NULL;
    pthread_t *tids = NULL;
    for (int f = 0; f < n_files && st == FPAY_OK; f++) {
        if (!pairs_files[f]) {
            st = FPAY_INVALID_ARGUMENT;
            snprintf(s.err, sizeof s.err, "calibrate: NULL pairs file");
        } else {
            st = read_pairs(pairs_files[f], root, &s);
        }
    }
    if (st != FPAY_OK) {
        fpay_set_err(err, err_len, "%s", s.err);
        goto out;
    }

    /* Embed each distinct image once. The gates are off on purpose: the
     * impostor distribution of every detectable face is the conservative
     * one, and liveness only ever blocks (it cannot change a score). */
    fpay_pipeline_config cfg = *pipeline;
    cfg.liveness = 0;
    cfg.embed = 1;
    cfg.embed_rejected = 1;
    int nw = threads > 0 ? threads : 1;
    /* The workers are the parallelism here: one thread per session, or they
     * would compete for the same cores. */
    if (nw > 1)
        cfg.threads = 1;
    if (nw > s.n)
        nw = s.n > 0 ? s.n : 1;
    ws = calloc((size_t)nw, sizeof *ws);
    tids = calloc((size_t)nw, sizeof *tids);
    if (!ws || !tids) {
        st = FPAY_OUT_OF_MEMORY;
        fpay_set_err(err, err_len, "calibrate: out of memory");
        goto out;
    }
    int started = 0;
    for (int i = 0; i < nw; i++) {
        ws[i] = (cal_worker){.cfg = &cfg, .s = &s, .id = i, .nworkers = nw, .st = FPAY_OK};
        if (pthread_create(&tids[i], NULL, cal_worker_main, &ws[i]) != 0) {
            ws[i].st = FPAY_INTERNAL;
            snprintf(ws[i].err, sizeof ws[i].err, "calibrate: cannot start a thread");
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    for (int i = 0; i < nw; i++)
        if (ws[i].st != FPAY_OK) {
            st = ws[i].st;
            fpay_set_err(err, err_len, "%s", ws[i].err);
            goto out;
        }
    snprintf(out->model_sha256, sizeof out->model_sha256, "%s", ws[0].sha);

    /* Identities: by folder name. */
    cal_img **order = malloc((size_t)(s.n > 0 ? s.n : 1) * sizeof *order);
    if (!order) {
        st = FPAY_OUT_OF_MEMORY;
        fpay_set_err(err, err_len, "calibrate: out of memory");
        goto out;
    }
    for (int i = 0; i < s.n; i++)
        order[i] = &s.imgs[i];
    qsort(order, (size_t)s.n, sizeof *order, cmp_name);
    int ident = -1;
    for (int i = 0; i < s.n; i++) {
        if (i == 0 || strcmp(order[i]->name, order[i - 1]->name))
            ident++;
        order[i]->ident = ident;
    }
    free(order);
    /* People with at least one usable image. */
    {
        char *seen = calloc((size_t)(ident + 2), 1);
        if (!seen) {
            st = FPAY_OUT_OF_MEMORY;
            fpay_set_err(err, err_len, "calibrate: out of memory");
            goto out;
        }
        for (int i = 0; i < s.n; i++) {
            if (!s.imgs[i].usable)
                continue;
            if (!seen[s.imgs[i].ident])
                out->identities++;
            seen[s.imgs[i].ident] = 1;
        }
        free(seen);
    }
    out->images = s.n;
    long long nimp = 0;
    for (int i = 0; i < s.n; i++)
        if (!s.imgs[i].usable)
            out->images_unusable++;
    for (int i = 0; i < s.n; i++)
        for (int j = i + 1; j < s.n; j++)
            if (s.imgs[i].usable && s.imgs[j].usable && s.imgs[i].ident != s.imgs[j].ident)
                nimp++;
    if (nimp < 1 || (double)nimp * target_fmr < 1.0) {
        st = FPAY_INVALID_ARGUMENT;
        fpay_set_err(err, err_len,
                     "calibrate: %lld impostor pairs cannot measure an FMR of %g "
                     "(at least %.0f needed)",
                     nimp, target_fmr, ceil(1.0 / target_fmr));
        goto out;
    }
    if ((unsigned long long)nimp > (unsigned long long)(SIZE_MAX / sizeof(float)) ||
        !(imp = malloc((size_t)nimp * sizeof *imp))) {
        st = FPAY_OUT_OF_MEMORY;
        fpay_set_err(err, err_len, "calibrate: out of memory for %lld scores", nimp);
        goto out;
    }
    long long k = 0;
    for (int i = 0; i < s.n; i++)
        for (int j = i + 1; j < s.n; j++)
            if (s.imgs[i].usable && s.imgs[j].usable && s.imgs[i].ident != s.imgs[j].ident)
                imp[k++] = fpay_embedding_cosine(s.imgs[i].e, s.imgs[j].e, FPAY_EMBED_DIM);
    qsort(imp, (size_t)nimp, sizeof *imp, cmp_desc);
    /* At most `allowed` impostors may score >= t. The (allowed+1)-th best
     * impostor must fall below t, so t is the next float above it; equal
     * scores above it can only lower the count further. */
    long long allowed = (long long)floor(target_fmr * (double)nimp);
    float t = nextafterf(imp[allowed], INFINITY);
    long long acc = 0;
    for (long long i = 0; i < nimp && imp[i] >= t; i++)
        acc++;
    long gen = 0, rej = 0;
    for (long i = 0; i < s.nsame; i++) {
        const cal_img *a = &s.imgs[s.same[i][0]], *b = &s.imgs[s.same[i][1]];
        if (!a->usable || !b->usable)
            continue;
        gen++;
        if (fpay_embedding_cosine(a->e, b->e, FPAY_EMBED_DIM) < t)
            rej++;
    }
    out->threshold = t;
    out->impostor_pairs = nimp;
    out->impostor_accepts = acc;
    out->fmr = (double)acc / (double)nimp;
    out->genuine_pairs = gen;
    out->genuine_rejects = rej;
    out->fnmr = gen ? (double)rej / (double)gen : 0.0;
    /* Every same-person pair of the usable images, listed or not. */
    long long gen_all = 0, rej_all = 0;
    for (int i = 0; i < s.n; i++)
        for (int j = i + 1; j < s.n; j++)
            if (s.imgs[i].usable && s.imgs[j].usable && s.imgs[i].ident == s.imgs[j].ident) {
                gen_all++;
                rej_all += fpay_embedding_cosine(s.imgs[i].e, s.imgs[j].e, FPAY_EMBED_DIM) < t;
            }
    out->genuine_pairs_all = gen_all;
    out->genuine_rejects_all = rej_all;
    out->fnmr_all = gen_all ? (double)rej_all / (double)gen_all : 0.0;
out:
    free(imp);
    free(ws);
    free(tids);
    cal_set_free(&s);
    pthread_mutex_destroy(&s.mu);
    return st;
}
