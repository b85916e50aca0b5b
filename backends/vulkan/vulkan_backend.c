/*
 * vulkan_backend.c - a facepay backend plugin on Vulkan compute (fp32, or
 * fp16 storage with fp32 arithmetic: FACEPAY_VK_PRECISION=fp16).
 *
 * The plugin opens libvulkan.so.1 itself (vk_device.c), so it loads
 * everywhere and its probe reports, with a reason, a machine with no loader,
 * no driver (ICD) or no usable device. FPAY_BACKEND_CAP_ACCELERATOR is
 * declared only when the chosen device is not a CPU, so "auto" never picks
 * lavapipe.
 *
 * Two levels of state:
 *   - a device context (vk_ctx): instance, device, queue, command pool,
 *     fence, the pipeline cache (kept on disk, vk_cache.c), the pipelines,
 *     and the weights buffer: every constant an op we run reads (conv/FC
 *     weights, biases, PReLU slopes, constant elementwise operands), packed
 *     and uploaded once to device-local memory (through a staging buffer
 *     unless that memory is host-visible). It depends on the model, not on
 *     the shapes, so when a session re-prepares after a reshape (a new batch
 *     size) the context released a moment before is taken back (a small
 *     parking list keyed by a hash of the weights) instead of creating a
 *     device and uploading again;
 *   - the prepared state (vk_state, per prepare): the activation arena, laid
 *     out by lifetime as core/src/memplan.c does (greedy, largest first), a
 *     staging buffer when the arena is not host-visible, one descriptor set
 *     per node binding exactly its tensors' ranges (so a batch is limited
 *     per tensor by maxStorageBufferRange, not for the whole network), and
 *     one recorded command buffer per range, reused by every run.
 *
 * Precision (FACEPAY_VK_PRECISION, read at each prepare, i.e. at session
 * creation and reshape): fp32 by default, since the pay-by-face threshold was
 * calibrated on fp32 embeddings. fp16 (where the device has
 * storageBuffer16BitAccess, else fp32 and the description says so): the
 * weights buffer and the arena hold fp16 (half the upload, memory and
 * bandwidth), the shaders' fp16 variants widen every load to float and
 * accumulate in fp32, and the host converts f32 <-> fp16 (round to nearest
 * even) when it copies inputs in and outputs out.
 * See docs/vulkan.md.
 */
#include "vk_internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fpay_vk_binary_f16_spv.spv.h"
#include "fpay_vk_binary_spv.spv.h"
#include "fpay_vk_conv2d_f16_spv.spv.h"
#include "fpay_vk_conv2d_spv.spv.h"
#include "fpay_vk_copy_f16_spv.spv.h"
#include "fpay_vk_copy_spv.spv.h"
#include "fpay_vk_dwconv2d_f16_spv.spv.h"
#include "fpay_vk_dwconv2d_spv.spv.h"
#include "fpay_vk_fc_f16_spv.spv.h"
#include "fpay_vk_fc_spv.spv.h"
#include "fpay_vk_pool_f16_spv.spv.h"
#include "fpay_vk_pool_spv.spv.h"
#include "fpay_vk_softmax_f16_spv.spv.h"
#include "fpay_vk_softmax_spv.spv.h"

/* How long a submission may take before the device counts as hung or lost
 * (FACEPAY_VK_TIMEOUT_MS overrides): 60 s on a GPU; 10 min on a CPU device
 * (lavapipe), whose speed depends on what else the machine runs. */
#define DEFAULT_TIMEOUT_MS 60000u
#define DEFAULT_TIMEOUT_CPU_MS 600000u
#define RELEASE_GRACE_NS (5ull * 1000 * 1000 * 1000)
#define SLOT_ALIGN 256u            /* >= any minStorageBufferOffsetAlignment */
#define MAX_PIPES 48
#define MAX_RANGES 16
#define PARK_MAX 2
#define PUSH_MAX 128

static bool env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* ------------------------------------------------------------ precision */

enum { PREC_INVALID = -1, PREC_FP32 = 0, PREC_FP16 = 1 };

/* FACEPAY_VK_PRECISION: "fp32" (also when unset or empty) or "fp16", any
 * case; anything else is PREC_INVALID (a session then fails to prepare,
 * rather than silently running at a precision nobody asked for). */
static int precision_env(const char **value)
{
    const char *v = getenv("FACEPAY_VK_PRECISION");
    *value = v ? v : "";
    if (!v || !*v || strcasecmp(v, "fp32") == 0)
        return PREC_FP32;
    if (strcasecmp(v, "fp16") == 0)
        return PREC_FP16;
    return PREC_INVALID;
}

/* IEEE binary16 <-> binary32 on the host (inputs in, outputs out, weights
 * at upload): round to nearest even, overflow to infinity, subnormals kept,
 * NaN kept quiet. */
static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0));
    if (ax >= 0x477ff000u) /* >= 65520: rounds past 65504 */
        return (uint16_t)(sign | 0x7c00u);
    uint32_t h, rem, half;
    if (ax >= 0x38800000u) { /* normal in fp16: rebias, drop 13 bits */
        h = (ax - 0x38000000u) >> 13;
        rem = ax & 0x1fffu;
        half = 0x1000u;
    } else {
        uint32_t e = ax >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - e; /* units of 2^-24 */
        h = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
    }
    if (rem > half || (rem == half && (h & 1u)))
        h++; /* a carry into the exponent is the right encoding */
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e)
        x = sign | ((e + 112) << 23) | (m << 13);
    else {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: exact */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* Copies n floats into device elements of esz bytes (4: as is, 2: fp16). */
static void to_device(void *dst, const float *src, size_t n, uint32_t esz)
{
    if (esz == 4) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = f32_to_f16(src[i]);
}

static void from_device(float *dst, const void *src, size_t n, uint32_t esz)
{
    if (esz == 4) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = f16_to_f32(s[i]);
}

/* ---------------------------------------------------------------- probe */

static fpay_backend_iface vk_iface;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static fpay_status probe_status = FPAY_BACKEND_UNAVAILABLE;
static char probe_why[256];
static char version_buf[1280] = "vulkan (no device)";
/* The chosen device's maxStorageBufferRange: supports_node declines a node
 * with a tensor larger than one binding can show (it then runs on the CPU). */
static VkDeviceSize g_max_range = 128u << 20;

/* The precision a session created now gets, for the description. */
static void describe_precision(const vk_choice *c, char *out, size_t len)
{
    const char *v;
    int prec = precision_env(&v);
    if (prec == PREC_INVALID)
        snprintf(out, len, "precision: FACEPAY_VK_PRECISION=%.32s is invalid (fp16 or fp32), "
                 "sessions fail", v);
    else if (prec == PREC_FP16 && c->fp16_storage)
        snprintf(out, len, "precision fp16 (fp16 storage, fp32 accumulation)");
    else if (prec == PREC_FP16)
        snprintf(out, len, "precision fp32 (fp16 requested by FACEPAY_VK_PRECISION, but the "
                 "device lacks storageBuffer16BitAccess)");
    else
        snprintf(out, len, "precision fp32");
}

static void probe_device(void)
{
    vk_fns f;
    memset(&f, 0, sizeof f);
    VkInstance inst;
    probe_status = fpay_vk_create_instance(&f, &inst, probe_why, sizeof probe_why);
    if (probe_status)
        return;
    vk_choice c;
    probe_status = fpay_vk_choose_device(&f, inst, &c, probe_why, sizeof probe_why);
    if (probe_status == FPAY_OK) {
        uint32_t v = c.props.apiVersion;
        g_max_range = c.props.limits.maxStorageBufferRange;
        char prec[192];
        describe_precision(&c, prec, sizeof prec);
        snprintf(version_buf, sizeof version_buf,
                 "vulkan-2 (device %u: %.256s, %s, driver %.512s, API %u.%u.%u; "
                 "maxStorageBufferRange %llu MiB, maxMemoryAllocationSize %llu MiB, "
                 "fp16 storage %s, fp16 arithmetic %s; %s)",
                 c.index, c.props.deviceName, fpay_vk_type_name(c.props.deviceType),
                 c.driver, VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v),
                 VK_API_VERSION_PATCH(v),
                 (unsigned long long)(c.props.limits.maxStorageBufferRange >> 20),
                 (unsigned long long)(c.max_alloc >> 20), c.fp16_storage ? "yes" : "no",
                 c.fp16_arith ? "yes" : "no", prec);
        if (c.props.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU)
            vk_iface.caps |= FPAY_BACKEND_CAP_ACCELERATOR;
    }
    f.vkDestroyInstance(inst, NULL);
}

