/* status.c - status strings, versions, dtype helpers, error formatting. */
#include "facepay/backend.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>

#ifndef FPAY_BUILD_ID_STR
#define FPAY_BUILD_ID_STR "unknown"
#endif

const char *fpay_status_str(fpay_status status)
{
    switch (status) {
#define FPAY_STATUS_CASE_(name, code, text)                                   \
    case FPAY_##name:                                                         \
        return text;
        FPAY_STATUS_LIST(FPAY_STATUS_CASE_)
#undef FPAY_STATUS_CASE_
    }
    return "unknown status";
}

const char *fpay_version(void) { return FPAY_VERSION_STRING; }

/* The kernel families compiled in (kernels/CMakeLists.txt builds the SIMD
 * ones unless FACEPAY_SIMD=OFF); which one runs is chosen at run time
 * (`facepay cpuinfo`). */
#if defined(FPAY_NO_SIMD)
#define FPAY_ISA_LIST "ref"
#elif defined(__x86_64__) || defined(_M_X64)
#define FPAY_ISA_LIST "ref,avx2,avx512"
#elif defined(__aarch64__)
#define FPAY_ISA_LIST "ref,neon"
#else
#define FPAY_ISA_LIST "ref"
#endif

#define FPAY_STR_(x) #x
#define FPAY_STR(x) FPAY_STR_(x)

const char *fpay_build_id(void)
{
    return FPAY_BUILD_ID_STR " isa:" FPAY_ISA_LIST
                             " abi:" FPAY_STR(FPAY_BACKEND_ABI_VERSION);
}

const char *fpay_dtype_str(fpay_dtype dtype)
{
    switch (dtype) {
    case FPAY_DT_F32: return "float32";
    case FPAY_DT_F16: return "float16";
    case FPAY_DT_I32: return "int32";
    case FPAY_DT_I64: return "int64";
    case FPAY_DT_U8: return "uint8";
    case FPAY_DT_I8: return "int8";
    case FPAY_DT_BOOL: return "bool";
    }
    return "unknown";
}

size_t fpay_dtype_size(fpay_dtype dtype)
{
    switch (dtype) {
    case FPAY_DT_F32: return 4;
    case FPAY_DT_F16: return 2;
    case FPAY_DT_I32: return 4;
    case FPAY_DT_I64: return 8;
    case FPAY_DT_U8: return 1;
    case FPAY_DT_I8: return 1;
    case FPAY_DT_BOOL: return 1;
    }
    return 0;
}

const char *fpay_op_name(fpay_op op)
{
    static const char *const names[] = {
#define FPAY_OP_NAME_(name) #name,
        FPAY_OP_LIST(FPAY_OP_NAME_)
#undef FPAY_OP_NAME_
    };
    if ((unsigned)op >= (unsigned)FPAY_OP_COUNT_)
        return "UNKNOWN_OP";
    return names[op];
}

void fpay_set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

int fpay_open_regular(const char *path, FILE **out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return errno ? errno : EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno ? errno : EIO;
        close(fd);
        return e;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno ? errno : ENOMEM;
        close(fd);
        return e;
    }
    *out = f;
    return 0;
}
