/*
 * face_commands.c - the face pipeline's commands of the facepay CLI:
 *
 *   facepay detect [OPTIONS] IMAGE [--annotate OUT.png]
 *   facepay embed [OPTIONS] [--whole] [--model PATH] IMAGE
 *   facepay compare [OPTIONS] IMAGE_A IMAGE_B
 *   facepay eval [OPTIONS] --pairs FILE --root DIR [--roc OUT.svg]
 *
 * OPTIONS: --models DIR, --backend B, --threads N (eval: workers),
 *          --profile default|kiosk|mobile, --min-face PX,
 *          --liveness on|off.
 * Failures print one line "facepay: ..." on stderr and exit 1 (2 for usage).
 */
#define _POSIX_C_SOURCE 200809L
#include "face_commands.h"

#include "facepay/facepay.h"
#include "facepay/pipeline.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FACEPAY_DEFAULT_MODELS_DIR
#define FACEPAY_DEFAULT_MODELS_DIR "models"
#endif

#define EXIT_USAGE 2

const char *const fpay_face_usage =
    "  detect [OPTS] IMAGE [--annotate OUT.png]\n"
    "                          MTCNN faces, the chosen payer, quality and\n"
    "                          liveness; --annotate draws them into a PNG\n"
    "  embed [OPTS] [--whole] [--model PATH] IMAGE\n"
    "                          detect, align to 112x112, run MobileFaceNet and\n"
    "                          print the embedding (--whole: resize the whole\n"
    "                          image instead, for tight face crops)\n"
    "  compare [OPTS] IMAGE_A IMAGE_B\n"
    "                          cosine score, quality and liveness of each\n"
    "  eval [OPTS] --pairs FILE --root DIR [--roc OUT.svg]\n"
    "                          LFW pairs (View 1 'N' or View 2 'FOLDS N'):\n"
    "                          accuracy, ROC AUC, EER, TAR at FAR 1e-2/1e-3\n"
    "  OPTS: --models DIR --backend B --threads N --profile default|kiosk|mobile\n"
    "        --min-face PX --liveness on|off\n";

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("facepay: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

/* ---------------------------------------------------------- options */

typedef struct opts {
    fpay_pipeline_config cfg;
    char models_dir[4096];
    const char *backend;
    int workers;
    const char *annotate, *model, *pairs, *root, *roc;
    int whole;
    const char *args[4];
    int nargs;
} opts;

static int parse_opts(int argc, char **argv, opts *o, int want_args, const char *cmd)
{
    memset(o, 0, sizeof *o);
    fpay_pipeline_config_init(&o->cfg, FPAY_CAMERA_DEFAULT);
    const char *env = getenv("FACEPAY_MODELS_DIR");
    snprintf(o->models_dir, sizeof o->models_dir, "%s",
             env && *env ? env : FACEPAY_DEFAULT_MODELS_DIR);
    int min_face = -1, liveness = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const int has = i + 1 < argc;
        if (!strcmp(a, "--models") && has) {
            snprintf(o->models_dir, sizeof o->models_dir, "%s", argv[++i]);
        } else if (!strcmp(a, "--backend") && has) {
            o->backend = argv[++i];
        } else if (!strcmp(a, "--threads") && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 64)
                return die(EXIT_USAGE, "--threads wants 1..64, got '%s'", argv[i]);
            o->workers = (int)v;
        } else if (!strcmp(a, "--min-face") && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 12 || v > 100000)
                return die(EXIT_USAGE, "--min-face wants pixels >= 12, got '%s'", argv[i]);
            min_face = (int)v;
        } else if (!strcmp(a, "--profile") && has) {
            const char *p = argv[++i];
            fpay_camera_profile prof = !strcmp(p, "default") ? FPAY_CAMERA_DEFAULT
                                       : !strcmp(p, "kiosk")  ? FPAY_CAMERA_KIOSK
                                       : !strcmp(p, "mobile") ? FPAY_CAMERA_MOBILE
                                                              : (fpay_camera_profile)-1;
            if ((int)prof < 0)
                return die(EXIT_USAGE, "--profile wants default, kiosk or mobile, got '%s'", p);
            fpay_pipeline_config_init(&o->cfg, prof);
        } else if (!strcmp(a, "--liveness") && has) {
            const char *v = argv[++i];
            if (strcmp(v, "on") && strcmp(v, "off"))
                return die(EXIT_USAGE, "--liveness wants on or off, got '%s'", v);
            liveness = !strcmp(v, "on");
        } else if (!strcmp(a, "--annotate") && has && !strcmp(cmd, "detect")) {
            o->annotate = argv[++i];
        } else if (!strcmp(a, "--model") && has && !strcmp(cmd, "embed")) {
            o->model = argv[++i];
        } else if (!strcmp(a, "--whole") && !strcmp(cmd, "embed")) {
            o->whole = 1;
        } else if (!strcmp(a, "--pairs") && has && !strcmp(cmd, "eval")) {
            o->pairs = argv[++i];
        } else if (!strcmp(a, "--root") && has && !strcmp(cmd, "eval")) {
            o->root = argv[++i];
        } else if (!strcmp(a, "--roc") && has && !strcmp(cmd, "eval")) {
            o->roc = argv[++i];
        } else if (a[0] == '-' && a[1] == '-') {
            return die(EXIT_USAGE, "%s: unknown or incomplete option '%s'", cmd, a);
        } else {
            if (o->nargs == 4)
                return die(EXIT_USAGE, "%s: too many arguments", cmd);
            o->args[o->nargs++] = a;
        }
    }
    if (o->nargs != want_args)
        return die(EXIT_USAGE, "%s takes %d argument%s, %d given (see facepay --help)", cmd,
                   want_args, want_args == 1 ? "" : "s", o->nargs);
    if (o->model) {
        /* --model names MobileFaceNet; the other models sit next to it. */
        const char *slash = strrchr(o->model, '/');
        if (slash)
            snprintf(o->models_dir, sizeof o->models_dir, "%.*s", (int)(slash - o->model),
                     o->model);
        else
            snprintf(o->models_dir, sizeof o->models_dir, ".");
    }
    if (min_face > 0)
        o->cfg.min_face_px = min_face;
    if (liveness >= 0)
        o->cfg.liveness = liveness;
    o->cfg.models_dir = o->models_dir;
    o->cfg.backend = o->backend;
    return 0;
}

