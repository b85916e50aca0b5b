/*
 * vulkan_backend.c - a facepay backend plugin on Vulkan compute (fp32).
 *
 * The plugin opens libvulkan.so.1 itself (dlopen + vkGetInstanceProcAddr), so
 * it loads everywhere and its probe reports, with a reason, a machine with no
 * loader, no driver (ICD) or no usable device.
 *
 * Device choice (probe and prepare, same rule): discrete GPU, then
 * integrated, then virtual, then CPU (Mesa lavapipe); the device must speak
 * Vulkan 1.2 (the shaders are SPIR-V 1.5) and have a compute queue.
 * FACEPAY_VK_DEVICE=<index>|<name substring> picks one. The backend declares
 * FPAY_BACKEND_CAP_ACCELERATOR only when that device is not a CPU, so "auto"
 * never picks lavapipe.
 *
 * Per session (prepare): its own VkInstance/VkDevice/queue (sessions may run
 * concurrently on different threads; nothing is shared), one compute
 * pipeline per op family (shapes travel as push constants, so a network needs
 * 4 pipelines, not one per node), and two storage buffers:
 *   - Wt: every weight, bias and PReLU slope of the nodes it runs, packed
 *     once (device-local; through a staging buffer when that memory is not
 *     host-visible);
 *   - A: one slot per non-constant tensor its nodes read or write (plus the
 *     constant operands of elementwise ops, written once), host-visible so
 *     partition inputs/outputs are copied with memcpy.
 * run_range records one command buffer per range: one dispatch per node with
 * a compute->compute barrier between them; the range's inputs are copied in
 * from ctx->buffers first and the tensors read after it (or graph outputs)
 * copied back at the end.
 *
 * Coverage: CONV_2D (any kernel/stride/dilation/padding, bias, residual
 * input 3, every epilogue), DEPTHWISE_CONV_2D (any multiplier), ADD/SUB/MUL
 * (broadcast up to 4-D, every epilogue), RESHAPE. fp32 only. Everything else
 * is declined and runs on the CPU backend. See docs/vulkan.md.
 */
#define VK_NO_PROTOTYPES
#include "facepay/backend.h"

#include <vulkan/vulkan.h>

#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fpay_vk_binary_spv.spv.h"
#include "fpay_vk_conv2d_spv.spv.h"
#include "fpay_vk_copy_spv.spv.h"
#include "fpay_vk_dwconv2d_spv.spv.h"

/* A run that does not finish in this time is reported as an error (a lost
 * or hung device), never waited on forever. */
#define FENCE_TIMEOUT_NS (60ull * 1000 * 1000 * 1000)

static const char *vk_result_str(VkResult r)
{
    switch (r) {
#define R_(x) case x: return #x;
    R_(VK_SUCCESS) R_(VK_NOT_READY) R_(VK_TIMEOUT) R_(VK_INCOMPLETE)
    R_(VK_ERROR_OUT_OF_HOST_MEMORY) R_(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    R_(VK_ERROR_INITIALIZATION_FAILED) R_(VK_ERROR_DEVICE_LOST)
    R_(VK_ERROR_MEMORY_MAP_FAILED) R_(VK_ERROR_LAYER_NOT_PRESENT)
    R_(VK_ERROR_EXTENSION_NOT_PRESENT) R_(VK_ERROR_FEATURE_NOT_PRESENT)
    R_(VK_ERROR_INCOMPATIBLE_DRIVER) R_(VK_ERROR_TOO_MANY_OBJECTS)
#undef R_
    default: return "VkResult error";
    }
}

/* ------------------------------------------------------------ the loader */

#define VK_INSTANCE_FNS(X)                                                    \
    X(vkDestroyInstance)                                                      \
    X(vkEnumeratePhysicalDevices)                                             \
    X(vkGetPhysicalDeviceProperties)                                          \
    X(vkGetPhysicalDeviceProperties2)                                         \
    X(vkGetPhysicalDeviceQueueFamilyProperties)                               \
    X(vkGetPhysicalDeviceMemoryProperties)                                    \
    X(vkCreateDevice)                                                         \
    X(vkGetDeviceProcAddr)

#define VK_DEVICE_FNS(X)                                                      \
    X(vkDestroyDevice)                                                        \
    X(vkGetDeviceQueue)                                                       \
    X(vkCreateBuffer)                                                         \
    X(vkDestroyBuffer)                                                        \
    X(vkGetBufferMemoryRequirements)                                          \
    X(vkAllocateMemory)                                                       \
    X(vkFreeMemory)                                                           \
    X(vkBindBufferMemory)                                                     \
    X(vkMapMemory)                                                            \
    X(vkUnmapMemory)                                                          \
    X(vkCreateShaderModule)                                                   \
    X(vkDestroyShaderModule)                                                  \
    X(vkCreateDescriptorSetLayout)                                            \
    X(vkDestroyDescriptorSetLayout)                                           \
    X(vkCreatePipelineLayout)                                                 \
    X(vkDestroyPipelineLayout)                                                \
    X(vkCreateComputePipelines)                                               \
    X(vkDestroyPipeline)                                                      \
    X(vkCreateDescriptorPool)                                                 \
    X(vkDestroyDescriptorPool)                                                \
    X(vkAllocateDescriptorSets)                                               \
    X(vkUpdateDescriptorSets)                                                 \
    X(vkCreateCommandPool)                                                    \
    X(vkDestroyCommandPool)                                                   \
    X(vkAllocateCommandBuffers)                                               \
    X(vkBeginCommandBuffer)                                                   \
    X(vkEndCommandBuffer)                                                     \
    X(vkResetCommandBuffer)                                                   \
    X(vkCmdBindPipeline)                                                      \
    X(vkCmdBindDescriptorSets)                                                \
    X(vkCmdPushConstants)                                                     \
    X(vkCmdDispatch)                                                          \
    X(vkCmdPipelineBarrier)                                                   \
    X(vkCmdCopyBuffer)                                                        \
    X(vkCreateFence)                                                          \
    X(vkDestroyFence)                                                         \
    X(vkResetFences)                                                          \
    X(vkWaitForFences)                                                        \
    X(vkQueueSubmit)                                                          \
    X(vkDeviceWaitIdle)

typedef struct vk_fns {
#define FN_(name) PFN_##name name;
    VK_INSTANCE_FNS(FN_)
    VK_DEVICE_FNS(FN_)
#undef FN_
} vk_fns;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static PFN_vkGetInstanceProcAddr gipa;
static char lib_error[256];

static void open_libvulkan(void)
{
    /* Never closed: the driver may keep threads of its own. */
    void *h = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        h = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(lib_error, sizeof lib_error, "no Vulkan loader: %s",
                 e ? e : "libvulkan.so.1 not found");
        return;
    }
    void *sym = dlsym(h, "vkGetInstanceProcAddr");
    if (!sym) {
        snprintf(lib_error, sizeof lib_error,
                 "libvulkan.so.1 has no vkGetInstanceProcAddr");
        return;
    }
    memcpy(&gipa, &sym, sizeof gipa); /* object pointer -> function pointer */
}

