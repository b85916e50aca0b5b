/*
 * test_image.c - JPEG/PNG decoding, limits, EXIF orientation, broken input
 * and the bilinear resize.
 *
 * Fixtures live in tests/data/images (made by make_fixtures.sh there) and
 * tests/data/faces; the oracle's preprocessed inputs in tests/data/golden
 * pin the decode + resize path to the last bit.
 */
#include <criterion/criterion.h>

#include "facepay/facepay.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

/* ------------------------------------------------------------ helpers */

typedef struct blob {
    uint8_t *data;
    size_t size;
} blob;

static blob load(const char *rel)
{
    blob b = {NULL, 0};
    b.data = fpay_test_read_file(fpay_test_data_path(rel), &b.size);
    cr_assert_not_null(b.data, "missing fixture %s", rel);
    return b;
}

static const uint8_t *px(const fpay_image *im, int x, int y)
{
    return im->pixels + (size_t)y * (size_t)im->stride + (size_t)x * 3;
}

static void decode_ok(const blob *b, fpay_image *im)
{
    char err[256] = "";
    fpay_status st = fpay_image_decode(b->data, b->size, NULL, im, err,
                                       sizeof err);
    cr_assert_eq(st, FPAY_OK, "decode failed: %s (%s)", fpay_status_str(st),
                 err);
    cr_assert_not_null(im->pixels);
    cr_assert_geq(im->stride, 3 * im->width);
}

/* The four colours of the "quad" fixture (32x16, 16x8 quadrants). */
static const uint8_t RED[3] = {255, 0, 0}, GREEN[3] = {0, 255, 0},
                     BLUE[3] = {0, 0, 255}, WHITE[3] = {255, 255, 255};

static const uint8_t *quad_colour(int x, int y)
{
    if (y < 8)
        return x < 16 ? RED : GREEN;
    return x < 16 ? BLUE : WHITE;
}

static int near(const uint8_t *p, const uint8_t *c, int tol)
{
    for (int i = 0; i < 3; i++)
        if (abs((int)p[i] - (int)c[i]) > tol)
            return 0;
    return 1;
}

/* Checks every pixel of an unrotated quad against its colour. */
static void assert_quad(const fpay_image *im, int tol)
{
    cr_assert_eq(im->width, 32);
    cr_assert_eq(im->height, 16);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 32; x++) {
            const uint8_t *p = px(im, x, y);
            cr_assert(near(p, quad_colour(x, y), tol),
                      "pixel (%d,%d) = %d,%d,%d", x, y, p[0], p[1], p[2]);
        }
}

/* Colour at the centre of each quadrant of a w x h image. */
static void assert_corners(const fpay_image *im, const uint8_t *tl,
                           const uint8_t *tr, const uint8_t *bl,
                           const uint8_t *br)
{
    int w = im->width, h = im->height;
    cr_assert(near(px(im, w / 4, h / 4), tl, 3), "top-left");
    cr_assert(near(px(im, 3 * w / 4, h / 4), tr, 3), "top-right");
    cr_assert(near(px(im, w / 4, 3 * h / 4), bl, 3), "bottom-left");
    cr_assert(near(px(im, 3 * w / 4, 3 * h / 4), br, 3), "bottom-right");
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ------------------------------------------------------- real decodes */

Test(image, png_rgb_exact)
{
    blob b = load("images/quad.png");
    fpay_image im;
    decode_ok(&b, &im);
    cr_assert_eq(im.stride, 96);
    assert_quad(&im, 0);
    fpay_image_free(&im);
    free(b.data);
}

Test(image, jpeg_baseline_and_progressive)
{
    blob b = load("images/quad.jpg");
    blob p = load("images/quad_progressive.jpg");
    fpay_image a, c;
    decode_ok(&b, &a);
    decode_ok(&p, &c);
    /* Quality 100, 4:4:4, block-aligned flat colours: near exact. */
    assert_quad(&a, 3);
    /* jpegtran -progressive is lossless: the same coefficients, so the same
     * pixels to the byte. */
    cr_assert_eq(c.width, a.width);
    cr_assert_eq(c.height, a.height);
    for (int y = 0; y < a.height; y++)
        cr_assert_eq(memcmp(px(&a, 0, y), px(&c, 0, y), (size_t)a.width * 3),
                     0, "row %d differs", y);
    fpay_image_free(&a);
    fpay_image_free(&c);
    free(b.data);
    free(p.data);
}

Test(image, grayscale_png_gives_equal_channels)
{
    blob b = load("images/gray8.png");
    fpay_image im;
    decode_ok(&b, &im);
    cr_assert_eq(im.width, 32);
    cr_assert_eq(im.height, 16);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 32; x++) {
            const uint8_t *p = px(&im, x, y);
            uint8_t g = (uint8_t)((x * 8 + y * 4) & 255);
            cr_assert(p[0] == g && p[1] == g && p[2] == g,
                      "(%d,%d) = %d,%d,%d, want %d", x, y, p[0], p[1], p[2], g);
        }
    fpay_image_free(&im);
    free(b.data);
}

