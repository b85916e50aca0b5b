/*
 * vk_device.c - the Vulkan loader (dlopen, no link-time dependency), the
 * driver libraries it brings in (kept resident, below) and the device choice
 * shared by the probe and every session.
 */
#define _GNU_SOURCE /* dl_iterate_phdr, RTLD_NOLOAD, RTLD_NODELETE */
#include "vk_internal.h"

#include <ctype.h>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fpay_vk_result_str(VkResult r)
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

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static PFN_vkGetInstanceProcAddr gipa;
static char lib_error[256];

static void open_libvulkan(void)
{
    /* FACEPAY_VK_LOADER names another loader (tests: a missing one). Never
     * closed: the driver may keep threads of its own. */
    const char *name = getenv("FACEPAY_VK_LOADER");
    void *h = NULL;
    if (name && *name) {
        h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    } else {
        name = "libvulkan.so.1";
        h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            h = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
    }
    if (!h) {
        const char *e = dlerror();
        snprintf(lib_error, sizeof lib_error, "no Vulkan loader: %.200s",
                 e ? e : "libvulkan.so.1 not found");
        return;
    }
    void *sym = dlsym(h, "vkGetInstanceProcAddr");
    if (!sym) {
        snprintf(lib_error, sizeof lib_error, "%.200s has no vkGetInstanceProcAddr", name);
        return;
    }
    memcpy(&gipa, &sym, sizeof gipa); /* object pointer -> function pointer */
}

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

const char *fpay_vk_type_name(VkPhysicalDeviceType t)
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

/*
 * Driver libraries stay loaded for the life of the process.
 *
 * The loader dlopens the ICDs (and their dependencies) in vkCreateInstance
 * and dlcloses them in vkDestroyInstance. Drivers keep process-lifetime
 * state that they never free because they expect to live until exit: Mesa
 * 22.3's CPU detection (util_cpu_detect, once per load of libvulkan_lvp.so
 * and libvulkan_radeon.so) reallocs a 128-byte L3 affinity mask into a
 * static on AMD Zen CPUs whose CPUID reports the L3 topology. Unloading the
 * driver loses that pointer, so every create/destroy cycle leaks it again
 * (LeakSanitizer: "128 bytes ... realloc (<unknown module>)"), and each
 * reload repeats the driver's start-up work. So the objects that first
 * appear during our vkCreateInstance are promoted to RTLD_NODELETE: later
 * instances reuse the loaded driver, and its statics stay reachable. The
 * snapshot is taken under a lock so that our own concurrent creations do
 * not race; a library another thread of the host loads in that window
 * would be kept too, which costs only its mapping.
 */
typedef struct {
    char **names;
    size_t n, cap;
    bool oom;
} so_list;

static int collect_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    so_list *l = arg;
    if (!info->dlpi_name || !info->dlpi_name[0] || l->oom)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **grown = realloc(l->names, cap * sizeof *grown);
        if (!grown) {
            l->oom = true;
            return 0;
        }
        l->names = grown;
        l->cap = cap;
    }
    l->names[l->n] = strdup(info->dlpi_name);
    if (!l->names[l->n])
        l->oom = true;
    else
        l->n++;
    return 0;
}

static void so_list_free(so_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static bool so_list_has(const so_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return true;
    return false;
}

/* Promotes every object loaded now but not in `before` to RTLD_NODELETE.
 * RTLD_NOLOAD never loads anything; the extra reference is dropped again,
 * the flag stays. Best effort: a failure only means the old behaviour. */
static void keep_new_objects_resident(const so_list *before)
{
    so_list now = {0};
    dl_iterate_phdr(collect_object, &now);
    for (size_t i = 0; i < now.n; i++) {
        if (so_list_has(before, now.names[i]))
            continue;
        void *h = dlopen(now.names[i], RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
        if (h)
            dlclose(h);
    }
    so_list_free(&now);
}

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

fpay_status fpay_vk_create_instance(vk_fns *f, VkInstance *inst, char *why, size_t why_len)
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
    so_list before = {0};
    pthread_mutex_lock(&create_lock);
    dl_iterate_phdr(collect_object, &before);
    VkResult r = create(&ci, NULL, inst);
    if (r == VK_SUCCESS && !before.oom)
        keep_new_objects_resident(&before);
    pthread_mutex_unlock(&create_lock);
    so_list_free(&before);
    if (r != VK_SUCCESS) {
        *inst = VK_NULL_HANDLE;
        fpay_backend_set_err(why, why_len, "vkCreateInstance: %s%s", fpay_vk_result_str(r),
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

fpay_status fpay_vk_choose_device(const vk_fns *f, VkInstance inst, vk_choice *c,
                                  char *why, size_t why_len)
{
    uint32_t n = 0;
    VkResult r = f->vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        fpay_backend_set_err(why, why_len, "no Vulkan device (%s)",
                r == VK_SUCCESS ? "none enumerated" : fpay_vk_result_str(r));
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
        fpay_backend_set_err(why, why_len, "vkEnumeratePhysicalDevices: %s",
                             fpay_vk_result_str(r));
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
            fpay_backend_set_err(why, why_len,
                                 "FACEPAY_VK_DEVICE=%s matches no usable device of %u%s%s",
                                 want, n, *rejected ? ": " : "", rejected);
        else
            fpay_backend_set_err(why, why_len, "no usable Vulkan device of %u: %s", n,
                                 rejected);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    memset(c, 0, sizeof *c);
    c->pd = pds[best];
    c->index = (uint32_t)best;
    c->queue_family = best_q;
    free(pds);

    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
    };
    VkPhysicalDeviceDriverProperties drv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES,
        .pNext = &m3,
    };
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
        .pNext = &drv,
    };
    f->vkGetPhysicalDeviceProperties2(c->pd, &p2);
    c->props = p2.properties;
    c->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize
                                              : (VkDeviceSize)1 << 30;
    snprintf(c->driver, sizeof c->driver, "%.*s %.*s", VK_MAX_DRIVER_NAME_SIZE,
             drv.driverName, VK_MAX_DRIVER_INFO_SIZE, drv.driverInfo);

    VkPhysicalDevice16BitStorageFeatures s16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
    };
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
        .pNext = &s16,
    };
    VkPhysicalDeviceFeatures2 feat = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &f16,
    };
    f->vkGetPhysicalDeviceFeatures2(c->pd, &feat);
    c->fp16_storage = s16.storageBuffer16BitAccess;
    c->fp16_arith = f16.shaderFloat16;
    return FPAY_OK;
}
