/*
 * image_ops.c - ISA-neutral parts of the image kernels: the horizontal tap
 * table of a resize, and the whole-image drivers the pipeline calls (kernel
 * of the chosen ISA, or the reference). Built with -ffp-contract=off like
 * the kernels (kernels/CMakeLists.txt).
 */
#include "fpay_simd.h"

#include <stdint.h>

/* Entries of a table: 3 * out_w, padded to 16 so that every vector step of
 * every ISA reads whole vectors. */
static size_t xtab_len(int out_w) { return ((size_t)out_w * 3 + 15) / 16 * 16; }

size_t fpay_resize_xtab_bytes(int out_w)
{
    return xtab_len(out_w) * (2 * sizeof(double) + 2 * sizeof(int32_t));
}

void fpay_resize_xtab_fill(int in_w, int out_w, void *mem, fpay_resize_xtab *xt)
{
    const size_t n = xtab_len(out_w);
    double *w0 = mem, *w1 = w0 + n;
    int32_t *off0 = (int32_t *)(void *)(w1 + n), *off1 = off0 + n;
    size_t e = 0;
    for (int x = 0; x < out_w; x++) {
        int x0, x1;
        double fx;
        fpay_bilinear_tap(x, in_w, out_w, &x0, &x1, &fx);
        for (int ch = 0; ch < 3; ch++, e++) {
            off0[e] = x0 * 3 + ch;
            off1[e] = x1 * 3 + ch;
            w0[e] = 1.0 - fx;
            w1[e] = fx;
        }
    }
    for (; e < n; e++) {
        off0[e] = off1[e] = 0;
        w0[e] = w1[e] = 0.0;
    }
    xt->off0 = off0;
    xt->off1 = off1;
    xt->w0 = w0;
    xt->w1 = w1;
}

fpay_isa fpay_image_isa(void)
{
    fpay_isa isa;
    char err[8];
    return fpay_cpu_choose_isa(&isa, err, sizeof err) == 0 ? isa : FPAY_ISA_REF;
}

void fpay_u8_resize_bilinear_run(fpay_isa isa, const fpay_resize_args *a)
{
    const fpay_resize_ukernel *k = fpay_resize_select(isa);
    if (k)
        k->fn(a, 0, fpay_resize_tasks(a));
    else
        fpay_ref_u8_resize_bilinear(a->in, a->in_w, a->in_h, a->in_stride, a->out, a->out_w,
                                    a->out_h, a->out_stride, 0, a->out_h);
}

void fpay_u8_warp_affine_run(fpay_isa isa, const fpay_warp_args *a)
{
    const fpay_warp_ukernel *k = fpay_warp_select(isa);
    if (k)
        k->fn(a, 0, fpay_warp_tasks(a));
    else
        fpay_ref_u8_warp_affine(a->in, a->in_w, a->in_h, a->in_stride, a->m, a->out, a->out_w,
                                a->out_h, a->out_stride, 0, a->out_h);
}

void fpay_u8_f32_normalize_run(fpay_isa isa, const uint8_t *in, size_t count, float sub,
                               float div, float *out)
{
    const fpay_normalize_ukernel *k = fpay_normalize_select(isa);
    if (k) {
        fpay_normalize_args a = {in, out, count, sub, div};
        k->fn(&a, 0, count);
    } else {
        fpay_ref_u8_f32_normalize(in, sub, div, out, 0, count);
    }
}
