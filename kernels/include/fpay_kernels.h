/*
 * fpay_kernels.h - kernel parameter blocks and the reference kernels.
 *
 * Kernels know nothing of the graph: they take plain shapes and pointers.
 * The reference kernels (kernels/ref/) are plain, obviously correct C and
 * define correctness for every other kernel and backend. They assume their
 * parameters were validated by shape inference (sizes consistent, no
 * overflow); they never allocate.
 *
 * Layouts: activations NHWC; conv weights OHWI [Cout,KH,KW,Cin]; depthwise
 * weights [1,KH,KW,Cin*mult]; fully connected weights [units, in_features].
 *
 * Accumulation order is part of the contract: conv, depthwise and fully
 * connected sum their taps from 0.0f (ky, kx, ci order), THEN add the bias,
 * THEN apply the epilogue activation, as TFLite's reference kernels do. That
 * is what lets the optimizer fold a following ADD of a per-channel constant
 * into a bias-free conv bit-exactly.
 */
#ifndef FPAY_KERNELS_H
#define FPAY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Epilogue activation; mirrors fpay_act in facepay/backend.h. */
typedef enum fpay_kact {
    FPAY_KACT_NONE = 0,
    FPAY_KACT_RELU,
    FPAY_KACT_RELU_N1_TO_1,
    FPAY_KACT_RELU6,
    FPAY_KACT_PRELU,      /* slope[c] per output channel */
    FPAY_KACT_LEAKY_RELU, /* alpha */
} fpay_kact;

typedef struct fpay_epilogue {
    fpay_kact act;
    float alpha;          /* LEAKY_RELU */
    const float *slope;   /* PRELU: one per output channel */
} fpay_epilogue;

typedef struct fpay_conv_params {
    int batch;
    int in_h, in_w, in_c;
    int out_h, out_w, out_c;
    int kernel_h, kernel_w;
    int stride_h, stride_w;
    int dilation_h, dilation_w;
    int pad_top, pad_left;      /* bottom/right follow from the sizes */
    int depth_multiplier;       /* depthwise: out_c == in_c * depth_multiplier */
} fpay_conv_params;

typedef struct fpay_pool_params {
    int batch;
    int in_h, in_w, channels;
    int out_h, out_w;
    int filter_h, filter_w;
    int stride_h, stride_w;
    int pad_top, pad_left;
} fpay_pool_params;

/* Broadcast binary operation over up to 6 dims. in_a/in_b strides are in
 * elements, 0 on broadcast dims; out is dense with out_dims. */
#define FPAY_KMAX_RANK 6
typedef struct fpay_bcast {
    int rank;
    int64_t out_dims[FPAY_KMAX_RANK];
    int64_t a_strides[FPAY_KMAX_RANK];
    int64_t b_strides[FPAY_KMAX_RANK];
} fpay_bcast;

typedef enum fpay_kbinary {
    FPAY_KBIN_ADD = 0,
    FPAY_KBIN_SUB,
    FPAY_KBIN_MUL,
    FPAY_KBIN_DIV,
} fpay_kbinary;

typedef enum fpay_kcompare {
    FPAY_KCMP_GREATER_EQUAL = 0,
    FPAY_KCMP_LESS,
} fpay_kcompare;

typedef enum fpay_kunary {
    FPAY_KUN_ABS = 0,
    FPAY_KUN_NEG,
    FPAY_KUN_RELU,
    FPAY_KUN_RELU6,
    FPAY_KUN_EXP,
} fpay_kunary;

typedef enum fpay_kreduce {
    FPAY_KRED_MAX = 0,
    FPAY_KRED_SUM,
} fpay_kreduce;

/* Element types for data movement kernels (cast, concat, slice). */
typedef enum fpay_ktype {
    FPAY_KT_F32 = 0,
    FPAY_KT_I32,
    FPAY_KT_BOOL,   /* uint8_t 0/1 */
    FPAY_KT_I64,
    FPAY_KT_U8,
    FPAY_KT_I8,
} fpay_ktype;

/* ------------------------------------------------ reference kernels (f32) */

/* Full convolution, OHWI weights, bias may be NULL. */
void fpay_ref_conv2d_f32(const fpay_conv_params *p, const float *in,
                         const float *weights, const float *bias,
                         const fpay_epilogue *ep, float *out);

/* Depthwise convolution, weights [1,KH,KW,in_c*depth_multiplier]. */
void fpay_ref_dwconv2d_f32(const fpay_conv_params *p, const float *in,
                           const float *weights, const float *bias,
                           const fpay_epilogue *ep, float *out);

/* out[r][u] = act(bias[u] + sum_k in[r][k] * weights[u][k]); bias may be
 * NULL. */
void fpay_ref_fully_connected_f32(int rows, int in_features, int units,
                                  const float *in, const float *weights,
                                  const float *bias, const fpay_epilogue *ep,
                                  float *out);

/* Max pool; padded cells are ignored (never count as 0). */
void fpay_ref_max_pool2d_f32(const fpay_pool_params *p, const float *in,
                             float *out);
/* Average pool dividing by the number of cells inside the image. */
void fpay_ref_avg_pool2d_f32(const fpay_pool_params *p, const float *in,
                             float *out);

/* Broadcast arithmetic with an epilogue (slope indexed by the last output
 * dim). */
void fpay_ref_binary_f32(fpay_kbinary op, const fpay_bcast *b, const float *a,
                         const float *bb, const fpay_epilogue *ep, float *out);
