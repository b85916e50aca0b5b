/*
 * vk_internal.h - what the Vulkan plugin's files share: the entry points it
 * loads from libvulkan.so.1 (it links no Vulkan library), the device choice
 * and the on-disk pipeline cache. Private to backends/vulkan.
 */
#ifndef FPAY_VK_INTERNAL_H
#define FPAY_VK_INTERNAL_H

#define VK_NO_PROTOTYPES
#include "facepay/backend.h"

#include <vulkan/vulkan.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#endif /* FPAY_VK_INTERNAL_H */
