/*
 * fuzz_image.c - libFuzzer target for fpay_image_decode (JPEG and PNG).
 *
 * Limits are kept small so that the fuzzer spends its time in the parsers,
 * not in decoding legitimately huge images; every success is also resized,
 * which walks every output pixel (ASan checks the bounds).
 * Seeds: tests/data/images and tests/data/faces.
 */
#include "facepay/facepay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fpay_image_limits lim;
    fpay_image_limits_init(&lim);
    lim.max_side = 1024;
    lim.max_pixels = 1024 * 1024;
    lim.max_bytes = 1 << 20;

    fpay_image img;
    char err[256];
    err[0] = '\0';
    fpay_status st = fpay_image_decode(data, size, &lim, &img, err, sizeof err);
    if (st != FPAY_OK) {
        /* Every failure must say why: an empty message is a bug. */
        if (err[0] == '\0')
            abort();
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || img.width > lim.max_side ||
        img.height > lim.max_side || img.stride < 3 * img.width)
        abort();
    uint8_t out[16 * 16 * 3];
    if (fpay_image_resize_bilinear(&img, 16, 16, out) != FPAY_OK)
        abort();
    fpay_image_free(&img);
    return 0;
}