static fpay_status vk_probe(char *why, size_t why_len)
{
    pthread_once(&probe_once, probe_device);
    if (probe_status)
        fpay_backend_set_err(why, why_len, "%s", probe_why);
    return probe_status;
}

/* ------------------------------------------------------------- support */

static const fpay_tensor *tensor(const fpay_graph *g, int t) { return &g->tensors[t]; }

static bool is_const(const fpay_graph *g, int t)
{
    return (g->tensors[t].flags & FPAY_TENSOR_CONST) != 0;
}

static bool is_const_f32(const fpay_graph *g, int t)
{
    return t >= 0 && t < g->n_tensors && is_const(g, t) &&
           g->tensors[t].dtype == FPAY_DT_F32 && g->tensors[t].data;
}

/* Bytes of tensor t on the host (f32). */
static size_t tensor_bytes(const fpay_graph *g, int t)
{
    return (size_t)fpay_backend_elems(tensor(g, t)) * sizeof(float);
}

/* Bytes of tensor t on the device: elements of esz bytes (fp32 or fp16). */
static size_t dev_bytes(const fpay_graph *g, int t, uint32_t esz)
{
    return (size_t)fpay_backend_elems(tensor(g, t)) * esz;
}

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
        return is_const_f32(g, n->act_slope) &&
               fpay_backend_elems(tensor(g, n->act_slope)) == channels;
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
        if (g->tensors[t].dtype != FPAY_DT_F32 || tensor_bytes(g, t) > g_max_range)
            return false;
    }
    for (int k = 0; k < n->n_outputs; k++)
        if (g->tensors[n->outputs[k]].dtype != FPAY_DT_F32 ||
            tensor_bytes(g, n->outputs[k]) > g_max_range)
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
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    if (n->n_inputs < 2 || n->n_inputs > FPAY_CONV_INPUT_RESIDUAL + 1 || x->rank != 4 ||
        y->rank != 4 || !is_const_f32(g, n->inputs[1]))
        return false;
    const fpay_tensor *w = tensor(g, n->inputs[1]);
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
        (!is_const_f32(g, n->inputs[2]) || fpay_backend_elems(tensor(g, n->inputs[2])) != oc))
        return false;
    if (n->n_inputs > FPAY_CONV_INPUT_RESIDUAL) {
        int r = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
        if (r < 0 || is_const(g, r) || !same_shape(tensor(g, r), y))
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
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    if (n->n_inputs < 2 || n->n_inputs > 3 || !is_const_f32(g, n->inputs[1]) || y->rank < 1)
        return false;
    const fpay_tensor *w = tensor(g, n->inputs[1]);
    if (w->rank != 2 || w->dims[0] < 1 || w->dims[1] < 1)
        return false;
    int64_t units = w->dims[0], k = w->dims[1], xe = fpay_backend_elems(x);
    if (xe % k != 0 || y->dims[y->rank - 1] != units ||
        fpay_backend_elems(y) != xe / k * units)
        return false;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
        (!is_const_f32(g, n->inputs[2]) || fpay_backend_elems(tensor(g, n->inputs[2])) != units))
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

static bool vk_supports_node(const fpay_graph *g, int index)
{
    if (index < 0 || index >= g->n_nodes)
        return false;
    const fpay_node *n = &g->nodes[index];
    if (n->n_outputs != 1 || n->n_inputs < 1 || n->inputs[0] < 0 || !tensors_ok(g, n))
        return false;
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    bool x_const = is_const(g, n->inputs[0]);
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
        const fpay_tensor *b = tensor(g, n->inputs[1]);
        if (x->rank > 4 || b->rank > 4 || y->rank > 4)
            return false;
        if ((x_const && !x->data) || (is_const(g, n->inputs[1]) && !b->data))
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

/* Constant inputs that live in the weights buffer: whatever an op we run may
 * read, whether or not this prepare runs the node (so the set, and the
 * context holding it, does not depend on the shapes). */
static bool wants_const(const fpay_graph *g, const fpay_node *n, int k)
{
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D:
    case FPAY_OP_FULLY_CONNECTED:
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL:
        return k < n->n_inputs && is_const_f32(g, n->inputs[k]);
    default:
        return false;
    }
}

/* ------------------------------------------------------ device context */

enum { PIPE_CONV, PIPE_DWCONV, PIPE_BINARY, PIPE_COPY, PIPE_POOL, PIPE_FC, PIPE_SOFTMAX,
       PIPE_COUNT };

typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map;                /* host-visible: mapped for the buffer's life */
    VkDeviceSize size;
} vk_buf;

typedef struct vk_pipe {
    int family;
    int32_t spec[4];          /* KH, KW, SH, SW (0: from push constants) */
    VkPipeline pipe;
} vk_pipe;

typedef struct vk_ctx {
    vk_fns f;
    VkInstance inst;
    VkDevice dev;
    VkQueue queue;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem_props;
    VkDeviceSize max_alloc;
    uint64_t timeout_ns;
    VkCommandPool cpool;
    VkCommandBuffer cmd;      /* one-off uploads */
    VkFence fence;
    VkPipelineCache pcache;
    bool pcache_dirty;
    char cache_path[1024];
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    vk_pipe pipes[MAX_PIPES];
    int n_pipes;
    vk_buf wts;
    int n_tensors;
    int64_t *wt_off;          /* tensor -> byte offset in wts, -1 none */
    uint64_t key;             /* hash of the weights it holds and the
                                 precision asked for */
    bool fp16;                /* fp16 storage (the fp16 shader variants) */
    uint32_t esz;             /* bytes per element on the device: 4 or 2 */
    bool broken;              /* a wait timed out or the device was lost */
} vk_ctx;

#define VKCHECK(call, what)                                                   \
    do {                                                                      \
        VkResult vr_ = (call);                                                \
        if (vr_ != VK_SUCCESS) {                                              \
            fpay_backend_set_err(err, err_len, "%s: %s", what,                \
                                 fpay_vk_result_str(vr_));                    \
            return vr_ == VK_ERROR_OUT_OF_HOST_MEMORY ||                      \
                           vr_ == VK_ERROR_OUT_OF_DEVICE_MEMORY               \
                       ? FPAY_OUT_OF_MEMORY                                   \
                       : FPAY_BACKEND_UNAVAILABLE;                            \
        }                                                                     \
    } while (0)

