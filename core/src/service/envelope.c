/*
 * envelope.c - templates at rest: XChaCha20-Poly1305 (libsodium) under the
 * template subkey. The associated data ties a blob to its account, model
 * and format version, so a row copied elsewhere fails to authenticate
 * instead of matching the wrong person.
 *
 * Blobs come back from the database and are hostile: every length is
 * checked before any byte is used, and a blob that does not authenticate
 * leaves the output zeroed.
 */
#include "service_internal.h"

#include "status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SHA_HEX 64
#define AD_BYTES (FPAY_HASH_BYTES + SHA_HEX + 4)
/* Far above any face embedding (MobileFaceNet: 192); bounds the
 * allocation a hostile dim could ask for. */
#define DIM_MAX 4096

static int valid_sha_hex(const char *s)
{
    for (int i = 0; i < SHA_HEX; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return s[SHA_HEX] == '\0';
}

static fpay_status check_args(const fpay_keys *keys, const uint8_t *hash,
                              const char *model_sha256, int version, int dim,
                              const void *data)
{
    if (!keys || !hash || !model_sha256 || !data || dim <= 0 || dim > DIM_MAX ||
        version < 0 || !valid_sha_hex(model_sha256))
        return FPAY_INVALID_ARGUMENT;
    return FPAY_OK;
}

static void make_ad(const uint8_t hash[FPAY_HASH_BYTES], const char *sha,
                    int version, uint8_t ad[AD_BYTES])
{
    uint32_t v = (uint32_t)version;
    memcpy(ad, hash, FPAY_HASH_BYTES);
    memcpy(ad + FPAY_HASH_BYTES, sha, SHA_HEX);
    for (int i = 0; i < 4; i++)
        ad[FPAY_HASH_BYTES + SHA_HEX + i] = (uint8_t)(v >> (8 * i));
}

fpay_status fpay_template_seal(const fpay_keys *keys,
                               const uint8_t account_hash[FPAY_HASH_BYTES],
                               const char *model_sha256, int version,
                               const float *embedding, int dim,
                               uint8_t **blob, size_t *blob_len)
{
    if (!blob || !blob_len)
        return FPAY_INVALID_ARGUMENT;
    *blob = NULL;
    *blob_len = 0;
    fpay_status st = check_args(keys, account_hash, model_sha256, version, dim,
                                embedding);
    if (st != FPAY_OK)
        return st;
    if (sodium_init() < 0)
        return FPAY_INTERNAL;
    size_t pt_len = (size_t)dim * 4;
    uint8_t *pt = malloc(pt_len);
    uint8_t *out = malloc(NONCE_BYTES + pt_len + TAG_BYTES);
    if (!pt || !out) {
        free(pt);
        free(out);
        return FPAY_OUT_OF_MEMORY;
    }
    for (int i = 0; i < dim; i++) {
        /* A NaN template would never match anyone, silently: refuse it. */
        if (!isfinite(embedding[i])) {
            sodium_memzero(pt, pt_len);
            free(pt);
            free(out);
            return FPAY_INVALID_ARGUMENT;
        }
        uint32_t u;
        memcpy(&u, &embedding[i], 4);
        for (int b = 0; b < 4; b++)
            pt[4 * i + b] = (uint8_t)(u >> (8 * b));
    }
    uint8_t ad[AD_BYTES];
    make_ad(account_hash, model_sha256, version, ad);
    randombytes_buf(out, NONCE_BYTES);
    unsigned long long ct_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(out + NONCE_BYTES, &ct_len, pt,
                                               pt_len, ad, sizeof ad, NULL, out,
                                               keys->template_key);
    sodium_memzero(pt, pt_len);
    free(pt);
    *blob = out;
    *blob_len = NONCE_BYTES + (size_t)ct_len;
    return FPAY_OK;
}

fpay_status fpay_template_open(const fpay_keys *keys,
                               const uint8_t account_hash[FPAY_HASH_BYTES],
                               const char *model_sha256, int version,
                               const uint8_t *blob, size_t blob_len,
                               float *embedding, int dim)
{
    if (!embedding || dim <= 0 || dim > DIM_MAX)
        return FPAY_INVALID_ARGUMENT;
    memset(embedding, 0, (size_t)dim * sizeof *embedding);
    fpay_status st = check_args(keys, account_hash, model_sha256, version, dim,
                                blob);
    if (st != FPAY_OK)
        return st;
    size_t pt_len = (size_t)dim * 4;
    /* Exact size: a blob for another dimension is the wrong blob, and the
     * check comes before the AEAD so no length below is ever negative. */
    if (blob_len != NONCE_BYTES + pt_len + TAG_BYTES)
        return FPAY_INVALID_ARGUMENT;
    if (sodium_init() < 0)
        return FPAY_INTERNAL;
    uint8_t *pt = malloc(pt_len);
    if (!pt)
        return FPAY_OUT_OF_MEMORY;
    uint8_t ad[AD_BYTES];
    make_ad(account_hash, model_sha256, version, ad);
    unsigned long long got = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            pt, &got, NULL, blob + NONCE_BYTES, blob_len - NONCE_BYTES, ad,
            sizeof ad, blob, keys->template_key) != 0 ||
        got != pt_len) {
        sodium_memzero(pt, pt_len);
        free(pt);
        return FPAY_INVALID_ARGUMENT;
    }
    for (int i = 0; i < dim; i++) {
        uint32_t u = 0;
        for (int b = 0; b < 4; b++)
            u |= (uint32_t)pt[4 * i + b] << (8 * b);
        memcpy(&embedding[i], &u, 4);
    }
    sodium_memzero(pt, pt_len);
    free(pt);
    return FPAY_OK;
}
