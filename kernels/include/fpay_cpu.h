/*
 * fpay_cpu.h - what the CPU can run, detected once per process, and which
 * instruction set the kernels use.
 *
 * Detection (kernels/cpu_features.c) runs once under pthread_once: CPUID for
 * the feature bits AND XGETBV for what the OS saves on a context switch (a
 * CPU with AVX-512 under an OS that does not save ZMM/opmask state must not
 * use it). On aarch64 NEON is baseline; getauxval(AT_HWCAP) is read for the
 * report.
 *
 * FACEPAY_ISA=ref|avx2|avx512|neon forces a path. It is read at every
 * fpay_cpu_choose_isa call (session prepare), not cached, so a benchmark can
 * compare paths in one process.
 */
#ifndef FPAY_CPU_H
#define FPAY_CPU_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel instruction sets, lowest first. */
#define FPAY_ISA_LIST(X) \
    X(REF, "ref")        \
    X(AVX2, "avx2")      \
    X(AVX512, "avx512")  \
    X(NEON, "neon")

typedef enum fpay_isa {
#define FPAY_ISA_ENUM_(e, s) FPAY_ISA_##e,
    FPAY_ISA_LIST(FPAY_ISA_ENUM_)
#undef FPAY_ISA_ENUM_
    FPAY_ISA_COUNT_
} fpay_isa;

typedef struct fpay_cpu_features {
    bool x86_64, aarch64;
    /* usable = CPU has it AND the OS saves its registers */
    bool avx, avx2, fma, avx512f, avx512bw, avx512vl, neon;
    bool os_ymm, os_zmm;         /* XCR0 bits: YMM; opmask+ZMM_Hi256+Hi16_ZMM */
    char summary[128];           /* "avx2 fma avx512f ..." */
} fpay_cpu_features;

/* Detected once (thread-safe); never NULL. */
const fpay_cpu_features *fpay_cpu_features_get(void);

const char *fpay_isa_name(fpay_isa isa);
/* Can this machine run kernels of `isa`? REF always can. */
bool fpay_isa_supported(fpay_isa isa);
/* The best ISA this machine supports. */
fpay_isa fpay_isa_best(void);

/* The ISA to use: FACEPAY_ISA if set (an error if unknown or unsupported:
 * returns -1 with a message such as "FACEPAY_ISA=avx512 but this CPU lacks
 * AVX-512F (detected: avx2 fma)"), else the best one. */
int fpay_cpu_choose_isa(fpay_isa *isa, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif /* FPAY_CPU_H */
