/*
 * face_commands.c - the face pipeline's commands of the facepay CLI:
 *
 *   facepay detect [OPTIONS] IMAGE [--annotate OUT.png]
 *   facepay embed [OPTIONS] [--whole] [--model PATH] IMAGE
 *   facepay compare [OPTIONS] [--threshold T] IMAGE_A IMAGE_B
 *   facepay align [OPTIONS] IMAGE OUT.png
 *   facepay eval [OPTIONS] --pairs FILE --root DIR [--roc OUT.svg]
 *                [--threshold T] [--fmr F] [--enroll K[,K...]] [--flip]
 *                [--dump FILE]
 *                                            (its code is in face_eval.c)
 *
 * OPTIONS: --models DIR, --backend B, --threads N (threads per session;
 *          eval: workers, one single-threaded pipeline each),
 *          --profile default|kiosk|mobile, --min-face PX,
 *          --liveness on|off.
 * Failures print one line "facepay: ..." on stderr and exit 1 (2 for usage).
 */
#define _POSIX_C_SOURCE 200809L
#include "cli_util.h"
#include "face_commands.h"
#include "face_common.h"

#include "facepay/facepay.h"
#include "facepay/pipeline.h"
#include "facepay/service.h" /* FPAY_DEFAULT_THRESHOLD */

#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FACEPAY_DEFAULT_MODELS_DIR
#define FACEPAY_DEFAULT_MODELS_DIR "models"
#endif

const char *const fpay_face_usage =
    "  detect [OPTS] IMAGE [--annotate OUT.png]\n"
    "                          MTCNN faces, the chosen payer, quality and\n"
    "                          liveness; --annotate draws them into a PNG\n"
    "  embed [OPTS] [--whole] [--model PATH] IMAGE\n"
    "                          detect, align to 112x112, run MobileFaceNet and\n"
    "                          print the embedding (--whole: resize the whole\n"
    "                          image instead, for tight face crops)\n"
    "  compare [OPTS] [--threshold T] IMAGE_A IMAGE_B\n"
    "                          cosine score, quality and liveness of each, and\n"
    "                          a same/different verdict at the threshold\n"
    "  align [OPTS] IMAGE OUT.png\n"
    "                          write the payer's aligned 112x112 crop (what\n"
    "                          MobileFaceNet sees) as a PNG\n"
    "  eval [OPTS] --pairs FILE --root DIR [--roc OUT.svg] [--threshold T]\n"
    "       [--fmr F] [--enroll K[,K...]] [--flip] [--dump FILE]\n"
    "                          LFW pairs (View 1 'N' or View 2 'FOLDS N'):\n"
    "                          accuracy, ROC AUC, EER, TAR at FAR 1e-2/1e-3;\n"
    "                          --threshold: also the accuracy at cosine T (a\n"
    "                          threshold chosen on another pairs file); FNMR at\n"
    "                          FMR 1e-4/1e-5/1e-6 over every pair of the images;\n"
    "                          --enroll: templates of K photos\n"
    "  OPTS: --models DIR --backend B --threads N --profile default|kiosk|mobile\n"
    "        --min-face PX --liveness on|off\n";

#define FACE_OPTS_HELP                                                        \
    "options (all face commands):\n"                                         \
    "  --models DIR        folder of the five .tflite models (default:\n"      \
    "                      $FACEPAY_MODELS_DIR, else the build's models/)\n"   \
    "  --backend B         auto (default), cpu, or a plugin: xnnpack, onednn,\n" \
    "                      vulkan (see facepay backends)\n"                    \
    "  --threads N         threads per session, 1..64 (eval: workers)\n"       \
    "  --profile P         camera profile: default, kiosk or mobile\n"         \
    "  --min-face PX       smallest face to look for, in pixels (>= 12)\n"     \
    "  --liveness on|off   run the anti-spoofing model on the payer\n"         \
    "  -h, --help          this text\n"

