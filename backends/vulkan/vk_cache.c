/*
 * vk_cache.c - the VkPipelineCache kept on disk between processes.
 *
 * A driver is entitled to trust the bytes handed to vkCreatePipelineCache
 * only as far as its header; some have crashed on garbage. So the file is
 * checked here first (size bounds, header length, version one, vendor,
 * device, pipelineCacheUUID) and anything else is ignored: the cache is an
 * optimisation, a bad file must never stop a session. Writes go to a
 * temporary file in the same folder and are renamed over the old one, so a
 * reader never sees half a file and two processes writing at once leave one
 * whole file.
 */
#define _POSIX_C_SOURCE 200809L
#include "vk_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAX_BYTES (64u << 20)
#define CACHE_HEADER_BYTES 32u /* length, version, vendor, device, UUID[16] */

bool fpay_vk_cache_path(const VkPhysicalDeviceProperties *p, char *path, size_t len)
{
    const char *env = getenv("FACEPAY_VK_CACHE");
    if (env && *env) {
        if (strcmp(env, "0") == 0 || strcmp(env, "off") == 0)
            return false;
        return (size_t)snprintf(path, len, "%s", env) < len;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg == '/')
        n = snprintf(path, len, "%s/facepay/vk-pipelines-%04x-%04x.bin", xdg,
                     p->vendorID, p->deviceID);
    else if (home && *home == '/')
        n = snprintf(path, len, "%s/.cache/facepay/vk-pipelines-%04x-%04x.bin", home,
                     p->vendorID, p->deviceID);
    else
        return false;
    return n > 0 && (size_t)n < len;
}

static uint32_t rd32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void *fpay_vk_cache_load(const char *path, const VkPhysicalDeviceProperties *p, size_t *size)
{
    *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    unsigned char *buf = NULL;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size < (off_t)CACHE_HEADER_BYTES || st.st_size > (off_t)CACHE_MAX_BYTES)
        goto bad;
    size_t n = (size_t)st.st_size;
    buf = malloc(n);
    if (!buf || fread(buf, 1, n, fp) != n)
        goto bad;
    /* VkPipelineCacheHeaderVersionOne, little-endian on every device we
     * target (the header is in the device's byte order). */
    if (rd32(buf) < CACHE_HEADER_BYTES || rd32(buf) > n ||
        rd32(buf + 4) != VK_PIPELINE_CACHE_HEADER_VERSION_ONE ||
        rd32(buf + 8) != p->vendorID || rd32(buf + 12) != p->deviceID ||
        memcmp(buf + 16, p->pipelineCacheUUID, VK_UUID_SIZE) != 0)
        goto bad;
    fclose(fp);
    *size = n;
    return buf;
bad:
    free(buf);
    fclose(fp);
    return NULL;
}

/* mkdir -p of path's folder. */
static void make_parent(const char *path)
{
    char dir[1024];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return;
    memcpy(dir, path, n + 1);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = '\0';
    for (char *q = dir + 1; *q; q++) {
        if (*q != '/')
            continue;
        *q = '\0';
        (void)mkdir(dir, 0700);
        *q = '/';
    }
    (void)mkdir(dir, 0700);
}

void fpay_vk_cache_save(const char *path, const void *data, size_t size)
{
    if (!data || size < CACHE_HEADER_BYTES || size > CACHE_MAX_BYTES)
        return;
    char tmp[1100];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return;
    make_parent(path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp)
        return;
    bool ok = fwrite(data, 1, size, fp) == size;
    ok = fflush(fp) == 0 && ok;
    ok = fsync(fileno(fp)) == 0 && ok;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0)
        (void)unlink(tmp);
}
