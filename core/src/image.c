/*
 * image.c - JPEG and PNG decoding to 8-bit RGB, EXIF orientation, and the
 * half-pixel bilinear resize the models' preprocessing uses.
 *
 * Every byte handed to fpay_image_decode is treated as hostile: the size
 * limits are checked against the header before any pixel buffer exists, both
 * libraries report errors through longjmp back to us (never exit(), never
 * stderr), and anything libjpeg would merely warn about (truncation, corrupt
 * entropy data) is an error, because a silently grey-filled face must never
 * reach the matcher.
 *
 * setjmp rules: every value that changes between setjmp and a longjmp lives
 * in a context struct reached through a pointer, never in a local of the
 * function that called setjmp (C11 7.13.2.1p3).
 */
#include "graph.h"

#include "fpay_simd.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>

/* A progressive JPEG re-reads its whole coefficient buffer for every scan, so
 * the number of scans, not the file size, bounds the decode time: a few KB
 * of tiny scans can cost seconds. libjpeg's default progressive script has
 * 10 scans; camera and web files stay far below 100. */
#define FPAY_JPEG_MAX_SCANS 100

void fpay_image_limits_init(fpay_image_limits *limits)
{
    if (!limits)
        return;
    limits->max_bytes = (size_t)4 << 20;
    limits->max_side = 4096;
    limits->max_pixels = 12000000;
}

void fpay_image_free(fpay_image *image)
{
    if (!image)
        return;
    free(image->pixels);
    image->pixels = NULL;
    image->width = image->height = image->stride = 0;
}

/* The dimension checks shared by both formats, run on header values only. */
static fpay_status check_dims(const char *fmt, int64_t w, int64_t h,
                              const fpay_image_limits *lim, char *err,
                              size_t err_len)
{
    if (w <= 0 || h <= 0) {
        fpay_set_err(err, err_len, "%s: image has a zero size (%lldx%lld)", fmt,
                     (long long)w, (long long)h);
        return FPAY_IMAGE_INVALID;
    }
    if (w > lim->max_side || h > lim->max_side) {
        fpay_set_err(err, err_len, "%s: %lldx%lld exceeds the side limit %d",
                     fmt, (long long)w, (long long)h, lim->max_side);
        return FPAY_LIMIT_EXCEEDED;
    }
    if (w * h > lim->max_pixels) {
        fpay_set_err(err, err_len,
                     "%s: %lldx%lld = %lld pixels exceeds the limit %lld", fmt,
                     (long long)w, (long long)h, (long long)(w * h),
                     (long long)lim->max_pixels);
        return FPAY_LIMIT_EXCEEDED;
    }
    return FPAY_OK;
}

/* ------------------------------------------------------------ EXIF */

