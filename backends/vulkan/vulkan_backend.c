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
 *
 * The files: this one probes and describes the device, records and runs a
 * range, and holds the backend's entry; vk_support.c says which nodes it
 * takes, vk_context.c keeps the device context, vk_plan.c prepares the
 * state, vk_f16.c converts to and from fp16 (vk_internal.h: what they share).
 */
#include "vk_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- probe */

static fpay_backend_iface vk_iface;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static fpay_status probe_status = FPAY_BACKEND_UNAVAILABLE;
static char probe_why[256];
static char version_buf[1280] = "vulkan (no device)";

/* The precision a session created now gets, for the description. */
static void describe_precision(const vk_choice *c, char *out, size_t len)
{
    const char *v;
    int prec = vk_precision_env(&v);
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
        vk_max_range = c.props.limits.maxStorageBufferRange;
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
            if (t < 0 || vk_is_const(g, t) || mark[t])
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
                                .size = vk_dev_bytes(g, t, c->esz)};
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
                                .size = vk_dev_bytes(g, t, c->esz)};
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
            vk_range_free(s, r);
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
        vk_to_device(host + s->act_off[t], ctx->buffers[t],
                  (size_t)fpay_backend_elems(vk_tensor(g, t)), c->esz);
    }
    if ((st = vk_submit_wait(c, r->cmd, err, err_len)))
        goto out;
    for (int k = 0; k < r->n_out; k++) {
        int t = r->io[r->n_in + k];
        if (!ctx->buffers[t]) {
            fpay_backend_set_err(err, err_len, "vulkan: tensor %d has no storage", t);
            st = FPAY_INTERNAL;
            goto out;
        }
        vk_from_device(ctx->buffers[t], host + s->act_off[t],
                    (size_t)fpay_backend_elems(vk_tensor(g, t)), c->esz);
    }
out:
    if (r == &scratch && !c->broken)
        vk_range_free(s, r);
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