static void buf_free(vk_ctx *c, vk_buf *b)
{
    if (b->map)
        c->f.vkUnmapMemory(c->dev, b->mem);
    if (b->buf)
        c->f.vkDestroyBuffer(c->dev, b->buf, NULL);
    if (b->mem)
        c->f.vkFreeMemory(c->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

static int find_memory(const vk_ctx *c, uint32_t type_bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < c->mem_props.memoryTypeCount; i++)
        if ((type_bits & (1u << i)) &&
            (c->mem_props.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

/* A buffer in the first memory type with all of prefer[0], else prefer[1],
 * else prefer[2] (0 ends the list); mapped when host-visible. */
static fpay_status buf_create(vk_ctx *c, vk_buf *b, VkDeviceSize size, VkBufferUsageFlags usage,
                              const VkMemoryPropertyFlags prefer[3], char *err, size_t err_len)
{
    if (size > c->max_alloc) {
        fpay_backend_set_err(err, err_len,
                             "vulkan: a %llu-byte buffer exceeds maxMemoryAllocationSize "
                             "(%llu): use a smaller batch",
                             (unsigned long long)size, (unsigned long long)c->max_alloc);
        return FPAY_LIMIT_EXCEEDED;
    }
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VKCHECK(c->f.vkCreateBuffer(c->dev, &bi, NULL, &b->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    c->f.vkGetBufferMemoryRequirements(c->dev, b->buf, &req);
    int type = -1;
    for (int k = 0; k < 3 && type < 0 && prefer[k]; k++)
        type = find_memory(c, req.memoryTypeBits, prefer[k]);
    if (type < 0) {
        fpay_backend_set_err(err, err_len, "no Vulkan memory type for a %llu-byte buffer",
                             (unsigned long long)size);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = (uint32_t)type,
    };
    VKCHECK(c->f.vkAllocateMemory(c->dev, &ai, NULL, &b->mem), "vkAllocateMemory");
    VKCHECK(c->f.vkBindBufferMemory(c->dev, b->buf, b->mem, 0), "vkBindBufferMemory");
    b->size = size;
    if (c->mem_props.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
        VKCHECK(c->f.vkMapMemory(c->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map), "vkMapMemory");
    return FPAY_OK;
}

#define MEM_DL VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
#define MEM_HV (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)

static fpay_status stage_create(vk_ctx *c, vk_buf *b, VkDeviceSize size, char *err,
                                size_t err_len)
{
    static const VkMemoryPropertyFlags host[3] = {
        MEM_HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, MEM_HV, 0};
    return buf_create(c, b, size,
                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                      host, err, err_len);
}

/* Submits cmd and waits with the context's timeout. A timeout or a lost
 * device marks the context broken: it is never used or parked again. */
static fpay_status submit_wait(vk_ctx *c, VkCommandBuffer cmd, char *err, size_t err_len)
{
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd,
    };
    VKCHECK(c->f.vkResetFences(c->dev, 1, &c->fence), "vkResetFences");
    VkResult r = c->f.vkQueueSubmit(c->queue, 1, &si, c->fence);
    if (r == VK_SUCCESS && env_on("FACEPAY_VK_FAULT_LOST")) /* fault injection (tests) */
        r = VK_ERROR_DEVICE_LOST;
    if (r == VK_SUCCESS)
        r = c->f.vkWaitForFences(c->dev, 1, &c->fence, VK_TRUE, c->timeout_ns);
    if (r != VK_SUCCESS) {
        c->broken = true;
        fpay_backend_set_err(err, err_len, "vulkan: %s%s", fpay_vk_result_str(r),
                             r == VK_TIMEOUT ? " (the device did not finish in time: "
                                               "hung or lost; FACEPAY_VK_TIMEOUT_MS)"
                                             : "");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    return FPAY_OK;
}

static void save_pipeline_cache(vk_ctx *c)
{
    if (!c->pcache || !c->pcache_dirty || !c->cache_path[0])
        return;
    c->pcache_dirty = false;
    size_t n = 0;
    if (c->f.vkGetPipelineCacheData(c->dev, c->pcache, &n, NULL) != VK_SUCCESS || n == 0)
        return;
    void *data = malloc(n);
    if (data && c->f.vkGetPipelineCacheData(c->dev, c->pcache, &n, data) == VK_SUCCESS)
        fpay_vk_cache_save(c->cache_path, data, n);
    free(data);
}

static void ctx_destroy(vk_ctx *c)
{
    if (!c)
        return;
    if (c->dev) {
        if (c->broken) {
            /* Work may still be in flight: freeing what it uses is undefined
             * and waiting for idle may never return. Give it a bounded grace;
             * if it does not finish, leak the device rather than hang. */
            if (c->f.vkWaitForFences(c->dev, 1, &c->fence, VK_TRUE, RELEASE_GRACE_NS) !=
                VK_SUCCESS)
                return;
        }
        c->f.vkDeviceWaitIdle(c->dev);
        for (int i = 0; i < c->n_pipes; i++)
            c->f.vkDestroyPipeline(c->dev, c->pipes[i].pipe, NULL);
        if (c->pcache)
            c->f.vkDestroyPipelineCache(c->dev, c->pcache, NULL);
        if (c->layout)
            c->f.vkDestroyPipelineLayout(c->dev, c->layout, NULL);
        if (c->dsl)
            c->f.vkDestroyDescriptorSetLayout(c->dev, c->dsl, NULL);
        buf_free(c, &c->wts);
        if (c->fence)
            c->f.vkDestroyFence(c->dev, c->fence, NULL);
        if (c->cpool)
            c->f.vkDestroyCommandPool(c->dev, c->cpool, NULL);
        c->f.vkDestroyDevice(c->dev, NULL);
    }
    if (c->inst)
        c->f.vkDestroyInstance(c->inst, NULL);
    free(c->wt_off);
    free(c);
}

/* want_fp16: FACEPAY_VK_PRECISION=fp16. The 16-bit storage feature is
 * enabled only when asked for and supported; otherwise fp32. */
static fpay_status ctx_device(vk_ctx *c, bool want_fp16, char *err, size_t err_len)
{
    fpay_status st = fpay_vk_create_instance(&c->f, &c->inst, err, err_len);
    if (st)
        return st;
    vk_choice ch;
    if ((st = fpay_vk_choose_device(&c->f, c->inst, &ch, err, err_len)))
        return st;
    c->props = ch.props;
    c->max_alloc = ch.max_alloc;
    c->f.vkGetPhysicalDeviceMemoryProperties(ch.pd, &c->mem_props);
    const char *tmo = getenv("FACEPAY_VK_TIMEOUT_MS");
    uint64_t ms = ch.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? DEFAULT_TIMEOUT_CPU_MS
                                                                      : DEFAULT_TIMEOUT_MS;
    if (tmo && *tmo)
        ms = strtoull(tmo, NULL, 10);
    c->timeout_ns = ms * 1000000ull;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = ch.queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    c->fp16 = want_fp16 && ch.fp16_storage;
    c->esz = c->fp16 ? 2 : 4;
    /* Only what the fp16 shaders use: 16-bit storage (they do their
     * arithmetic in fp32, so shaderFloat16 is not needed). */
    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
        .storageBuffer16BitAccess = VK_TRUE,
    };
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = c->fp16 ? &s16 : NULL,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
    };
    VKCHECK(c->f.vkCreateDevice(ch.pd, &di, NULL, &c->dev), "vkCreateDevice");
    bool ok = true;
#define LOAD_(name)                                                           \
    c->f.name = (PFN_##name)c->f.vkGetDeviceProcAddr(c->dev, #name);          \
    ok = ok && c->f.name;
    VK_DEVICE_FNS(LOAD_)
#undef LOAD_
    if (!ok) {
        /* vkDestroyDevice may be the one missing: leak rather than crash. */
        if (!c->f.vkDestroyDevice)
            c->dev = VK_NULL_HANDLE;
        fpay_backend_set_err(err, err_len, "the Vulkan driver lacks a 1.2 device function");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    c->f.vkGetDeviceQueue(c->dev, ch.queue_family, 0, &c->queue);

    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = ch.queue_family,
    };
    VKCHECK(c->f.vkCreateCommandPool(c->dev, &pi, NULL, &c->cpool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = c->cpool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VKCHECK(c->f.vkAllocateCommandBuffers(c->dev, &ai, &c->cmd), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VKCHECK(c->f.vkCreateFence(c->dev, &fi, NULL, &c->fence), "vkCreateFence");

    /* The pipeline cache: seeded from disk when the file is for this
     * device; a missing or bad file just means an empty cache. */
    size_t n = 0;
    void *data = NULL;
    if (fpay_vk_cache_path(&c->props, c->cache_path, sizeof c->cache_path))
        data = fpay_vk_cache_load(c->cache_path, &c->props, &n);
    else
        c->cache_path[0] = '\0';
    VkPipelineCacheCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
        .initialDataSize = n,
        .pInitialData = data,
    };
    VkResult r = c->f.vkCreatePipelineCache(c->dev, &ci, NULL, &c->pcache);
    if (r != VK_SUCCESS && data) { /* the driver refused the data: start empty */
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        r = c->f.vkCreatePipelineCache(c->dev, &ci, NULL, &c->pcache);
    }
    free(data);
    if (r != VK_SUCCESS)
        c->pcache = VK_NULL_HANDLE; /* optional */

    VkDescriptorSetLayoutBinding b[4];
    for (uint32_t k = 0; k < 4; k++)
        b[k] = (VkDescriptorSetLayoutBinding){
            .binding = k,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo dli = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = 4,
        .pBindings = b,
    };
    VKCHECK(c->f.vkCreateDescriptorSetLayout(c->dev, &dli, NULL, &c->dsl),
            "vkCreateDescriptorSetLayout");
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = PUSH_MAX,
    };
    VkPipelineLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &c->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    VKCHECK(c->f.vkCreatePipelineLayout(c->dev, &li, NULL, &c->layout),
            "vkCreatePipelineLayout");
    return FPAY_OK;
}

/* The pipeline of a family with these specialization constants, created on
 * first use (through the pipeline cache). When the table is nearly full,
 * conv families fall back to their unspecialized pipeline. */
static fpay_status ctx_pipeline(vk_ctx *c, int family, const int32_t spec_in[4],
                                VkPipeline *out, char *err, size_t err_len)
{
    int32_t spec[4] = {0, 0, 0, 0};
    if (spec_in && c->n_pipes < MAX_PIPES - PIPE_COUNT)
        memcpy(spec, spec_in, sizeof spec);
    for (int i = 0; i < c->n_pipes; i++)
        if (c->pipes[i].family == family && memcmp(c->pipes[i].spec, spec, sizeof spec) == 0) {
            *out = c->pipes[i].pipe;
            return FPAY_OK;
        }
    if (c->n_pipes >= MAX_PIPES) {
        fpay_backend_set_err(err, err_len, "vulkan: pipeline table full");
        return FPAY_INTERNAL;
    }
    /* [precision][family]: the two variants of each shader. */
    static const struct { const uint32_t *code; size_t size; } spv[2][PIPE_COUNT] = {
        {
            [PIPE_CONV] = {fpay_vk_conv2d_spv, sizeof fpay_vk_conv2d_spv},
            [PIPE_DWCONV] = {fpay_vk_dwconv2d_spv, sizeof fpay_vk_dwconv2d_spv},
            [PIPE_BINARY] = {fpay_vk_binary_spv, sizeof fpay_vk_binary_spv},
            [PIPE_COPY] = {fpay_vk_copy_spv, sizeof fpay_vk_copy_spv},
            [PIPE_POOL] = {fpay_vk_pool_spv, sizeof fpay_vk_pool_spv},
            [PIPE_FC] = {fpay_vk_fc_spv, sizeof fpay_vk_fc_spv},
            [PIPE_SOFTMAX] = {fpay_vk_softmax_spv, sizeof fpay_vk_softmax_spv},
        },
        {
            [PIPE_CONV] = {fpay_vk_conv2d_f16_spv, sizeof fpay_vk_conv2d_f16_spv},
            [PIPE_DWCONV] = {fpay_vk_dwconv2d_f16_spv, sizeof fpay_vk_dwconv2d_f16_spv},
            [PIPE_BINARY] = {fpay_vk_binary_f16_spv, sizeof fpay_vk_binary_f16_spv},
            [PIPE_COPY] = {fpay_vk_copy_f16_spv, sizeof fpay_vk_copy_f16_spv},
            [PIPE_POOL] = {fpay_vk_pool_f16_spv, sizeof fpay_vk_pool_f16_spv},
            [PIPE_FC] = {fpay_vk_fc_f16_spv, sizeof fpay_vk_fc_f16_spv},
            [PIPE_SOFTMAX] = {fpay_vk_softmax_f16_spv, sizeof fpay_vk_softmax_f16_spv},
        },
    };
    VkShaderModuleCreateInfo mi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = spv[c->fp16][family].size,
        .pCode = spv[c->fp16][family].code,
    };
    VkShaderModule mod;
    VKCHECK(c->f.vkCreateShaderModule(c->dev, &mi, NULL, &mod), "vkCreateShaderModule");
    VkSpecializationMapEntry map[4];
    for (uint32_t k = 0; k < 4; k++)
        map[k] = (VkSpecializationMapEntry){
            .constantID = k, .offset = k * (uint32_t)sizeof(int32_t), .size = sizeof(int32_t)};
    VkSpecializationInfo si = {
        .mapEntryCount = 4, .pMapEntries = map, .dataSize = sizeof spec, .pData = spec,
    };
    bool conv = family == PIPE_CONV || family == PIPE_DWCONV;
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = mod,
            .pName = "main",
            .pSpecializationInfo = conv ? &si : NULL,
        },
        .layout = c->layout,
    };
    VkPipeline p;
    VkResult r = c->f.vkCreateComputePipelines(c->dev, c->pcache, 1, &ci, NULL, &p);
    c->f.vkDestroyShaderModule(c->dev, mod, NULL);
    VKCHECK(r, "vkCreateComputePipelines");
    c->pipes[c->n_pipes++] = (vk_pipe){.family = family,
                                       .spec = {spec[0], spec[1], spec[2], spec[3]},
                                       .pipe = p};
    c->pcache_dirty = true;
    *out = p;
    return FPAY_OK;
}

static uint64_t hash_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

/* Which constants go into the weights buffer (byte offsets, elements of esz
 * bytes) and a hash of them, contents included: a parked context is taken
 * back only by a graph with the very same weights (a freed model's address
 * may be reused). */
static uint64_t weight_layout(const fpay_graph *g, uint32_t esz, int64_t *off, size_t *total)
{
    uint64_t h = hash_mix(0, (uint64_t)g->n_tensors);
    size_t bytes = 0;
    for (int t = 0; t < g->n_tensors; t++)
        off[t] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k <= n->n_inputs; k++) {
            int t = k < n->n_inputs ? n->inputs[k] : n->act_slope;
            if (k < n->n_inputs ? !wants_const(g, n, k)
                                : (n->act != FPAY_ACT_PRELU || !is_const_f32(g, t)))
                continue;
            if (off[t] >= 0)
                continue;
            off[t] = (int64_t)bytes;
            size_t nb = tensor_bytes(g, t);
            size_t db = dev_bytes(g, t, esz);
            bytes += (db + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
            h = hash_mix(h, (uint64_t)t);
            h = hash_mix(h, (uint64_t)nb);
            const unsigned char *d = g->tensors[t].data;
            uint64_t w, hc = 0xcbf29ce484222325ull;
            size_t j = 0;
            for (; j + 8 <= nb; j += 8) {
                memcpy(&w, d + j, 8);
                hc = (hc ^ w) * 0x100000001b3ull;
                hc ^= hc >> 29;
            }
            for (; j < nb; j++)
                hc = (hc ^ d[j]) * 0x100000001b3ull;
            h = hash_mix(h, hc);
        }
    }
    *total = bytes;
    return h;
}

static fpay_status ctx_upload_weights(vk_ctx *c, const fpay_graph *g, size_t bytes,
                                      char *err, size_t err_len)
{
    VkDeviceSize size = bytes ? bytes : SLOT_ALIGN;
    if (size > c->props.limits.maxStorageBufferRange) {
        fpay_backend_set_err(err, err_len,
                             "vulkan: %llu bytes of weights exceed maxStorageBufferRange",
                             (unsigned long long)size);
        return FPAY_LIMIT_EXCEEDED;
    }
    static const VkMemoryPropertyFlags dl[3] = {MEM_DL | MEM_HV, MEM_DL, MEM_HV};
    fpay_status st = buf_create(c, &c->wts, size,
                                VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                    VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                dl, err, err_len);
    if (st)
        return st;
    /* Device-local and host-visible (lavapipe, integrated GPUs, ReBAR):
     * write through the mapping; otherwise (or FACEPAY_VK_STAGING=1, which
     * tests the discrete-GPU path anywhere) through a staging buffer. */
    bool staging = !c->wts.map || env_on("FACEPAY_VK_STAGING");
    vk_buf stage = {0};
    unsigned char *dst = c->wts.map;
    if (staging) {
        if ((st = stage_create(c, &stage, size, err, err_len))) {
            buf_free(c, &stage);
            return st;
        }
        dst = stage.map;
    }
    /* fp16: converted here, so the upload and the buffer are half size. */
    for (int t = 0; t < g->n_tensors; t++)
        if (c->wt_off[t] >= 0)
            to_device(dst + c->wt_off[t], g->tensors[t].data,
                      (size_t)fpay_backend_elems(tensor(g, t)), c->esz);
    if (staging) {
        VkCommandBufferBeginInfo bi = {
            .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
            .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
        };
        VkResult r = c->f.vkBeginCommandBuffer(c->cmd, &bi);
        if (r == VK_SUCCESS) {
            VkBufferCopy region = {.size = size};
            c->f.vkCmdCopyBuffer(c->cmd, stage.buf, c->wts.buf, 1, &region);
            VkMemoryBarrier mb = {
                .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                .dstAccessMask = VK_ACCESS_SHADER_READ_BIT,
            };
            c->f.vkCmdPipelineBarrier(c->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                                      VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0,
                                      NULL, 0, NULL);
            r = c->f.vkEndCommandBuffer(c->cmd);
        }
        if (r != VK_SUCCESS) {
            buf_free(c, &stage);
            VKCHECK(r, "recording the weight upload");
        }
        st = submit_wait(c, c->cmd, err, err_len);
        if (st == FPAY_OK || !c->broken)
            buf_free(c, &stage);
    }
    return st;
}

/* Contexts released by a session, kept for its next prepare (a reshape) or
 * another session of the same model. FACEPAY_VK_PARK=0 turns it off. */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static vk_ctx *parked[PARK_MAX];

static fpay_status ctx_acquire(const fpay_graph *g, bool want_fp16, vk_ctx **out, char *err,
                               size_t err_len)
{
    *out = NULL;
    int64_t *off = malloc(((size_t)g->n_tensors + 1) * sizeof *off);
    if (!off) {
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    size_t bytes = 0;
    /* The precision asked for is part of the key: an fp32 session never
     * takes back an fp16 context or the reverse. */
    uint64_t key = hash_mix(weight_layout(g, 4, off, &bytes), want_fp16 ? 16 : 32);
    pthread_mutex_lock(&park_mu);
    for (int i = 0; i < PARK_MAX; i++)
        if (parked[i] && parked[i]->key == key && parked[i]->n_tensors == g->n_tensors) {
            *out = parked[i];
            parked[i] = NULL;
            break;
        }
    pthread_mutex_unlock(&park_mu);
    if (*out) {
        free(off);
        return FPAY_OK;
    }
    vk_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        free(off);
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    c->wt_off = off;
    c->n_tensors = g->n_tensors;
    c->key = key;
    fpay_status st = ctx_device(c, want_fp16, err, err_len);
    if (!st && c->esz != 4)
        (void)weight_layout(g, c->esz, off, &bytes); /* fp16 offsets */
    if (!st)
        st = ctx_upload_weights(c, g, bytes, err, err_len);
    if (st) {
        ctx_destroy(c);
        return st;
    }
    *out = c;
    return FPAY_OK;
}

/* Parked contexts are destroyed at exit (atexit runs before the libraries'
 * own destructors, so the driver is still there): a device left alive
 * would show its driver's allocations as leaks under LSan. */
static void unpark_all(void)
{
    pthread_mutex_lock(&park_mu);
    vk_ctx *all[PARK_MAX];
    memcpy(all, parked, sizeof all);
    memset(parked, 0, sizeof parked);
    pthread_mutex_unlock(&park_mu);
    for (int i = 0; i < PARK_MAX; i++)
        ctx_destroy(all[i]);
}

static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;
static void register_unpark(void) { (void)atexit(unpark_all); }

static bool park_enabled(void)
{
    const char *v = getenv("FACEPAY_VK_PARK");
    return !(v && strcmp(v, "0") == 0);
}

static void ctx_release(vk_ctx *c)
{
    if (!c)
        return;
    save_pipeline_cache(c);
    vk_ctx *evict = c;
    if (!c->broken && park_enabled()) {
        pthread_once(&atexit_once, register_unpark);
        pthread_mutex_lock(&park_mu);
        int slot = -1;
        for (int i = 0; i < PARK_MAX && slot < 0; i++)
            if (!parked[i])
                slot = i;
        if (slot < 0) { /* full: the oldest goes */
            evict = parked[0];
            memmove(parked, parked + 1, (PARK_MAX - 1) * sizeof *parked);
            slot = PARK_MAX - 1;
        } else {
            evict = NULL;
        }
        parked[slot] = c;
        pthread_mutex_unlock(&park_mu);
    }
    ctx_destroy(evict);
}

/* ------------------------------------------------------- prepared state */

typedef struct conv_pc {
    uint32_t w_off, b_off, s_off;
    int32_t N, H, W, C, OH, OW, OC;
    int32_t KH, KW, sh, sw, dh, dw, pt, pl, mult;
    uint32_t flags, act;
    float alpha;
    uint32_t total;
} conv_pc;

typedef struct binary_pc {
    uint32_t s_off;
    uint32_t d[4], sa[4], sb[4];
    uint32_t op, act;
    float alpha;
    uint32_t total;
} binary_pc;

typedef struct pool_pc {
    int32_t N, H, W, C, OH, OW, FH, FW, sh, sw, pt, pl;
    uint32_t avg, act, total;
} pool_pc;

typedef struct fc_pc {
    uint32_t w_off, b_off, s_off, K, units, flags, act;
    float alpha;
    uint32_t total;
} fc_pc;

typedef struct softmax_pc {
    uint32_t rows, cols;
} softmax_pc;

typedef struct copy_pc {
    uint32_t total;
} copy_pc;

_Static_assert(sizeof(conv_pc) <= PUSH_MAX, "conv push constants");
_Static_assert(sizeof(binary_pc) <= PUSH_MAX, "binary push constants");
_Static_assert(sizeof(pool_pc) <= PUSH_MAX, "pool push constants");

typedef struct vk_dispatch {
    VkPipeline pipe;          /* VK_NULL_HANDLE: nothing to do (empty tensor) */
    uint32_t size;            /* bytes of push constants */
    uint32_t total;           /* invocations */
    union {
        conv_pc conv;
        binary_pc bin;
        pool_pc pool;
        fc_pc fc;
        softmax_pc sm;
        copy_pc copy;
    } pc;
} vk_dispatch;

/* A recorded range: its command buffer and the tensors copied in before it
 * and out after it. */
typedef struct vk_range {
    int first, last;
    VkCommandBuffer cmd;
    int *io;                  /* n_in inputs, then n_out outputs */
    int n_in, n_out;
} vk_range;

typedef struct vk_state {
    vk_ctx *c;
    int n_tensors, n_nodes;
    bool *mine;
    int64_t *act_off;         /* tensor -> byte offset in the arena, -1 none */
    vk_buf arena, stage;
    bool staging;             /* copies go through stage (arena not mapped) */
    VkDescriptorPool dpool;
    VkDescriptorSet *sets;    /* per node */
    vk_dispatch *disp;        /* per node */
    vk_range ranges[MAX_RANGES];
    int n_ranges;
} vk_state;

static void range_free(vk_state *s, vk_range *r)
{
    if (r->cmd && s->c)
        s->c->f.vkFreeCommandBuffers(s->c->dev, s->c->cpool, 1, &r->cmd);
    free(r->io);
    memset(r, 0, sizeof *r);
}

static void release_state(vk_state *s)
{
    if (!s)
        return;
    vk_ctx *c = s->c;
    if (c && c->dev) {
        bool in_flight = c->broken &&
                         c->f.vkWaitForFences(c->dev, 1, &c->fence, VK_TRUE,
                                              RELEASE_GRACE_NS) != VK_SUCCESS;
        if (!in_flight) {
            for (int i = 0; i < s->n_ranges; i++)
                range_free(s, &s->ranges[i]);
            buf_free(c, &s->arena);
            buf_free(c, &s->stage);
            if (s->dpool)
                c->f.vkDestroyDescriptorPool(c->dev, s->dpool, NULL);
        }
    }
    for (int i = 0; i < s->n_ranges; i++)
        free(s->ranges[i].io);
    ctx_release(c);
    free(s->act_off);
    free(s->sets);
    free(s->disp);
    free(s->mine);
    free(s);
}

static void vk_release(void *state) { release_state(state); }

/* Arena layout by lifetime, as core/src/memplan.c: a tensor lives from the
 * moment it is written on the device (its producer, or the start of the
 * range that uploads it) to its last use on the device (its last reader in
 * our nodes, or the end of the range that downloads it); tensors are placed
 * largest first at the lowest offset free for their whole lifetime. */
typedef struct slot { int t; int lo, hi; size_t size; int64_t off; } slot;

static int slot_by_size(const void *a, const void *b)
{
    const slot *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->t - y->t;
}

static int slot_by_off(const void *a, const void *b)
{
    const slot *const *x = a, *const *y = b;
    return (*x)->off < (*y)->off ? -1 : (*x)->off > (*y)->off;
}

static fpay_status plan_arena(vk_state *s, const fpay_graph *g, size_t *arena_bytes,
                              char *err, size_t err_len)
{
    int nt = g->n_tensors, nn = g->n_nodes;
    int *run_lo = malloc(((size_t)nn + 1) * sizeof(int));
    int *run_hi = malloc(((size_t)nn + 1) * sizeof(int));
    int *prod = malloc(((size_t)nt + 1) * sizeof(int));
    int *lo = malloc(((size_t)nt + 1) * sizeof(int));
    int *hi = malloc(((size_t)nt + 1) * sizeof(int));
    slot *slots = malloc(((size_t)nt + 1) * sizeof(slot));
    slot **placed = malloc(((size_t)nt + 1) * sizeof(slot *));
    fpay_status st = FPAY_OK;
    if (!run_lo || !run_hi || !prod || !lo || !hi || !slots || !placed) {
        fpay_backend_set_err(err, err_len, "out of memory");
        st = FPAY_OUT_OF_MEMORY;
        goto out;
    }
    for (int i = 0; i < nn; i++) {
        run_lo[i] = s->mine[i] ? (i > 0 && s->mine[i - 1] ? run_lo[i - 1] : i) : -1;
    }
    for (int i = nn - 1; i >= 0; i--)
        run_hi[i] = s->mine[i] ? (i + 1 < nn && s->mine[i + 1] ? run_hi[i + 1] : i) : -1;
    for (int t = 0; t < nt; t++) {
        prod[t] = -1;
        lo[t] = INT_MAX;
        hi[t] = -1;
    }
    for (int i = 0; i < nn; i++)
        if (s->mine[i])
            prod[g->nodes[i].outputs[0]] = i;
    for (int i = 0; i < nn; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t < 0 || is_const(g, t))
                continue;
            if (!s->mine[i]) {
                /* Read by another backend: downloaded at the end of the
                 * producer's range. */
                if (prod[t] >= 0 && run_hi[prod[t]] > hi[t])
                    hi[t] = run_hi[prod[t]];
                continue;
            }
            bool same_run = prod[t] >= run_lo[i] && prod[t] < i;
            int start = same_run ? prod[t] : run_lo[i];
            if (start < lo[t])
                lo[t] = start;
            if (i > hi[t])
                hi[t] = i;
            if (prod[t] >= 0 && !same_run && run_hi[prod[t]] > hi[t])
                hi[t] = run_hi[prod[t]];
        }
        if (s->mine[i]) {
            int t = n->outputs[0];
            if (i < lo[t])
                lo[t] = i;
            int end = (g->tensors[t].flags & FPAY_TENSOR_OUTPUT) ? run_hi[i] : i;
            if (end > hi[t])
                hi[t] = end;
        }
    }
    int n_slots = 0;
    for (int t = 0; t < nt; t++) {
        s->act_off[t] = -1;
        if (hi[t] < 0 || is_const(g, t))
            continue;
        size_t b = dev_bytes(g, t, s->c->esz);
        b = (b ? b + SLOT_ALIGN - 1 : SLOT_ALIGN) / SLOT_ALIGN * SLOT_ALIGN;
        slots[n_slots++] = (slot){.t = t, .lo = lo[t], .hi = hi[t], .size = b, .off = -1};
    }
    qsort(slots, (size_t)n_slots, sizeof *slots, slot_by_size);
    size_t total = 0;
    for (int i = 0; i < n_slots; i++) {
        int np = 0;
        for (int j = 0; j < i; j++)
            if (slots[j].lo <= slots[i].hi && slots[i].lo <= slots[j].hi)
                placed[np++] = &slots[j];
        qsort(placed, (size_t)np, sizeof *placed, slot_by_off);
        int64_t off = 0;
        for (int j = 0; j < np; j++) {
            if (off + (int64_t)slots[i].size <= placed[j]->off)
                break;
            int64_t end = placed[j]->off + (int64_t)placed[j]->size;
            if (end > off)
                off = end;
        }
        slots[i].off = off;
        s->act_off[slots[i].t] = off;
        if ((size_t)off + slots[i].size > total)
            total = (size_t)off + slots[i].size;
    }
    *arena_bytes = total;
out:
    free(run_lo);
    free(run_hi);
    free(prod);
    free(lo);
    free(hi);
    free(slots);
    free(placed);
    return st;
}

static uint32_t u32(int64_t v) { return (uint32_t)v; }

/* Element offset of a constant in the weights buffer. */
static uint32_t woff(const vk_state *s, int t) { return u32(s->c->wt_off[t] / s->c->esz); }

/* Fills node i's dispatch (pipeline, push constants) from the shapes. */
static fpay_status plan_node(vk_state *s, const fpay_graph *g, int i, char *err, size_t err_len)
{
    const fpay_node *n = &g->nodes[i];
    vk_dispatch *d = &s->disp[i];
    memset(d, 0, sizeof *d);
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    int64_t total = fpay_backend_elems(y);
    d->total = u32(total);
    if (total == 0)
        return FPAY_OK;
    int family = -1;
    int32_t spec[4] = {0, 0, 0, 0};
    bool specialize = false;
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        conv_pc *p = &d->pc.conv;
        const fpay_tensor *w = tensor(g, n->inputs[1]);
        const fpay_conv_attr *c = &n->attr.conv;
        family = n->op == FPAY_OP_CONV_2D ? PIPE_CONV : PIPE_DWCONV;
        d->size = sizeof *p;
        p->w_off = woff(s, n->inputs[1]);
        if (n->n_inputs > 2 && n->inputs[2] >= 0) {
            p->b_off = woff(s, n->inputs[2]);
            p->flags |= 1;
        }
        if (n->n_inputs > FPAY_CONV_INPUT_RESIDUAL)
            p->flags |= 2;
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = woff(s, n->act_slope);
        p->N = (int32_t)x->dims[0];
        p->H = (int32_t)x->dims[1];
        p->W = (int32_t)x->dims[2];
        p->C = (int32_t)x->dims[3];
        p->OH = (int32_t)y->dims[1];
        p->OW = (int32_t)y->dims[2];
        p->OC = (int32_t)y->dims[3];
        p->KH = (int32_t)w->dims[1];
        p->KW = (int32_t)w->dims[2];
        p->sh = c->stride_h;
        p->sw = c->stride_w;
        p->dh = c->dilation_h;
        p->dw = c->dilation_w;
        p->pt = c->pad_top;
        p->pl = c->pad_left;
        p->mult = n->op == FPAY_OP_DEPTHWISE_CONV_2D ? c->depth_multiplier : 1;
        p->act = (uint32_t)n->act;
        p->alpha = n->act_alpha;
        p->total = d->total;
        /* Kernel size and stride as specialization constants: a handful of
         * pipelines per network (1x1, 3x3 s1/s2, 7x7) with unrolled taps. */
        specialize = p->KH <= 7 && p->KW <= 7 && p->sh <= 4 && p->sw <= 4 &&
                     !env_on("FACEPAY_VK_NO_SPEC");
        spec[0] = p->KH;
        spec[1] = p->KW;
        spec[2] = p->sh;
        spec[3] = p->sw;
        break;
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL: {
        binary_pc *p = &d->pc.bin;
        const fpay_tensor *b = tensor(g, n->inputs[1]);
        family = PIPE_BINARY;
        d->size = sizeof *p;
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = woff(s, n->act_slope);
        /* Right-align every shape to 4-D; strides 0 along broadcast dims. */
        const fpay_tensor *ops[2] = {x, b};
        uint32_t *strides[2] = {p->sa, p->sb};
        for (int k = 0; k < 4; k++) {
            int yk = y->rank - 4 + k;
            p->d[k] = yk >= 0 ? u32(y->dims[yk]) : 1;
        }
        for (int o = 0; o < 2; o++) {
            uint32_t stride = 1;
            for (int k = 3; k >= 0; k--) {
                int ok = ops[o]->rank - 4 + k;
                uint32_t dim = ok >= 0 ? u32(ops[o]->dims[ok]) : 1;
                strides[o][k] = dim == 1 ? 0 : stride;
                stride *= dim;
            }
        }
        p->op = n->op == FPAY_OP_ADD ? 0 : n->op == FPAY_OP_SUB ? 1 : 2;
        p->act = (uint32_t)n->act;
        p->alpha = n->act_alpha;
        p->total = d->total;
        break;
    }
    case FPAY_OP_MAX_POOL_2D:
    case FPAY_OP_AVERAGE_POOL_2D: {
        pool_pc *p = &d->pc.pool;
        const fpay_pool_attr *a = &n->attr.pool;
        family = PIPE_POOL;
        d->size = sizeof *p;
        p->N = (int32_t)x->dims[0];
        p->H = (int32_t)x->dims[1];
        p->W = (int32_t)x->dims[2];
        p->C = (int32_t)x->dims[3];
        p->OH = (int32_t)y->dims[1];
        p->OW = (int32_t)y->dims[2];
        p->FH = a->filter_h;
        p->FW = a->filter_w;
        p->sh = a->stride_h;
        p->sw = a->stride_w;
        p->pt = a->pad_top;
        p->pl = a->pad_left;
        p->avg = n->op == FPAY_OP_AVERAGE_POOL_2D;
        p->act = (uint32_t)n->act;
        p->total = d->total;
        break;
    }
    case FPAY_OP_FULLY_CONNECTED: {
        fc_pc *p = &d->pc.fc;
        const fpay_tensor *w = tensor(g, n->inputs[1]);
        family = PIPE_FC;
        d->size = sizeof *p;
        p->w_off = woff(s, n->inputs[1]);
        if (n->n_inputs > 2 && n->inputs[2] >= 0) {
            p->b_off = woff(s, n->inputs[2]);
            p->flags |= 1;
        }
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = woff(s, n->act_slope);
        p->K = u32(w->dims[1]);
        p->units = u32(w->dims[0]);
        p->act = (uint32_t)n->act;
        p->alpha = n->act_alpha;
        p->total = d->total;
        break;
    }
    case FPAY_OP_SOFTMAX: {
        softmax_pc *p = &d->pc.sm;
        family = PIPE_SOFTMAX;
        d->size = sizeof *p;
        p->cols = u32(x->dims[x->rank - 1]);
        p->rows = u32(total / x->dims[x->rank - 1]);
        d->total = p->rows; /* one invocation per row */
        break;
    }
    case FPAY_OP_RESHAPE:
        family = PIPE_COPY;
        d->size = sizeof d->pc.copy;
        d->pc.copy.total = d->total;
        break;
    default:
        fpay_backend_set_err(err, err_len, "vulkan: node %d: op %d not planned", i, (int)n->op);
        return FPAY_INTERNAL;
    }
    return ctx_pipeline(s->c, family, specialize ? spec : NULL, &d->pipe, err, err_len);
}

/* The descriptor of tensor t: its range in the weights buffer (constants)
 * or in the arena. */
static VkDescriptorBufferInfo binding_of(const vk_state *s, const fpay_graph *g, int t)
{
    size_t b = dev_bytes(g, t, s->c->esz);
    if (is_const(g, t))
        return (VkDescriptorBufferInfo){.buffer = s->c->wts.buf,
                                        .offset = (VkDeviceSize)s->c->wt_off[t],
                                        .range = b ? b : 4};
    return (VkDescriptorBufferInfo){.buffer = s->arena.buf,
                                    .offset = (VkDeviceSize)s->act_off[t],
                                    .range = b ? b : 4};
}

static fpay_status make_sets(vk_state *s, const fpay_graph *g, int n_mine, char *err,
                             size_t err_len)
{
    vk_ctx *c = s->c;
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                               .descriptorCount = 4u * (uint32_t)n_mine};
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = (uint32_t)n_mine,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    VKCHECK(c->f.vkCreateDescriptorPool(c->dev, &dpi, NULL, &s->dpool), "vkCreateDescriptorPool");
    for (int i = 0; i < g->n_nodes; i++) {
        if (!s->mine[i])
            continue;
        const fpay_node *n = &g->nodes[i];
        VkDescriptorSetAllocateInfo dai = {
            .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            .descriptorPool = s->dpool,
            .descriptorSetCount = 1,
            .pSetLayouts = &c->dsl,
        };
        VKCHECK(c->f.vkAllocateDescriptorSets(c->dev, &dai, &s->sets[i]),
                "vkAllocateDescriptorSets");
        int second = -1;
        if (n->op == FPAY_OP_ADD || n->op == FPAY_OP_SUB || n->op == FPAY_OP_MUL)
            second = n->inputs[1];
        else if ((n->op == FPAY_OP_CONV_2D || n->op == FPAY_OP_DEPTHWISE_CONV_2D) &&
                 n->n_inputs > FPAY_CONV_INPUT_RESIDUAL)
            second = n->inputs[FPAY_CONV_INPUT_RESIDUAL];
        VkDescriptorBufferInfo bi[4] = {
            binding_of(s, g, n->inputs[0]),
            binding_of(s, g, n->outputs[0]),
            binding_of(s, g, second >= 0 ? second : n->inputs[0]),
            {.buffer = c->wts.buf, .offset = 0, .range = VK_WHOLE_SIZE},
        };
        VkWriteDescriptorSet w[4];
        for (uint32_t k = 0; k < 4; k++)
            w[k] = (VkWriteDescriptorSet){
                .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                .dstSet = s->sets[i],
                .dstBinding = k,
                .descriptorCount = 1,
                .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                .pBufferInfo = &bi[k],
            };
        c->f.vkUpdateDescriptorSets(c->dev, 4, w, 0, NULL);
    }
    return FPAY_OK;
}

