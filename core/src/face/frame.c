/*
 * frame.c - raw camera frames (RGB24, BGR24, RGBA, NV12, NV21) to 8-bit RGB.
 *
 * Every dimension, stride and buffer length is checked, in 64-bit
 * arithmetic, before the first byte is read. YUV uses BT.601 (full or
 * limited range, see pipeline.h), chroma upsampled by nearest neighbour.
 */
#include "face_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double fpay_face_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *format_name(fpay_pixel_format f)
{
    switch (f) {
    case FPAY_PIX_RGB24: return "RGB24";
    case FPAY_PIX_BGR24: return "BGR24";
    case FPAY_PIX_RGBA: return "RGBA";
    case FPAY_PIX_NV12: return "NV12";
    case FPAY_PIX_NV21: return "NV21";
    }
    return "?";
}

static uint8_t clamp_u8(float v)
{
    v = floorf(v + 0.5f);
    return (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
}

static void yuv_to_rgb(int y, int u, int v, int full, uint8_t *d)
{
    float fy, fu, fv;
    if (full) {
        fy = (float)y;
        fu = (float)(u - 128);
        fv = (float)(v - 128);
    } else {
        fy = (float)(y - 16) * (255.0f / 219.0f);
        fu = (float)(u - 128) * (255.0f / 224.0f);
        fv = (float)(v - 128) * (255.0f / 224.0f);
    }
    d[0] = clamp_u8(fy + 1.402f * fv);
    d[1] = clamp_u8(fy - 0.344136f * fu - 0.714136f * fv);
    d[2] = clamp_u8(fy + 1.772f * fu);
}

fpay_status fpay_frame_to_rgb(const fpay_frame *fr, const fpay_image_limits *limits,
                              fpay_image *out, char *err, size_t err_len)
{
    if (!fr || !out) {
        fpay_set_err(err, err_len, "frame: NULL frame or output");
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_image_limits lim;
    if (limits)
        lim = *limits;
    else
        fpay_image_limits_init(&lim);
    const char *fmt = format_name(fr->format);
    if (!strcmp(fmt, "?")) {
        fpay_set_err(err, err_len, "frame: unknown pixel format %d", (int)fr->format);
        return FPAY_INVALID_ARGUMENT;
    }
    const int64_t w = fr->width, h = fr->height;
    if (w <= 0 || h <= 0) {
        fpay_set_err(err, err_len, "%s frame: zero or negative size %lldx%lld", fmt,
                     (long long)w, (long long)h);
        return FPAY_IMAGE_INVALID;
    }
    if (w > lim.max_side || h > lim.max_side || w * h > lim.max_pixels) {
        fpay_set_err(err, err_len, "%s frame: %lldx%lld exceeds the limits (side %d, %lld pixels)",
                     fmt, (long long)w, (long long)h, lim.max_side,
                     (long long)lim.max_pixels);
        return FPAY_LIMIT_EXCEEDED;
    }
    if (!fr->data) {
        fpay_set_err(err, err_len, "%s frame: NULL data", fmt);
        return FPAY_INVALID_ARGUMENT;
    }
    const int yuv = fr->format == FPAY_PIX_NV12 || fr->format == FPAY_PIX_NV21;
    const int64_t bpp = fr->format == FPAY_PIX_RGBA ? 4 : yuv ? 1 : 3;
    const int64_t row = bpp * w, stride = fr->stride;
    if (stride < row) {
        fpay_set_err(err, err_len, "%s frame: stride %lld is below the row of %lld bytes",
                     fmt, (long long)stride, (long long)row);
        return FPAY_IMAGE_INVALID;
    }
    const int64_t need0 = (h - 1) * stride + row;
    if ((uint64_t)need0 > (uint64_t)fr->size) {
        fpay_set_err(err, err_len, "%s frame: buffer of %zu bytes is short, %dx%d with stride %lld needs %lld",
                     fmt, fr->size, fr->width, fr->height, (long long)stride, (long long)need0);
        return FPAY_IMAGE_INVALID;
    }
    const uint8_t *uv = NULL;
    int64_t uv_stride = 0;
    if (yuv) {
        if ((w & 1) || (h & 1)) {
            fpay_set_err(err, err_len, "%s frame: %lldx%lld, width and height must be even",
                         fmt, (long long)w, (long long)h);
            return FPAY_IMAGE_INVALID;
        }
        uv_stride = fr->uv_stride > 0 ? fr->uv_stride : stride;
        if (fr->uv_stride < 0 || uv_stride < w) {
            fpay_set_err(err, err_len, "%s frame: chroma stride %d is below the row of %lld bytes",
                         fmt, fr->uv_stride, (long long)w);
            return FPAY_IMAGE_INVALID;
        }
        const int64_t need_uv = (h / 2 - 1) * uv_stride + w;
        if (fr->uv) {
            if ((uint64_t)need_uv > (uint64_t)fr->uv_size) {
                fpay_set_err(err, err_len, "%s frame: chroma buffer of %zu bytes is short, needs %lld",
                             fmt, fr->uv_size, (long long)need_uv);
                return FPAY_IMAGE_INVALID;
            }
            uv = fr->uv;
        } else {
            const int64_t need = h * stride + need_uv;
            if ((uint64_t)need > (uint64_t)fr->size) {
                fpay_set_err(err, err_len, "%s frame: buffer of %zu bytes is short, Y + UV planes need %lld",
                             fmt, fr->size, (long long)need);
                return FPAY_IMAGE_INVALID;
            }
            uv = fr->data + h * stride;
        }
        if (fr->range != FPAY_YUV_BT601_FULL && fr->range != FPAY_YUV_BT601_LIMITED) {
            fpay_set_err(err, err_len, "%s frame: unknown YUV range %d", fmt, (int)fr->range);
            return FPAY_INVALID_ARGUMENT;
        }
    }
    uint8_t *px = malloc((size_t)(w * h * 3));
    if (!px) {
        fpay_set_err(err, err_len, "%s frame: out of memory", fmt);
        return FPAY_OUT_OF_MEMORY;
    }
    const int full = fr->range == FPAY_YUV_BT601_FULL;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *s = fr->data + y * stride;
        uint8_t *d = px + y * w * 3;
        switch (fr->format) {
        case FPAY_PIX_RGB24:
            memcpy(d, s, (size_t)(w * 3));
            break;
        case FPAY_PIX_BGR24:
            for (int64_t x = 0; x < w; x++) {
                d[3 * x] = s[3 * x + 2];
                d[3 * x + 1] = s[3 * x + 1];
                d[3 * x + 2] = s[3 * x];
            }
            break;
        case FPAY_PIX_RGBA:
            for (int64_t x = 0; x < w; x++)
                memcpy(d + 3 * x, s + 4 * x, 3);
            break;
        case FPAY_PIX_NV12:
        case FPAY_PIX_NV21: {
            const uint8_t *c = uv + (y / 2) * uv_stride;
            const int uo = fr->format == FPAY_PIX_NV12 ? 0 : 1;
            for (int64_t x = 0; x < w; x++) {
                const uint8_t *cc = c + (x & ~(int64_t)1);
                yuv_to_rgb(s[x], cc[uo], cc[1 - uo], full, d + 3 * x);
            }
            break;
        }
        }
    }
    out->width = (int)w;
    out->height = (int)h;
    out->stride = (int)(w * 3);
    out->pixels = px;
    return FPAY_OK;
}