static int make_pipeline(const opts *o, const fpay_pipeline_config *cfg, fpay_pipeline **p)
{
    char err[600];
    fpay_status st = fpay_pipeline_create(cfg ? cfg : &o->cfg, p, err, sizeof err);
    if (st != FPAY_OK)
        return die(1, "%s (%s)", err, fpay_status_str(st));
    return 0;
}

static void print_timings(const fpay_timings *t)
{
    printf("time:       decode %.1f, detect %.1f, select %.2f, align %.2f, quality %.2f, "
           "liveness %.1f, embed %.1f, total %.1f ms\n",
           t->decode, t->detect, t->select, t->align, t->quality, t->liveness, t->embed,
           t->total);
}

static void print_capture(const char *label, const fpay_capture *c, int all_faces)
{
    char q[160];
    printf("%s: %dx%d, %d face%s, result %s\n", label, c->width, c->height, c->face_count,
           c->face_count == 1 ? "" : "s", fpay_face_result_str(c->result));
    for (int i = 0; i < c->faces_stored && (all_faces || i == c->payer); i++) {
        const fpay_face *f = &c->faces[i];
        printf("  face %d%s: box x%.0f..%.0f y%.0f..%.0f score %.3f landmarks", i,
               i == c->payer ? " (payer)" : "", f->x1, f->x2, f->y1, f->y2, f->score);
        for (int k = 0; k < 5; k++)
            printf(" %.1f,%.1f", f->landmarks[2 * k], f->landmarks[2 * k + 1]);
        printf("\n");
    }
    if (c->payer >= 0) {
        fpay_quality_reasons_str(c->quality.reasons, q, sizeof q);
        printf("  quality: %s (eye distance %.1f px, sharpness %.1f, brightness %.1f, "
               "yaw %.1f, pitch %.1f, roll %.1f deg)\n",
               q, c->quality.eye_distance, c->quality.sharpness, c->quality.brightness,
               c->quality.yaw_deg, c->quality.pitch_deg, c->quality.roll_deg);
        static const char *const ls[] = {"not run", "passed (blocks nothing)", "SPOOF",
                                         "too blurry for the model"};
        printf("  liveness: %s", ls[c->liveness.state]);
        if (c->liveness.state != FPAY_LIVENESS_NOT_RUN)
            printf(" (score %.4f, laplacian count %d)", c->liveness.score,
                   c->liveness.laplacian_count);
        printf("\n");
    }
}