static const struct {
    const char *cmd, *text;
} face_help[] = {
    {"detect",
     "usage: facepay detect [OPTIONS] IMAGE [--annotate OUT.png]\n"
     "\n"
     "Runs MTCNN on a JPEG or PNG, picks the payer (largest, most central\n"
     "face), and prints every face found, the payer's quality gate and its\n"
     "liveness score. Exit 0 when the pipeline ran, whatever it found.\n"
     "\n"
     "  --annotate OUT.png  also write the image with boxes and landmarks\n"
     FACE_OPTS_HELP},
    {"embed",
     "usage: facepay embed [OPTIONS] [--whole] [--model PATH] IMAGE\n"
     "\n"
     "Detects the payer, aligns it to 112x112, runs MobileFaceNet and prints\n"
     "the L2-normalised 192-value embedding with the stage timings.\n"
     "\n"
     "  --whole             resize the whole image to 112x112 instead of\n"
     "                      detecting (for tight face crops)\n"
     "  --model PATH        MobileFaceNet file; the other models are taken\n"
     "                      from its folder\n"
     FACE_OPTS_HELP},
    {"compare",
     "usage: facepay compare [OPTIONS] [--threshold T] IMAGE_A IMAGE_B\n"
     "\n"
     "Embeds the payer of both images and prints their cosine similarity,\n"
     "with the quality and liveness of each capture, which capture (if any)\n"
     "would not be usable for a payment and why, and a verdict: SAME person\n"
     "when the cosine reaches the threshold, else DIFFERENT. Exit 0 when\n"
     "both images were read, whatever the verdict.\n"
     "\n"
     "  --threshold T       cosine threshold, in (0, 1] (default: the shipped\n"
     "                      threshold for a false match rate of 1e-4; a\n"
     "                      database's calibrated threshold: facepay\n"
     "                      calibrate)\n"
     FACE_OPTS_HELP},
    {"align",
     "usage: facepay align [OPTIONS] IMAGE OUT.png\n"
     "\n"
     "Detects the payer, aligns it on its five landmarks and writes the\n"
     "112x112 RGB crop that MobileFaceNet embeds, as a PNG. Prints the\n"
     "capture's result; a capture that would be refused is still written.\n"
     "Fails when no face is found.\n"
     "\n"
     FACE_OPTS_HELP},
    {"eval",
     "usage: facepay eval [OPTIONS] --pairs FILE --root DIR [--roc OUT.svg]\n"
     "                    [--threshold T] [--fmr F] [--enroll K[,K...]]\n"
     "                    [--flip] [--dump FILE]\n"
     "\n"
     "Verification accuracy on an LFW-style pairs file (View 1 'N' or\n"
     "View 2 'FOLDS N' header): accuracy, ROC AUC, EER, TAR at FAR 1e-2 and\n"
     "1e-3 over the listed pairs. Then, over every pair of the listed images\n"
     "(impostors: every cross-identity pair; genuines: every same-identity\n"
     "pair, and the listed ones): for FMR 1e-4, 1e-5 and 1e-6 the threshold\n"
     "(smallest cosine that at most floor(FMR x impostors) impostors reach),\n"
     "how many impostors reach it, and the FNMR; 'not measurable' when\n"
     "FMR x impostors < 1.\n"
     "\n"
     "  --pairs FILE        the pairs file\n"
     "  --root DIR          folder holding <name>/<name>_<NNNN>.jpg\n"
     "  --roc OUT.svg       also draw the ROC curve\n"
     "  --threshold T       also the accuracy at cosine T (chosen on another\n"
     "                      pairs file)\n"
     "  --fmr F             one more FMR to report, in (0, 1)\n"
     "  --enroll K[,K...]   multi-capture protocol: per person with more than\n"
     "                      K photos, the template is the normalised mean of\n"
     "                      the first K by file name; the other photos are\n"
     "                      genuine probes, every photo of another person an\n"
     "                      impostor probe; FNMR at the same FMRs. With\n"
     "                      several K, each smaller K again on the people\n"
     "                      and probes of the largest (same probes, only\n"
     "                      the template differs)\n"
     "  --flip              average each embedding with that of the mirrored\n"
     "                      aligned crop (normalised)\n"
     "  --dump FILE         write one line per image, tab-separated: path,\n"
     "                      identity, usable (1 = face embedded; 0 = the\n"
     "                      values are 0), 192 floats; a header line first\n"
     FACE_OPTS_HELP},
};

const char *fpay_face_help(const char *cmd)
{
    for (size_t i = 0; i < sizeof face_help / sizeof face_help[0]; i++)
        if (!strcmp(cmd, face_help[i].cmd))
            return face_help[i].text;
    return NULL;
}

