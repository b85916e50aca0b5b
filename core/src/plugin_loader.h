/* plugin_loader.h - run-time loading of backend plugins (plugin_loader.c),
 * internal to the library. */
#ifndef FPAY_PLUGIN_LOADER_H
#define FPAY_PLUGIN_LOADER_H

#include "facepay/backend.h"

/* Loads the plugins once per process (pthread_once). Called by every
 * registry entry point before it takes the registry lock. */
void fpay_plugins_load_once(void);

/* Registration without the load-once hook (the loader itself calls it, from
 * inside the once routine). origin: the plugin's path, or NULL for a backend
 * registered by the application. */
fpay_status fpay_backend_register_from(const fpay_backend_iface *iface,
                                       const char *origin, char *err,
                                       size_t err_len);

/* Is a backend of this name registered? (no load-once hook) */
bool fpay_backend_name_taken(const char *name);

#endif
