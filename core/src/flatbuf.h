/*
 * flatbuf.h - a minimal, bounds-checked FlatBuffers reader (internal).
 *
 * Written for the TFLite importer, which must survive any byte string. It
 * trusts nothing in the buffer:
 *   - every read checks position + width against the buffer size, with
 *     arithmetic that cannot wrap (64-bit, and subtractions from the size
 *     instead of additions to the position);
 *   - every read goes through memcpy, so unaligned positions are fine;
 *   - a table's vtable (reached through a signed offset, either direction)
 *     must lie in the buffer, be at least 4 bytes and even; the table's
 *     inline size from the vtable must lie in the buffer too;
 *   - a field whose slot lies beyond the vtable is absent (an older writer);
 *     a field whose bytes lie beyond the table's inline size is an error;
 *   - a uoffset must land inside the buffer and may not be 0;
 *   - vectors: the length word and length * element size must fit;
 *   - strings: the bytes and the NUL terminator must fit, and the terminator
 *     must be 0.
 * Nothing here loops over untrusted counts or recurses: the caller walks
 * vectors with counts this reader has already checked against the size.
 *
 * On failure a function returns false and leaves one line in fb->msg naming
 * the byte position and the problem; the caller adds what it was reading.
 * Little-endian hosts only (as is the TFLite format itself on every target
 * this project builds for); flatbuf.c refuses to compile elsewhere.
 */
#ifndef FACEPAY_FLATBUF_H
#define FACEPAY_FLATBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fpay_fb {
    const uint8_t *data;
    size_t size;
    char msg[192];     /* the last error, one line */
} fpay_fb;

/* A table whose header was checked. Field reads check the rest. */
typedef struct fpay_fb_table {
    size_t pos;        /* the table: its first 4 bytes are the soffset */
    size_t vtab;       /* its vtable */
    uint16_t vt_len;   /* vtable size in bytes (>= 4, even) */
    uint16_t tab_len;  /* table inline size in bytes (>= 4) */
} fpay_fb_table;

/* A vector whose length was checked: elements [pos, pos + len * elem). */
typedef struct fpay_fb_vec {
    size_t pos;        /* first element */
    uint32_t len;      /* element count */
    uint32_t elem;     /* element size in bytes */
} fpay_fb_vec;

void fpay_fb_init(fpay_fb *fb, const uint8_t *data, size_t size);

/* The root table (uoffset at byte 0). */
bool fpay_fb_root(fpay_fb *fb, fpay_fb_table *out);

/* Checks the table header of a table starting at pos. */
bool fpay_fb_table_at(fpay_fb *fb, size_t pos, fpay_fb_table *out);

/* Scalar fields: *out gets the value, or def when the field is absent. */
bool fpay_fb_u8(fpay_fb *fb, const fpay_fb_table *t, int field, uint8_t def,
                uint8_t *out);
bool fpay_fb_i8(fpay_fb *fb, const fpay_fb_table *t, int field, int8_t def,
                int8_t *out);
bool fpay_fb_i32(fpay_fb *fb, const fpay_fb_table *t, int field, int32_t def,
                 int32_t *out);
bool fpay_fb_u32(fpay_fb *fb, const fpay_fb_table *t, int field, uint32_t def,
                 uint32_t *out);
bool fpay_fb_u64(fpay_fb *fb, const fpay_fb_table *t, int field, uint64_t def,
                 uint64_t *out);
bool fpay_fb_f32(fpay_fb *fb, const fpay_fb_table *t, int field, float def,
                 float *out);

/* Offset fields. *present tells whether the field is there; when it is not,
 * *out is zeroed and true is returned (absence is not an error here). */
bool fpay_fb_table_field(fpay_fb *fb, const fpay_fb_table *t, int field,
                         fpay_fb_table *out, bool *present);
bool fpay_fb_vec_field(fpay_fb *fb, const fpay_fb_table *t, int field,
                       uint32_t elem_size, fpay_fb_vec *out, bool *present);
/* A string: *s points into the buffer (NUL-terminated there), *len excludes
 * the terminator. */
bool fpay_fb_str_field(fpay_fb *fb, const fpay_fb_table *t, int field,
                       const char **s, uint32_t *len, bool *present);

/* Vector elements; i must be < v->len (checked). */
bool fpay_fb_vec_i32(fpay_fb *fb, const fpay_fb_vec *v, uint32_t i,
                     int32_t *out);
bool fpay_fb_vec_table(fpay_fb *fb, const fpay_fb_vec *v, uint32_t i,
                       fpay_fb_table *out);

/* Where field `field` (width bytes) of t lies: *pos = 0 when the field is
 * absent. Fails when the vtable or the field bytes are out of bounds. Used by
 * the typed readers and by the tests' corpus generator. */
bool fpay_fb_field_pos(fpay_fb *fb, const fpay_fb_table *t, int field,
                       size_t width, size_t *pos);

#endif /* FACEPAY_FLATBUF_H */
