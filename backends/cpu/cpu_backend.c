/*
 * cpu_backend.c - the built-in CPU backend: every op, on the reference
 * kernels, or on a SIMD kernel when prepare chose one for the node
 * (cpu_fast.c). It is always available and is where unsupported nodes of
 * other backends fall back to (they run without state: reference kernels).
 */
#include "cpu_backend.h"

#include "fpay_kernels.h"
#include "graph.h"

#include <string.h>

static fpay_epilogue epilogue_of(const fpay_exec_ctx *ctx, const fpay_node *n)
{
    fpay_epilogue ep;
    memset(&ep, 0, sizeof ep);
    /* fpay_act and fpay_kact share their numbering. */
    ep.act = (fpay_kact)n->act;
    ep.alpha = n->act_alpha;
    if (n->act == FPAY_ACT_PRELU)
        ep.slope = ctx->buffers[n->act_slope];
    return ep;
}

static const fpay_tensor *tensor(const fpay_exec_ctx *ctx, int t)
{
    return &ctx->graph->tensors[t];
}

static const void *buf_in(const fpay_exec_ctx *ctx, const fpay_node *n, int k)
{
    return n->inputs[k] >= 0 ? ctx->buffers[n->inputs[k]] : NULL;
}

void fpay_cpu_conv_params(const fpay_exec_ctx *ctx, const fpay_node *n,
                          fpay_conv_params *p)
{
    const fpay_tensor *x = tensor(ctx, n->inputs[0]);
    const fpay_tensor *w = tensor(ctx, n->inputs[1]);
    const fpay_tensor *y = tensor(ctx, n->outputs[0]);
    const fpay_conv_attr *a = &n->attr.conv;
    memset(p, 0, sizeof *p);
    p->batch = (int)x->dims[0];
    p->in_h = (int)x->dims[1];
    p->in_w = (int)x->dims[2];
    p->in_c = (int)x->dims[3];
    p->out_h = (int)y->dims[1];
    p->out_w = (int)y->dims[2];
    p->out_c = (int)y->dims[3];
    p->kernel_h = (int)w->dims[1];
    p->kernel_w = (int)w->dims[2];
    p->stride_h = a->stride_h;
    p->stride_w = a->stride_w;
    p->dilation_h = a->dilation_h;
    p->dilation_w = a->dilation_w;
    p->pad_top = a->pad_top;
    p->pad_left = a->pad_left;
    p->depth_multiplier = a->depth_multiplier;
}

void fpay_cpu_pool_params(const fpay_exec_ctx *ctx, const fpay_node *n,
                          fpay_pool_params *p)
{
    const fpay_tensor *x = tensor(ctx, n->inputs[0]);
    const fpay_tensor *y = tensor(ctx, n->outputs[0]);
    const fpay_pool_attr *a = &n->attr.pool;
    p->batch = (int)x->dims[0];
    p->in_h = (int)x->dims[1];
    p->in_w = (int)x->dims[2];
    p->channels = (int)x->dims[3];
    p->out_h = (int)y->dims[1];
    p->out_w = (int)y->dims[2];
    p->filter_h = a->filter_h;
    p->filter_w = a->filter_w;
    p->stride_h = a->stride_h;
    p->stride_w = a->stride_w;
    p->pad_top = a->pad_top;
    p->pad_left = a->pad_left;
}

void fpay_cpu_pool_act(const fpay_node *n, size_t count, float *o)
{
    if (n->act == FPAY_ACT_NONE)
        return;
    /* Pools carry only clamp activations; apply them in place. */
    for (size_t i = 0; i < count; i++) {
        float lo = n->act == FPAY_ACT_RELU_N1_TO_1 ? -1.0f : 0.0f;
        float hi = n->act == FPAY_ACT_RELU6 ? 6.0f
                   : n->act == FPAY_ACT_RELU_N1_TO_1 ? 1.0f : o[i];
        o[i] = o[i] < lo ? lo : o[i] > hi ? hi : o[i];
    }
}

void fpay_cpu_make_bcast(const fpay_tensor *a, const fpay_tensor *b,
                         const fpay_tensor *out, fpay_bcast *bc)
{
    memset(bc, 0, sizeof *bc);
    bc->rank = out->rank;
    int64_t sa = 1, sb = 1;
    for (int i = out->rank - 1; i >= 0; i--) {
        int ia = a->rank - out->rank + i, ib = b->rank - out->rank + i;
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        bc->out_dims[i] = out->dims[i];
        bc->a_strides[i] = da == 1 ? 0 : sa;
        bc->b_strides[i] = db == 1 ? 0 : sb;
        sa *= da;
        sb *= db;
    }
}

