/*
 * make_nv21 - turns a JPEG or PNG into the raw NV21 frame a phone or kiosk
 * camera would hand the terminal (Y plane, then interleaved V,U at half
 * resolution, BT.601 video range), so that the terminal example can be run
 * without a camera:
 *
 *   make_nv21 face.jpg face.nv21          the photo's own size
 *   make_nv21 face.jpg face.nv21 640 480  a 640x480 camera: the photo
 *                                         scaled to fit and centred on grey
 *
 * It prints "WIDTH HEIGHT" of the frame. Decoding and scaling use
 * libfacepay's image API (fpay_image_load_file, fpay_image_resize_bilinear);
 * odd sizes are cropped by one pixel (NV21 needs even sides). The RGB -> YUV matrix is
 * the inverse of the one fpay_frame_to_rgb applies for
 * FPAY_YUV_BT601_LIMITED.
 */
#define _POSIX_C_SOURCE 200809L
#include <facepay/facepay.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t clamp_u8(double v)
{
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)lrint(v);
}

/* Replaces img by a cw x ch canvas (mid grey) holding img scaled down to
 * fit, centred. The new pixels are malloc'ed, as fpay_image_free expects. */
static int fit_to_camera(fpay_image *img, int cw, int ch)
{
    if (cw < 2 || ch < 2 || cw > 8192 || ch > 8192)
        return -1;
    double s = fmin(1.0, fmin((double)cw / img->width, (double)ch / img->height));
    int w = (int)(img->width * s), h = (int)(img->height * s);
    if (w < 1 || h < 1)
        return -1;
    uint8_t *scaled = malloc((size_t)w * (size_t)h * 3);
    uint8_t *canvas = malloc((size_t)cw * (size_t)ch * 3);
    if (!scaled || !canvas || fpay_image_resize_bilinear(img, w, h, scaled) != FPAY_OK) {
        free(scaled);
        free(canvas);
        return -1;
    }
    memset(canvas, 128, (size_t)cw * (size_t)ch * 3);
    const int x0 = (cw - w) / 2, y0 = (ch - h) / 2;
    for (int y = 0; y < h; y++)
        memcpy(canvas + ((size_t)(y0 + y) * (size_t)cw + (size_t)x0) * 3,
               scaled + (size_t)y * (size_t)w * 3, (size_t)w * 3);
    free(scaled);
    fpay_image_free(img);
    img->width = cw;
    img->height = ch;
    img->stride = cw * 3;
    img->pixels = canvas;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: make_nv21 IMAGE OUT.nv21 [WIDTH HEIGHT]\n");
        return 2;
    }
    fpay_image img;
    char err[256];
    fpay_status st = fpay_image_load_file(argv[1], NULL, &img, err, sizeof err);
    if (st != FPAY_OK) {
        fprintf(stderr, "make_nv21: %s: %s\n", argv[1], err);
        return 1;
    }
    if (argc == 5 && fit_to_camera(&img, atoi(argv[3]), atoi(argv[4])) != 0) {
        fprintf(stderr, "make_nv21: cannot fit %s into %sx%s\n", argv[1], argv[3], argv[4]);
        fpay_image_free(&img);
        return 1;
    }
    const int w = img.width & ~1, h = img.height & ~1;
    const size_t ysize = (size_t)w * (size_t)h;
    uint8_t *nv21 = malloc(ysize + ysize / 2);
    if (!nv21 || w == 0 || h == 0) {
        fprintf(stderr, "make_nv21: %s\n", nv21 ? "image too small" : "out of memory");
        free(nv21);
        fpay_image_free(&img);
        return 1;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = img.pixels + (size_t)y * (size_t)img.stride + 3 * (size_t)x;
            double yf = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            nv21[(size_t)y * (size_t)w + (size_t)x] = clamp_u8(16.0 + yf * 219.0 / 255.0);
        }
    /* One V,U pair per 2x2 block, from the block's mean colour. */
    uint8_t *vu = nv21 + ysize;
    for (int y = 0; y < h; y += 2)
        for (int x = 0; x < w; x += 2) {
            double r = 0, g = 0, b = 0;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    const uint8_t *p = img.pixels + (size_t)(y + dy) * (size_t)img.stride +
                                       3 * (size_t)(x + dx);
                    r += p[0] / 4.0;
                    g += p[1] / 4.0;
                    b += p[2] / 4.0;
                }
            double yf = 0.299 * r + 0.587 * g + 0.114 * b;
            double u = (b - yf) / 1.772, v = (r - yf) / 1.402;
            size_t o = (size_t)(y / 2) * (size_t)w + (size_t)x;
            vu[o] = clamp_u8(128.0 + v * 224.0 / 255.0);
            vu[o + 1] = clamp_u8(128.0 + u * 224.0 / 255.0);
        }
    fpay_image_free(&img);
    FILE *f = fopen(argv[2], "wb");
    int ok = f && fwrite(nv21, 1, ysize + ysize / 2, f) == ysize + ysize / 2;
    if (f && fclose(f) != 0)
        ok = 0;
    free(nv21);
    if (!ok) {
        perror(argv[2]);
        return 1;
    }
    printf("%d %d\n", w, h);
    return 0;
}
