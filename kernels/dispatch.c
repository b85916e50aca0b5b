/*
 * dispatch.c - the kernel tables generated from fpay_kernel_list.h, the
 * selection by ISA and shape, and weight packing (ISA-independent C).
 */
#include "fpay_kernel_list.h"
#include "fpay_simd.h"

#include <string.h>

/* Prototypes, from the lists. */
#define FPAY_PROTO_GEMM_(name, isa, mr, nr) \
    void name(const fpay_gemm_args *a, size_t begin, size_t end);
#define FPAY_PROTO_CONV_(name, isa, mr, nr) \
    void name(const fpay_conv_args *a, size_t begin, size_t end);
#define FPAY_PROTO_DW_(name, isa, kh, kw, sh, sw) \
    void name(const fpay_dwconv_args *a, size_t begin, size_t end);
#define FPAY_PROTO_POOL_(name, isa) void name(const fpay_pool_args *a, size_t begin, size_t end);
FPAY_GEMM_KERNELS(FPAY_PROTO_GEMM_)
FPAY_CONV_KERNELS(FPAY_PROTO_CONV_)
FPAY_DWCONV_KERNELS(FPAY_PROTO_DW_)
FPAY_MAXPOOL_KERNELS(FPAY_PROTO_POOL_)
#define FPAY_PROTO_RESIZE_(name, isa, tile) \
    void name(const fpay_resize_args *a, size_t begin, size_t end);
#define FPAY_PROTO_WARP_(name, isa, tile) \
    void name(const fpay_warp_args *a, size_t begin, size_t end);
#define FPAY_PROTO_NORM_(name, isa, tile) \
    void name(const fpay_normalize_args *a, size_t begin, size_t end);
FPAY_RESIZE_KERNELS(FPAY_PROTO_RESIZE_)
FPAY_WARP_KERNELS(FPAY_PROTO_WARP_)
FPAY_NORMALIZE_KERNELS(FPAY_PROTO_NORM_)