/* ------------------------------------------------------ device choice */

typedef struct vk_choice {
    VkPhysicalDevice pd;
    uint32_t index, queue_family;
    VkPhysicalDeviceProperties props;
    char driver[2 * VK_MAX_DRIVER_NAME_SIZE + 4];
} vk_choice;

static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
    default: return 0;
    }
}

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
    }
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t k = 0;
        while (k < n && hay[k] &&
               tolower((unsigned char)hay[k]) == tolower((unsigned char)needle[k]))
            k++;
        if (k == n)
            return true;
    }
    return n == 0;
}

/* Creates an instance and picks the device. On failure *inst is destroyed
 * (VK_NULL_HANDLE) and why says what is missing. */
static fpay_status create_instance(vk_fns *f, VkInstance *inst, char *why, size_t why_len)
{
    *inst = VK_NULL_HANDLE;
    pthread_once(&lib_once, open_libvulkan);
    if (!gipa) {
        fpay_backend_set_err(why, why_len, "%s", lib_error);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    PFN_vkCreateInstance create =
        (PFN_vkCreateInstance)gipa(VK_NULL_HANDLE, "vkCreateInstance");
    PFN_vkEnumerateInstanceVersion enum_version =
        (PFN_vkEnumerateInstanceVersion)gipa(VK_NULL_HANDLE, "vkEnumerateInstanceVersion");
    uint32_t loader_version = VK_API_VERSION_1_0;
    if (!create || !enum_version || enum_version(&loader_version) != VK_SUCCESS ||
        loader_version < VK_API_VERSION_1_2) {
        fpay_backend_set_err(why, why_len, "the Vulkan loader is older than 1.2");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "facepay",
        .pEngineName = "facepay",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    VkResult r = create(&ci, NULL, inst);
    if (r != VK_SUCCESS) {
        *inst = VK_NULL_HANDLE;
        fpay_backend_set_err(why, why_len, "vkCreateInstance: %s%s", vk_result_str(r),
                r == VK_ERROR_INCOMPATIBLE_DRIVER ? " (no Vulkan driver/ICD)" : "");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    bool ok = true;
#define LOAD_(name)                                                           \
    f->name = (PFN_##name)gipa(*inst, #name);                                 \
    ok = ok && f->name;
    VK_INSTANCE_FNS(LOAD_)
#undef LOAD_
    if (!ok) {
        if (f->vkDestroyInstance)
            f->vkDestroyInstance(*inst, NULL);
        *inst = VK_NULL_HANDLE;
        fpay_backend_set_err(why, why_len, "the Vulkan loader lacks a 1.2 instance function");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    return FPAY_OK;
}

static fpay_status choose_device(const vk_fns *f, VkInstance inst, vk_choice *c,
                                 char *why, size_t why_len)
{
    uint32_t n = 0;
    VkResult r = f->vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        fpay_backend_set_err(why, why_len, "no Vulkan device (%s)",
                r == VK_SUCCESS ? "none enumerated" : vk_result_str(r));
        return FPAY_BACKEND_UNAVAILABLE;
    }
    VkPhysicalDevice *pds = calloc(n, sizeof *pds);
    if (!pds) {
        fpay_backend_set_err(why, why_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    r = f->vkEnumeratePhysicalDevices(inst, &n, pds);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(pds);
        fpay_backend_set_err(why, why_len, "vkEnumeratePhysicalDevices: %s", vk_result_str(r));
        return FPAY_BACKEND_UNAVAILABLE;
    }
    const char *want = getenv("FACEPAY_VK_DEVICE");
    if (want && !*want)
        want = NULL;
    bool want_index = want && want[strspn(want, "0123456789")] == '\0';
    long want_i = want_index ? strtol(want, NULL, 10) : -1;

    int best = -1, best_rank = -1;
    uint32_t best_q = 0;
    char rejected[320] = "";
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        f->vkGetPhysicalDeviceProperties(pds[i], &p);
        if (want_index && (long)i != want_i)
            continue;
        if (want && !want_index && !contains_nocase(p.deviceName, want))
            continue;
        if (p.apiVersion < VK_API_VERSION_1_2) {
            snprintf(rejected, sizeof rejected, "%.200s speaks Vulkan %u.%u, 1.2 needed",
                     p.deviceName, VK_API_VERSION_MAJOR(p.apiVersion),
                     VK_API_VERSION_MINOR(p.apiVersion));
            continue;
        }
        uint32_t nq = 0;
        f->vkGetPhysicalDeviceQueueFamilyProperties(pds[i], &nq, NULL);
        VkQueueFamilyProperties qf[16];
        if (nq > 16)
            nq = 16;
        f->vkGetPhysicalDeviceQueueFamilyProperties(pds[i], &nq, qf);
        int q = -1;
        for (uint32_t k = 0; k < nq && q < 0; k++)
            if ((qf[k].queueFlags & VK_QUEUE_COMPUTE_BIT) && qf[k].queueCount > 0)
                q = (int)k;
        if (q < 0) {
            snprintf(rejected, sizeof rejected, "%.200s has no compute queue", p.deviceName);
            continue;
        }
        int rank = type_rank(p.deviceType);
        if (rank > best_rank) {
            best = (int)i;
            best_rank = rank;
            best_q = (uint32_t)q;
        }
    }
    if (best < 0) {
        free(pds);
        if (want)
            fpay_backend_set_err(why, why_len, "FACEPAY_VK_DEVICE=%s matches no usable device of %u%s%s",
                    want, n, *rejected ? ": " : "", rejected);
        else
            fpay_backend_set_err(why, why_len, "no usable Vulkan device of %u: %s", n, rejected);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    c->pd = pds[best];
    c->index = (uint32_t)best;
    c->queue_family = best_q;
    free(pds);

    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES,
    };
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
        .pNext = &drv,
    };
    f->vkGetPhysicalDeviceProperties2(c->pd, &p2);
    c->props = p2.properties;
    snprintf(c->driver, sizeof c->driver, "%.*s %.*s", VK_MAX_DRIVER_NAME_SIZE,
             drv.driverName, VK_MAX_DRIVER_INFO_SIZE, drv.driverInfo);
    return FPAY_OK;
}

/* ---------------------------------------------------------------- probe */

static fpay_backend_iface vk_iface;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static fpay_status probe_status = FPAY_BACKEND_UNAVAILABLE;
static char probe_why[256];
static char version_buf[1024] = "vulkan (no device)";

static void probe_device(void)
{
    vk_fns f;
    memset(&f, 0, sizeof f);
    VkInstance inst;
    probe_status = create_instance(&f, &inst, probe_why, sizeof probe_why);
    if (probe_status)
        return;
    vk_choice c;
    probe_status = choose_device(&f, inst, &c, probe_why, sizeof probe_why);
    if (probe_status == FPAY_OK) {
        uint32_t v = c.props.apiVersion;
        snprintf(version_buf, sizeof version_buf,
                 "vulkan-1 (device %u: %.256s, %s, driver %.512s, API %u.%u.%u)", c.index,
                 c.props.deviceName, type_name(c.props.deviceType), c.driver,
                 VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v));
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

static bool is_const_f32(const fpay_graph *g, int t)
{
    return t >= 0 && t < g->n_tensors && (g->tensors[t].flags & FPAY_TENSOR_CONST) &&
           g->tensors[t].dtype == FPAY_DT_F32 && g->tensors[t].data;
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

static bool all_f32(const fpay_graph *g, const fpay_node *n)
{
    for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0 && g->tensors[n->inputs[k]].dtype != FPAY_DT_F32)
            return false;
    for (int k = 0; k < n->n_outputs; k++)
        if (g->tensors[n->outputs[k]].dtype != FPAY_DT_F32)
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

static bool vk_supports_node(const fpay_graph *g, int index)
{
    if (index < 0 || index >= g->n_nodes)
        return false;
    const fpay_node *n = &g->nodes[index];
    if (n->n_outputs != 1 || n->n_inputs < 1 || n->inputs[0] < 0 || !all_f32(g, n))
        return false;
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        if (n->n_inputs < 2 || n->n_inputs > FPAY_CONV_INPUT_RESIDUAL + 1 ||
            x->rank != 4 || y->rank != 4 || !is_const_f32(g, n->inputs[1]))
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
            if (r < 0 || !same_shape(tensor(g, r), y))
                return false;
        }
        const fpay_conv_attr *c = &n->attr.conv;
        if (c->stride_h < 1 || c->stride_w < 1 || c->dilation_h < 1 || c->dilation_w < 1 ||
            c->pad_top < 0 || c->pad_left < 0)
            return false;
        return act_ok(g, n, oc);
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL: {
        if (n->n_inputs != 2 || n->inputs[1] < 0)
            return false;
        const fpay_tensor *b = tensor(g, n->inputs[1]);
        if (x->rank > 4 || b->rank > 4 || y->rank > 4)
            return false;
        if (((x->flags & FPAY_TENSOR_CONST) && !x->data) ||
            ((b->flags & FPAY_TENSOR_CONST) && !b->data))
            return false;
        return act_ok(g, n, y->rank ? y->dims[y->rank - 1] : 1);
    }
    case FPAY_OP_RESHAPE:
        return n->act == FPAY_ACT_NONE && !(x->flags & FPAY_TENSOR_CONST) &&
               fpay_backend_elems(x) == fpay_backend_elems(y);
    default:
        return false;
    }
}

/* ------------------------------------------------------------- state */

enum { PIPE_CONV, PIPE_DWCONV, PIPE_BINARY, PIPE_COPY, PIPE_COUNT };

#define PUSH_MAX 128

typedef struct conv_pc {
    uint32_t x_off, y_off, r_off, w_off, b_off, s_off;
    int32_t N, H, W, C, OH, OW, OC;
    int32_t KH, KW, sh, sw, dh, dw, pt, pl, mult;
    uint32_t flags, act;
    float alpha;
    uint32_t total;
} conv_pc;

typedef struct binary_pc {
    uint32_t a_off, b_off, y_off, s_off;
    uint32_t d[4], sa[4], sb[4];
    uint32_t op, act;
    float alpha;
    uint32_t total;
} binary_pc;

typedef struct copy_pc {
    uint32_t src_off, dst_off, total;
} copy_pc;

_Static_assert(sizeof(conv_pc) <= PUSH_MAX, "conv push constants");
_Static_assert(sizeof(binary_pc) <= PUSH_MAX, "binary push constants");

typedef struct vk_dispatch {
    int pipe;                 /* PIPE_*, -1: nothing to do (empty tensor) */
    uint32_t size;            /* bytes of push constants */
    uint32_t total;           /* invocations */
    union {
        conv_pc conv;
        binary_pc bin;
        copy_pc copy;
    } pc;
} vk_dispatch;

typedef struct vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    void *map;                /* host-visible: mapped for the buffer's life */
    VkDeviceSize size;
} vk_buf;

typedef struct vk_state {
    vk_fns f;
    VkInstance inst;
    VkDevice dev;
    VkQueue queue;
    VkPhysicalDeviceMemoryProperties mem_props;
    uint32_t max_groups_x, max_groups_y;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipes[PIPE_COUNT];
    VkDescriptorPool dpool;
    VkDescriptorSet dset;
    VkCommandPool cpool;
    VkCommandBuffer cmd;
    VkFence fence;
    vk_buf act, wts;

    int n_tensors, n_nodes;
    int64_t *act_off;         /* tensor -> float offset in act, -1 none */
    int64_t *wt_off;          /* tensor -> float offset in wts, -1 none */
    vk_dispatch *disp;        /* per node (valid where mine) */
    bool *mine;
    int *stamp;               /* scratch for run_range */
    int run_id;
} vk_state;

static void buf_free(vk_state *s, vk_buf *b)
{
    if (b->map)
        s->f.vkUnmapMemory(s->dev, b->mem);
    if (b->buf)
        s->f.vkDestroyBuffer(s->dev, b->buf, NULL);
    if (b->mem)
        s->f.vkFreeMemory(s->dev, b->mem, NULL);
    memset(b, 0, sizeof *b);
}

static void release_state(vk_state *s)
{
    if (!s)
        return;
    if (s->dev) {
        s->f.vkDeviceWaitIdle(s->dev);
        buf_free(s, &s->act);
        buf_free(s, &s->wts);
        if (s->fence)
            s->f.vkDestroyFence(s->dev, s->fence, NULL);
        if (s->cpool)
            s->f.vkDestroyCommandPool(s->dev, s->cpool, NULL);
        if (s->dpool)
            s->f.vkDestroyDescriptorPool(s->dev, s->dpool, NULL);
        for (int i = 0; i < PIPE_COUNT; i++)
            if (s->pipes[i])
                s->f.vkDestroyPipeline(s->dev, s->pipes[i], NULL);
        if (s->layout)
            s->f.vkDestroyPipelineLayout(s->dev, s->layout, NULL);
        if (s->dsl)
            s->f.vkDestroyDescriptorSetLayout(s->dev, s->dsl, NULL);
        s->f.vkDestroyDevice(s->dev, NULL);
    }
    if (s->inst)
        s->f.vkDestroyInstance(s->inst, NULL);
    free(s->act_off);
    free(s->wt_off);
    free(s->disp);
    free(s->mine);
    free(s->stamp);
    free(s);
}

static void vk_release(void *state) { release_state(state); }

#define VKCHECK(call, what)                                                   \
    do {                                                                      \
        VkResult vr_ = (call);                                                \
        if (vr_ != VK_SUCCESS) {                                              \
            fpay_backend_set_err(err, err_len, "%s: %s", what, vk_result_str(vr_));        \
            return vr_ == VK_ERROR_OUT_OF_HOST_MEMORY ||                      \
                           vr_ == VK_ERROR_OUT_OF_DEVICE_MEMORY               \
                       ? FPAY_OUT_OF_MEMORY                                   \
                       : FPAY_BACKEND_UNAVAILABLE;                            \
        }                                                                     \
    } while (0)

static int find_memory(const vk_state *s, uint32_t type_bits, VkMemoryPropertyFlags want)
{
    for (uint32_t i = 0; i < s->mem_props.memoryTypeCount; i++)
        if ((type_bits & (1u << i)) &&
            (s->mem_props.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

/* A storage buffer in the first memory type that has all of `prefer`, else
 * all of `need`; mapped when host-visible. */
static fpay_status buf_create(vk_state *s, vk_buf *b, VkDeviceSize size,
                              VkBufferUsageFlags usage, VkMemoryPropertyFlags prefer,
                              VkMemoryPropertyFlags need, char *err, size_t err_len)
{
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = usage,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VKCHECK(s->f.vkCreateBuffer(s->dev, &bi, NULL, &b->buf), "vkCreateBuffer");
    VkMemoryRequirements req;
    s->f.vkGetBufferMemoryRequirements(s->dev, b->buf, &req);
    int type = find_memory(s, req.memoryTypeBits, prefer);
    if (type < 0)
        type = find_memory(s, req.memoryTypeBits, need);
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
    VKCHECK(s->f.vkAllocateMemory(s->dev, &ai, NULL, &b->mem), "vkAllocateMemory");
    VKCHECK(s->f.vkBindBufferMemory(s->dev, b->buf, b->mem, 0), "vkBindBufferMemory");
    b->size = size;
    if (s->mem_props.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
        VKCHECK(s->f.vkMapMemory(s->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map),
                "vkMapMemory");
    return FPAY_OK;
}

static fpay_status submit_and_wait(vk_state *s, char *err, size_t err_len)
{
    VKCHECK(s->f.vkEndCommandBuffer(s->cmd), "vkEndCommandBuffer");
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &s->cmd,
    };
    VKCHECK(s->f.vkResetFences(s->dev, 1, &s->fence), "vkResetFences");
    VKCHECK(s->f.vkQueueSubmit(s->queue, 1, &si, s->fence), "vkQueueSubmit");
    VKCHECK(s->f.vkWaitForFences(s->dev, 1, &s->fence, VK_TRUE, FENCE_TIMEOUT_NS),
            "vkWaitForFences");
    return FPAY_OK;
}

static fpay_status begin_cmd(vk_state *s, char *err, size_t err_len)
{
    VKCHECK(s->f.vkResetCommandBuffer(s->cmd, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VKCHECK(s->f.vkBeginCommandBuffer(s->cmd, &bi), "vkBeginCommandBuffer");
    return FPAY_OK;
}

/* ------------------------------------------------------------- prepare */

static fpay_status create_device(vk_state *s, char *err, size_t err_len)
{
    fpay_status st = create_instance(&s->f, &s->inst, err, err_len);
    if (st)
        return st;
    vk_choice c;
    if ((st = choose_device(&s->f, s->inst, &c, err, err_len)))
        return st;
    s->f.vkGetPhysicalDeviceMemoryProperties(c.pd, &s->mem_props);
    s->max_groups_x = c.props.limits.maxComputeWorkGroupCount[0];
    s->max_groups_y = c.props.limits.maxComputeWorkGroupCount[1];
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = c.queue_family,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
    };
    VKCHECK(s->f.vkCreateDevice(c.pd, &di, NULL, &s->dev), "vkCreateDevice");
    bool ok = true;
#define LOAD_(name)                                                           \
    s->f.name = (PFN_##name)s->f.vkGetDeviceProcAddr(s->dev, #name);          \
    ok = ok && s->f.name;
    VK_DEVICE_FNS(LOAD_)
#undef LOAD_
    if (!ok) {
        /* vkDestroyDevice may be the one missing: leak rather than crash. */
        if (!s->f.vkDestroyDevice)
            s->dev = VK_NULL_HANDLE;
        fpay_backend_set_err(err, err_len, "the Vulkan driver lacks a 1.2 device function");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    s->f.vkGetDeviceQueue(s->dev, c.queue_family, 0, &s->queue);

    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = c.queue_family,
    };
    VKCHECK(s->f.vkCreateCommandPool(s->dev, &pi, NULL, &s->cpool), "vkCreateCommandPool");
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = s->cpool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VKCHECK(s->f.vkAllocateCommandBuffers(s->dev, &ai, &s->cmd), "vkAllocateCommandBuffers");
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VKCHECK(s->f.vkCreateFence(s->dev, &fi, NULL, &s->fence), "vkCreateFence");
    return FPAY_OK;
}

static fpay_status create_pipelines(vk_state *s, const bool *need, char *err, size_t err_len)
{
    VkDescriptorSetLayoutBinding b[2] = {
        {.binding = 0, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
         .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT},
        {.binding = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
         .descriptorCount = 1, .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT},
    };
    VkDescriptorSetLayoutCreateInfo dli = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = 2,
        .pBindings = b,
    };
    VKCHECK(s->f.vkCreateDescriptorSetLayout(s->dev, &dli, NULL, &s->dsl),
            "vkCreateDescriptorSetLayout");
    VkPushConstantRange pcr = {
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = PUSH_MAX,
    };
    VkPipelineLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &s->dsl,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pcr,
    };
    VKCHECK(s->f.vkCreatePipelineLayout(s->dev, &li, NULL, &s->layout),
            "vkCreatePipelineLayout");

    static const struct { const uint32_t *code; size_t size; } spv[PIPE_COUNT] = {
        [PIPE_CONV] = {fpay_vk_conv2d_spv, sizeof fpay_vk_conv2d_spv},
        [PIPE_DWCONV] = {fpay_vk_dwconv2d_spv, sizeof fpay_vk_dwconv2d_spv},
        [PIPE_BINARY] = {fpay_vk_binary_spv, sizeof fpay_vk_binary_spv},
        [PIPE_COPY] = {fpay_vk_copy_spv, sizeof fpay_vk_copy_spv},
    };
    for (int i = 0; i < PIPE_COUNT; i++) {
        if (!need[i])
            continue; /* only the families this graph uses */
        VkShaderModuleCreateInfo mi = {
            .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            .codeSize = spv[i].size,
            .pCode = spv[i].code,
        };
        VkShaderModule mod;
        VKCHECK(s->f.vkCreateShaderModule(s->dev, &mi, NULL, &mod), "vkCreateShaderModule");
        VkComputePipelineCreateInfo ci = {
            .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            .stage = {
                .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                .module = mod,
                .pName = "main",
            },
            .layout = s->layout,
        };
        VkResult r = s->f.vkCreateComputePipelines(s->dev, VK_NULL_HANDLE, 1, &ci, NULL,
                                                   &s->pipes[i]);
        s->f.vkDestroyShaderModule(s->dev, mod, NULL);
        VKCHECK(r, "vkCreateComputePipelines");
    }
    return FPAY_OK;
}

static uint32_t u32(int64_t v) { return (uint32_t)v; }

/* Fills node i's dispatch from the shapes and the buffer offsets. */
static void plan_node(vk_state *s, const fpay_graph *g, int i)
{
    const fpay_node *n = &g->nodes[i];
    vk_dispatch *d = &s->disp[i];
    memset(d, 0, sizeof *d);
    const fpay_tensor *x = tensor(g, n->inputs[0]), *y = tensor(g, n->outputs[0]);
    int64_t total = fpay_backend_elems(y);
    d->total = u32(total);
    d->pipe = -1;
    if (total == 0)
        return;
    switch (n->op) {
    case FPAY_OP_CONV_2D:
    case FPAY_OP_DEPTHWISE_CONV_2D: {
        conv_pc *p = &d->pc.conv;
        const fpay_tensor *w = tensor(g, n->inputs[1]);
        const fpay_conv_attr *c = &n->attr.conv;
        d->pipe = n->op == FPAY_OP_CONV_2D ? PIPE_CONV : PIPE_DWCONV;
        d->size = sizeof *p;
        p->x_off = u32(s->act_off[n->inputs[0]]);
        p->y_off = u32(s->act_off[n->outputs[0]]);
        p->w_off = u32(s->wt_off[n->inputs[1]]);
        if (n->n_inputs > 2 && n->inputs[2] >= 0) {
            p->b_off = u32(s->wt_off[n->inputs[2]]);
            p->flags |= 1;
        }
        if (n->n_inputs > FPAY_CONV_INPUT_RESIDUAL) {
            p->r_off = u32(s->act_off[n->inputs[FPAY_CONV_INPUT_RESIDUAL]]);
            p->flags |= 2;
        }
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = u32(s->wt_off[n->act_slope]);
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
        break;
    }
    case FPAY_OP_ADD:
    case FPAY_OP_SUB:
    case FPAY_OP_MUL: {
        binary_pc *p = &d->pc.bin;
        const fpay_tensor *b = tensor(g, n->inputs[1]);
        d->pipe = PIPE_BINARY;
        d->size = sizeof *p;
        p->a_off = u32(s->act_off[n->inputs[0]]);
        p->b_off = u32(s->act_off[n->inputs[1]]);
        p->y_off = u32(s->act_off[n->outputs[0]]);
        if (n->act == FPAY_ACT_PRELU)
            p->s_off = u32(s->wt_off[n->act_slope]);
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
    case FPAY_OP_RESHAPE: {
        copy_pc *p = &d->pc.copy;
        d->pipe = PIPE_COPY;
        d->size = sizeof *p;
        p->src_off = u32(s->act_off[n->inputs[0]]);
        p->dst_off = u32(s->act_off[n->outputs[0]]);
        p->total = d->total;
        break;
    }
    default:
        break;
    }
}

/* Inputs of node n that live in the weights buffer. */
static bool is_weight_input(const fpay_node *n, int k)
{
    bool conv = n->op == FPAY_OP_CONV_2D || n->op == FPAY_OP_DEPTHWISE_CONV_2D;
    return conv && (k == 1 || k == 2);
}

static fpay_status upload_weights(vk_state *s, const fpay_graph *g, size_t wt_floats,
                                  char *err, size_t err_len)
{
    VkDeviceSize bytes = (VkDeviceSize)(wt_floats ? wt_floats : 16) * sizeof(float);
    fpay_status st = buf_create(s, &s->wts, bytes,
                                VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                    VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                    VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, err, err_len);
    if (st)
        return st;
    vk_buf stage = {0};
    float *dst = s->wts.map;
    if (!dst) {
        st = buf_create(s, &stage, bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                            VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                        VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                            VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, err, err_len);
        if (st) {
            buf_free(s, &stage);
            return st;
        }
        dst = stage.map;
    }
    for (int t = 0; t < g->n_tensors; t++)
        if (s->wt_off[t] >= 0)
            memcpy(dst + s->wt_off[t], g->tensors[t].data,
                   (size_t)fpay_backend_elems(&g->tensors[t]) * sizeof(float));
    if (stage.buf) {
        if (!(st = begin_cmd(s, err, err_len))) {
            VkBufferCopy region = {.size = bytes};
            s->f.vkCmdCopyBuffer(s->cmd, stage.buf, s->wts.buf, 1, &region);
            st = submit_and_wait(s, err, err_len);
        }
        buf_free(s, &stage);
    }
    return st;
}

static fpay_status prepare(vk_state *s, const fpay_graph *g, const bool *mine,
                           char *err, size_t err_len)
{
    s->n_tensors = g->n_tensors;
    s->n_nodes = g->n_nodes;
    size_t nt = (size_t)g->n_tensors + 1, nn = (size_t)g->n_nodes + 1;
    s->act_off = malloc(nt * sizeof *s->act_off);
    s->wt_off = malloc(nt * sizeof *s->wt_off);
    s->stamp = calloc(nt, sizeof *s->stamp);
    s->disp = calloc(nn, sizeof *s->disp);
    s->mine = calloc(nn, sizeof *s->mine);
    if (!s->act_off || !s->wt_off || !s->stamp || !s->disp || !s->mine) {
        fpay_backend_set_err(err, err_len, "out of memory");
        return FPAY_OUT_OF_MEMORY;
    }
    bool need[PIPE_COUNT] = {false};
    int n_mine = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        s->mine[i] = mine[i] && vk_supports_node(g, i);
        if (mine[i] && !s->mine[i]) {
            fpay_backend_set_err(err, err_len, "node %d (op %d) was given to vulkan but is not supported",
                    i, (int)g->nodes[i].op);
            return FPAY_INTERNAL;
        }
        n_mine += s->mine[i];
    }
    if (n_mine == 0)
        return FPAY_OK; /* nothing to run: no device needed */

    /* Slots: 16-float (64-byte) aligned offsets, in floats. */
    for (int t = 0; t < g->n_tensors; t++)
        s->act_off[t] = s->wt_off[t] = -1;
    size_t act_floats = 0, wt_floats = 0;
#define SLOT_(arr, total, t)                                                  \
    do {                                                                      \
        if (arr[t] < 0) {                                                     \
            arr[t] = (int64_t)total;                                          \
            total += ((size_t)fpay_backend_elems(&g->tensors[t]) + 15) & ~(size_t)15; \
        }                                                                     \
    } while (0)
    for (int i = 0; i < g->n_nodes; i++) {
        if (!s->mine[i])
            continue;
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t < 0)
                continue;
            if (is_weight_input(n, k))
                SLOT_(s->wt_off, wt_floats, t);
            else
                SLOT_(s->act_off, act_floats, t);
        }
        if (n->act == FPAY_ACT_PRELU)
            SLOT_(s->wt_off, wt_floats, n->act_slope);
        SLOT_(s->act_off, act_floats, n->outputs[0]);
        switch (n->op) {
        case FPAY_OP_CONV_2D: need[PIPE_CONV] = true; break;
        case FPAY_OP_DEPTHWISE_CONV_2D: need[PIPE_DWCONV] = true; break;
        case FPAY_OP_RESHAPE: need[PIPE_COPY] = true; break;
        default: need[PIPE_BINARY] = true; break;
        }
    }
#undef SLOT_
    if (act_floats > UINT32_MAX / 2 || wt_floats > UINT32_MAX / 2) {
        fpay_backend_set_err(err, err_len, "tensors too large for 32-bit offsets");
        return FPAY_LIMIT_EXCEEDED;
    }

    fpay_status st = create_device(s, err, err_len);
    if (st)
        return st;
    if ((st = create_pipelines(s, need, err, err_len)))
        return st;

    VkDeviceSize act_bytes = (VkDeviceSize)(act_floats ? act_floats : 16) * sizeof(float);
    st = buf_create(s, &s->act, act_bytes, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                    VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                        VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                    err, err_len);
    if (st)
        return st;
    if ((st = upload_weights(s, g, wt_floats, err, err_len)))
        return st;
    /* Constant operands of elementwise ops live in A: written once here. */
    for (int t = 0; t < g->n_tensors; t++)
        if (s->act_off[t] >= 0 && (g->tensors[t].flags & FPAY_TENSOR_CONST))
            memcpy((float *)s->act.map + s->act_off[t], g->tensors[t].data,
                   (size_t)fpay_backend_elems(&g->tensors[t]) * sizeof(float));

    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 2};
    VkDescriptorPoolCreateInfo dpi = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = 1,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    VKCHECK(s->f.vkCreateDescriptorPool(s->dev, &dpi, NULL, &s->dpool), "vkCreateDescriptorPool");
    VkDescriptorSetAllocateInfo dai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = s->dpool,
        .descriptorSetCount = 1,
        .pSetLayouts = &s->dsl,
    };
    VKCHECK(s->f.vkAllocateDescriptorSets(s->dev, &dai, &s->dset), "vkAllocateDescriptorSets");
    VkDescriptorBufferInfo bufs[2] = {
        {.buffer = s->act.buf, .offset = 0, .range = VK_WHOLE_SIZE},
        {.buffer = s->wts.buf, .offset = 0, .range = VK_WHOLE_SIZE},
    };
    VkWriteDescriptorSet w[2];
    for (int k = 0; k < 2; k++)
        w[k] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = s->dset,
            .dstBinding = (uint32_t)k,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &bufs[k],
        };
    s->f.vkUpdateDescriptorSets(s->dev, 2, w, 0, NULL);

    for (int i = 0; i < g->n_nodes; i++)
        if (s->mine[i])
            plan_node(s, g, i);
    return FPAY_OK;
}

