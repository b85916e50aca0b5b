/*
 * plugin_loader.c - finds, loads and registers backend plugins.
 *
 * A plugin is a shared library named libfacepay-backend-<name>.so exporting
 * FPAY_BACKEND_ENTRY_SYMBOL. Folders searched, in order (the first copy of a
 * name wins; later ones are recorded as shadowed):
 *   1. each folder of $FACEPAY_BACKEND_PATH (colon-separated): lets a user or
 *      a test point at a build tree or a fixture folder and override the rest;
 *   2. the executable's folder (/proc/self/exe);
 *   3. the executable's ../lib/facepay/backends (the build tree and a
 *      relocatable install both use this layout);
 *   4. the install folder compiled in (FPAY_PLUGIN_INSTALL_DIR).
 * Within a folder, files load in name order, so the registration order (and
 * thus what "auto" picks: the last registered) is deterministic.
 *
 * Loading is strict: dlopen(RTLD_NOW | RTLD_LOCAL), so a plugin with a
 * missing dependency fails here and not at its first call, and its symbols
 * never leak into other plugins. Every refusal is kept (path, reason) for
 * fpay_backend_rejected() and logged on stderr, except the ones the user
 * asked for (FACEPAY_DISABLE_<NAME>=1) and shadowed duplicates.
 *
 * Handles of registered plugins stay open for the life of the process (their
 * interface is static data inside them). A plugin whose entry point ran but
 * was refused stays open too: its entry or probe may have started threads or
 * registered handlers that must not outlive its code.
 */
#define _XOPEN_SOURCE 700 /* realpath */

#include "facepay/backend.h"
#include "status.h"
#include "plugin_loader.h"

#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FPAY_PLUGIN_INSTALL_DIR
#define FPAY_PLUGIN_INSTALL_DIR "/usr/local/lib/facepay/backends"
#endif

#define PLUGIN_PREFIX "libfacepay-backend-"
#define PLUGIN_SUFFIX ".so"
#define MAX_PLUGIN_FILES 32
#define MAX_DIR_FILES 64
#define PLUGIN_PATH_LEN PATH_MAX

typedef struct plugin_record {
    char path[PLUGIN_PATH_LEN];
    char reason[256];
} plugin_record;

/* Written only inside the once routine; read after pthread_once returned,
 * which orders the writes before the reads. */
static plugin_record rejected_list[MAX_PLUGIN_FILES];
static int rejected_n;
static char loaded_paths[MAX_PLUGIN_FILES][PLUGIN_PATH_LEN]; /* real paths tried */
static int loaded_n;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void reject(const char *path, int log, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reject(const char *path, int log, const char *fmt, ...)
{
    if (rejected_n == MAX_PLUGIN_FILES)
        return;
    plugin_record *r = &rejected_list[rejected_n++];
    snprintf(r->path, sizeof r->path, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    if (log)
        fprintf(stderr, "facepay: backend plugin %s rejected: %s\n", r->path, r->reason);
}

/* "libfacepay-backend-<name>.so" -> name; 0 if the file is not a plugin. */
static int plugin_name(const char *file, char *name, size_t len)
{
    size_t n = strlen(file), pre = strlen(PLUGIN_PREFIX), suf = strlen(PLUGIN_SUFFIX);
    if (n <= pre + suf || strncmp(file, PLUGIN_PREFIX, pre) != 0 ||
        strcmp(file + n - suf, PLUGIN_SUFFIX) != 0 || n - pre - suf >= len)
        return 0;
    memcpy(name, file + pre, n - pre - suf);
    name[n - pre - suf] = '\0';
    return 1;
}

static int disabled(const char *name, char *var, size_t len)
{
    int w = snprintf(var, len, "FACEPAY_DISABLE_");
    for (const char *p = name; *p && (size_t)w + 1 < len; p++)
        var[w++] = isalnum((unsigned char)*p) ? (char)toupper((unsigned char)*p) : '_';
    var[w] = '\0';
    const char *v = getenv(var);
    return v && *v && strcmp(v, "0") != 0;
}

static void load_file(const char *dir, const char *file)
{
    char path[PLUGIN_PATH_LEN], real[PATH_MAX], name[64], var[96];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return;
    if (!plugin_name(file, name, sizeof name))
        return;
    if (!realpath(path, real))
        return; /* vanished, or a dangling link */
    for (int i = 0; i < loaded_n; i++)
        if (strcmp(loaded_paths[i], real) == 0)
            return; /* the same file through another search folder */
    if (loaded_n == MAX_PLUGIN_FILES)
        return;
    snprintf(loaded_paths[loaded_n++], PLUGIN_PATH_LEN, "%s", real);
    const char *origin = loaded_paths[loaded_n - 1];

    if (disabled(name, var, sizeof var)) {
        reject(path, 0, "disabled by %s", var);
        return;
    }
    if (fpay_backend_name_taken(name)) {
        reject(path, 0, "shadowed: a backend named '%s' is already registered", name);
        return;
    }
    dlerror();
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        reject(path, 1, "dlopen failed: %s", e ? e : "unknown error");
        return;
    }
    void *sym = dlsym(h, FPAY_BACKEND_ENTRY_SYMBOL);
    if (!sym) {
        reject(path, 1, "no symbol '%s' exported", FPAY_BACKEND_ENTRY_SYMBOL);
        dlclose(h);
        return;
    }
    fpay_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* POSIX: dlsym gives code addresses */
    const fpay_backend_iface *iface = entry();
    if (!iface) {
        reject(path, 1, "%s() returned NULL", FPAY_BACKEND_ENTRY_SYMBOL);
        return;
    }
    char err[256] = "";
    if (fpay_backend_register_from(iface, origin, err, sizeof err) != FPAY_OK)
        reject(path, 1, "%s", err);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_dir(const char *dir)
{
    if (!dir || !*dir)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    char *names[MAX_DIR_FILES];
    int n = 0;
    struct dirent *e;
    char tmp[64];
    while ((e = readdir(d)) != NULL && n < MAX_DIR_FILES)
        if (plugin_name(e->d_name, tmp, sizeof tmp) && (names[n] = strdup(e->d_name)))
            n++;
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    for (int i = 0; i < n; i++) {
        load_file(dir, names[i]);
        free(names[i]);
    }
}

static void load_all(void)
{
    const char *env = getenv("FACEPAY_BACKEND_PATH");
    if (env) {
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", env);
        char *save = NULL;
        for (char *p = strtok_r(buf, ":", &save); p; p = strtok_r(NULL, ":", &save))
            load_dir(p);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            load_dir(exe);
            char lib[PATH_MAX + 32];
            snprintf(lib, sizeof lib, "%s/../lib/facepay/backends", exe);
            load_dir(lib);
        }
    }
    load_dir(FPAY_PLUGIN_INSTALL_DIR);
}

void fpay_plugins_load_once(void)
{
    pthread_once(&load_once, load_all);
}

int fpay_backend_rejected_count(void)
{
    fpay_plugins_load_once();
    return rejected_n;
}

fpay_status fpay_backend_rejected(int index, const char **path, const char **reason)
{
    fpay_plugins_load_once();
    if (index < 0 || index >= rejected_n)
        return FPAY_NOT_FOUND;
    if (path)
        *path = rejected_list[index].path;
    if (reason)
        *reason = rejected_list[index].reason;
    return FPAY_OK;
}
