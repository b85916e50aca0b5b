/* backend_registry.c - the list of backends a session can choose from.
 *
 * The built-in CPU backend is always first registered. Other backends join
 * through fpay_backend_register (plugins, test doubles); registration checks
 * the ABI strictly and rejects with a reason. */
#include "cpu_backend.h"
#include "facepay/backend.h"
#include "status.h"
#include "plugin_loader.h"

#include <pthread.h>
#include <string.h>

#define FPAY_MAX_BACKENDS 16

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const fpay_backend_iface *registry[FPAY_MAX_BACKENDS];
static const char *registry_origin[FPAY_MAX_BACKENDS]; /* static strings */
static int registry_count;

static void ensure_builtin_locked(void)
{
    if (registry_count == 0) {
        registry_origin[registry_count] = "built-in";
        registry[registry_count++] = fpay_cpu_backend();
    }
}

bool fpay_backend_name_taken(const char *name)
{
    bool taken = false;
    pthread_mutex_lock(&registry_lock);
    ensure_builtin_locked();
    for (int i = 0; i < registry_count; i++)
        taken = taken || strcmp(registry[i]->name, name) == 0;
    pthread_mutex_unlock(&registry_lock);
    return taken;
}

const char *fpay_backend_origin(int index)
{
    fpay_plugins_load_once();
    pthread_mutex_lock(&registry_lock);
    ensure_builtin_locked();
    const char *o = index >= 0 && index < registry_count ? registry_origin[index] : NULL;
    pthread_mutex_unlock(&registry_lock);
    return o;
}

int fpay_backend_count(void)
{
    fpay_plugins_load_once();
    pthread_mutex_lock(&registry_lock);
    ensure_builtin_locked();
    int n = registry_count;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

const fpay_backend_iface *fpay_backend_get(int index)
{
    fpay_plugins_load_once();
    pthread_mutex_lock(&registry_lock);
    ensure_builtin_locked();
    const fpay_backend_iface *b =
        index >= 0 && index < registry_count ? registry[index] : NULL;
    pthread_mutex_unlock(&registry_lock);
    return b;
}

const fpay_backend_iface *fpay_backend_find(const char *name)
{
    if (!name)
        return NULL;
    fpay_plugins_load_once();
    const fpay_backend_iface *found = NULL;
    pthread_mutex_lock(&registry_lock);
    ensure_builtin_locked();
    for (int i = 0; i < registry_count && !found; i++)
        if (strcmp(registry[i]->name, name) == 0)
            found = registry[i];
    pthread_mutex_unlock(&registry_lock);
    return found;
}

fpay_status fpay_backend_register(const fpay_backend_iface *iface, char *err,
                                  size_t err_len)
{
    /* Plugins first, so that a backend the application registers comes
     * after them (and "auto", which takes the last one, prefers it). */
    fpay_plugins_load_once();
    return fpay_backend_register_from(iface, NULL, err, err_len);
}

fpay_status fpay_backend_register_from(const fpay_backend_iface *iface,
                                       const char *origin, char *err, size_t err_len)
{
    if (!iface) {
        fpay_set_err(err, err_len, "backend interface is NULL");
        return FPAY_INVALID_ARGUMENT;
    }
    /* Read the two header fields first: a plugin built against another ABI
     * may have a different layout after them. */
    if (iface->abi_version != FPAY_BACKEND_ABI_VERSION) {
        fpay_set_err(err, err_len, "backend ABI version %u, this library speaks %u",
                     iface->abi_version, FPAY_BACKEND_ABI_VERSION);
        return FPAY_BACKEND_UNAVAILABLE;
    }
    if (iface->struct_size < sizeof(fpay_backend_iface)) {
        fpay_set_err(err, err_len, "backend struct is %u bytes, expects at least %zu",
                     iface->struct_size, sizeof(fpay_backend_iface));
        return FPAY_BACKEND_UNAVAILABLE;
    }
    if (!iface->name || !iface->name[0] || !iface->version ||
        !iface->supports_node || !iface->run_node) {
        fpay_set_err(err, err_len, "backend '%s' lacks a required field",
                     iface->name ? iface->name : "?");
        return FPAY_BACKEND_UNAVAILABLE;
    }
    if (iface->probe) {
        char why[160] = "";
        if (iface->probe(why, sizeof why) != FPAY_OK) {
            fpay_set_err(err, err_len, "backend '%s' probe failed: %s", iface->name, why);
            return FPAY_BACKEND_UNAVAILABLE;
        }
    }
    fpay_status st = FPAY_OK;
    pthread_mutex_lock(&registry_lock);
    ensure_builtin_locked();
    for (int i = 0; i < registry_count; i++)
        if (strcmp(registry[i]->name, iface->name) == 0) {
            fpay_set_err(err, err_len, "a backend named '%s' is already registered",
                         iface->name);
            st = FPAY_INVALID_ARGUMENT;
        }
    if (st == FPAY_OK && registry_count == FPAY_MAX_BACKENDS) {
        fpay_set_err(err, err_len, "too many backends");
        st = FPAY_LIMIT_EXCEEDED;
    }
    if (st == FPAY_OK) {
        registry_origin[registry_count] = origin ? origin : "registered by the application";
        registry[registry_count++] = iface;
    }
    pthread_mutex_unlock(&registry_lock);
    return st;
}