/* ---------------------------------------------------------- options */

int fpay_face_parse_opts(int argc, char **argv, opts *o, int want_args, const char *cmd)
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
                return fpay_cli_die(EXIT_USAGE, "--threads wants 1..64, got '%s'", argv[i]);
            o->workers = (int)v;
        } else if (!strcmp(a, "--min-face") && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 12 || v > 100000)
                return fpay_cli_die(EXIT_USAGE, "--min-face wants pixels >= 12, got '%s'",
                                     argv[i]);
            min_face = (int)v;
        } else if (!strcmp(a, "--profile") && has) {
            const char *p = argv[++i];
            fpay_camera_profile prof;
            if (fpay_cli_parse_profile(p, &prof))
                return fpay_cli_die(EXIT_USAGE,
                                     "--profile wants default, kiosk or mobile, got '%s'", p);
            fpay_pipeline_config_init(&o->cfg, prof);
        } else if (!strcmp(a, "--liveness") && has) {
            const char *v = argv[++i];
            if (strcmp(v, "on") && strcmp(v, "off"))
                return fpay_cli_die(EXIT_USAGE, "--liveness wants on or off, got '%s'", v);
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
        } else if (!strcmp(a, "--dump") && has && !strcmp(cmd, "eval")) {
            o->dump = argv[++i];
        } else if (!strcmp(a, "--flip") && !strcmp(cmd, "eval")) {
            o->flip = 1;
        } else if (!strcmp(a, "--enroll") && has && !strcmp(cmd, "eval")) {
            /* K or a list K,K,... : each K is its own protocol run on the
             * same embeddings. */
            const char *v = argv[++i];
            char *end = (char *)v;
            do {
                const char *start = *end == ',' ? end + 1 : end;
                long k = strtol(start, &end, 10);
                if (end == start || k < 1 || k > 1000 || o->nenroll == 8)
                    return fpay_cli_die(EXIT_USAGE,
                                         "--enroll wants K or K,K,... (1..1000, at most 8), got '%s'",
                                         v);
                o->enroll[o->nenroll++] = (int)k;
            } while (*end == ',');
            if (*end)
                return fpay_cli_die(EXIT_USAGE,
                                     "--enroll wants K or K,K,... (1..1000, at most 8), got '%s'", v);
        } else if (!strcmp(a, "--fmr") && has && !strcmp(cmd, "eval")) {
            char *end;
            double v = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(v > 0 && v < 1))
                return fpay_cli_die(EXIT_USAGE, "--fmr wants a rate in (0, 1), got '%s'", argv[i]);
            o->fmr_extra = v;
        } else if (!strcmp(a, "--threshold") && has && !strcmp(cmd, "eval")) {
            char *end;
            float v = strtof(argv[++i], &end);
            if (end == argv[i] || *end || !(v >= -1.0f && v <= 1.0f))
                return fpay_cli_die(EXIT_USAGE, "--threshold wants a cosine in -1..1, got '%s'",
                                     argv[i]);
            o->threshold = v;
            o->has_threshold = 1;
        } else if (!strcmp(a, "--threshold") && has && !strcmp(cmd, "compare")) {
            /* A decision threshold: 0 or below would call everyone the same. */
            char *end;
            float v = strtof(argv[++i], &end);
            if (end == argv[i] || *end || !(v > 0.0f && v <= 1.0f))
                return fpay_cli_die(EXIT_USAGE, "--threshold wants a cosine in (0, 1], got '%s'",
                                     argv[i]);
            o->threshold = v;
            o->has_threshold = 1;
        } else if (a[0] == '-' && a[1] == '-') {
            return fpay_cli_die(EXIT_USAGE, "%s: unknown or incomplete option '%s'", cmd, a);
        } else {
            if (o->nargs == 4)
                return fpay_cli_die(EXIT_USAGE, "%s: too many arguments", cmd);
            o->args[o->nargs++] = a;
        }
    }
    if (o->nargs != want_args)
        return fpay_cli_die(EXIT_USAGE, "%s takes %d argument%s, %d given (see facepay --help)",
                             cmd, want_args, want_args == 1 ? "" : "s", o->nargs);
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
    /* eval runs --threads pipelines of one thread each; the others run one
     * pipeline with --threads threads per session. */
    if (o->workers > 0 && strcmp(cmd, "eval") != 0)
        o->cfg.threads = o->workers;
    return 0;
}

