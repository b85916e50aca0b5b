/*
 * vk_internal.h - what the Vulkan plugin's files share: the entry points it
 * loads from libvulkan.so.1 (it links no Vulkan library), the device choice,
 * the on-disk pipeline cache, and the types and functions that the backend's
 * own files (vulkan_backend.c, vk_f16.c, vk_support.c, vk_context.c,
 * vk_plan.c) call across: precision, node support, the device context and
 * the prepared state. Private to backends/vulkan.
 */
#ifndef FPAY_VK_INTERNAL_H
#define FPAY_VK_INTERNAL_H

#define VK_NO_PROTOTYPES
#include "facepay/backend.h"

#include <vulkan/vulkan.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VK_INSTANCE_FNS(X)                                                    \
    X(vkDestroyInstance)                                                      \
    X(vkEnumeratePhysicalDevices)                                             \
    X(vkGetPhysicalDeviceProperties)                                          \
    X(vkGetPhysicalDeviceProperties2)                                         \
    X(vkGetPhysicalDeviceFeatures2)                                           \
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
    X(vkCreatePipelineCache)                                                  \
    X(vkDestroyPipelineCache)                                                 \
    X(vkGetPipelineCacheData)                                                 \
    X(vkCreateComputePipelines)                                               \
    X(vkDestroyPipeline)                                                      \
    X(vkCreateDescriptorPool)                                                 \
    X(vkDestroyDescriptorPool)                                                \
    X(vkAllocateDescriptorSets)                                               \
    X(vkUpdateDescriptorSets)                                                 \
    X(vkCreateCommandPool)                                                    \
    X(vkDestroyCommandPool)                                                   \
    X(vkAllocateCommandBuffers)                                               \
    X(vkFreeCommandBuffers)                                                   \
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

/* The chosen physical device and what the backend needs to know of it. */
typedef struct vk_choice {
    VkPhysicalDevice pd;
    uint32_t index, queue_family;
    VkPhysicalDeviceProperties props;
    VkDeviceSize max_alloc;       /* maxMemoryAllocationSize (Maintenance3) */
    bool fp16_storage;            /* storageBuffer16BitAccess */
    bool fp16_arith;              /* shaderFloat16 */
    char driver[2 * VK_MAX_DRIVER_NAME_SIZE + 4];
} vk_choice;

const char *fpay_vk_result_str(VkResult r);

/* Opens the loader (once), creates an instance and loads the instance entry
 * points. On failure *inst is VK_NULL_HANDLE and why says what is missing. */
fpay_status fpay_vk_create_instance(vk_fns *f, VkInstance *inst, char *why, size_t why_len);

/* Best device (discrete > integrated > virtual > CPU, Vulkan >= 1.2, a
 * compute queue), restricted by FACEPAY_VK_DEVICE. */
fpay_status fpay_vk_choose_device(const vk_fns *f, VkInstance inst, vk_choice *c,
                                  char *why, size_t why_len);

const char *fpay_vk_type_name(VkPhysicalDeviceType t);

/* ------------------------------------------------- pipeline cache (disk) */

/* The cache file for this device: $FACEPAY_VK_CACHE if set (a file; "0" or
 * "off" disables the cache), else $XDG_CACHE_HOME/facepay/ (or
 * ~/.cache/facepay/) vk-pipelines-<vendor>-<device>.bin. false: no cache. */
bool fpay_vk_cache_path(const VkPhysicalDeviceProperties *p, char *path, size_t len);

/* Reads the file and checks the Vulkan pipeline cache header (length,
 * version one, vendor, device, pipelineCacheUUID) against p. Returns
 * malloc'd data (free it) or NULL when absent, unreadable, too large or not
 * for this device: a bad file is ignored, never fatal. */
void *fpay_vk_cache_load(const char *path, const VkPhysicalDeviceProperties *p, size_t *size);

/* Writes data atomically (temporary file in the same folder, then rename);
 * creates the folder. Failures are ignored (a cache is optional). */
void fpay_vk_cache_save(const char *path, const void *data, size_t size);

/* --------------------------------------------------- limits and switches */

#define RELEASE_GRACE_NS (5ull * 1000 * 1000 * 1000)
#define SLOT_ALIGN 256u            /* >= any minStorageBufferOffsetAlignment */
#define MAX_PIPES 48
#define MAX_RANGES 16
#define PUSH_MAX 128

/* An environment switch: set, not empty and not "0". */
static inline bool vk_env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* -------------------------------------------------- precision (vk_f16.c) */

enum { PREC_INVALID = -1, PREC_FP32 = 0, PREC_FP16 = 1 };

