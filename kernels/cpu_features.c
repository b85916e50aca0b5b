/*
 * cpu_features.c - CPU detection, once per process, and the FACEPAY_ISA
 * override. See fpay_cpu.h.
 */
#include "fpay_cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define FPAY_X86 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#define FPAY_ARM64 1
#endif

static fpay_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void append(char *s, size_t len, const char *word)
{
    size_t used = strlen(s);
    snprintf(s + used, len - used, "%s%s", used ? " " : "", word);
}

#ifdef FPAY_X86
/* XGETBV via its encoding would need -mxsave; the inline form needs nothing
 * and is only reached when CPUID says OSXSAVE is set. */
static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect_x86(fpay_cpu_features *f)
{
    unsigned a, b, c, d;
    f->x86_64 = true;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    /* bit 1 SSE, bit 2 AVX (YMM upper halves); bits 5-7 opmask, ZMM0-15
     * upper halves, ZMM16-31: all must be OS-saved before using the ISA. */
    f->os_ymm = (xcr0 & 0x6) == 0x6;
    f->os_zmm = f->os_ymm && (xcr0 & 0xe0) == 0xe0;
    f->avx = avx && f->os_ymm;
    f->fma = fma && f->os_ymm;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = ((b >> 5) & 1) && f->avx;
        f->avx512f = ((b >> 16) & 1) && f->os_zmm;
        f->avx512bw = ((b >> 30) & 1) && f->os_zmm;
        f->avx512vl = ((b >> 31) & 1) && f->os_zmm;
    }
}
#endif

static void detect(void)
{
    fpay_cpu_features *f = &features;
    memset(f, 0, sizeof *f);
#if defined(FPAY_X86)
    detect_x86(f);
    if (f->avx2) append(f->summary, sizeof f->summary, "avx2");
    if (f->fma) append(f->summary, sizeof f->summary, "fma");
    if (f->avx512f) append(f->summary, sizeof f->summary, "avx512f");
    if (f->avx512bw) append(f->summary, sizeof f->summary, "avx512bw");
    if (f->avx512vl) append(f->summary, sizeof f->summary, "avx512vl");
#elif defined(FPAY_ARM64)
    f->aarch64 = true;
    f->neon = true; /* Advanced SIMD is mandatory on AArch64 */
    unsigned long hw = getauxval(AT_HWCAP);
    append(f->summary, sizeof f->summary, (hw & HWCAP_ASIMD) ? "neon(asimd)" : "neon");
#endif
    if (!f->summary[0])
        append(f->summary, sizeof f->summary, "none");
}

const fpay_cpu_features *fpay_cpu_features_get(void)
{
    pthread_once(&features_once, detect);
    return &features;
}

const char *fpay_isa_name(fpay_isa isa)
{
    static const char *const names[] = {
#define FPAY_ISA_NAME_(e, s) s,
        FPAY_ISA_LIST(FPAY_ISA_NAME_)
#undef FPAY_ISA_NAME_
    };
    return (unsigned)isa < (unsigned)FPAY_ISA_COUNT_ ? names[isa] : "?";
}

/* Which feature an ISA needs that the CPU lacks, or NULL if it has all. */
static const char *missing(fpay_isa isa)
{
    const fpay_cpu_features *f = fpay_cpu_features_get();
    switch (isa) {
    case FPAY_ISA_REF: return NULL;
    case FPAY_ISA_AVX2:
        if (!f->x86_64) return "x86-64";
        if (!f->avx2) return "AVX2";
        return f->fma ? NULL : "FMA";
    case FPAY_ISA_AVX512:
        if (!f->x86_64) return "x86-64";
        if (!f->avx512f) return "AVX-512F";
        if (!f->avx512bw) return "AVX-512BW";
        if (!f->avx512vl) return "AVX-512VL";
        return f->avx2 && f->fma ? NULL : "AVX2/FMA";
    case FPAY_ISA_NEON: return f->neon ? NULL : "NEON";
    case FPAY_ISA_COUNT_: break;
    }
    return "?";
}

bool fpay_isa_supported(fpay_isa isa)
{
    /* A path is usable only if this build has its kernels too. */
#if !defined(FPAY_X86)
    if (isa == FPAY_ISA_AVX2 || isa == FPAY_ISA_AVX512)
        return false;
#endif
#if !defined(FPAY_ARM64)
    if (isa == FPAY_ISA_NEON) /* kernels/neon/ is built for aarch64 only */
        return false;
#endif
    return missing(isa) == NULL;
}

fpay_isa fpay_isa_best(void)
{
    for (int i = FPAY_ISA_COUNT_ - 1; i > 0; i--)
        if (fpay_isa_supported((fpay_isa)i))
            return (fpay_isa)i;
    return FPAY_ISA_REF;
}

int fpay_cpu_choose_isa(fpay_isa *isa, char *err, size_t err_len)
{
    const char *want = getenv("FACEPAY_ISA");
    *isa = fpay_isa_best();
    if (!want || !*want)
        return 0;
    for (int i = 0; i < FPAY_ISA_COUNT_; i++) {
        if (strcmp(want, fpay_isa_name((fpay_isa)i)) != 0)
            continue;
        const char *lack = missing((fpay_isa)i);
        if (!lack && !fpay_isa_supported((fpay_isa)i))
            lack = "kernels for it in this build";
        if (lack) {
            snprintf(err, err_len, "FACEPAY_ISA=%s but this CPU lacks %s (detected: %s)",
                     want, lack, fpay_cpu_features_get()->summary);
            return -1;
        }
        *isa = (fpay_isa)i;
        return 0;
    }
    snprintf(err, err_len, "FACEPAY_ISA=%s is not one of ref, avx2, avx512, neon", want);
    return -1;
}