static fpay_status prepare(vk_state *s, const fpay_graph *g, const bool *mine, char *err,
                           size_t err_len)
{
    const char *prec_value;
    int prec = precision_env(&prec_value);
    if (prec == PREC_INVALID) {
        fpay_backend_set_err(err, err_len,
                             "FACEPAY_VK_PRECISION=%.32s is invalid: use fp16 or fp32",
                             prec_value);
        return FPAY_INVALID_ARGUMENT;
    }
    s->n_tensors = g->n_tensors;
    s->n_nodes = g->n_nodes;
    size_t nt = (size_t)g->n_tensors + 1, nn = (size_t)g->n_nodes + 1;
    s->act_off = malloc(nt * sizeof *s->act_off);
    s->disp = calloc(nn, sizeof *s->disp);
    s->sets = calloc(nn, sizeof *s->sets);
    s->mine = calloc(nn, sizeof *s->mine);
    if (!s->act_off || !s->disp || !s->sets || !s->mine) {
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    int n_mine = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        s->mine[i] = mine[i] && vk_supports_node(g, i);
        if (mine[i] && !s->mine[i]) {
            fpay_backend_set_err(err, err_len,
                                 "node %d (op %d) was given to vulkan but is not supported", i,
                                 (int)g->nodes[i].op);
            return FPAY_INTERNAL;
        }
        n_mine += s->mine[i];
    }
    if (n_mine == 0)
        return FPAY_OK; /* nothing to run: no device needed */

    /* The context first: its precision sets the arena's element size. */
    fpay_status st = ctx_acquire(g, prec == PREC_FP16, &s->c, err, err_len);
    if (st)
        return st;
    vk_ctx *c = s->c;
    size_t arena_bytes = 0;
    if ((st = plan_arena(s, g, &arena_bytes, err, err_len)))
        return st;
    static const VkMemoryPropertyFlags dl[3] = {MEM_DL | MEM_HV, MEM_DL, MEM_HV};
    st = buf_create(c, &s->arena, arena_bytes ? arena_bytes : SLOT_ALIGN,
                    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                        VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                    dl, err, err_len);
    if (st)
        return st;
    s->staging = !s->arena.map || env_on("FACEPAY_VK_STAGING");
    if (s->staging && (st = stage_create(c, &s->stage, s->arena.size, err, err_len)))
        return st;
    if ((st = make_sets(s, g, n_mine, err, err_len)))
        return st;
    for (int i = 0; i < g->n_nodes; i++)
        if (s->mine[i] && (st = plan_node(s, g, i, err, err_len)))
            return st;
    save_pipeline_cache(c); /* new pipelines: on disk for the next process */
    return FPAY_OK;
}

