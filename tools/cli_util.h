/* Helpers every `facepay` command shares: one way to report a bad command
 * line, one way to read option values that several commands take. */
#ifndef FPAY_TOOLS_CLI_UTIL_H
#define FPAY_TOOLS_CLI_UTIL_H

#include <facepay/pipeline.h>

/* Prints "facepay: <message>" on stderr and returns code (for
 * `return fpay_cli_die(EXIT_USAGE, ...)`). */
int fpay_cli_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "default", "kiosk" or "mobile": 0 and *out set, else -1. */
int fpay_cli_parse_profile(const char *name, fpay_camera_profile *out);

#endif
