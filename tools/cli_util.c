#include "cli_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int fpay_cli_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("facepay: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int fpay_cli_parse_profile(const char *name, fpay_camera_profile *out)
{
    static const struct {
        const char *name;
        fpay_camera_profile profile;
    } profiles[] = {
        {"default", FPAY_CAMERA_DEFAULT},
        {"kiosk", FPAY_CAMERA_KIOSK},
        {"mobile", FPAY_CAMERA_MOBILE},
    };
    for (size_t i = 0; name && i < sizeof profiles / sizeof profiles[0]; i++)
        if (!strcmp(name, profiles[i].name)) {
            *out = profiles[i].profile;
            return 0;
        }
    return -1;
}