Test(image, grayscale_jpeg_gives_equal_channels)
{
    blob b = load("images/gray.jpg");
    fpay_image im;
    decode_ok(&b, &im);
    for (int y = 0; y < im.height; y++)
        for (int x = 0; x < im.width; x++) {
            const uint8_t *p = px(&im, x, y);
            cr_assert(p[0] == p[1] && p[1] == p[2]);
        }
    fpay_image_free(&im);
    free(b.data);
}

Test(image, palette_alpha_and_16bit_become_rgb8)
{
    fpay_image im;
    blob b = load("images/palette_trns.png");
    decode_ok(&b, &im);
    assert_quad(&im, 0); /* tRNS dropped, palette expanded */
    fpay_image_free(&im);
    free(b.data);

    b = load("images/rgba.png");
    decode_ok(&b, &im);
    assert_quad(&im, 0); /* alpha dropped, not composited */
    fpay_image_free(&im);
    free(b.data);

    b = load("images/gray_alpha16.png");
    decode_ok(&b, &im);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 32; x++) {
            const uint8_t *p = px(&im, x, y);
            /* stored as (g << 8 | 0x7f): the high byte survives */
            uint8_t g = (uint8_t)((x * 8 + y * 4) & 255);
            cr_assert(p[0] == g && p[1] == g && p[2] == g, "(%d,%d)", x, y);
        }
    fpay_image_free(&im);
    free(b.data);
}

Test(image, cmyk_jpeg_refused_clearly)
{
    blob b = load("images/cmyk.jpg");
    fpay_image im = {7, 7, 21, NULL};
    char err[256] = "";
    cr_assert_eq(fpay_image_decode(b.data, b.size, NULL, &im, err, sizeof err),
                 FPAY_IMAGE_INVALID);
    cr_assert_not_null(strstr(err, "CMYK"), "message: %s", err);
    cr_assert_eq(im.width, 7, "out must be untouched on failure");
    free(b.data);
}

/* The face images other tests use, with their known sizes. */
Test(image, face_fixtures_decode)
{
    static const struct {
        const char *file;
        int w, h;
    } faces[] = {
        {"faces/amy1.png", 150, 150},
        {"faces/obama.jpg", 910, 1137},
        {"faces/Tom_Cruise_0001.jpg", 250, 250},
        {"faces/Tom_Cruise_avp_2014_4.jpg", 565, 800},
    };
    for (size_t i = 0; i < sizeof faces / sizeof faces[0]; i++) {
        fpay_image im;
        char err[256] = "";
        fpay_status st = fpay_image_load_file(
            fpay_test_data_path(faces[i].file), NULL, &im, err, sizeof err);
        cr_assert_eq(st, FPAY_OK, "%s: %s", faces[i].file, err);
        cr_assert_eq(im.width, faces[i].w, "%s", faces[i].file);
        cr_assert_eq(im.height, faces[i].h, "%s", faces[i].file);
        fpay_image_free(&im);
    }
}

/* -------------------------------------------------------------- EXIF */

Test(image, exif_fixtures_6_and_3)
{
    fpay_image im;
    blob b = load("images/quad_orient6.jpg"); /* big-endian TIFF */
    decode_ok(&b, &im);
    /* Rotated 90 degrees clockwise to display upright (as ImageMagick's
     * -auto-orient shows it): blue top-left, red top-right. */
    cr_assert_eq(im.width, 16);
    cr_assert_eq(im.height, 32);
    cr_assert_eq(im.stride, 48);
    assert_corners(&im, BLUE, RED, WHITE, GREEN);
    fpay_image_free(&im);
    free(b.data);

    b = load("images/quad_orient3.jpg"); /* little-endian TIFF */
    decode_ok(&b, &im);
    cr_assert_eq(im.width, 32);
    cr_assert_eq(im.height, 16);
    assert_corners(&im, WHITE, BLUE, GREEN, RED);
    fpay_image_free(&im);
    free(b.data);
}

/* A JPEG with an APP1 segment spliced in after SOI. tiff/tiff_len is the
 * TIFF block; the segment gets the "Exif\0\0" prefix. */
