/*
 * cpu_report.c - fpay_cpu_report (facepay.h): what the CPU backend found on
 * this machine and which kernel it runs per family, as text. The CLI's
 * `facepay cpuinfo` prints it, so that neither it nor any other program
 * needs the kernels' private headers to tell an operator what runs.
 */
#include "facepay/facepay.h"

#include "fpay_simd.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct out {
    char *buf;
    size_t len, used;
} out;

__attribute__((format(printf, 2, 3))) static void put(out *o, const char *fmt, ...)
{
    if (o->used >= o->len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->buf + o->used, o->len - o->used, fmt, ap);
    va_end(ap);
    if (w > 0)
        o->used += (size_t)w < o->len - o->used ? (size_t)w : o->len - o->used - 1;
}

fpay_status fpay_cpu_report(char *buf, size_t len)
{
    if (!buf || len == 0)
        return FPAY_INVALID_ARGUMENT;
    buf[0] = '\0';
    out o = {buf, len, 0};
    const fpay_cpu_features *f = fpay_cpu_features_get();
    put(&o, "detected:  %s (OS saves YMM: %s, ZMM/opmask: %s)\n", f->summary,
        f->os_ymm ? "yes" : "no", f->os_zmm ? "yes" : "no");
    put(&o, "supported:");
    for (int i = 0; i < FPAY_ISA_COUNT_; i++)
        if (fpay_isa_supported((fpay_isa)i))
            put(&o, " %s", fpay_isa_name((fpay_isa)i));
    put(&o, "\n");
    fpay_isa isa;
    char err[256];
    if (fpay_cpu_choose_isa(&isa, err, sizeof err) != 0) {
        put(&o, "chosen:    none: %s\n", err);
        return FPAY_INVALID_ARGUMENT;
    }
    const char *env = getenv("FACEPAY_ISA");
    put(&o, "chosen:    %s (%s)\n", fpay_isa_name(isa),
        env && *env ? "FACEPAY_ISA" : "best detected");
    const fpay_gemm_ukernel *g = fpay_gemm_select(isa, 0);
    const fpay_conv_ukernel *c = fpay_conv_select(isa);
    const fpay_dwconv_ukernel *d1 = fpay_dwconv_select(isa, 3, 3, 1, 1);
    const fpay_dwconv_ukernel *d2 = fpay_dwconv_select(isa, 3, 3, 2, 2);
    const fpay_dwconv_ukernel *dg = fpay_dwconv_select(isa, 7, 7, 1, 1);
    const fpay_pool_ukernel *mp = fpay_maxpool_select(isa);
    const char *ref = "reference";
    put(&o, "kernels:\n");
    /* GEMM tiles: per layer, the widest whose nr divides the channels. */
    char tiles[256] = "";
    for (int i = 0; i < fpay_gemm_ukernel_count; i++)
        if (fpay_gemm_ukernels[i].isa == isa)
            snprintf(tiles + strlen(tiles), sizeof tiles - strlen(tiles), "%s%s",
                     tiles[0] ? ", " : "", fpay_gemm_ukernels[i].name);
    put(&o, "  conv 1x1 (GEMM)      %s\n", g ? tiles : ref);
    put(&o, "  fully connected      %s\n", g ? tiles : ref);
    if (g)
        put(&o, "  (GEMM: per layer, the widest tile dividing its channels, else the least "
                "padding)\n");
    put(&o, "  conv KxK (direct)    %s\n", c ? c->name : ref);
    put(&o, "  dwconv 3x3 s1        %s\n", d1 ? d1->name : ref);
    put(&o, "  dwconv 3x3 s2        %s\n", d2 ? d2->name : ref);
    put(&o, "  dwconv other (7x7)   %s\n", dg ? dg->name : ref);
    put(&o, "  max pool             %s\n", mp ? mp->name : ref);
    put(&o, "  everything else      reference\n");
    return FPAY_OK;
}