static int make_pipeline(const opts *o, const fpay_pipeline_config *cfg, fpay_pipeline **p)
{
    char err[600];
    fpay_status st = fpay_pipeline_create(cfg ? cfg : &o->cfg, p, err, sizeof err);
    if (st != FPAY_OK)
        return fpay_cli_die(1, "%s (%s)%s", err, fpay_status_str(st),
                            fpay_cli_next_step(st, err));
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
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

/* Width in pixels of text at scale s, its black margin included. */
static int text_width(const char *text, int s) { return ((int)strlen(text) * 4 + 1) * s; }

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

/* 8-bit RGB pixels to a PNG file; 0, or the exit code after saying why. */
static int write_png_rgb(const char *path, const uint8_t *pixels, int width, int height,
                         int stride)
{
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)width;
    png.height = (png_uint_32)height;
    png.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&png, path, 0, pixels, stride, NULL))
        return fpay_cli_die(1, "%s: cannot write PNG (%s)", path, png.message);
    png_image_free(&png);
    return 0;
}

static int write_annotated(const char *path, const fpay_image *img, const fpay_capture *c)
{
    fpay_image im = *img;
    im.stride = img->width * 3;
    im.pixels = malloc((size_t)img->width * (size_t)img->height * 3);
    if (!im.pixels)
        return fpay_cli_die(1, "%s: out of memory", path);
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
        /* Above the box, else below it, else inside its top; shifted left
         * (never past the left edge) so that it ends inside the image, and
         * at a smaller scale when even the whole width is too narrow. */
        int ts = s;
        while (ts > 1 && text_width(label, ts) > im.width)
            ts--;
        int ty = y1 - 8 * ts;
        if (ty < ts)
            ty = y2 + 3 * ts + 6 * ts < im.height ? y2 + 3 * ts : (y1 > 0 ? y1 : 0) + 2 * ts;
        int tx = x1 + ts;
        if (tx + text_width(label, ts) > im.width)
            tx = im.width - text_width(label, ts);
        if (tx < ts)
            tx = ts;
        draw_text(&im, tx, ty, ts, label, i == c->payer ? yellow : red);
    }
    int rc = write_png_rgb(path, im.pixels, im.width, im.height, im.stride);
    free(im.pixels);
    return rc;
}

/* ---------------------------------------------------------- detect */