static blob with_app1(const blob *jpg, const uint8_t *tiff, size_t tiff_len)
{
    blob o;
    size_t seg = 2 + 2 + 6 + tiff_len;
    o.size = jpg->size + seg;
    o.data = malloc(o.size);
    cr_assert_not_null(o.data);
    uint8_t *p = o.data;
    memcpy(p, jpg->data, 2);
    p += 2;
    *p++ = 0xFF;
    *p++ = 0xE1;
    *p++ = (uint8_t)((seg - 2) >> 8);
    *p++ = (uint8_t)(seg - 2);
    memcpy(p, "Exif\0\0", 6);
    p += 6;
    memcpy(p, tiff, tiff_len);
    p += tiff_len;
    memcpy(p, jpg->data + 2, jpg->size - 2);
    return o;
}

/* TIFF block with IFD0 = {Orientation}, in either byte order. */
static size_t make_tiff(uint8_t *t, int little, unsigned orientation)
{
    const uint8_t le[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0,
                          0x12, 0x01, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                          0, 0, 0, 0};
    const uint8_t be[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                          0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0,
                          0, 0, 0, 0};
    memcpy(t, little ? le : be, sizeof le);
    if (little)
        t[18] = (uint8_t)orientation;
    else
        t[19] = (uint8_t)orientation;
    return sizeof le;
}

/* The test's own model of the orientations, built from two primitives
 * (mirror and 90-degree clockwise rotation) rather than a lookup table. */
static uint8_t *mirror(const uint8_t *s, int w, int h)
{
    uint8_t *d = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            memcpy(d + ((size_t)y * w + x) * 3,
                   s + ((size_t)y * w + (w - 1 - x)) * 3, 3);
    return d;
}

static uint8_t *rot90(const uint8_t *s, int *w, int *h)
{
    int ow = *h, oh = *w;
    uint8_t *d = malloc((size_t)ow * oh * 3);
    /* source (x, y) lands at (h - 1 - y, x) */
    for (int y = 0; y < *h; y++)
        for (int x = 0; x < *w; x++)
            memcpy(d + ((size_t)x * ow + (*h - 1 - y)) * 3,
                   s + ((size_t)y * *w + x) * 3, 3);
    *w = ow;
    *h = oh;
    return d;
}

static uint8_t *oriented(const fpay_image *src, int o, int *w, int *h)
{
    *w = src->width;
    *h = src->height;
    uint8_t *cur = malloc((size_t)*w * *h * 3);
    memcpy(cur, src->pixels, (size_t)*w * *h * 3);
    /* mirror first for 2, 4, 5, 7; then k clockwise quarter turns */
    static const int mir[9] = {0, 0, 1, 0, 1, 1, 0, 1, 0};
    static const int turns[9] = {0, 0, 0, 2, 2, 3, 1, 1, 3};
    if (mir[o]) {
        uint8_t *n = mirror(cur, *w, *h);
        free(cur);
        cur = n;
    }
    for (int k = 0; k < turns[o]; k++) {
        uint8_t *n = rot90(cur, w, h);
        free(cur);
        cur = n;
    }
    return cur;
}

Test(image, exif_all_orientations_both_byte_orders)
{
    blob b = load("images/quad.jpg");
    fpay_image base;
    decode_ok(&b, &base);
    for (int little = 0; little <= 1; little++) {
        for (unsigned o = 1; o <= 8; o++) {
            uint8_t tiff[32];
            size_t n = make_tiff(tiff, little, o);
            blob j = with_app1(&b, tiff, n);
            fpay_image im;
            decode_ok(&j, &im);
            int w, h;
            uint8_t *want = oriented(&base, (int)o, &w, &h);
            cr_assert_eq(im.width, w, "orientation %u", o);
            cr_assert_eq(im.height, h, "orientation %u", o);
            for (int y = 0; y < h; y++)
                cr_assert_eq(memcmp(px(&im, 0, y), want + (size_t)y * w * 3,
                                    (size_t)w * 3),
                             0, "orientation %u (%s), row %d", o,
                             little ? "II" : "MM", y);
            free(want);
            fpay_image_free(&im);
            free(j.data);
        }
    }
    fpay_image_free(&base);
    free(b.data);
}

