/*
 * vk_context.c - the device context (vk_ctx): instance, device, queue,
 * command pool, fence, the pipeline cache and the pipelines (shaders
 * embedded here), buffers and submission, and the weights buffer (layout,
 * hash, upload), with the parking list that lets a re-prepare take a
 * context back. It depends on the model, not on the shapes, which is why it
 * is separate from the per-prepare state (vk_plan.c).
 */
#include "vk_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
#define PARK_MAX 2

void vk_buf_free(vk_ctx *c, vk_buf *b)
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

fpay_status vk_buf_create(vk_ctx *c, vk_buf *b, VkDeviceSize size, VkBufferUsageFlags usage,
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

fpay_status vk_stage_create(vk_ctx *c, vk_buf *b, VkDeviceSize size, char *err,
                            size_t err_len)
{
    static const VkMemoryPropertyFlags host[3] = {
        MEM_HV | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, MEM_HV, 0};
    return vk_buf_create(c, b, size,
                      VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                      host, err, err_len);
}

fpay_status vk_submit_wait(vk_ctx *c, VkCommandBuffer cmd, char *err, size_t err_len)
{
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd,
    };
    VKCHECK(c->f.vkResetFences(c->dev, 1, &c->fence), "vkResetFences");
    VkResult r = c->f.vkQueueSubmit(c->queue, 1, &si, c->fence);
    if (r == VK_SUCCESS && vk_env_on("FACEPAY_VK_FAULT_LOST")) /* fault injection (tests) */
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

void vk_save_pipeline_cache(vk_ctx *c)
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
        vk_buf_free(c, &c->wts);
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

fpay_status vk_ctx_pipeline(vk_ctx *c, int family, const int32_t spec_in[4],
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
            if (k < n->n_inputs ? !vk_wants_const(g, n, k)
                                : (n->act != FPAY_ACT_PRELU || !vk_is_const_f32(g, t)))
                continue;
            if (off[t] >= 0)
                continue;
            off[t] = (int64_t)bytes;
            size_t nb = vk_tensor_bytes(g, t);
            size_t db = vk_dev_bytes(g, t, esz);
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
    fpay_status st = vk_buf_create(c, &c->wts, size,
                                VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                    VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                dl, err, err_len);
    if (st)
        return st;
    /* Device-local and host-visible (lavapipe, integrated GPUs, ReBAR):
     * write through the mapping; otherwise (or FACEPAY_VK_STAGING=1, which
     * tests the discrete-GPU path anywhere) through a staging buffer. */
    bool staging = !c->wts.map || vk_env_on("FACEPAY_VK_STAGING");
    vk_buf stage = {0};
    unsigned char *dst = c->wts.map;
    if (staging) {
        if ((st = vk_stage_create(c, &stage, size, err, err_len))) {
            vk_buf_free(c, &stage);
            return st;
        }
        dst = stage.map;
    }
    /* fp16: converted here, so the upload and the buffer are half size. */
    for (int t = 0; t < g->n_tensors; t++)
        if (c->wt_off[t] >= 0)
            vk_to_device(dst + c->wt_off[t], g->tensors[t].data,
                      (size_t)fpay_backend_elems(vk_tensor(g, t)), c->esz);
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
            vk_buf_free(c, &stage);
            VKCHECK(r, "recording the weight upload");
        }
        st = vk_submit_wait(c, c->cmd, err, err_len);
        if (st == FPAY_OK || !c->broken)
            vk_buf_free(c, &stage);
    }
    return st;
}

/* Contexts released by a session, kept for its next prepare (a reshape) or
 * another session of the same model. FACEPAY_VK_PARK=0 turns it off. */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER;
static vk_ctx *parked[PARK_MAX];

fpay_status vk_ctx_acquire(const fpay_graph *g, bool want_fp16, vk_ctx **out, char *err,
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

void vk_ctx_release(vk_ctx *c)
{
    if (!c)
        return;
    vk_save_pipeline_cache(c);
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