/* ---------------------------------------------------------- annotate */

/* A 3x5 font: rows top to bottom, '1' = ink. */
static const char *glyph(char ch)
{
    static const char *const az[26] = {
        "010101111101101", "110101110101110", "011100100100011", "110101101101110",
        "111100110100111", "111100110100100", "011100101101011", "101101111101101",
        "111010010010111", "001001001101010", "101101110101101", "100100100100111",
        "101111111101101", "110101101101101", "010101101101010", "110101110100100",
        "010101101110011", "110101110101101", "011100010001110", "111010010010010",
        "101101101101111", "101101101101010", "101101111111101", "101101010101101",
        "101101010010010", "111001010100111"};
    static const char *const d09[10] = {
        "111101101101111", "010110010010111", "110001010100111", "110001010001110",
        "101101111001001", "111100110001110", "011100111101111", "111001010010010",
        "111101111101111", "111101111001110"};
    if (ch >= 'a' && ch <= 'z')
        return az[ch - 'a'];
    if (ch >= 'A' && ch <= 'Z')
        return az[ch - 'A'];
    if (ch >= '0' && ch <= '9')
        return d09[ch - '0'];
    switch (ch) {
    case '_': return "000000000000111";
    case ',': return "000000000010100";
    case '.': return "000000000000010";
    case '-': return "000000111000000";
    case ':': return "000010000010000";
    default: return "000000000000000";
    }
}

static void put_px(fpay_image *im, int x, int y, const uint8_t c[3])
{
    if (x < 0 || y < 0 || x >= im->width || y >= im->height)
        return;
    memcpy(im->pixels + (size_t)y * (size_t)im->stride + (size_t)x * 3, c, 3);
}

static void fill_rect(fpay_image *im, int x0, int y0, int x1, int y1, const uint8_t c[3])
{
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            put_px(im, x, y, c);
}

static void draw_text(fpay_image *im, int x, int y, int s, const char *text, const uint8_t c[3])
{
    static const uint8_t bg[3] = {0, 0, 0};
    int n = (int)strlen(text);
    fill_rect(im, x - s, y - s, x + n * 4 * s, y + 6 * s, bg);
    for (int i = 0; text[i]; i++) {
        const char *g = glyph(text[i]);
        for (int r = 0; r < 5; r++)
            for (int k = 0; k < 3; k++)
                if (g[r * 3 + k] == '1')
                    fill_rect(im, x + (i * 4 + k) * s, y + r * s, x + (i * 4 + k) * s + s - 1,
                              y + r * s + s - 1, c);
    }
}

static int write_annotated(const char *path, const fpay_image *img, const fpay_capture *c)
{
    fpay_image im = *img;
    im.stride = img->width * 3;
    im.pixels = malloc((size_t)img->width * (size_t)img->height * 3);
    if (!im.pixels)
        return die(1, "%s: out of memory", path);
    for (int y = 0; y < img->height; y++)
        memcpy(im.pixels + (size_t)y * (size_t)im.stride,
               img->pixels + (size_t)y * (size_t)img->stride, (size_t)im.stride);
    const int side = img->width > img->height ? img->width : img->height;
    const int s = side / 400 > 1 ? side / 400 : 1; /* line width and font scale */
    static const uint8_t green[3] = {0, 230, 0}, red[3] = {240, 40, 40},
                         yellow[3] = {255, 230, 0}, cyan[3] = {0, 220, 255};
    for (int i = c->faces_stored - 1; i >= 0; i--) {
        const fpay_face *f = &c->faces[i];
        const uint8_t *col = i == c->payer ? green : red;
        int x1 = (int)f->x1, y1 = (int)f->y1, x2 = (int)f->x2, y2 = (int)f->y2;
        fill_rect(&im, x1, y1, x2, y1 + s - 1, col);
        fill_rect(&im, x1, y2 - s + 1, x2, y2, col);
        fill_rect(&im, x1, y1, x1 + s - 1, y2, col);
        fill_rect(&im, x2 - s + 1, y1, x2, y2, col);
        for (int k = 0; k < 5; k++) {
            int lx = (int)lrintf(f->landmarks[2 * k]), ly = (int)lrintf(f->landmarks[2 * k + 1]);
            fill_rect(&im, lx - 2 * s, ly - s / 2, lx + 2 * s, ly + s / 2, cyan);
            fill_rect(&im, lx - s / 2, ly - 2 * s, lx + s / 2, ly + 2 * s, cyan);
        }
        char label[200];
        if (i == c->payer) {
            char q[160];
            fpay_quality_reasons_str(c->quality.reasons, q, sizeof q);
            snprintf(label, sizeof label, "payer %s q:%s", fpay_face_result_str(c->result), q);
        } else {
            snprintf(label, sizeof label, "face %d", i);
        }
        int ty = y1 - 8 * s;
        draw_text(&im, x1 + s, ty < s ? y2 + 3 * s : ty, s, label, i == c->payer ? yellow : red);
    }
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)im.width;
    png.height = (png_uint_32)im.height;
    png.format = PNG_FORMAT_RGB;
    int ok = png_image_write_to_file(&png, path, 0, im.pixels, im.stride, NULL);
    free(im.pixels);
    if (!ok)
        return die(1, "%s: cannot write PNG (%s)", path, png.message);
    png_image_free(&png);
    return 0;
}