/* Broken EXIF never fails the decode: the orientation is just ignored. */
Test(image, exif_malformed_is_ignored)
{
    blob b = load("images/quad.jpg");
    uint8_t t[32];
    size_t n = make_tiff(t, 0, 6);
    /* byte offsets are into the big-endian block of make_tiff */
    struct {
        const char *what;
        size_t off;
        uint8_t val;
        int width; /* 16: orientation 6 still applied, 32: ignored */
    } cases[] = {
        {"bad byte order", 0, 'X', 32},
        {"bad magic", 3, 43, 32},
        {"IFD offset past end", 7, 200, 32},
        {"IFD offset at end", 7, 26, 32},
        {"IFD offset one short of the count", 7, 25, 32},
        {"entry count larger than the block", 8, 0xFF, 16},
        {"orientation 0", 19, 0, 32},
        {"orientation 9", 19, 9, 32},
        {"wrong type (ASCII)", 13, 2, 32},
        {"other tag", 11, 0x13, 32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t m[32];
        memcpy(m, t, n);
        m[cases[i].off] = cases[i].val;
        blob j = with_app1(&b, m, n);
        fpay_image im;
        decode_ok(&j, &im);
        cr_assert_eq(im.width, cases[i].width, "%s", cases[i].what);
        fpay_image_free(&im);
        free(j.data);
    }
    /* every truncation of the TIFF block, the orientation entry included */
    for (size_t len = 0; len <= n; len++) {
        blob j = with_app1(&b, t, len);
        fpay_image im;
        decode_ok(&j, &im);
        /* header 8 + count 2 + entry 12: whole from 22 bytes on */
        cr_assert_eq(im.width, len >= 22 ? 16 : 32, "TIFF cut at %zu", len);
        fpay_image_free(&im);
        free(j.data);
    }
    free(b.data);
}

/* ------------------------------------------------------------ limits */

static void expect(const void *data, size_t size,
                   const fpay_image_limits *lim, fpay_status want,
                   const char *what)
{
    fpay_image im = {-1, -1, -1, NULL};
    char err[256] = "";
    fpay_status st = fpay_image_decode(data, size, lim, &im, err, sizeof err);
    cr_assert_eq(st, want, "%s: got %s (%s)", what, fpay_status_str(st), err);
    if (want != FPAY_OK) {
        cr_assert_neq(err[0], '\0', "%s: no message", what);
        cr_assert(im.width == -1 && im.pixels == NULL,
                  "%s: out touched on failure", what);
    } else {
        fpay_image_free(&im);
    }
}

Test(image, limits_defaults)
{
    fpay_image_limits l;
    fpay_image_limits_init(&l);
    cr_assert_eq(l.max_bytes, (size_t)4 << 20);
    cr_assert_eq(l.max_side, 4096);
    cr_assert_eq(l.max_pixels, 12000000);
}

/* Headers alone declare the size: no IDAT follows, so a decoder that got as
 * far as allocating and reading pixels would say IMAGE_INVALID instead. */
Test(image, declared_size_refused_before_allocation)
{
    blob b = load("images/huge_5000x10.png");
    expect(b.data, b.size, NULL, FPAY_LIMIT_EXCEEDED, "5000x10 PNG (side)");
    free(b.data);
    b = load("images/huge_4000x4000.png");
    expect(b.data, b.size, NULL, FPAY_LIMIT_EXCEEDED, "4000x4000 PNG (pixels)");
    free(b.data);

    /* JPEG: patch the SOF dimensions. (libjpeg reads the header up to the
     * first scan before it reports the size, so a file cut inside the
     * header fails as IMAGE_INVALID instead.) */
    b = load("images/quad.jpg");
    size_t sof = 0;
    for (size_t i = 2; i + 9 < b.size; i++)
        if (b.data[i] == 0xFF && (b.data[i + 1] == 0xC0 || b.data[i + 1] == 0xC1)) {
            sof = i;
            break;
        }
    cr_assert_neq(sof, 0u, "no SOF marker in quad.jpg");
    uint8_t *j = malloc(b.size);
    memcpy(j, b.data, b.size);
    j[sof + 7] = 5000 >> 8; /* width */
    j[sof + 8] = 5000 & 0xFF;
    expect(j, b.size, NULL, FPAY_LIMIT_EXCEEDED, "JPEG 5000 wide");
    j[sof + 7] = 0;
    j[sof + 8] = 32;
    j[sof + 5] = 0; /* height 0 */
    j[sof + 6] = 0;
    expect(j, b.size, NULL, FPAY_IMAGE_INVALID, "JPEG height 0");
    free(j);
    free(b.data);
}

Test(image, zero_width_png_refused)
{
    blob b = load("images/quad.png");
    put32be(b.data + 16, 0); /* IHDR width, with a valid CRC */
    put32be(b.data + 29, crc32_png(b.data + 12, 17));
    expect(b.data, b.size, NULL, FPAY_IMAGE_INVALID, "PNG width 0");
    free(b.data);
}

Test(image, custom_limits)
{
    blob b = load("images/quad.jpg");
    fpay_image_limits l;
    fpay_image_limits_init(&l);

    l.max_bytes = b.size - 1;
    expect(b.data, b.size, &l, FPAY_LIMIT_EXCEEDED, "one byte over max_bytes");
    l.max_bytes = b.size;
    expect(b.data, b.size, &l, FPAY_OK, "exactly max_bytes");

    fpay_image_limits_init(&l);
    l.max_side = 31;
    expect(b.data, b.size, &l, FPAY_LIMIT_EXCEEDED, "width 32 > side 31");
    l.max_side = 32;
    expect(b.data, b.size, &l, FPAY_OK, "width 32 = side 32");

    fpay_image_limits_init(&l);
    l.max_pixels = 32 * 16 - 1;
    expect(b.data, b.size, &l, FPAY_LIMIT_EXCEEDED, "pixels");
    l.max_pixels = 32 * 16;
    expect(b.data, b.size, &l, FPAY_OK, "pixels at limit");

    fpay_image_limits_init(&l);
    l.max_side = 0;
    expect(b.data, b.size, &l, FPAY_INVALID_ARGUMENT, "bad limits");
    free(b.data);
}

Test(image, load_file_size_checks)
{
    fpay_image im = {-1, -1, -1, NULL};
    fpay_image_limits l;
    char err[256] = "";
    fpay_image_limits_init(&l);
    l.max_bytes = 100; /* quad.jpg is a few hundred bytes */
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path("images/quad.jpg"),
                                      &l, &im, err, sizeof err),
                 FPAY_LIMIT_EXCEEDED);
    cr_assert_neq(err[0], '\0');

    /* A device is not read at all (it need not end). */
    err[0] = '\0';
    cr_assert_eq(fpay_image_load_file("/dev/zero", &l, &im, err, sizeof err),
                 FPAY_IO_ERROR, "%s", err);
    cr_assert_not_null(strstr(err, "not a regular file"), "%s", err);

    err[0] = '\0';
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path("no/such.jpg"), NULL,
                                      &im, err, sizeof err),
                 FPAY_IO_ERROR);
    cr_assert_not_null(strstr(err, "no/such.jpg"), "%s", err);
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path("images"), NULL, &im,
                                      err, sizeof err),
                 FPAY_IO_ERROR);
    cr_assert_eq(im.width, -1, "out untouched");

    /* A decode failure names the file. */
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path("images/README.md"),
                                      NULL, &im, err, sizeof err),
                 FPAY_IMAGE_INVALID);
    cr_assert_not_null(strstr(err, "README.md"), "%s", err);

    cr_assert_eq(fpay_image_load_file(fpay_test_data_path("images/quad.png"),
                                      NULL, &im, err, sizeof err),
                 FPAY_OK, "%s", err);
    assert_quad(&im, 0);
    fpay_image_free(&im);
    fpay_image_free(&im); /* idempotent */
    fpay_image_free(NULL);
}