int fpay_cmd_detect(int argc, char **argv)
{
    opts o;
    int rc = fpay_face_parse_opts(argc, argv, &o, 1, "detect");
    if (rc)
        return rc;
    o.cfg.embed = 0;
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    fpay_image img = {0};
    char err[512];
    if (!c)
        return fpay_cli_die(1, "out of memory");
    if ((rc = make_pipeline(&o, NULL, &p)))
        goto out;
    double t0 = now_ms();
    fpay_status st = fpay_image_load_file(o.args[0], &o.cfg.limits, &img, err, sizeof err);
    if (st != FPAY_OK) {
        rc = fpay_cli_die(1, "%s (%s)", err, fpay_status_str(st));
        goto out;
    }
    double decode = now_ms() - t0;
    if ((st = fpay_pipeline_process_image(p, &img, c)) != FPAY_OK) {
        rc = fpay_cli_die(1, "%s: %s (%s)", o.args[0], fpay_pipeline_errmsg(p),
                           fpay_status_str(st));
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
    int rc = fpay_face_parse_opts(argc, argv, &o, 1, "embed");
    if (rc)
        return rc;
    o.cfg.embed_rejected = 1; /* print the embedding, say what the gate thinks */
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    fpay_image img = {0};
    char err[512];
    if (!c)
        return fpay_cli_die(1, "out of memory");
    double t0 = now_ms();
    fpay_status st = fpay_image_load_file(o.args[0], &o.cfg.limits, &img, err, sizeof err);
    if (st != FPAY_OK) {
        rc = fpay_cli_die(1, "%s (%s)", err, fpay_status_str(st));
        goto out;
    }
    double decode = now_ms() - t0;
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
            rc = fpay_cli_die(1, "%s (%s)", fpay_pipeline_errmsg(p), fpay_status_str(st));
            goto out;
        }
        printf("crop:       whole image resized to 112x112 (no detection)\n");
        print_embedding(e, norm);
        goto out;
    }
    if ((st = fpay_pipeline_process_image(p, &img, c)) != FPAY_OK) {
        rc = fpay_cli_die(1, "%s: %s (%s)", o.args[0], fpay_pipeline_errmsg(p),
                           fpay_status_str(st));
        goto out;
    }
    if (c->payer < 0) {
        rc = fpay_cli_die(1, "%s: no face found (for a tight face crop use --whole)", o.args[0]);
        goto out;
    }
    c->timings.decode = decode;
    c->timings.total += decode;
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
    int rc = fpay_face_parse_opts(argc, argv, &o, 2, "compare");
    if (rc)
        return rc;
    o.cfg.embed_rejected = 1;
    const float threshold = o.has_threshold ? o.threshold : FPAY_DEFAULT_THRESHOLD;
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(2 * sizeof *c);
    if (!c)
        return fpay_cli_die(1, "out of memory");
    if ((rc = make_pipeline(&o, NULL, &p)))
        goto out;
    for (int i = 0; i < 2; i++) {
        fpay_status st = fpay_pipeline_process_file(p, o.args[i], &c[i]);
        if (st != FPAY_OK) {
            rc = fpay_cli_die(1, "%s (%s)", fpay_pipeline_errmsg(p), fpay_status_str(st));
            goto out;
        }
        print_capture(i ? "B" : "A", &c[i], 0);
        print_timings(&c[i].timings);
    }
    for (int i = 0; i < 2; i++)
        if (!c[i].has_embedding) {
            rc = fpay_cli_die(1, "no face found in %s (%s): nothing to compare", o.args[i],
                               i ? "B" : "A");
            goto out;
        }
    float cos = fpay_embedding_cosine(c[0].embedding, c[1].embedding, FPAY_EMBED_DIM);
    printf("cosine:     %.4f (model %.16s...)\n", cos, c[0].model_sha256);
    printf("verdict:    %s (cosine %.4f %s threshold %.4f%s)\n",
           cos >= threshold ? "SAME person" : "DIFFERENT people", cos,
           cos >= threshold ? ">=" : "<", threshold,
           o.has_threshold ? ", from --threshold" : ", the shipped default for FMR 1e-4");
    for (int i = 0; i < 2; i++) {
        if (c[i].result == FPAY_FACE_OK)
            printf("capture %s:  usable for payment\n", i ? "B" : "A");
        else
            printf("capture %s:  NOT usable for payment: %s (%s)\n", i ? "B" : "A",
                   fpay_face_result_str(c[i].result), o.args[i]);
    }
out:
    fpay_pipeline_free(p);
    free(c);
    return rc;
}

/* ---------------------------------------------------------- align */

int fpay_cmd_align(int argc, char **argv)
{
    opts o;
    int rc = fpay_face_parse_opts(argc, argv, &o, 2, "align");
    if (rc)
        return rc;
    /* The crop is what is wanted; the embedding and liveness are not. */
    o.cfg.embed = 0;
    o.cfg.liveness = 0;
    fpay_pipeline *p = NULL;
    fpay_capture *c = malloc(sizeof *c);
    if (!c)
        return fpay_cli_die(1, "out of memory");
    if ((rc = make_pipeline(&o, NULL, &p)))
        goto out;
    fpay_status st = fpay_pipeline_process_file(p, o.args[0], c);
    if (st != FPAY_OK) {
        rc = fpay_cli_die(1, "%s (%s)", fpay_pipeline_errmsg(p), fpay_status_str(st));
        goto out;
    }
    if (c->payer < 0) {
        rc = fpay_cli_die(1, "%s: no face found, nothing to align", o.args[0]);
        goto out;
    }
    print_capture(o.args[0], c, 0);
    if ((rc = write_png_rgb(o.args[1], c->aligned, FPAY_ALIGNED_SIDE, FPAY_ALIGNED_SIDE,
                            FPAY_ALIGNED_SIDE * 3)))
        goto out;
    printf("aligned:    %s (%dx%d RGB, payer's five landmarks on the template)\n", o.args[1],
           FPAY_ALIGNED_SIDE, FPAY_ALIGNED_SIDE);
out:
    fpay_pipeline_free(p);
    free(c);
    return rc;
}