static unsigned rd16(const uint8_t *p, int le)
{
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8
              : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
                    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Orientation (tag 0x0112 in IFD0) from a TIFF block, 1 when absent or out of
 * range. Every offset is checked against n before it is read: the block
 * comes straight from the file. */
static int tiff_orientation(const uint8_t *p, size_t n)
{
    int le;
    if (n < 8)
        return 1;
    if (p[0] == 'I' && p[1] == 'I')
        le = 1;
    else if (p[0] == 'M' && p[1] == 'M')
        le = 0;
    else
        return 1;
    if (rd16(p + 2, le) != 42)
        return 1;
    uint32_t ifd = rd32(p + 4, le);
    if (ifd > n || n - ifd < 2)
        return 1;
    size_t count = rd16(p + ifd, le);
    size_t room = (n - ifd - 2) / 12; /* whole entries that fit */
    if (count > room)
        count = room;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *e = p + ifd + 2 + 12 * i;
        if (rd16(e, le) != 0x0112)
            continue;
        unsigned type = rd16(e + 2, le);
        uint32_t v;
        if (type == 3) /* SHORT, as the standard says */
            v = rd16(e + 8, le);
        else if (type == 4) /* LONG, written by a few tools */
            v = rd32(e + 8, le);
        else
            return 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* Rotates/flips img so that it displays upright for EXIF orientation o
 * (2..8). Needs a second buffer: the decode already passed the pixel limit,
 * and a transposed copy is simpler to get right than an in-place cycle. */
static fpay_status apply_orientation(fpay_image *img, int o, char *err,
                                     size_t err_len)
{
    const int w = img->width, h = img->height;
    const int transposed = o >= 5;
    const int ow = transposed ? h : w, oh = transposed ? w : h;
    uint8_t *dst = malloc((size_t)ow * (size_t)oh * 3);
    if (!dst) {
        fpay_set_err(err, err_len, "out of memory rotating a %dx%d image", w, h);
        return FPAY_OUT_OF_MEMORY;
    }
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy; /* source pixel shown at (x, y) */
            switch (o) {
            case 2: sx = w - 1 - x; sy = y; break;             /* mirror */
            case 3: sx = w - 1 - x; sy = h - 1 - y; break;     /* 180 */
            case 4: sx = x; sy = h - 1 - y; break;             /* flip */
            case 5: sx = y; sy = x; break;                     /* transpose */
            case 6: sx = y; sy = h - 1 - x; break;             /* 90 cw */
            case 7: sx = w - 1 - y; sy = h - 1 - x; break;     /* transverse */
            default: sx = w - 1 - y; sy = x; break;            /* 8: 90 ccw */
            }
            const uint8_t *s = img->pixels + (size_t)sy * (size_t)img->stride +
                               (size_t)sx * 3;
            uint8_t *d = dst + ((size_t)y * (size_t)ow + (size_t)x) * 3;
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
    free(img->pixels);
    img->pixels = dst;
    img->width = ow;
    img->height = oh;
    img->stride = ow * 3;
    return FPAY_OK;
}

/* ------------------------------------------------------------ JPEG */

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    fpay_status fail;   /* status returned after a longjmp */
    uint8_t *pixels;    /* owned until handed to the caller */
    char *err;
    size_t err_len;
} jpeg_ctx;

/* Every failure after setjmp leaves through here, so the cleanup exists
 * once, in decode_jpeg: the message is already in c->err. */
_Noreturn static void jpeg_stop(jpeg_ctx *c, fpay_status st)
{
    c->fail = st;
    longjmp(c->jb, 1);
}

/* libjpeg's error_exit: must not return. */
static void jpeg_fail(j_common_ptr cinfo)
{
    jpeg_ctx *c = cinfo->client_data;
    char msg[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, msg);
    fpay_set_err(c->err, c->err_len, "JPEG: %s", msg);
    jpeg_stop(c, FPAY_IMAGE_INVALID);
}

/* libjpeg reports truncation and corrupt entropy data as warnings (level -1)
 * and then decodes grey filler. We stop instead, as TurboJPEG does with
 * TJFLAG_STOPONWARNING; trace messages (level >= 0) are dropped. */
static void jpeg_emit(j_common_ptr cinfo, int msg_level)
{
    if (msg_level < 0)
        jpeg_fail(cinfo);
}

/* Silences the default handler, which writes to stderr. */
static void jpeg_output(j_common_ptr cinfo) { (void)cinfo; }

/* Called before every chunk of input is consumed: stops files with more
 * scans than any encoder writes before they burn seconds of CPU. */
static void jpeg_scan_guard(j_common_ptr cinfo)
{
    jpeg_ctx *c = cinfo->client_data;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > FPAY_JPEG_MAX_SCANS) {
        fpay_set_err(c->err, c->err_len, "JPEG: more than %d scans",
                     FPAY_JPEG_MAX_SCANS);
        jpeg_stop(c, FPAY_LIMIT_EXCEEDED);
    }
}

/* Orientation from the first APP1 "Exif" segment saved by libjpeg. */
static int jpeg_orientation(j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
            memcmp(m->data, "Exif\0\0", 6) == 0)
            return tiff_orientation(m->data + 6, m->data_length - 6);
    }
    return 1;
}

