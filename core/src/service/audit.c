/*
 * audit.c - one link of the audit hash chain: a keyed BLAKE2b-256 (under
 * the audit subkey) of the previous link and the record's fields.
 *
 * The encoding is fixed and unambiguous: integers are 8 bytes little-endian,
 * the double is its IEEE-754 bits little-endian, every string is a 4-byte
 * little-endian length and its bytes. Without length prefixes, moving a
 * character from one field to the next would keep the hash. The order and
 * encoding are part of the stored data: never change them, add a new
 * record format instead.
 */
#include "service_internal.h"

#include <string.h>

#include <sodium.h>

static void put_u64(crypto_generichash_state *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    crypto_generichash_update(h, b, sizeof b);
}

/* strnlen: a field read from a hostile row may lack its NUL. */
static void put_str(crypto_generichash_state *h, const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)((uint32_t)n >> (8 * i));
    crypto_generichash_update(h, b, sizeof b);
    crypto_generichash_update(h, (const unsigned char *)s, n);
}

void fpay_audit_link(const fpay_keys *keys, const fpay_audit_record *rec,
                     uint8_t out[FPAY_HASH_BYTES])
{
    crypto_generichash_state h;
    uint64_t bits;
    crypto_generichash_init(&h, keys->audit_key, FPAY_KEY_BYTES,
                            FPAY_HASH_BYTES);
    crypto_generichash_update(&h, rec->prev, FPAY_HASH_BYTES);
    put_u64(&h, (uint64_t)rec->seq);
    put_u64(&h, (uint64_t)rec->time_ms);
    put_str(&h, rec->terminal_id, sizeof rec->terminal_id);
    put_str(&h, rec->account_prefix, sizeof rec->account_prefix);
    put_str(&h, rec->op, sizeof rec->op);
    put_str(&h, rec->decision, sizeof rec->decision);
    put_str(&h, rec->reason, sizeof rec->reason);
    memcpy(&bits, &rec->latency_ms, sizeof bits);
    put_u64(&h, bits);
    crypto_generichash_final(&h, out, FPAY_HASH_BYTES);
    sodium_memzero(&h, sizeof h);
}
