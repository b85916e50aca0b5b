/* Helpers every `facepay` command shares: one way to report a bad command
 * line, one way to read option values that several commands take. */
#ifndef FPAY_TOOLS_CLI_UTIL_H
#define FPAY_TOOLS_CLI_UTIL_H

#include <facepay/pipeline.h>

#include <stdio.h>

/* Prints "facepay: <message>" on stderr and returns code (for
 * `return fpay_cli_die(EXIT_USAGE, ...)`). */
int fpay_cli_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What to do next after a failure to open the service or the models, as
 * "; ..." to append to the message ("" when there is nothing to add): a
 * missing key file (make one with `facepay keygen`), missing model files
 * (tools/fetch_models.sh, --models or FACEPAY_MODELS_DIR). */
const char *fpay_cli_next_step(fpay_status st, const char *err);

/* "default", "kiosk" or "mobile": 0 and *out set, else -1. */
int fpay_cli_parse_profile(const char *name, fpay_camera_profile *out);

/* libfacepay's internal reader guard (core/src/status.c, declared in its
 * status.h): opens path only when it is a regular file, without blocking on
 * a FIFO. 0 and *out, an errno value, or -1 for "not a regular file". */
int fpay_open_regular(const char *path, FILE **out);

#endif