static fpay_status decode_jpeg(jpeg_ctx *c, const uint8_t *data, size_t size,
                               const fpay_image_limits *lim, fpay_image *out,
                               int *orientation)
{
    j_decompress_ptr cinfo = &c->cinfo;

    cinfo->err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpeg_fail;
    c->jerr.emit_message = jpeg_emit;
    c->jerr.output_message = jpeg_output;
    /* Before create: libjpeg keeps err and client_data across it, and its
     * own failures already go through jpeg_fail. */
    cinfo->client_data = c;
    if (setjmp(c->jb)) {
        jpeg_destroy_decompress(cinfo);
        free(c->pixels);
        c->pixels = NULL;
        return c->fail;
    }
    jpeg_create_decompress(cinfo);
    c->progress.progress_monitor = jpeg_scan_guard;
    cinfo->progress = &c->progress;
    /* The caller has refused sizes above ULONG_MAX. */
    jpeg_mem_src(cinfo, data, (unsigned long)size);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);

    if (jpeg_read_header(cinfo, TRUE) != JPEG_HEADER_OK) {
        fpay_set_err(c->err, c->err_len, "JPEG: tables only, no image");
        jpeg_stop(c, FPAY_IMAGE_INVALID);
    }
    fpay_status st = check_dims("JPEG", cinfo->image_width,
                                cinfo->image_height, lim, c->err, c->err_len);
    if (st != FPAY_OK)
        jpeg_stop(c, st);
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        fpay_set_err(c->err, c->err_len,
                     "JPEG: CMYK images are not supported (convert to RGB)");
        jpeg_stop(c, FPAY_IMAGE_INVALID);
    default:
        fpay_set_err(c->err, c->err_len,
                     "JPEG: unsupported colour space with %d components",
                     cinfo->num_components);
        jpeg_stop(c, FPAY_IMAGE_INVALID);
    }
    *orientation = jpeg_orientation(cinfo);

    cinfo->out_color_space = JCS_RGB;
    jpeg_start_decompress(cinfo);
    if (cinfo->output_components != 3 ||
        cinfo->output_width != cinfo->image_width ||
        cinfo->output_height != cinfo->image_height) {
        fpay_set_err(c->err, c->err_len, "JPEG: unexpected output format");
        jpeg_stop(c, FPAY_IMAGE_INVALID);
    }
    const size_t stride = (size_t)cinfo->output_width * 3;
    c->pixels = malloc(stride * cinfo->output_height);
    if (!c->pixels) {
        fpay_set_err(c->err, c->err_len, "JPEG: out of memory for %ux%u",
                     cinfo->output_width, cinfo->output_height);
        jpeg_stop(c, FPAY_OUT_OF_MEMORY);
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = c->pixels + stride * cinfo->output_scanline;
        /* With an in-memory source libjpeg never suspends, so 0 rows means
         * the library is in a state we do not understand: stop. */
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
            fpay_set_err(c->err, c->err_len, "JPEG: decoder stalled");
            jpeg_stop(c, FPAY_IMAGE_INVALID);
        }
    }
    /* Reads up to EOI, so a file cut after the last scanline still fails. */
    jpeg_finish_decompress(cinfo);

    out->width = (int)cinfo->output_width;
    out->height = (int)cinfo->output_height;
    out->stride = (int)stride;
    out->pixels = c->pixels;
    c->pixels = NULL;
    jpeg_destroy_decompress(cinfo);
    return FPAY_OK;
}

/* ------------------------------------------------------------- PNG */

typedef struct png_ctx {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size, pos;
    fpay_status fail;   /* status returned after a longjmp */
    uint8_t *pixels;    /* owned until handed to the caller */
    png_bytep *rows;
    char *err;
    size_t err_len;
} png_ctx;

/* Every failure after setjmp leaves through here (see jpeg_stop). */
_Noreturn static void png_stop(png_ctx *c, fpay_status st)
{
    c->fail = st;
    png_longjmp(c->png, 1);
}