static fpay_status vk_prepare(const fpay_graph *g, const bool *mine, int threads,
                              void **state, char *err, size_t err_len)
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

static fpay_status vk_run_range(void *state, const fpay_exec_ctx *ctx, int first, int last,
                                char *err, size_t err_len)
{
    vk_state *s = state;
    const fpay_graph *g = ctx->graph;
    if (!s || !s->dev || first < 0 || last >= s->n_nodes || first > last ||
        g->n_tensors != s->n_tensors) {
        fpay_backend_set_err(err, err_len, "vulkan: run without a matching prepare");
        return FPAY_INTERNAL;
    }
    for (int i = first; i <= last; i++)
        if (!s->mine[i]) {
            fpay_backend_set_err(err, err_len, "vulkan: node %d was not prepared here", i);
            return FPAY_INTERNAL;
        }
    float *A = s->act.map;
    /* stamp[t] == id: t written by an earlier node of this range. */
    int id = ++s->run_id * 2;
    if (s->run_id > (1 << 28)) {
        memset(s->stamp, 0, (size_t)s->n_tensors * sizeof *s->stamp);
        s->run_id = 0;
        id = ++s->run_id * 2;
    }

    /* Inputs of the range: read before any node of the range writes them. */
    for (int i = first; i <= last; i++) {
        const fpay_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t < 0 || is_weight_input(n, k) || (g->tensors[t].flags & FPAY_TENSOR_CONST) ||
                s->stamp[t] == id || s->stamp[t] == id + 1)
                continue;
            if (!ctx->buffers[t]) {
                fpay_backend_set_err(err, err_len, "vulkan: tensor %d has no storage", t);
                return FPAY_INTERNAL;
            }
            memcpy(A + s->act_off[t], ctx->buffers[t],
                   (size_t)fpay_backend_elems(&g->tensors[t]) * sizeof(float));
            s->stamp[t] = id + 1; /* uploaded */
        }
        s->stamp[n->outputs[0]] = id;
    }

    fpay_status st = begin_cmd(s, err, err_len);
    if (st)
        return st;
    s->f.vkCmdBindDescriptorSets(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, s->layout, 0, 1,
                                 &s->dset, 0, NULL);
    VkMemoryBarrier host_to_shader = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_HOST_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    s->f.vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_HOST_BIT,
                              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &host_to_shader, 0,
                              NULL, 0, NULL);
    VkMemoryBarrier between = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT,
    };
    int bound = -1;
    for (int i = first; i <= last; i++) {
        const vk_dispatch *d = &s->disp[i];
        if (d->pipe < 0)
            continue;
        if (d->pipe != bound) {
            s->f.vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, s->pipes[d->pipe]);
            bound = d->pipe;
        }
        s->f.vkCmdPushConstants(s->cmd, s->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, d->size,
                                &d->pc);
        uint32_t groups = (d->total + 63) / 64;
        uint32_t gx = groups < s->max_groups_x ? groups : s->max_groups_x;
        uint32_t gy = (groups + gx - 1) / gx;
        if (gy > s->max_groups_y) {
            s->f.vkEndCommandBuffer(s->cmd);
            fpay_backend_set_err(err, err_len, "vulkan: node %d needs %u workgroups, over the limit", i,
                    groups);
            return FPAY_LIMIT_EXCEEDED;
        }
        s->f.vkCmdDispatch(s->cmd, gx, gy, 1);
        s->f.vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                                  VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &between, 0,
                                  NULL, 0, NULL);
    }
    VkMemoryBarrier to_host = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
        .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
        .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
    };
    s->f.vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                              VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &to_host, 0, NULL, 0, NULL);
    if ((st = submit_and_wait(s, err, err_len)))
        return st;

    /* Outputs of the range: graph outputs and tensors read by any node
     * outside it (another backend, or a later range of ours, which uploads
     * them again from the arena). */
    int out_id = id + 1; /* reuse: mark "needed outside" over produced ones */
    for (int j = 0; j < g->n_nodes; j++) {
        if (j >= first && j <= last)
            continue;
        const fpay_node *n = &g->nodes[j];
        for (int k = 0; k < n->n_inputs; k++) {
            int t = n->inputs[k];
            if (t >= 0 && s->stamp[t] == id)
                s->stamp[t] = -out_id;
        }
    }
    for (int i = first; i <= last; i++) {
        int t = g->nodes[i].outputs[0];
        if (s->stamp[t] == -out_id || (s->stamp[t] == id && (g->tensors[t].flags & FPAY_TENSOR_OUTPUT))) {
            if (!ctx->buffers[t]) {
                fpay_backend_set_err(err, err_len, "vulkan: tensor %d has no storage", t);
                return FPAY_INTERNAL;
            }
            memcpy(ctx->buffers[t], A + s->act_off[t],
                   (size_t)fpay_backend_elems(&g->tensors[t]) * sizeof(float));
            s->stamp[t] = 0; /* copied once */
        }
    }
    return FPAY_OK;
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
    /* The version string and caps depend on the device: settle them before
     * the registry reads the struct. */
    pthread_once(&probe_once, probe_device);
    return &vk_iface;
}