/* ---------------------------------------------------------- detect */

int fpay_cmd_detect(int argc, char **argv)
{
    opts o;
    int rc = parse_opts(argc, argv, &o, 1, "detect");
    if (rc)
        return rc;
    o.cfg.embed = 0;
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    fpay_image img = {0};
    char err[512];
    if (!c)
        return die(1, "out of memory");
    if ((rc = make_pipeline(&o, NULL, &p)))
        goto out;
    double t0 = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t0 = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    }
    fpay_status st = fpay_image_load_file(o.args[0], &o.cfg.limits, &img, err, sizeof err);
    if (st != FPAY_OK) {
        rc = die(1, "%s (%s)", err, fpay_status_str(st));
        goto out;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double decode = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6 - t0;
    if ((st = fpay_pipeline_process_image(p, &img, c)) != FPAY_OK) {
        rc = die(1, "%s: %s (%s)", o.args[0], fpay_pipeline_errmsg(p), fpay_status_str(st));
        goto out;
    }
    c->timings.decode = decode;
    c->timings.total += decode;
    print_capture(o.args[0], c, 1);
    print_timings(&c->timings);
    if (o.annotate && !(rc = write_annotated(o.annotate, &img, c)))
        printf("annotated:  %s\n", o.annotate);
out:
    fpay_image_free(&img);
    fpay_pipeline_free(p);
    free(c);
    return rc;
}

/* ---------------------------------------------------------- embed */

static void print_embedding(const float *e, float raw_norm)
{
    printf("embedding:  %d-d, raw L2 norm %.6f\n", FPAY_EMBED_DIM, raw_norm);
    printf("normalized:");
    for (int k = 0; k < FPAY_EMBED_DIM; k++)
        printf("%s%.6f", k % 8 ? " " : "\n  ", e[k]);
    printf("\n");
}

int fpay_cmd_embed(int argc, char **argv)
{
    opts o;
    int rc = parse_opts(argc, argv, &o, 1, "embed");
    if (rc)
        return rc;
    o.cfg.embed_rejected = 1; /* print the embedding, say what the gate thinks */
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    fpay_image img = {0};
    char err[512];
    if (!c)
        return die(1, "out of memory");
    fpay_status st = fpay_image_load_file(o.args[0], &o.cfg.limits, &img, err, sizeof err);
    if (st != FPAY_OK) {
        rc = die(1, "%s (%s)", err, fpay_status_str(st));
        goto out;
    }
    if (o.whole)
        o.cfg.liveness = 0;
    if ((rc = make_pipeline(&o, NULL, &p)))
        goto out;
    printf("image:      %s (%dx%d)\n", o.args[0], img.width, img.height);
    printf("model:      MobileFaceNet sha256 %s\n", fpay_pipeline_model_sha256(p));
    if (o.whole) {
        uint8_t crop[FPAY_ALIGNED_SIDE * FPAY_ALIGNED_SIDE * 3];
        float e[FPAY_EMBED_DIM], norm;
        fpay_image_resize_bilinear(&img, FPAY_ALIGNED_SIDE, FPAY_ALIGNED_SIDE, crop);
        if ((st = fpay_pipeline_embed_aligned(p, crop, 1, e, &norm)) != FPAY_OK) {
            rc = die(1, "%s (%s)", fpay_pipeline_errmsg(p), fpay_status_str(st));
            goto out;
        }
        printf("crop:       whole image resized to 112x112 (no detection)\n");
        print_embedding(e, norm);
        goto out;
    }
    if ((st = fpay_pipeline_process_image(p, &img, c)) != FPAY_OK) {
        rc = die(1, "%s: %s (%s)", o.args[0], fpay_pipeline_errmsg(p), fpay_status_str(st));
        goto out;
    }
    if (c->payer < 0) {
        rc = die(1, "%s: no face found (for a tight face crop use --whole)", o.args[0]);
        goto out;
    }
    print_capture(o.args[0], c, 0);
    print_embedding(c->embedding, c->embedding_raw_norm);
    print_timings(&c->timings);
out:
    fpay_image_free(&img);
    fpay_pipeline_free(p);
    free(c);
    return rc;
}