/* Tables. A trailing sentinel keeps each array non-empty when a list is. */
#define FPAY_ROW_GEMM_(name, isa, mr, nr) {#name, FPAY_ISA_##isa, name, mr, nr},
#define FPAY_ROW_DW_(name, isa, kh, kw, sh, sw) \
    {#name, FPAY_ISA_##isa, name, kh, kw, sh, sw},
#define FPAY_ROW_POOL_(name, isa) {#name, FPAY_ISA_##isa, name},

const fpay_gemm_ukernel fpay_gemm_ukernels[] = {
    FPAY_GEMM_KERNELS(FPAY_ROW_GEMM_){NULL, FPAY_ISA_REF, NULL, 0, 0}};
const int fpay_gemm_ukernel_count =
    (int)(sizeof fpay_gemm_ukernels / sizeof fpay_gemm_ukernels[0]) - 1;
const fpay_conv_ukernel fpay_conv_ukernels[] = {
    FPAY_CONV_KERNELS(FPAY_ROW_GEMM_){NULL, FPAY_ISA_REF, NULL, 0, 0}};
const int fpay_conv_ukernel_count =
    (int)(sizeof fpay_conv_ukernels / sizeof fpay_conv_ukernels[0]) - 1;
const fpay_dwconv_ukernel fpay_dwconv_ukernels[] = {
    FPAY_DWCONV_KERNELS(FPAY_ROW_DW_){NULL, FPAY_ISA_REF, NULL, 0, 0, 0, 0}};
const int fpay_dwconv_ukernel_count =
    (int)(sizeof fpay_dwconv_ukernels / sizeof fpay_dwconv_ukernels[0]) - 1;
const fpay_pool_ukernel fpay_maxpool_ukernels[] = {
    FPAY_MAXPOOL_KERNELS(FPAY_ROW_POOL_){NULL, FPAY_ISA_REF, NULL}};
const int fpay_maxpool_ukernel_count =
    (int)(sizeof fpay_maxpool_ukernels / sizeof fpay_maxpool_ukernels[0]) - 1;

#define FPAY_ROW_TILE_(name, isa, tile) {#name, FPAY_ISA_##isa, name, tile},
const fpay_resize_ukernel fpay_resize_ukernels[] = {
    FPAY_RESIZE_KERNELS(FPAY_ROW_TILE_){NULL, FPAY_ISA_REF, NULL, 0}};
const int fpay_resize_ukernel_count =
    (int)(sizeof fpay_resize_ukernels / sizeof fpay_resize_ukernels[0]) - 1;
const fpay_warp_ukernel fpay_warp_ukernels[] = {
    FPAY_WARP_KERNELS(FPAY_ROW_TILE_){NULL, FPAY_ISA_REF, NULL, 0}};
const int fpay_warp_ukernel_count =
    (int)(sizeof fpay_warp_ukernels / sizeof fpay_warp_ukernels[0]) - 1;
const fpay_normalize_ukernel fpay_normalize_ukernels[] = {
    FPAY_NORMALIZE_KERNELS(FPAY_ROW_TILE_){NULL, FPAY_ISA_REF, NULL, 0}};
const int fpay_normalize_ukernel_count =
    (int)(sizeof fpay_normalize_ukernels / sizeof fpay_normalize_ukernels[0]) - 1;

#define FPAY_SELECT_BY_ISA_(fam)                                         \
    const fpay_##fam##_ukernel *fpay_##fam##_select(fpay_isa isa)       \
    {                                                                    \
        for (int i = 0; i < fpay_##fam##_ukernel_count; i++)            \
            if (fpay_##fam##_ukernels[i].isa == isa)                     \
                return &fpay_##fam##_ukernels[i];                        \
        return NULL;                                                     \
    }
FPAY_SELECT_BY_ISA_(resize)
FPAY_SELECT_BY_ISA_(warp)
FPAY_SELECT_BY_ISA_(normalize)

size_t fpay_resize_tasks(const fpay_resize_args *a) { return (size_t)a->out_h; }
size_t fpay_warp_tasks(const fpay_warp_args *a) { return (size_t)a->out_h; }
size_t fpay_normalize_tasks(const fpay_normalize_args *a) { return a->count; }

const fpay_gemm_ukernel *fpay_gemm_select(fpay_isa isa, int n)
{
    const fpay_gemm_ukernel *best = NULL;
    int best_pad = 0;
    for (int i = 0; i < fpay_gemm_ukernel_count; i++) {
        const fpay_gemm_ukernel *k = &fpay_gemm_ukernels[i];
        if (k->isa != isa)
            continue;
        if (n <= 0)
            return k;
        const int pad = (k->nr - n % k->nr) % k->nr;
        if (!best || pad < best_pad) {
            best = k;
            best_pad = pad;
        }
    }
    return best;
}

const fpay_conv_ukernel *fpay_conv_select(fpay_isa isa)
{
    for (int i = 0; i < fpay_conv_ukernel_count; i++)
        if (fpay_conv_ukernels[i].isa == isa)
            return &fpay_conv_ukernels[i];
    return NULL;
}

static bool fits(int want, int have) { return want == 0 || want == have; }

const fpay_dwconv_ukernel *fpay_dwconv_select(fpay_isa isa, int kh, int kw, int sh, int sw)
{
    for (int i = 0; i < fpay_dwconv_ukernel_count; i++) {
        const fpay_dwconv_ukernel *k = &fpay_dwconv_ukernels[i];
        if (k->isa == isa && fits(k->kh, kh) && fits(k->kw, kw) && fits(k->sh, sh) &&
            fits(k->sw, sw))
            return k;
    }
    return NULL;
}

const fpay_pool_ukernel *fpay_maxpool_select(fpay_isa isa)
{
    for (int i = 0; i < fpay_maxpool_ukernel_count; i++)
        if (fpay_maxpool_ukernels[i].isa == isa)
            return &fpay_maxpool_ukernels[i];
    return NULL;
}

size_t fpay_gemm_tasks(const fpay_gemm_args *a, int mr, int nr)
{
    return ((size_t)a->m + (size_t)mr - 1) / (size_t)mr *
           (((size_t)a->n + (size_t)nr - 1) / (size_t)nr);
}

size_t fpay_conv_tasks(const fpay_conv_args *a, int nr)
{
    return (size_t)a->p.batch * (size_t)a->p.out_h *
           (((size_t)a->p.out_c + (size_t)nr - 1) / (size_t)nr);
}

size_t fpay_dwconv_tasks(const fpay_dwconv_args *a)
{
    return (size_t)a->p.batch * (size_t)a->p.out_h;
}

size_t fpay_pool_tasks(const fpay_pool_args *a)
{
    return (size_t)a->p.batch * (size_t)a->p.out_h;
}

size_t fpay_pack_padded(size_t n)
{
    return (n + FPAY_PACK_ALIGN - 1) / FPAY_PACK_ALIGN * FPAY_PACK_ALIGN;
}

size_t fpay_pack_weights_size(int n, int k, int nr)
{
    return ((size_t)n + (size_t)nr - 1) / (size_t)nr * (size_t)nr * (size_t)k;
}

void fpay_pack_weights_f32(int n, int k, int nr, const float *w, float *packed)
{
    const size_t panels = ((size_t)n + (size_t)nr - 1) / (size_t)nr;
    for (size_t pnl = 0; pnl < panels; pnl++) {
        float *dst = packed + pnl * (size_t)k * (size_t)nr;
        for (size_t kk = 0; kk < (size_t)k; kk++)
            for (size_t j = 0; j < (size_t)nr; j++) {
                const size_t col = pnl * (size_t)nr + j;
                dst[kk * (size_t)nr + j] = col < (size_t)n ? w[col * (size_t)k + kk] : 0.0f;
            }
    }
}

size_t fpay_pack_dw_weights_size(int taps, int channels)
{
    return (size_t)taps * fpay_pack_padded((size_t)channels);
}

void fpay_pack_dw_weights_f32(int taps, int channels, const float *w, float *packed)
{
    const size_t cp = fpay_pack_padded((size_t)channels);
    for (size_t t = 0; t < (size_t)taps; t++) {
        memcpy(packed + t * cp, w + t * (size_t)channels, (size_t)channels * sizeof(float));
        memset(packed + t * cp + channels, 0, (cp - (size_t)channels) * sizeof(float));
    }
}

void fpay_pack_channels_f32(int n, const float *src, float *dst)
{
    const size_t cp = fpay_pack_padded((size_t)n);
    if (src)
        memcpy(dst, src, (size_t)n * sizeof(float));
    else
        memset(dst, 0, (size_t)n * sizeof(float));
    memset(dst + n, 0, (cp - (size_t)n) * sizeof(float));
}