static fpay_ktype ktype(fpay_dtype d)
{
    switch (d) {
    case FPAY_DT_I32: return FPAY_KT_I32;
    case FPAY_DT_BOOL: return FPAY_KT_BOOL;
    case FPAY_DT_I64: return FPAY_KT_I64;
    case FPAY_DT_U8: return FPAY_KT_U8;
    case FPAY_DT_I8: return FPAY_KT_I8;
    default: return FPAY_KT_F32;
    }
}

static fpay_status cpu_run_node(void *state, const fpay_exec_ctx *ctx,
                                int index, char *err, size_t err_len)
{
    if (state && fpay_cpu_fast_run(state, ctx, index))
        return FPAY_OK;
    const fpay_node *n = &ctx->graph->nodes[index];
    const fpay_tensor *x = tensor(ctx, n->inputs[0]);
    const fpay_tensor *y = tensor(ctx, n->outputs[0]);
    void *out = ctx->buffers[n->outputs[0]];
    const void *in0 = buf_in(ctx, n, 0);
    size_t count = (size_t)fpay_tensor_count(y);
    fpay_epilogue ep = epilogue_of(ctx, n);

    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        fpay_conv_params p;
        fpay_cpu_conv_params(ctx, n, &p);
        const int res = FPAY_CONV_INPUT_RESIDUAL;
        if (n->op == FPAY_OP_CONV_2D && n->n_inputs > res && n->inputs[res] >= 0) {
            /* Fused residual: exactly the unfused conv (no activation) then
             * ADD with the activation, as the optimizer's rewrite assumes. */
            fpay_epilogue none;
            memset(&none, 0, sizeof none);
            fpay_ref_conv2d_f32(&p, in0, buf_in(ctx, n, 1), buf_in(ctx, n, 2), &none, out);
            fpay_bcast bc;
            fpay_cpu_make_bcast(y, tensor(ctx, n->inputs[res]), y, &bc);
            fpay_ref_binary_f32(FPAY_KBIN_ADD, &bc, out, buf_in(ctx, n, res), &ep, out);
        } else if (n->op == FPAY_OP_CONV_2D)
            fpay_ref_conv2d_f32(&p, in0, buf_in(ctx, n, 1),
                                n->n_inputs > 2 ? buf_in(ctx, n, 2) : NULL, &ep, out);
        else
            fpay_ref_dwconv2d_f32(&p, in0, buf_in(ctx, n, 1),
                                  n->n_inputs > 2 ? buf_in(ctx, n, 2) : NULL, &ep, out);
        return FPAY_OK;
    }
    case FPAY_OP_FULLY_CONNECTED: {
        const fpay_tensor *w = tensor(ctx, n->inputs[1]);
        int k = (int)w->dims[1], units = (int)w->dims[0];
        int rows = (int)(fpay_tensor_count(x) / k);
        fpay_ref_fully_connected_f32(rows, k, units, in0, buf_in(ctx, n, 1),
                                     n->n_inputs > 2 ? buf_in(ctx, n, 2) : NULL,
                                     &ep, out);
        return FPAY_OK;
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
    case FPAY_OP_DIV: {
        fpay_bcast bc;
        fpay_cpu_make_bcast(x, tensor(ctx, n->inputs[1]), y, &bc);
        fpay_kbinary op = n->op == FPAY_OP_ADD   ? FPAY_KBIN_ADD
                          : n->op == FPAY_OP_SUB ? FPAY_KBIN_SUB
                          : n->op == FPAY_OP_MUL ? FPAY_KBIN_MUL
                                                 : FPAY_KBIN_DIV;
        fpay_ref_binary_f32(op, &bc, in0, buf_in(ctx, n, 1), &ep, out);
        return FPAY_OK;
    }
    case FPAY_OP_GREATER_EQUAL:
    case FPAY_OP_LESS: {
        fpay_bcast bc;
        fpay_cpu_make_bcast(x, tensor(ctx, n->inputs[1]), y, &bc);
        fpay_ref_compare_f32(n->op == FPAY_OP_LESS ? FPAY_KCMP_LESS
                                                   : FPAY_KCMP_GREATER_EQUAL,
                             &bc, in0, buf_in(ctx, n, 1), out);
        return FPAY_OK;
    }
    case FPAY_OP_ABS: fpay_ref_unary_f32(FPAY_KUN_ABS, count, in0, out); return FPAY_OK;
    case FPAY_OP_NEG: fpay_ref_unary_f32(FPAY_KUN_NEG, count, in0, out); return FPAY_OK;
    case FPAY_OP_RELU: fpay_ref_unary_f32(FPAY_KUN_RELU, count, in0, out); return FPAY_OK;
    case FPAY_OP_RELU6: fpay_ref_unary_f32(FPAY_KUN_RELU6, count, in0, out); return FPAY_OK;
    case FPAY_OP_EXP: fpay_ref_unary_f32(FPAY_KUN_EXP, count, in0, out); return FPAY_OK;
    case FPAY_OP_LEAKY_RELU:
        fpay_ref_leaky_relu_f32(count, n->attr.leaky.alpha, in0, out);
        return FPAY_OK;
    case FPAY_OP_PRELU:
        fpay_ref_prelu_f32(count, x->rank ? (int)x->dims[x->rank - 1] : 1,
                           buf_in(ctx, n, 1), in0, out);
        return FPAY_OK;
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        fpay_pool_params p;
        fpay_cpu_pool_params(ctx, n, &p);
        if (n->op == FPAY_OP_MAX_POOL_2D)
            fpay_ref_max_pool2d_f32(&p, in0, out);
        else
            fpay_ref_avg_pool2d_f32(&p, in0, out);
        fpay_cpu_pool_act(n, count, out);
        return FPAY_OK;
    }
    case FPAY_OP_REDUCE_MAX:
    case FPAY_OP_SUM:
        fpay_ref_reduce_f32(n->op == FPAY_OP_SUM ? FPAY_KRED_SUM : FPAY_KRED_MAX,
                            x->rank, x->dims, n->attr.reduce.axes_mask, in0, out);
        return FPAY_OK;
    case FPAY_OP_SOFTMAX:
    case FPAY_OP_L2_NORMALIZE: {
        int cols = x->rank ? (int)x->dims[x->rank - 1] : 1;
        size_t rows = count / (size_t)cols;
        if (n->op == FPAY_OP_SOFTMAX)
            fpay_ref_softmax_f32(rows, cols, in0, out);
        else
            fpay_ref_l2_normalize_f32(rows, cols, n->attr.l2.epsilon, in0, out);
        return FPAY_OK;
    }
    case FPAY_OP_RESHAPE:
        if (out != in0)
            memmove(out, in0, y->nbytes);
        return FPAY_OK;
    case FPAY_OP_STRIDED_SLICE: {
        fpay_slice_plan plan;
        fpay_status st = fpay_slice_resolve(&n->attr.slice, x->rank, x->dims,
                                            &plan, err, err_len);
        if (st)
            return st;
        fpay_ref_strided_slice(fpay_dtype_size(x->dtype), plan.rank, x->dims,
                               plan.begin, plan.strides, plan.dims, in0, out);
        return FPAY_OK;
    }
    case FPAY_OP_CONCATENATION: {
        const void *ins[FPAY_MAX_NODE_INPUTS];
        size_t inner[FPAY_MAX_NODE_INPUTS];
        int axis = n->attr.concat.axis;
        size_t outer = 1, esize = fpay_dtype_size(y->dtype);
        for (int i = 0; i < axis; i++)
            outer *= (size_t)y->dims[i];
        for (int k = 0; k < n->n_inputs; k++) {
            const fpay_tensor *t = tensor(ctx, n->inputs[k]);
            size_t in_inner = esize;
            for (int i = axis; i < t->rank; i++)
                in_inner *= (size_t)t->dims[i];
            inner[k] = in_inner;
            ins[k] = ctx->buffers[n->inputs[k]];
        }
        fpay_ref_concat(n->n_inputs, outer, inner, ins, out);
        return FPAY_OK;
    }
    case FPAY_OP_CAST:
        fpay_ref_cast(ktype(x->dtype), ktype(y->dtype), count, in0, out);
        return FPAY_OK;
    case FPAY_OP_DEQUANTIZE:
        fpay_ref_dequantize_f16_f32(count, in0, out);
        return FPAY_OK;
    case FPAY_OP_COUNT_:
        break;
    }
    fpay_set_err(err, err_len, "cpu backend: no kernel for %s", fpay_op_name(n->op));
    return FPAY_INTERNAL;
}

static bool cpu_supports_node(const fpay_graph *graph, int index)
{
    return index >= 0 && index < graph->n_nodes &&
           (unsigned)graph->nodes[index].op < (unsigned)FPAY_OP_COUNT_;
}

static const fpay_backend_iface cpu_iface = {
    .abi_version = FPAY_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fpay_backend_iface),
    .name = "cpu",
    .version = FPAY_VERSION_STRING,
    .probe = NULL,
    .supports_node = cpu_supports_node,
    .prepare = fpay_cpu_prepare,
    .run_node = cpu_run_node,
    .release = fpay_cpu_release,
};

const fpay_backend_iface *fpay_cpu_backend(void) { return &cpu_iface; }

fpay_status fpay_cpu_run_node(const fpay_exec_ctx *ctx, int index, char *err,
                              size_t err_len)
{
    return cpu_run_node(NULL, ctx, index, err, err_len);
}