/* ---------------------------------------------------------- compare */

int fpay_cmd_compare(int argc, char **argv)
{
    opts o;
    int rc = parse_opts(argc, argv, &o, 2, "compare");
    if (rc)
        return rc;
    o.cfg.embed_rejected = 1;
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(2 * sizeof *c);
    if (!c)
        return die(1, "out of memory");
    if ((rc = make_pipeline(&o, NULL, &p)))
        goto out;
    for (int i = 0; i < 2; i++) {
        fpay_status st = fpay_pipeline_process_file(p, o.args[i], &c[i]);
        if (st != FPAY_OK) {
            rc = die(1, "%s (%s)", fpay_pipeline_errmsg(p), fpay_status_str(st));
            goto out;
        }
        print_capture(i ? "B" : "A", &c[i], 0);
        print_timings(&c[i].timings);
    }
    if (!c[0].has_embedding || !c[1].has_embedding) {
        rc = die(1, "no face found in %s", !c[0].has_embedding ? o.args[0] : o.args[1]);
        goto out;
    }
    float cos = fpay_embedding_cosine(c[0].embedding, c[1].embedding, FPAY_EMBED_DIM);
    printf("cosine:     %.4f (model %.16s...)\n", cos, c[0].model_sha256);
    printf("decision:   both captures %s\n",
           c[0].result == FPAY_FACE_OK && c[1].result == FPAY_FACE_OK
               ? "usable"
               : "NOT usable for payment (see results above)");
out:
    fpay_pipeline_free(p);
    free(c);
    return rc;
}

/* ---------------------------------------------------------- eval */

typedef struct pair_rec {
    int a, b;                  /* image indices */
    int same;
    int fold;
} pair_rec;

typedef struct img_rec {
    char *path;
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
    if (!r->path)
        return -1;
    return s->nimgs++;
}

