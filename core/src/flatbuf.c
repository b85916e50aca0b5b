/* flatbuf.c - the bounds-checked FlatBuffers reader (see flatbuf.h). */
#include "flatbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* FlatBuffers are little-endian; the reads below copy bytes as they are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "flatbuf.c assumes a little-endian host"
#endif

__attribute__((format(printf, 2, 3))) static bool fail(fpay_fb *fb,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fb->msg, sizeof fb->msg, fmt, ap);
    va_end(ap);
    return false;
}

void fpay_fb_init(fpay_fb *fb, const uint8_t *data, size_t size)
{
    fb->data = data;
    fb->size = data ? size : 0;
    fb->msg[0] = '\0';
}

/* True when [pos, pos + n) lies inside the buffer. Written as a comparison
 * against what is left so that pos + n is never computed (it could wrap). */
static bool in_bounds(const fpay_fb *fb, size_t pos, uint64_t n)
{
    return pos <= fb->size && n <= (uint64_t)(fb->size - pos);
}

static bool rd(fpay_fb *fb, size_t pos, void *out, size_t n)
{
    if (!in_bounds(fb, pos, n))
        return fail(fb, "%zu-byte read at byte %zu is past the end of the "
                        "%zu-byte buffer", n, pos, fb->size);
    memcpy(out, fb->data + pos, n);
    return true;
}

/* Follows the uoffset stored at pos: *target = pos + value, which must lie
 * inside the buffer (at least min_bytes of it). */
static bool follow(fpay_fb *fb, size_t pos, size_t min_bytes, size_t *target)
{
    uint32_t off = 0;
    if (!rd(fb, pos, &off, 4))
        return false;
    if (off == 0)
        return fail(fb, "uoffset at byte %zu is 0", pos);
    if (!in_bounds(fb, pos, (uint64_t)off + min_bytes))
        return fail(fb, "uoffset %u at byte %zu points outside the %zu-byte "
                        "buffer", off, pos, fb->size);
    *target = pos + off;
    return true;
}

bool fpay_fb_table_at(fpay_fb *fb, size_t pos, fpay_fb_table *out)
{
    int32_t soff = 0;
    uint16_t hdr[2];
    memset(out, 0, sizeof *out);
    if (!rd(fb, pos, &soff, 4))
        return false;
    /* vtable = pos - soff; soff may be negative (vtable after the table). */
    size_t vt;
    if (soff >= 0) {
        if ((uint64_t)soff > pos)
            return fail(fb, "table at byte %zu: vtable offset %d points before "
                            "the start of the buffer", pos, soff);
        vt = pos - (size_t)soff;
    } else {
        uint64_t back = (uint64_t)(-(int64_t)soff);
        if (!in_bounds(fb, pos, back))
            return fail(fb, "table at byte %zu: vtable offset %d points past "
                            "the end of the %zu-byte buffer", pos, soff,
                        fb->size);
        vt = pos + (size_t)back;
    }
    if (!in_bounds(fb, vt, 4))
        return fail(fb, "table at byte %zu: vtable at byte %zu is past the end "
                        "of the %zu-byte buffer", pos, vt, fb->size);
    memcpy(hdr, fb->data + vt, 4);
    if (hdr[0] < 4 || (hdr[0] & 1u))
        return fail(fb, "table at byte %zu: vtable at byte %zu has invalid "
                        "size %u", pos, vt, hdr[0]);
    if (!in_bounds(fb, vt, hdr[0]))
        return fail(fb, "table at byte %zu: %u-byte vtable at byte %zu runs "
                        "past the end of the buffer", pos, hdr[0], vt);
    if (hdr[1] < 4)
        return fail(fb, "table at byte %zu: inline size %u is below 4", pos,
                    hdr[1]);
    if (!in_bounds(fb, pos, hdr[1]))
        return fail(fb, "table at byte %zu: inline size %u runs past the end "
                        "of the %zu-byte buffer", pos, hdr[1], fb->size);
    out->pos = pos;
    out->vtab = vt;
    out->vt_len = hdr[0];
    out->tab_len = hdr[1];
    return true;
}

bool fpay_fb_root(fpay_fb *fb, fpay_fb_table *out)
{
    size_t pos = 0;
    memset(out, 0, sizeof *out);
    if (!follow(fb, 0, 4, &pos))
        return false;
    return fpay_fb_table_at(fb, pos, out);
}

bool fpay_fb_field_pos(fpay_fb *fb, const fpay_fb_table *t, int field,
                       size_t width, size_t *pos)
{
    *pos = 0;
    if (field < 0)
        return fail(fb, "negative field index %d", field);
    /* Slot of field i: vtable + 4 + 2i. A slot past the vtable means the
     * writer knew fewer fields: absent. */
    uint64_t slot = 4u + 2u * (uint64_t)field;
    if (slot + 2 > t->vt_len)
        return true;
    uint16_t foff = 0;
    if (!rd(fb, t->vtab + (size_t)slot, &foff, 2))
        return false;
    if (foff == 0)
        return true;
    if ((uint64_t)foff + width > t->tab_len)
        return fail(fb, "table at byte %zu: field %d (%zu bytes at +%u) lies "
                        "beyond the table's %u inline bytes", t->pos, field,
                    width, foff, t->tab_len);
    /* table_at checked pos + tab_len against the size. */
    *pos = t->pos + foff;
    return true;
}