/* libpng's error function: must not return. */
static void png_fail(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    fpay_set_err(c->err, c->err_len, "PNG: %s", msg);
    png_stop(c, FPAY_IMAGE_INVALID);
}

/* Warnings (bad ancillary CRC, odd gamma, ...) do not change the pixels we
 * keep, so they are dropped rather than printed. */
static void png_warn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep dst, size_t len)
{
    png_ctx *c = png_get_io_ptr(png);
    if (len > c->size - c->pos)
        png_error(png, "truncated data");
    memcpy(dst, c->data + c->pos, len);
    c->pos += len;
}

static void png_ctx_destroy(png_ctx *c)
{
    png_destroy_read_struct(&c->png, c->info ? &c->info : NULL, NULL);
    free(c->rows);
    c->rows = NULL;
    free(c->pixels);
    c->pixels = NULL;
}

static fpay_status decode_png(png_ctx *c, const fpay_image_limits *lim,
                              fpay_image *out)
{
    c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_fail,
                                    png_warn);
    if (!c->png) {
        fpay_set_err(c->err, c->err_len, "PNG: out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    c->info = png_create_info_struct(c->png);
    if (!c->info) {
        fpay_set_err(c->err, c->err_len, "PNG: out of memory");
        png_ctx_destroy(c);
        return FPAY_OUT_OF_MEMORY;
    }
    if (setjmp(png_jmpbuf(c->png))) {
        png_ctx_destroy(c);
        return c->fail;
    }
    png_set_read_fn(c->png, c, png_read_mem);
    /* Our own limits decide the size, with their own status; libpng's
     * default cap (1,000,000 per side) would only blur that message. */
    png_set_user_limits(c->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    /* Skip every ancillary chunk but tRNS: text, ICC profiles and the like
     * are compressed sub-formats we would parse only to throw away. */
    png_set_keep_unknown_chunks(c->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);

    /* png_read_info reads on to the first IDAT: for a header that merely
     * claims a huge size that may be the whole file, so the claim is
     * checked first. libpng accepts only files whose first chunk is IHDR,
     * so these are the dimensions it would use. */
    if (c->size >= 24 && memcmp(c->data + 12, "IHDR", 4) == 0) {
        fpay_status st = check_dims("PNG", rd32(c->data + 16, 0),
                                    rd32(c->data + 20, 0), lim, c->err,
                                    c->err_len);
        if (st != FPAY_OK)
            png_stop(c, st);
    }
    png_read_info(c->png, c->info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &color, &interlace, NULL,
                 NULL);
    fpay_status st = check_dims("PNG", w, h, lim, c->err, c->err_len);
    if (st != FPAY_OK)
        png_stop(c, st);

    /* Everything becomes 8-bit RGB: palette and low-depth grey expand,
     * 16-bit drops its low byte, alpha (tRNS included) is dropped rather
     * than composited, since faces are never meant to be transparent. */
    png_set_expand(c->png);
    png_set_strip_16(c->png);
    png_set_strip_alpha(c->png);
    if (!(color & PNG_COLOR_MASK_COLOR))
        png_set_gray_to_rgb(c->png);
    (void)png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    if (png_get_channels(c->png, c->info) != 3 ||
        png_get_bit_depth(c->png, c->info) != 8 ||
        png_get_rowbytes(c->png, c->info) != (size_t)w * 3) {
        fpay_set_err(c->err, c->err_len, "PNG: unexpected output format");
        png_stop(c, FPAY_IMAGE_INVALID);
    }

    const size_t stride = (size_t)w * 3;
    c->pixels = malloc(stride * h);
    c->rows = malloc(sizeof *c->rows * h);
    if (!c->pixels || !c->rows) {
        fpay_set_err(c->err, c->err_len, "PNG: out of memory for %ux%u",
                     (unsigned)w, (unsigned)h);
        png_stop(c, FPAY_OUT_OF_MEMORY);
    }
    for (png_uint_32 y = 0; y < h; y++)
        c->rows[y] = c->pixels + stride * y;
    png_read_image(c->png, c->rows);
    /* Reads to IEND, so a file cut after the pixel data still fails. */
    png_read_end(c->png, NULL);

    out->width = (int)w;
    out->height = (int)h;
    out->stride = (int)stride;
    out->pixels = c->pixels;
    c->pixels = NULL;
    png_ctx_destroy(c);
    return FPAY_OK;
}

/* ----------------------------------------------------------- entry */

static fpay_status resolve_limits(const fpay_image_limits *limits,
                                  fpay_image_limits *lim, char *err,
                                  size_t err_len)
{
    if (!limits) {
        fpay_image_limits_init(lim);
        return FPAY_OK;
    }
    if (limits->max_bytes == 0 || limits->max_side <= 0 ||
        limits->max_pixels <= 0) {
        fpay_set_err(err, err_len, "image limits must all be positive");
        return FPAY_INVALID_ARGUMENT;
    }
    *lim = *limits;
    return FPAY_OK;
}

fpay_status fpay_image_decode(const void *data, size_t size,
                              const fpay_image_limits *limits, fpay_image *out,
                              char *err, size_t err_len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A,
                                       '\n'};
    fpay_image_limits lim;
    if (!out || (!data && size > 0)) {
        fpay_set_err(err, err_len, "image decode: NULL %s",
                     out ? "data" : "output");
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_status st = resolve_limits(limits, &lim, err, err_len);
    if (st != FPAY_OK)
        return st;
    if (size == 0) {
        fpay_set_err(err, err_len, "image is empty (0 bytes)");
        return FPAY_IMAGE_INVALID;
    }
    if (size > lim.max_bytes || size > ULONG_MAX) {
        fpay_set_err(err, err_len, "image is %zu bytes, over the limit of %zu",
                     size, lim.max_bytes);
        return FPAY_LIMIT_EXCEEDED;
    }

    const uint8_t *p = data;
    fpay_image img = {0, 0, 0, NULL};
    if (size >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) {
        jpeg_ctx c;
        memset(&c, 0, sizeof c);
        c.err = err;
        c.err_len = err_len;
        int orientation = 1;
        st = decode_jpeg(&c, p, size, &lim, &img, &orientation);
        if (st == FPAY_OK && orientation != 1) {
            st = apply_orientation(&img, orientation, err, err_len);
            if (st != FPAY_OK)
                fpay_image_free(&img);
        }
    } else if (size >= sizeof png_sig && memcmp(p, png_sig, sizeof png_sig) == 0) {
        png_ctx c;
        memset(&c, 0, sizeof c);
        c.data = p;
        c.size = size;
        c.err = err;
        c.err_len = err_len;
        st = decode_png(&c, &lim, &img);
    } else {
        fpay_set_err(err, err_len,
                     "not a JPEG or PNG image (unrecognised first bytes)");
        return FPAY_IMAGE_INVALID;
    }
    if (st == FPAY_OK)
        *out = img;
    return st;
}

fpay_status fpay_image_load_file(const char *path,
                                 const fpay_image_limits *limits,
                                 fpay_image *out, char *err, size_t err_len)
{
    fpay_image_limits lim;
    if (!path || !out) {
        fpay_set_err(err, err_len, "image load: NULL %s", path ? "output" : "path");
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_status st = resolve_limits(limits, &lim, err, err_len);
    if (st != FPAY_OK)
        return st;

    /* Only a regular file: a FIFO with no writer would block the open for
     * ever, and a device or a pipe need not end. */
    FILE *f;
    int oe = fpay_open_regular(path, &f);
    if (oe) {
        fpay_set_err(err, err_len, "cannot open '%s': %s", path,
                     oe < 0 ? "not a regular file" : strerror(oe));
        return FPAY_IO_ERROR;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fpay_set_err(err, err_len, "cannot stat '%s': %s", path, strerror(errno));
        fclose(f);
        return FPAY_IO_ERROR;
    }
    /* A regular file announces its size: refuse before reading a byte. */
    if (S_ISREG(sb.st_mode) && (uintmax_t)sb.st_size > lim.max_bytes) {
        fpay_set_err(err, err_len, "'%s' is %jd bytes, over the limit of %zu",
                     path, (intmax_t)sb.st_size, lim.max_bytes);
        fclose(f);
        return FPAY_LIMIT_EXCEEDED;
    }
    /* It may still grow while read: read at most max_bytes + 1 and let the
     * extra byte tell us the input is too long. */
    size_t cap = S_ISREG(sb.st_mode) ? (size_t)sb.st_size + 1 : 65536;
    if (cap > lim.max_bytes + 1)
        cap = lim.max_bytes + 1;
    size_t len = 0;
    uint8_t *buf = malloc(cap);
    st = FPAY_OK;
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break; /* end of file or error, told apart below */
        if (cap == lim.max_bytes + 1) {
            fpay_set_err(err, err_len, "'%s' is over the limit of %zu bytes",
                         path, lim.max_bytes);
            st = FPAY_LIMIT_EXCEEDED;
            break;
        }
        size_t ncap = cap * 2 > lim.max_bytes + 1 ? lim.max_bytes + 1 : cap * 2;
        uint8_t *nb = realloc(buf, ncap);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap = ncap;
    }
    if (!buf) {
        fpay_set_err(err, err_len, "out of memory reading '%s'", path);
        fclose(f);
        return FPAY_OUT_OF_MEMORY;
    }
    if (st == FPAY_OK && ferror(f)) {
        fpay_set_err(err, err_len, "cannot read '%s': %s", path, strerror(errno));
        st = FPAY_IO_ERROR;
    }
    fclose(f);
    if (st == FPAY_OK) {
        /* Prefix decode errors with the file name so CLI users see which
         * input failed. */
        char inner[256] = "";
        st = fpay_image_decode(buf, len, &lim, out, inner, sizeof inner);
        if (st != FPAY_OK)
            fpay_set_err(err, err_len, "%s: %s", path, inner);
    }
    free(buf);
    return st;
}

/* --------------------------------------------------------- resize */

/* The kernels (kernels/ref/image_ref.c: fpay_ref_u8_resize_bilinear, and
 * its SIMD versions, bit-exact with it) compute in double in the oracle's
 * order: source coordinate (i + 0.5) * (in / out) - 0.5 clamped to the edge
 * pixels, horizontal then vertical interpolation, round half up. The
 * horizontal tap table lives on the stack for outputs up to 256 wide (every
 * crop of the pipeline), on the heap beyond (pyramid levels). */
enum { RESIZE_STACK_W = 256 };

fpay_status fpay_image_resize_bilinear(const fpay_image *in, int out_w,
                                       int out_h, uint8_t *out)
{
    if (!in || !in->pixels || !out || in->width <= 0 || in->height <= 0 ||
        in->stride < 3 * in->width || out_w <= 0 || out_h <= 0)
        return FPAY_INVALID_ARGUMENT;
    _Alignas(64) unsigned char stack[(RESIZE_STACK_W * 3 + 15) / 16 * 16 * 24];
    void *mem = stack;
    if (fpay_resize_xtab_bytes(out_w) > sizeof stack &&
        !(mem = malloc(fpay_resize_xtab_bytes(out_w))))
        return FPAY_OUT_OF_MEMORY;
    fpay_resize_xtab xt;
    fpay_resize_xtab_fill(in->width, out_w, mem, &xt);
    const fpay_resize_args a = {in->pixels, in->width, in->height, (size_t)in->stride,
                                out, out_w, out_h, (size_t)out_w * 3, &xt};
    fpay_u8_resize_bilinear_run(fpay_image_isa(), &a);
    if (mem != stack)
        free(mem);
    return FPAY_OK;
}