/* FACEPAY_VK_PRECISION: "fp32" (also when unset or empty) or "fp16", any
 * case; anything else is PREC_INVALID (a session then fails to prepare,
 * rather than silently running at a precision nobody asked for). */
int vk_precision_env(const char **value);

/* Copies n floats into device elements of esz bytes (4: as is, 2: fp16). */
void vk_to_device(void *dst, const float *src, size_t n, uint32_t esz);
void vk_from_device(float *dst, const void *src, size_t n, uint32_t esz);

/* ------------------------------------------------ support (vk_support.c) */

/* The chosen device's maxStorageBufferRange: supports_node declines a node
 * with a tensor larger than one binding can show (it then runs on the CPU). */
extern VkDeviceSize vk_max_range;

static inline const fpay_tensor *vk_tensor(const fpay_graph *g, int t) { return &g->tensors[t]; }

static inline bool vk_is_const(const fpay_graph *g, int t)
{
    return (g->tensors[t].flags & FPAY_TENSOR_CONST) != 0;
}

static inline bool vk_is_const_f32(const fpay_graph *g, int t)
{
    return t >= 0 && t < g->n_tensors && vk_is_const(g, t) &&
           g->tensors[t].dtype == FPAY_DT_F32 && g->tensors[t].data;
}

/* Bytes of tensor t on the host (f32). */
static inline size_t vk_tensor_bytes(const fpay_graph *g, int t)
{
    return (size_t)fpay_backend_elems(vk_tensor(g, t)) * sizeof(float);
}

/* Bytes of tensor t on the device: elements of esz bytes (fp32 or fp16). */
static inline size_t vk_dev_bytes(const fpay_graph *g, int t, uint32_t esz)
{
    return (size_t)fpay_backend_elems(vk_tensor(g, t)) * esz;
}

/* The backend's supports_node: f32 tensors within vk_max_range, and an op
 * with shapes and attributes the shaders handle. */
bool vk_supports_node(const fpay_graph *g, int index);

/* Constant inputs that live in the weights buffer: whatever an op we run may
 * read, whether or not this prepare runs the node (so the set, and the
 * context holding it, does not depend on the shapes). */
bool vk_wants_const(const fpay_graph *g, const fpay_node *n, int k);

/* ----------------------------------------- device context (vk_context.c) */

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

#define MEM_DL VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
#define MEM_HV (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)

void vk_buf_free(vk_ctx *c, vk_buf *b);

/* A buffer in the first memory type with all of prefer[0], else prefer[1],
 * else prefer[2] (0 ends the list); mapped when host-visible. */
fpay_status vk_buf_create(vk_ctx *c, vk_buf *b, VkDeviceSize size, VkBufferUsageFlags usage,
                          const VkMemoryPropertyFlags prefer[3], char *err, size_t err_len);

/* A host-visible (cached if possible) buffer for copies to and from one. */
fpay_status vk_stage_create(vk_ctx *c, vk_buf *b, VkDeviceSize size, char *err,
                            size_t err_len);

/* Submits cmd and waits with the context's timeout. A timeout or a lost
 * device marks the context broken: it is never used or parked again. */
fpay_status vk_submit_wait(vk_ctx *c, VkCommandBuffer cmd, char *err, size_t err_len);

/* Writes the pipeline cache to disk when it gained pipelines. */
void vk_save_pipeline_cache(vk_ctx *c);

/* The pipeline of a family with these specialization constants, created on
 * first use (through the pipeline cache). When the table is nearly full,
 * conv families fall back to their unspecialized pipeline. */
fpay_status vk_ctx_pipeline(vk_ctx *c, int family, const int32_t spec_in[4],
                            VkPipeline *out, char *err, size_t err_len);

/* A context holding g's weights at the precision asked for: a parked one
 * when one matches, else a new device with the weights uploaded. */
fpay_status vk_ctx_acquire(const fpay_graph *g, bool want_fp16, vk_ctx **out, char *err,
                           size_t err_len);

/* Saves the pipeline cache, then parks c (or destroys it when broken or
 * parking is off). NULL is ignored. */
void vk_ctx_release(vk_ctx *c);

/* -------------------------------------------- prepared state (vk_plan.c) */

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

/* Frees r's command buffer and tensor list, and zeroes r. */
void vk_range_free(vk_state *s, vk_range *r);

/* The backend interface's prepare and release. */
fpay_status vk_prepare(const fpay_graph *g, const bool *mine, int threads, void **state,
                       char *err, size_t err_len);
void vk_release(void *state);

#endif /* FPAY_VK_INTERNAL_H */