/* Broadcast comparison, out is 0/1 bytes. */
void fpay_ref_compare_f32(fpay_kcompare op, const fpay_bcast *b,
                          const float *a, const float *bb, uint8_t *out);

void fpay_ref_unary_f32(fpay_kunary op, size_t count, const float *in,
                        float *out);
void fpay_ref_leaky_relu_f32(size_t count, float alpha, const float *in,
                             float *out);
/* PReLU along the last axis: x >= 0 ? x : slope[i % channels] * x. */
void fpay_ref_prelu_f32(size_t count, int channels, const float *slope,
                        const float *in, float *out);

/* Reduction over the axes whose bit is set in axes_mask; out has the reduced
 * dims removed or kept as 1 (same element order either way). */
void fpay_ref_reduce_f32(fpay_kreduce op, int rank, const int64_t *dims,
                         unsigned axes_mask, const float *in, float *out);

/* Softmax over the last axis, computed as the decomposed TFLite graph does:
 * max, subtract, exp, sum, divide. */
void fpay_ref_softmax_f32(size_t rows, int cols, const float *in, float *out);

/* x / sqrt(max(sum(x^2), epsilon)) over the last axis. */
void fpay_ref_l2_normalize_f32(size_t rows, int cols, float epsilon,
                               const float *in, float *out);

/* Strided slice, already normalised: out_dims[i] elements starting at
 * begin[i] stepping strides[i] (may be negative) in each of rank dims. */
void fpay_ref_strided_slice(size_t elem_size, int rank, const int64_t *in_dims,
                            const int64_t *begin, const int64_t *strides,
                            const int64_t *out_dims, const void *in, void *out);

/* Concatenation along one axis: outer = product of dims before the axis,
 * inner_bytes[i] = input i's (axis dim * dims after) * elem size. */
void fpay_ref_concat(int n_inputs, size_t outer, const size_t *inner_bytes,
                     const void *const *inputs, void *out);

/* Element type conversion (bool <-> numbers is 0/1; float to int truncates
 * toward zero as TFLite's CAST does). */
void fpay_ref_cast(fpay_ktype from, fpay_ktype to, size_t count,
                   const void *in, void *out);

/* IEEE binary16 to binary32, exact for every input including subnormals,
 * infinities and NaN. */
float fpay_ref_f16_to_f32(uint16_t h);
void fpay_ref_dequantize_f16_f32(size_t count, const uint16_t *in, float *out);

/* ------------------------------------------- reference kernels (images)
 * Interleaved RGB bytes (3 per pixel), rows `stride` bytes apart. These are
 * the pipeline's image operations (core/src/image.c, core/src/face/); they
 * compute in double (resize, warp) or float (normalise) in a fixed order,
 * and every SIMD version (fpay_simd.h) reproduces them bit for bit. Built
 * with -ffp-contract=off (kernels/CMakeLists.txt) so that no compiler fuses
 * a multiply and an add into an FMA on targets that have one (aarch64). */

/* Source coordinate of destination index i of out_n under half-pixel
 * centres, clamped to the edge pixels: s = (i + 0.5) * (in_n / out_n) - 0.5
 * in double (scale first: the oracle's order, to the last bit), split into
 * base index *i0, next index *i1 (= *i0 at the last pixel) and weight
 * *frac = s - *i0. */
void fpay_bilinear_tap(int i, int in_n, int out_n, int *i0, int *i1, double *frac);

/* Bilinear resize (half-pixel centres, clamped edges) of in_w x in_h to
 * out_w x out_h, output rows [row_begin, row_end): per channel
 *   top = (1 - fx) * p00 + fx * p01, bot = (1 - fx) * p10 + fx * p11,
 *   v = (1 - fy) * top + fy * bot, out = min(floor(v + 0.5), 255)
 * in double (round half up). */
void fpay_ref_u8_resize_bilinear(const uint8_t *in, int in_w, int in_h, size_t in_stride,
                                 uint8_t *out, int out_w, int out_h, size_t out_stride,
                                 int row_begin, int row_end);

/* Affine warp with bilinear sampling, output rows [row_begin, row_end):
 * output pixel (u, v) samples the source at x = (m[0]*u + m[1]*v) + m[2],
 * y = (m[3]*u + m[4]*v) + m[5] (double; pixel centres at integers, as
 * cv2.warpAffine with WARP_INVERSE_MAP). A pixel whose floor(x), floor(y)
 * is outside [-1, w) x [-1, h) is black; otherwise, per channel,
 *   acc = 0; acc += (wx_i * wy_j) * p(x0 + i, y0 + j) for j = 0, 1, i = 0, 1
 * with wx_0 = 1 - fx, wx_1 = fx (fx = x - floor(x)), likewise wy, taps
 * outside the image reading 0, and out = clamp(floor(acc + 0.5), 0, 255). */
void fpay_ref_u8_warp_affine(const uint8_t *in, int in_w, int in_h, size_t in_stride,
                             const double m[6], uint8_t *out, int out_w, int out_h,
                             size_t out_stride, int row_begin, int row_end);

/* out[i] = ((float)in[i] - sub) / div, i in [begin, end) (one float
 * subtraction, one float division: (p - 127.5) / 128 for the MTCNN nets and
 * MobileFaceNet, p / 255 for FaceAntiSpoofing). */
void fpay_ref_u8_f32_normalize(const uint8_t *in, float sub, float div, float *out,
                               size_t begin, size_t end);

#ifdef __cplusplus
}
#endif

#endif /* FPAY_KERNELS_H */