Test(image, bad_arguments)
{
    fpay_image im;
    char err[64] = "";
    cr_assert_eq(fpay_image_decode(NULL, 10, NULL, &im, err, sizeof err),
                 FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_image_decode("x", 1, NULL, NULL, NULL, 0),
                 FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_image_load_file(NULL, NULL, &im, NULL, 0),
                 FPAY_INVALID_ARGUMENT);
    /* err may be NULL, or too short for the message */
    cr_assert_eq(fpay_image_decode("x", 1, NULL, &im, NULL, 0),
                 FPAY_IMAGE_INVALID);
    cr_assert_eq(fpay_image_decode("x", 1, NULL, &im, err, 4),
                 FPAY_IMAGE_INVALID);
    cr_assert_eq(strlen(err), 3u);
}

/* A progressive JPEG of the quad pattern with exactly nscans scans (4 to
 * 190): one interleaved DC scan, then each component's AC band split into
 * single-coefficient scans plus a remainder. jpegtran -scans cannot go past
 * 100, hence libjpeg's scan_info here. */
static blob progressive_with_scans(int nscans)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    jpeg_scan_info scans[190];
    cr_assert(nscans >= 4 && nscans <= 190);
    memset(scans, 0, sizeof scans);
    scans[0].comps_in_scan = 3;
    for (int k = 0; k < 3; k++)
        scans[0].component_index[k] = k;
    int left = nscans - 1, s = 1;
    for (int comp = 0; comp < 3; comp++) {
        int bands = left - (2 - comp); /* leave >= 1 band per later comp */
        if (bands > 63)
            bands = 63;
        left -= bands;
        for (int k = 1; k <= bands; k++, s++) {
            scans[s].comps_in_scan = 1;
            scans[s].component_index[0] = comp;
            scans[s].Ss = k;
            scans[s].Se = k == bands ? 63 : k;
        }
    }
    cr_assert_eq(s, nscans);

    unsigned char *buf = NULL;
    unsigned long len = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = 32;
    c.image_height = 16;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    /* 4:4:4 at quality 100 keeps the flat quadrants near exact */
    jpeg_set_quality(&c, 100, TRUE);
    c.comp_info[0].h_samp_factor = 1;
    c.comp_info[0].v_samp_factor = 1;
    c.scan_info = scans;
    c.num_scans = nscans;
    jpeg_start_compress(&c, TRUE);
    uint8_t row[32 * 3];
    while (c.next_scanline < 16) {
        for (int x = 0; x < 32; x++)
            memcpy(row + x * 3, quad_colour(x, (int)c.next_scanline), 3);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    blob b = {buf, len};
    return b;
}