static int read_pairs(const char *file, const char *root, eval_set *s)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return die(1, "%s: %s", file, strerror(errno));
    char line[1024];
    int folds = 0, per = 0, rc = 0;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return die(1, "%s: empty pairs file", file);
    }
    int k = sscanf(line, "%d %d", &folds, &per);
    if (k == 1) {
        per = folds;
        folds = 0;
    }
    if (k < 1 || per < 1 || per > 100000 || folds < 0 || folds > 100) {
        fclose(f);
        return die(1, "%s: first line must be 'N' (View 1) or 'FOLDS N' (View 2)", file);
    }
    const int nf = folds ? folds : 1;
    s->folds = folds;
    s->npairs = 2 * per * nf;
    s->pairs = calloc((size_t)s->npairs, sizeof *s->pairs);
    if (!s->pairs) {
        fclose(f);
        return die(1, "out of memory");
    }
    for (int i = 0; i < s->npairs; i++) {
        char n1[256], n2[256];
        int i1, i2, i3;
        if (!fgets(line, sizeof line, f)) {
            rc = die(1, "%s: %d pairs announced, file ends after %d", file, s->npairs, i);
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        const int same = (i % (2 * per)) < per;
        pair_rec *p = &s->pairs[i];
        p->same = same;
        p->fold = i / (2 * per);
        if (same ? sscanf(line, "%255s %d %d", n1, &i1, &i2) != 3
                 : sscanf(line, "%255s %d %255s %d", n1, &i1, n2, &i3) != 4) {
            rc = die(1, "%s: line %d is not a %s pair: %.60s", file, i + 2,
                     same ? "'name i j'" : "'name1 i name2 j'", line);
            break;
        }
        p->a = find_or_add(s, root, n1, i1);
        p->b = same ? find_or_add(s, root, n1, i2) : find_or_add(s, root, n2, i3);
        if (p->a < 0 || p->b < 0) {
            rc = die(1, "out of memory");
            break;
        }
    }
    fclose(f);
    return rc;
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

static void write_roc_svg(const char *path, const roc_pt *r, int n, double auc, double eer)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        die(1, "%s: %s", path, strerror(errno));
        return;
    }
    const double W = 480, H = 400, L = 60, T = 20, PW = 400, PH = 340;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
               "font-family='sans-serif' font-size='11'>\n", W, H);
    fprintf(f, "<rect x='%.0f' y='%.0f' width='%.0f' height='%.0f' fill='none' stroke='black'/>\n",
            L, T, PW, PH);
    /* x: log10 FAR from 1e-4 to 1; y: TAR 0.8 .. 1 would hide failures, so 0..1. */
    for (int e = -4; e <= 0; e++) {
        double x = L + (e + 4) / 4.0 * PW;
        fprintf(f, "<line x1='%.1f' y1='%.0f' x2='%.1f' y2='%.0f' stroke='#ddd'/>"
                   "<text x='%.1f' y='%.0f' text-anchor='middle'>1e%d</text>\n",
                x, T, x, T + PH, x, T + PH + 14, e);
    }
    for (int k = 0; k <= 10; k += 2) {
        double y = T + PH - k / 10.0 * PH;
        fprintf(f, "<line x1='%.0f' y1='%.1f' x2='%.0f' y2='%.1f' stroke='#ddd'/>"
                   "<text x='%.0f' y='%.1f' text-anchor='end'>%.1f</text>\n",
                L, y, L + PW, y, L - 4, y + 4, k / 10.0);
    }
    fprintf(f, "<polyline fill='none' stroke='#c00' stroke-width='1.5' points='");
    for (int i = 0; i < n; i++) {
        double far = r[i].far < 1e-4 ? 1e-4 : r[i].far;
        double x = L + (log10(far) + 4) / 4.0 * PW, y = T + PH - r[i].tar * PH;
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fprintf(f, "'/>\n<text x='%.0f' y='%.0f' text-anchor='middle'>false accept rate (log)</text>\n",
            L + PW / 2, H - 6);
    fprintf(f, "<text x='14' y='%.0f' transform='rotate(-90 14 %.0f)' text-anchor='middle'>"
               "true accept rate</text>\n", T + PH / 2, T + PH / 2);
    fprintf(f, "<text x='%.0f' y='%.0f'>AUC %.4f, EER %.2f%%</text>\n</svg>\n", L + PW - 150,
            T + PH - 20, auc, 100 * eer);
    fclose(f);
}

int fpay_cmd_eval(int argc, char **argv)
{
    opts o;
    int rc = parse_opts(argc, argv, &o, 0, "eval");
    if (rc)
        return rc;
    if (!o.pairs || !o.root)
        return die(EXIT_USAGE, "eval needs --pairs FILE and --root DIR");
    eval_set s;
    memset(&s, 0, sizeof s);
    scored *v = NULL, *tmp = NULL;
    roc_pt *roc = NULL;
    if ((rc = read_pairs(o.pairs, o.root, &s)))
        goto out;
    int nw = o.workers;
    if (nw <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        nw = nc > 0 ? (int)(nc < 16 ? nc : 16) : 1;
    }
    printf("pairs:      %s: %d pairs (%d same, %d different), %s, %d distinct images\n",
           o.pairs, s.npairs, s.npairs / 2, s.npairs / 2,
           s.folds ? "View 2 with folds" : "View 1 (no folds)", s.nimgs);
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
                return die(1, "cannot start a thread");
        }
        for (int i = 0; i < nw; i++)
            pthread_join(th[i], NULL);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int i = 0; i < nw; i++)
            if (ws[i].rc) {
                rc = die(1, "%s", ws[i].err);
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
        rc = die(1, "out of memory");
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
        write_roc_svg(o.roc, roc, nroc, auc, eer);
        printf("ROC:        %s\n", o.roc);
    }
out:
    for (int i = 0; i < s.nimgs; i++)
        free(s.imgs[i].path);
    free(s.imgs);
    free(s.pairs);
    free(v);
    free(tmp);
    free(roc);
    return rc;
}
