/*
 * vk_support.c - which nodes the Vulkan backend takes: data types, tensor
 * sizes against the device's maxStorageBufferRange, and each op's shapes,
 * attributes and activations; and which constants the weights buffer holds.
 * A pure function of the graph (and the probed limit), kept apart from the
 * device code so the rules the shaders rely on are read in one place.
 */
#include "vk_internal.h"

/* Set by the probe (vulkan_backend.c) to the chosen device's limit. */
VkDeviceSize vk_max_range = 128u << 20;

static bool act_ok(const fpay_graph *g, const fpay_node *n, int64_t channels)
{
    switch (n->act) {
    case FPAY_ACT_NONE:
    case FPAY_ACT_RELU:
    case FPAY_ACT_RELU_N1_TO_1:
    case FPAY_ACT_RELU6:
    case FPAY_ACT_LEAKY_RELU:
        return true;
    case FPAY_ACT_PRELU:
        return vk_is_const_f32(g, n->act_slope) &&
               fpay_backend_elems(vk_tensor(g, n->act_slope)) == channels;
    }
    return false;
}

/* f32 everywhere, and every tensor small enough for one binding. */
static bool tensors_ok(const fpay_graph *g, const fpay_node *n)
{
    for (int k = 0; k < n->n_inputs; k++) {
        int t = n->inputs[k];
        if (t < 0)
            continue;
        if (g->tensors[t].dtype != FPAY_DT_F32 || vk_tensor_bytes(g, t) > vk_max_range)
            return false;
    }
    for (int k = 0; k < n->n_outputs; k++)
        if (g->tensors[n->outputs[k]].dtype != FPAY_DT_F32 ||
            vk_tensor_bytes(g, n->outputs[k]) > vk_max_range)
            return false;
    return true;
}

static bool same_shape(const fpay_tensor *a, const fpay_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

static bool conv_ok(const fpay_graph *g, const fpay_node *n)
{
    const fpay_tensor *x = vk_tensor(g, n->inputs[0]), *y = vk_tensor(g, n->outputs[0]);
    if (n->n_inputs < 2 || n->n_inputs > FPAY_CONV_INPUT_RESIDUAL + 1 || x->rank != 4 ||
        y->rank != 4 || !vk_is_const_f32(g, n->inputs[1]))
        return false;
    const fpay_tensor *w = vk_tensor(g, n->inputs[1]);
    if (w->rank != 4)
        return false;
    int64_t oc = y->dims[3];
    if (n->op == FPAY_OP_CONV_2D) {
        if (w->dims[0] != oc || w->dims[3] != x->dims[3])
            return false; /* grouped convolution: not here */
    } else {
        int m = n->attr.conv.depth_multiplier;
        if (w->dims[0] != 1 || w->dims[3] != oc || m < 1 || x->dims[3] * m != oc)
            return false;
    }
    if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
        (!vk_is_const_f32(g, n->inputs[2]) || fpay_backend_elems(vk_tensor(g, n->inputs[2])) != oc))
        return false;
    if (n->n_inputs > FPAY_CONV_INPUT_RESIDUAL) {
        int r = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
        if (r < 0 || vk_is_const(g, r) || !same_shape(vk_tensor(g, r), y))
            return false;
    }
    const fpay_conv_attr *c = &n->attr.conv;
    if (c->stride_h < 1 || c->stride_w < 1 || c->dilation_h < 1 || c->dilation_w < 1 ||
        c->pad_top < 0 || c->pad_left < 0)
        return false;
    return act_ok(g, n, oc);
}

static bool fc_ok(const fpay_graph *g, const fpay_node *n)
{
    const fpay_tensor *x = vk_tensor(g, n->inputs[0]), *y = vk_tensor(g, n->outputs[0]);
    if (n->n_inputs < 2 || n->n_inputs > 3 || !vk_is_const_f32(g, n->inputs[1]) || y->rank < 1)
        return false;
    const fpay_tensor *w = vk_tensor(g, n->inputs[1]);
    if (w->rank != 2 || w->dims[0] < 1 || w->dims[1] < 1)
        return false;
    int64_t units = w->dims[0], k = w->dims[1], xe = fpay_backend_elems(x);
    if (xe % k != 0 || y->dims[y->rank - 1] != units ||
        fpay_backend_elems(y) != xe / k * units)
        return false;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
        (!vk_is_const_f32(g, n->inputs[2]) ||
         fpay_backend_elems(vk_tensor(g, n->inputs[2])) != units))
        return false;
    return act_ok(g, n, units);
}

static bool pool_ok(const fpay_node *n, const fpay_tensor *x, const fpay_tensor *y)
{
    const fpay_pool_attr *a = &n->attr.pool;
    if (x->rank != 4 || y->rank != 4 || y->dims[3] != x->dims[3] || y->dims[0] != x->dims[0])
        return false;
    if (a->filter_h < 1 || a->filter_w < 1 || a->stride_h < 1 || a->stride_w < 1 ||
        a->pad_top < 0 || a->pad_left < 0)
        return false;
    /* Pools carry only the clamp activations (shape inference says so). */
    return n->act == FPAY_ACT_NONE || n->act == FPAY_ACT_RELU ||
           n->act == FPAY_ACT_RELU6 || n->act == FPAY_ACT_RELU_N1_TO_1;
}

bool vk_supports_node(const fpay_graph *g, int index)
{
    if (index < 0 || index >= g->n_nodes)
        return false;
    const fpay_node *n = &g->nodes[index];
    if (n->n_outputs != 1 || n->n_inputs < 1 || n->inputs[0] < 0 || !tensors_ok(g, n))
        return false;
    const fpay_tensor *x = vk_tensor(g, n->inputs[0]), *y = vk_tensor(g, n->outputs[0]);
    bool x_const = vk_is_const(g, n->inputs[0]);
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D:
        return !x_const && conv_ok(g, n);
    case FPAY_OP_FULLY_CONNECTED:
        return !x_const && fc_ok(g, n);
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL: {
        if (n->n_inputs != 2 || n->inputs[1] < 0)
            return false;
        const fpay_tensor *b = vk_tensor(g, n->inputs[1]);
        if (x->rank > 4 || b->rank > 4 || y->rank > 4)
            return false;
        if ((x_const && !x->data) || (vk_is_const(g, n->inputs[1]) && !b->data))
            return false;
        return act_ok(g, n, y->rank ? y->dims[y->rank - 1] : 1);
    }
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D:
        return !x_const && pool_ok(n, x, y);
    case FPAY_OP_SOFTMAX:
        return !x_const && n->act == FPAY_ACT_NONE && x->rank >= 1 && x->dims[x->rank - 1] >= 1 &&
               fpay_backend_elems(x) == fpay_backend_elems(y);
    case FPAY_OP_RESHAPE:
        return n->act == FPAY_ACT_NONE && !x_const &&
               fpay_backend_elems(x) == fpay_backend_elems(y);
    default:
        return false;
    }
}

bool vk_wants_const(const fpay_graph *g, const fpay_node *n, int k)
{
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D:
    case FPAY_OP_FULLY_CONNECTED:
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
        return k < n->n_inputs && vk_is_const_f32(g, n->inputs[k]);
    default:
        return false;
    }
}