Test(image, progressive_scan_limit)
{
    blob b = progressive_with_scans(100);
    fpay_image im;
    decode_ok(&b, &im);
    assert_quad(&im, 8);
    fpay_image_free(&im);
    free(b.data);

    b = progressive_with_scans(101);
    expect(b.data, b.size, NULL, FPAY_LIMIT_EXCEEDED, "101 scans");
    free(b.data);
    b = progressive_with_scans(190);
    expect(b.data, b.size, NULL, FPAY_LIMIT_EXCEEDED, "190 scans");
    free(b.data);
}

/* ------------------------------------------------------ broken inputs */

/* Any outcome but a crash (ASan watches) is acceptable for mutated data that
 * may still be a valid image; a failure must carry a message, a success a
 * sane image. */
static void decode_any(const uint8_t *data, size_t size, const char *what)
{
    fpay_image_limits l;
    fpay_image_limits_init(&l);
    l.max_side = 1024; /* keeps mutated headers from decoding huge images */
    l.max_pixels = 1 << 20;
    fpay_image im = {-1, -1, -1, NULL};
    char err[256] = "";
    fpay_status st = fpay_image_decode(data, size, &l, &im, err, sizeof err);
    if (st == FPAY_OK) {
        cr_assert(im.width > 0 && im.height > 0 && im.width <= 1024 &&
                      im.height <= 1024 && im.pixels,
                  "%s: bad image", what);
        fpay_image_free(&im);
    } else {
        cr_assert_neq(err[0], '\0', "%s: %s without a message", what,
                      fpay_status_str(st));
        cr_assert_eq(im.width, -1, "%s: out touched on failure", what);
    }
}

static const char *const SMALL_FIXTURES[] = {
    "images/quad.jpg",        "images/quad_progressive.jpg",
    "images/quad_orient6.jpg", "images/gray.jpg",
    "images/quad.png",        "images/palette_trns.png",
    "images/gray_alpha16.png", "images/rgba.png",
};
#define N_SMALL (sizeof SMALL_FIXTURES / sizeof SMALL_FIXTURES[0])

Test(image, every_truncation_fails)
{
    for (size_t f = 0; f < N_SMALL; f++) {
        blob b = load(SMALL_FIXTURES[f]);
        for (size_t n = 0; n < b.size; n++) {
            /* an exact-size copy, so ASan sees any read past the cut */
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, b.data, n);
            char what[128];
            snprintf(what, sizeof what, "%s cut to %zu bytes",
                     SMALL_FIXTURES[f], n);
            fpay_image im = {-1, -1, -1, NULL};
            char err[256] = "";
            fpay_status st = fpay_image_decode(cut, n, NULL, &im, err,
                                               sizeof err);
            cr_assert_neq(st, FPAY_OK, "%s: decoded", what);
            cr_assert_neq(err[0], '\0', "%s: no message", what);
            cr_assert_eq(im.width, -1, "%s: out touched", what);
            free(cut);
        }
        free(b.data);
    }
}

Test(image, random_byte_flips_never_crash)
{
    fpay_test_rng rng;
    fpay_test_rng_seed(&rng, 20251127);
    for (size_t f = 0; f < N_SMALL; f++) {
        blob b = load(SMALL_FIXTURES[f]);
        uint8_t *m = malloc(b.size);
        for (int iter = 0; iter < 1500; iter++) {
            memcpy(m, b.data, b.size);
            int flips = 1 + (int)(fpay_test_rng_next(&rng) % 4);
            for (int k = 0; k < flips; k++) {
                size_t at = (size_t)(fpay_test_rng_next(&rng) % b.size);
                m[at] ^= (uint8_t)(1u << (fpay_test_rng_next(&rng) % 8));
            }
            decode_any(m, b.size, SMALL_FIXTURES[f]);
        }
        free(m);
        free(b.data);
    }
}