static fpay_status vk_prepare(const fpay_graph *g, const bool *mine, int threads, void **state,
                              char *err, size_t err_len)
{
    (void)threads; /* the device has its own parallelism */
    *state = NULL;
    vk_state *s = calloc(1, sizeof *s);
    if (!s) {
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    fpay_status st = prepare(s, g, mine, err, err_len);
    if (st) {
        release_state(s);
        return st;
    }
    *state = s;
    return FPAY_OK;
}

/* ----------------------------------------------------------------- run */

static void barrier(vk_ctx *c, VkCommandBuffer cmd, VkPipelineStageFlags src_stage,
                    VkAccessFlags src, VkPipelineStageFlags dst_stage, VkAccessFlags dst)
{
    VkMemoryBarrier mb = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = src,
        .dstAccessMask = dst,
    };
    c->f.vkCmdPipelineBarrier(cmd, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* Inputs of first..last (non-constant tensors read before any node of the
 * range writes them) and outputs (written in the range and a graph output
 * or read by a node outside it). */
static fpay_status range_io(const vk_state *s, const fpay_graph *g, vk_range *r, char *err,
                            size_t err_len)
{
    int nt = g->n_tensors;
    unsigned char *mark = calloc((size_t)nt + 1, 1); /* 1 written, 2 input */
    r->io = malloc(((size_t)nt + 1) * sizeof(int));
    if (!mark || !r->io) {
        free(mark);
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    r->n_in = r->n_out = 0;
    for (int i = r->first; i <= r->last; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t < 0 || is_const(g, t) || mark[t])
                continue;
            mark[t] = 2;
            r->io[r->n_in++] = t;
        }
        mark[n->outputs[0]] = 1;
    }
    unsigned char *needed = calloc((size_t)nt + 1, 1);
    if (!needed) {
        free(mark);
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    for (int j = 0; j < g->n_nodes; j++) {
        if (j >= r->first && j <= r->last)
            continue;
        const fpay_node *n = &g->nodes[j];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0)
                needed[n->inputs[k]] = 1;
    }
    for (int i = r->first; i <= r->last; i++) {
        int t = g->nodes[i].outputs[0];
        if (mark[t] == 1 && (needed[t] || (g->tensors[t].flags & FPAY_TENSOR_OUTPUT))) {
            r->io[r->n_in + r->n_out++] = t;
            mark[t] = 3; /* once */
        }
    }
    (void)s;
    free(mark);
    free(needed);
    return FPAY_OK;
}

static fpay_status record_range(vk_state *s, const fpay_graph *g, vk_range *r, char *err,
                                size_t err_len)
{
    vk_ctx *c = s->c;
    fpay_status st = range_io(s, g, r, err, err_len);
    if (st)
        return st;
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = c->cpool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VKCHECK(c->f.vkAllocateCommandBuffers(c->dev, &ai, &r->cmd), "vkAllocateCommandBuffers");
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    VkCommandBuffer cmd = r->cmd;
    VKCHECK(c->f.vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
    const VkPipelineStageFlags CS = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                               TR = VK_PIPELINE_STAGE_TRANSFER_BIT,
                               HOST = VK_PIPELINE_STAGE_HOST_BIT;
    if (s->staging && r->n_in) {
        /* Staging and arena share offsets: one region per input. */
        barrier(c, cmd, HOST, VK_ACCESS_HOST_WRITE_BIT, TR, VK_ACCESS_TRANSFER_READ_BIT);
        for (int k = 0; k < r->n_in; k++) {
            int t = r->io[k];
            VkBufferCopy reg = {.srcOffset = (VkDeviceSize)s->act_off[t],
                                .dstOffset = (VkDeviceSize)s->act_off[t],
                                .size = dev_bytes(g, t, c->esz)};
            if (reg.size)
                c->f.vkCmdCopyBuffer(cmd, s->stage.buf, s->arena.buf, 1, &reg);
        }
        barrier(c, cmd, TR, VK_ACCESS_TRANSFER_WRITE_BIT, CS,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    } else {
        barrier(c, cmd, HOST, VK_ACCESS_HOST_WRITE_BIT, CS,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    }
    VkPipeline bound = VK_NULL_HANDLE;
    for (int i = r->first; i <= r->last; i++) {
        const vk_dispatch *d = &s->disp[i];
        if (!d->pipe)
            continue;
        if (d->pipe != bound) {
            c->f.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->pipe);
            bound = d->pipe;
        }
        c->f.vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, c->layout, 0, 1,
                                     &s->sets[i], 0, NULL);
        c->f.vkCmdPushConstants(cmd, c->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, d->size, &d->pc);
        uint32_t groups = (d->total + 63) / 64;
        uint32_t mx = c->props.limits.maxComputeWorkGroupCount[0];
        uint32_t gx = groups < mx ? groups : mx;
        uint32_t gy = (groups + gx - 1) / gx;
        if (gy > c->props.limits.maxComputeWorkGroupCount[1]) {
            c->f.vkEndCommandBuffer(cmd);
            fpay_backend_set_err(err, err_len,
                                 "vulkan: node %d needs %u workgroups, over the limit", i, groups);
            return FPAY_LIMIT_EXCEEDED;
        }
        c->f.vkCmdDispatch(cmd, gx, gy, 1);
        /* RAW between nodes, and WAR: the arena reuses memory by lifetime. */
        barrier(c, cmd, CS, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_SHADER_READ_BIT, CS,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    }
    if (s->staging && r->n_out) {
        barrier(c, cmd, CS, VK_ACCESS_SHADER_WRITE_BIT, TR, VK_ACCESS_TRANSFER_READ_BIT);
        for (int k = 0; k < r->n_out; k++) {
            int t = r->io[r->n_in + k];
            VkBufferCopy reg = {.srcOffset = (VkDeviceSize)s->act_off[t],
                                .dstOffset = (VkDeviceSize)s->act_off[t],
                                .size = dev_bytes(g, t, c->esz)};
            if (reg.size)
                c->f.vkCmdCopyBuffer(cmd, s->arena.buf, s->stage.buf, 1, &reg);
        }
        barrier(c, cmd, TR, VK_ACCESS_TRANSFER_WRITE_BIT, HOST, VK_ACCESS_HOST_READ_BIT);
    } else {
        barrier(c, cmd, CS, VK_ACCESS_SHADER_WRITE_BIT, HOST, VK_ACCESS_HOST_READ_BIT);
    }
    VKCHECK(c->f.vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
    return FPAY_OK;
}

static fpay_status vk_run_range(void *state, const fpay_exec_ctx *ctx, int first, int last,
                                char *err, size_t err_len)
{
    vk_state *s = state;
    const fpay_graph *g = ctx->graph;
    if (!s || !s->c || first < 0 || last >= s->n_nodes || first > last ||
        g->n_tensors != s->n_tensors) {
        fpay_backend_set_err(err, err_len, "vulkan: run without a matching prepare");
        return FPAY_INTERNAL;
    }
    vk_ctx *c = s->c;
    if (c->broken) {
        fpay_backend_set_err(err, err_len,
                             "vulkan: the device was lost or hung in an earlier run");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    for (int i = first; i <= last; i++)
        if (!s->mine[i]) {
            fpay_backend_set_err(err, err_len, "vulkan: node %d was not prepared here", i);
            return FPAY_INTERNAL;
        }
    /* The range's recorded command buffer (recorded on its first run). */
    vk_range *r = NULL, scratch = {0};
    for (int k = 0; k < s->n_ranges && !r; k++)
        if (s->ranges[k].first == first && s->ranges[k].last == last)
            r = &s->ranges[k];
    fpay_status st = FPAY_OK;
    if (!r) {
        r = s->n_ranges < MAX_RANGES ? &s->ranges[s->n_ranges] : &scratch;
        r->first = first;
        r->last = last;
        if ((st = record_range(s, g, r, err, err_len))) {
            range_free(s, r);
            return st;
        }
        if (r != &scratch)
            s->n_ranges++;
    }
    unsigned char *host = s->staging ? s->stage.map : s->arena.map;
    for (int k = 0; k < r->n_in; k++) {
        int t = r->io[k];
        if (!ctx->buffers[t]) {
            fpay_backend_set_err(err, err_len, "vulkan: tensor %d has no storage", t);
            st = FPAY_INTERNAL;
            goto out;
        }
        to_device(host + s->act_off[t], ctx->buffers[t],
                  (size_t)fpay_backend_elems(tensor(g, t)), c->esz);
    }
    if ((st = submit_wait(c, r->cmd, err, err_len)))
        goto out;
    for (int k = 0; k < r->n_out; k++) {
        int t = r->io[r->n_in + k];
        if (!ctx->buffers[t]) {
            fpay_backend_set_err(err, err_len, "vulkan: tensor %d has no storage", t);
            st = FPAY_INTERNAL;
            goto out;
        }
        from_device(ctx->buffers[t], host + s->act_off[t],
                    (size_t)fpay_backend_elems(tensor(g, t)), c->esz);
    }
out:
    if (r == &scratch && !c->broken)
        range_free(s, r);
    return st;
}

static fpay_status vk_run_node(void *state, const fpay_exec_ctx *ctx, int index, char *err,
                               size_t err_len)
{
    return vk_run_range(state, ctx, index, index, err, err_len);
}

/* ------------------------------------------------------------ the entry */

static fpay_backend_iface vk_iface = {
    .abi_version = FPAY_BACKEND_ABI_VERSION,
    .struct_size = sizeof(fpay_backend_iface),
    .name = "vulkan",
    .version = version_buf,
    .probe = vk_probe,
    .supports_node = vk_supports_node,
    .prepare = vk_prepare,
    .run_node = vk_run_node,
    .release = vk_release,
    .run_range = vk_run_range,
    .caps = 0, /* FPAY_BACKEND_CAP_ACCELERATOR added by the probe for a GPU */
};

FPAY_BACKEND_EXPORT const fpay_backend_iface *fpay_backend_entry(void);
const fpay_backend_iface *fpay_backend_entry(void)
{
    /* The version string, caps and limits depend on the device: settle them
     * before the registry reads the struct. */
    pthread_once(&probe_once, probe_device);
    return &vk_iface;
}
