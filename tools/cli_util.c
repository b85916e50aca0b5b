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

const char *fpay_cli_next_step(fpay_status st, const char *err)
{
    if (st != FPAY_NOT_FOUND || !err)
        return "";
    if (strstr(err, ".tflite"))
        return "; fetch the models with tools/fetch_models.sh, or point --models or "
               "FACEPAY_MODELS_DIR at their folder";
    if (strstr(err, "key file"))
        return "; make a master key with: facepay keygen FILE (then --key-file FILE "
               "or FACEPAY_KEY_FILE)";
    return "";
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