Test(image, non_image_bytes_refused)
{
    static const uint8_t png_sig[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    static const uint8_t soi[] = {0xFF, 0xD8, 0xFF};
    static const uint8_t soi_eoi[] = {0xFF, 0xD8, 0xFF, 0xD9};
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    static const uint8_t text[] = "hello, this is not an image\n";
    uint8_t zeros[64] = {0};
    expect(text, 0, NULL, FPAY_IMAGE_INVALID, "empty");
    expect(text, sizeof text - 1, NULL, FPAY_IMAGE_INVALID, "text");
    expect(gif, sizeof gif - 1, NULL, FPAY_IMAGE_INVALID, "GIF");
    expect(zeros, sizeof zeros, NULL, FPAY_IMAGE_INVALID, "zeros");
    expect(png_sig, sizeof png_sig, NULL, FPAY_IMAGE_INVALID, "PNG signature");
    expect(soi, sizeof soi, NULL, FPAY_IMAGE_INVALID, "JPEG SOI");
    expect(soi_eoi, sizeof soi_eoi, NULL, FPAY_IMAGE_INVALID, "JPEG SOI+EOI");

    fpay_test_rng rng;
    fpay_test_rng_seed(&rng, 7);
    uint8_t noise[512];
    for (int iter = 0; iter < 200; iter++) {
        for (size_t i = 0; i < sizeof noise; i++)
            noise[i] = (uint8_t)fpay_test_rng_next(&rng);
        /* half of them with a valid magic, so the decoders see the noise */
        if (iter % 2)
            memcpy(noise, iter % 4 == 1 ? soi : png_sig,
                   iter % 4 == 1 ? sizeof soi : sizeof png_sig);
        expect(noise, sizeof noise, NULL, FPAY_IMAGE_INVALID, "noise");
    }
}

/* ------------------------------------------------------------ resize */

/* The definition, written out independently: half-pixel centres, edge
 * clamp, bilinear weights, round half up. */
static double ref_bilinear(const fpay_image *in, int ow, int oh, int x, int y,
                           int c)
{
    double sx = (x + 0.5) * ((double)in->width / ow) - 0.5;
    double sy = (y + 0.5) * ((double)in->height / oh) - 0.5;
    sx = fmin(fmax(sx, 0.0), in->width - 1.0);
    sy = fmin(fmax(sy, 0.0), in->height - 1.0);
    int x0 = (int)floor(sx), y0 = (int)floor(sy);
    int x1 = x0 + 1 < in->width ? x0 + 1 : x0;
    int y1 = y0 + 1 < in->height ? y0 + 1 : y0;
    double ax = sx - x0, ay = sy - y0;
    return (1 - ay) * ((1 - ax) * px(in, x0, y0)[c] + ax * px(in, x1, y0)[c]) +
           ay * ((1 - ax) * px(in, x0, y1)[c] + ax * px(in, x1, y1)[c]);
}

Test(image, resize_matches_formula)
{
    /* random 37x23 image with a padded stride */
    fpay_image in = {37, 23, 37 * 3 + 5, NULL};
    in.pixels = malloc((size_t)in.stride * in.height);
    fpay_test_rng rng;
    fpay_test_rng_seed(&rng, 99);
    for (size_t i = 0; i < (size_t)in.stride * in.height; i++)
        in.pixels[i] = (uint8_t)fpay_test_rng_next(&rng);
    static const int sizes[][2] = {{112, 112}, {5, 7}, {64, 40}, {1, 1},
                                   {74, 46}, {37, 1}, {200, 3}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int ow = sizes[s][0], oh = sizes[s][1];
        uint8_t *out = malloc((size_t)ow * oh * 3);
        cr_assert_eq(fpay_image_resize_bilinear(&in, ow, oh, out), FPAY_OK);
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < 3; c++) {
                    double v = ref_bilinear(&in, ow, oh, x, y, c);
                    int want = (int)floor(v + 0.5);
                    int got = out[((size_t)y * ow + x) * 3 + c];
                    cr_assert_eq(got, want, "%dx%d (%d,%d,%d): %d vs %.6f",
                                 ow, oh, x, y, c, got, v);
                }
        free(out);
    }
    free(in.pixels);
}