/* The scalar readers share one shape: find the field, copy its bytes. */
#define FB_SCALAR_(name, type)                                                \
    bool fpay_fb_##name(fpay_fb *fb, const fpay_fb_table *t, int field,       \
                        type def, type *out)                                  \
    {                                                                         \
        size_t pos;                                                           \
        *out = def;                                                           \
        if (!fpay_fb_field_pos(fb, t, field, sizeof(type), &pos))             \
            return false;                                                     \
        if (pos == 0)                                                         \
            return true;                                                      \
        return rd(fb, pos, out, sizeof(type));                                \
    }
FB_SCALAR_(u8, uint8_t)
FB_SCALAR_(i8, int8_t)
FB_SCALAR_(i32, int32_t)
FB_SCALAR_(u32, uint32_t)
FB_SCALAR_(u64, uint64_t)
FB_SCALAR_(f32, float)
#undef FB_SCALAR_

bool fpay_fb_table_field(fpay_fb *fb, const fpay_fb_table *t, int field,
                         fpay_fb_table *out, bool *present)
{
    size_t pos = 0, target = 0;
    memset(out, 0, sizeof *out);
    *present = false;
    if (!fpay_fb_field_pos(fb, t, field, 4, &pos))
        return false;
    if (pos == 0)
        return true;
    if (!follow(fb, pos, 4, &target) || !fpay_fb_table_at(fb, target, out))
        return false;
    *present = true;
    return true;
}

/* The vector at pos (its length word), elements of elem_size bytes. */
static bool vec_at(fpay_fb *fb, size_t pos, uint32_t elem_size,
                   fpay_fb_vec *out)
{
    uint32_t len = 0;
    if (!rd(fb, pos, &len, 4))
        return false;
    /* len * elem_size <= 2^32 * 8: no 64-bit overflow. */
    if (!in_bounds(fb, pos + 4, (uint64_t)len * elem_size))
        return fail(fb, "vector at byte %zu: %u elements of %u bytes run past "
                        "the end of the %zu-byte buffer", pos, len, elem_size,
                    fb->size);
    out->pos = pos + 4;
    out->len = len;
    out->elem = elem_size;
    return true;
}

bool fpay_fb_vec_field(fpay_fb *fb, const fpay_fb_table *t, int field,
                       uint32_t elem_size, fpay_fb_vec *out, bool *present)
{
    size_t pos = 0, target = 0;
    memset(out, 0, sizeof *out);
    *present = false;
    if (!fpay_fb_field_pos(fb, t, field, 4, &pos))
        return false;
    if (pos == 0)
        return true;
    if (!follow(fb, pos, 4, &target) || !vec_at(fb, target, elem_size, out))
        return false;
    *present = true;
    return true;
}

bool fpay_fb_str_field(fpay_fb *fb, const fpay_fb_table *t, int field,
                       const char **s, uint32_t *len, bool *present)
{
    fpay_fb_vec v;
    *s = NULL;
    *len = 0;
    if (!fpay_fb_vec_field(fb, t, field, 1, &v, present))
        return false;
    if (!*present)
        return true;
    /* vec_at checked pos + len; the terminator is one byte more. */
    if (!in_bounds(fb, v.pos, (uint64_t)v.len + 1)) {
        *present = false;
        return fail(fb, "string at byte %zu: %u bytes leave no room for the "
                        "NUL terminator", v.pos - 4, v.len);
    }
    if (fb->data[v.pos + v.len] != 0) {
        *present = false;
        return fail(fb, "string at byte %zu: %u bytes are not NUL-terminated",
                    v.pos - 4, v.len);
    }
    *s = (const char *)(fb->data + v.pos);
    *len = v.len;
    return true;
}

bool fpay_fb_vec_i32(fpay_fb *fb, const fpay_fb_vec *v, uint32_t i,
                     int32_t *out)
{
    *out = 0;
    if (i >= v->len || v->elem != 4)
        return fail(fb, "vector at byte %zu: element %u read out of range "
                        "(length %u)", v->pos, i, v->len);
    return rd(fb, v->pos + (size_t)i * 4u, out, 4);
}

bool fpay_fb_vec_table(fpay_fb *fb, const fpay_fb_vec *v, uint32_t i,
                       fpay_fb_table *out)
{
    size_t target = 0;
    memset(out, 0, sizeof *out);
    if (i >= v->len || v->elem != 4)
        return fail(fb, "vector at byte %zu: element %u read out of range "
                        "(length %u)", v->pos, i, v->len);
    if (!follow(fb, v->pos + (size_t)i * 4u, 4, &target))
        return false;
    return fpay_fb_table_at(fb, target, out);
}