Test(image, resize_identity_and_args)
{
    fpay_image in = {19, 11, 19 * 3 + 1, NULL};
    in.pixels = malloc((size_t)in.stride * in.height);
    for (size_t i = 0; i < (size_t)in.stride * in.height; i++)
        in.pixels[i] = (uint8_t)(i * 37 + 11);
    uint8_t out[19 * 11 * 3];
    cr_assert_eq(fpay_image_resize_bilinear(&in, 19, 11, out), FPAY_OK);
    for (int y = 0; y < 11; y++)
        cr_assert_eq(memcmp(out + y * 19 * 3, px(&in, 0, y), 19 * 3), 0);

    cr_assert_eq(fpay_image_resize_bilinear(&in, 0, 5, out), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_image_resize_bilinear(&in, 5, -1, out), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_image_resize_bilinear(NULL, 5, 5, out), FPAY_INVALID_ARGUMENT);
    cr_assert_eq(fpay_image_resize_bilinear(&in, 5, 5, NULL), FPAY_INVALID_ARGUMENT);
    in.stride = 19 * 3 - 1;
    cr_assert_eq(fpay_image_resize_bilinear(&in, 5, 5, out), FPAY_INVALID_ARGUMENT);
    free(in.pixels);
}

/* The oracle's preprocessed model inputs (tests/data/golden): decode the
 * face, crop (inclusive box), resize, and compare every byte. This pins the
 * JPEG/PNG decoders and the resize arithmetic to the oracle's exactly. */
static void check_oracle(const char *face, int x0, int y0, int x1, int y1,
                         int side, const char *golden, double scale,
                         double offset)
{
    fpay_image im;
    char err[256] = "";
    cr_assert_eq(fpay_image_load_file(fpay_test_data_path(face), NULL, &im,
                                      err, sizeof err),
                 FPAY_OK, "%s: %s", face, err);
    size_t count = 0;
    float *ref = fpay_test_read_f32(fpay_test_data_path(golden), &count);
    cr_assert_not_null(ref, "missing %s", golden);
    cr_assert_geq(count, (size_t)side * side * 3);
    fpay_image crop = im;
    crop.pixels = (uint8_t *)px(&im, x0, y0);
    crop.width = x1 - x0 + 1;
    crop.height = y1 - y0 + 1;
    uint8_t *out = malloc((size_t)side * side * 3);
    cr_assert_eq(fpay_image_resize_bilinear(&crop, side, side, out), FPAY_OK);
    int bad = 0;
    for (size_t i = 0; i < (size_t)side * side * 3; i++) {
        long want = lround(ref[i] * scale + offset);
        if (want != out[i] && bad++ < 5)
            cr_log_error("%s [%zu]: %d vs oracle %ld", face, i, out[i], want);
    }
    cr_assert_eq(bad, 0, "%s: %d bytes differ from the oracle", face, bad);
    free(out);
    free(ref);
    fpay_image_free(&im);
}

Test(image, oracle_amy1_png_112)
{
    check_oracle("faces/amy1.png", 0, 0, 149, 149, 112,
                 "golden/mfn_face_amy1.in0.f32", 128.0, 127.5);
}

Test(image, oracle_tom_cruise_jpeg_crop_112)
{
    check_oracle("faces/Tom_Cruise_0001.jpg", 74, 60, 169, 187, 112,
                 "golden/mfn_face_tomcruise.in0.f32", 128.0, 127.5);
}

Test(image, oracle_obama_jpeg_crop_256)
{
    check_oracle("faces/obama.jpg", 378, 80, 611, 416, 256,
                 "golden/antispoof_obama.in0.f32", 255.0, 0.0);
}

/* A FIFO with no writer used to block the open for ever: it is refused at
 * once, like any file that is not a regular one. */
Test(image, load_file_refuses_a_fifo, .timeout = 20)
{
    char dir[] = "/tmp/fpay-fifo-XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/capture.jpg", dir);
    cr_assert_eq(mkfifo(path, 0600), 0);
    fpay_image im = {-1, -1, -1, NULL};
    char err[256] = "";
    cr_expect_eq(fpay_image_load_file(path, NULL, &im, err, sizeof err), FPAY_IO_ERROR);
    cr_expect_not_null(strstr(err, "not a regular file"), "%s", err);
    cr_expect_eq(im.width, -1, "out untouched");
    fpay_model *m = (fpay_model *)1;
    cr_expect_eq(fpay_model_load_file(path, 0, &m, err, sizeof err), FPAY_IO_ERROR);
    cr_expect_null(m);
    cr_expect_not_null(strstr(err, "not a regular file"), "%s", err);
    unlink(path);
    rmdir(dir);
}
