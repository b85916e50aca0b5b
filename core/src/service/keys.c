/*
 * keys.c - the master key (file or environment), its subkeys, keyed hashes
 * and key generation. All cryptography is libsodium's.
 *
 * The key file is outside input: it may be missing, a directory, a FIFO, a
 * world-readable copy, too short, not hex. Every case is a status and one
 * line, and no byte of a key ever reaches a message.
 */
#include "service_internal.h"

#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define MASTER_HEX 64
/* crypto_kdf's context is exactly 8 bytes; the ids keep the subkeys apart.
 * Never renumber: stored data depends on them. */
#define KDF_CONTEXT "facepay_"
enum { KDF_ID_ACCOUNT = 1, KDF_ID_TEMPLATE = 2, KDF_ID_AUDIT = 3, KDF_ID_SECRET = 4 };

static fpay_status sodium_ready(char *err, size_t el)
{
    /* sodium_init is thread-safe and idempotent (1 = already done). */
    if (sodium_init() < 0) {
        fpay_set_err(err, el, "keys: libsodium failed to initialise");
        return FPAY_INTERNAL;
    }
    return FPAY_OK;
}

/* text: the key's text, hex digits and an optional final "\n". */
static fpay_status parse_master(const char *text, size_t len,
                                uint8_t master[FPAY_KEY_BYTES],
                                const char *where, char *err, size_t el)
{
    if (len == MASTER_HEX + 1 && text[MASTER_HEX] == '\n')
        len = MASTER_HEX;
    if (len != MASTER_HEX) {
        fpay_set_err(err, el,
                     "%s: a master key is 64 hex digits and an optional "
                     "newline, this is %zu bytes",
                     where, len);
        return FPAY_INVALID_ARGUMENT;
    }
    size_t bin_len = 0;
    const char *end = NULL;
    if (sodium_hex2bin(master, FPAY_KEY_BYTES, text, len, NULL, &bin_len,
                       &end) != 0 ||
        bin_len != FPAY_KEY_BYTES || end != text + len) {
        sodium_memzero(master, FPAY_KEY_BYTES);
        fpay_set_err(err, el, "%s: master key is not 64 hex digits", where);
        return FPAY_INVALID_ARGUMENT;
    }
    return FPAY_OK;
}

static fpay_status read_key_file(const char *path, uint8_t master[FPAY_KEY_BYTES],
                                 char *err, size_t el)
{
    /* O_NONBLOCK: opening a FIFO planted at the path must not hang the
     * service; the fstat below refuses it anyway. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        fpay_set_err(err, el, "key file %s: %s", path, strerror(errno));
        return errno == ENOENT ? FPAY_NOT_FOUND : FPAY_IO_ERROR;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        fpay_set_err(err, el, "key file %s: %s", path, strerror(errno));
        close(fd);
        return FPAY_IO_ERROR;
    }
    if (!S_ISREG(sb.st_mode)) {
        fpay_set_err(err, el, "key file %s: not a regular file", path);
        close(fd);
        return FPAY_INVALID_ARGUMENT;
    }
    if (sb.st_mode & 077) {
        fpay_set_err(err, el,
                     "key file %s: readable or writable by group or others "
                     "(mode %03o); run chmod 600 %s",
                     path, (unsigned)(sb.st_mode & 0777), path);
        close(fd);
        return FPAY_INVALID_ARGUMENT;
    }
    /* One byte more than the longest valid file, to see it is too long. */
    char buf[MASTER_HEX + 3];
    size_t len = 0;
    while (len < sizeof buf) {
        ssize_t r = read(fd, buf + len, sizeof buf - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fpay_set_err(err, el, "key file %s: %s", path, strerror(errno));
            sodium_memzero(buf, sizeof buf);
            close(fd);
            return FPAY_IO_ERROR;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    char where[64 + 16];
    snprintf(where, sizeof where, "key file %.60s", path);
    fpay_status st = parse_master(buf, len, master, where, err, el);
    sodium_memzero(buf, sizeof buf);
    return st;
}

static void hash_kind_string(const uint8_t key[FPAY_KEY_BYTES], uint8_t kind,
                             const char *s, uint8_t out[FPAY_HASH_BYTES])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, key, FPAY_KEY_BYTES, FPAY_HASH_BYTES);
    crypto_generichash_update(&h, &kind, 1);
    crypto_generichash_update(&h, (const unsigned char *)s, strlen(s));
    crypto_generichash_final(&h, out, FPAY_HASH_BYTES);
    sodium_memzero(&h, sizeof h);
}

fpay_status fpay_keys_load(const char *key_file, fpay_keys *out, char *err,
                           size_t err_len)
{
    if (!out) {
        fpay_set_err(err, err_len, "keys: NULL argument");
        return FPAY_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    fpay_status st = sodium_ready(err, err_len);
    if (st != FPAY_OK)
        return st;

    uint8_t master[FPAY_KEY_BYTES];
    if (key_file) {
        st = read_key_file(key_file, master, err, err_len);
    } else {
        const char *env = getenv("FACEPAY_MASTER_KEY");
        if (!env || !env[0]) {
            fpay_set_err(err, err_len,
                         "keys: no key file given and FACEPAY_MASTER_KEY is "
                         "not set");
            return FPAY_NOT_FOUND;
        }
        st = parse_master(env, strnlen(env, MASTER_HEX + 2), master,
                          "FACEPAY_MASTER_KEY", err, err_len);
    }
    if (st != FPAY_OK) {
        sodium_memzero(master, sizeof master);
        return st;
    }

    crypto_kdf_derive_from_key(out->id_key, FPAY_KEY_BYTES, KDF_ID_ACCOUNT,
                               KDF_CONTEXT, master);
    crypto_kdf_derive_from_key(out->template_key, FPAY_KEY_BYTES,
                               KDF_ID_TEMPLATE, KDF_CONTEXT, master);
    crypto_kdf_derive_from_key(out->audit_key, FPAY_KEY_BYTES, KDF_ID_AUDIT,
                               KDF_CONTEXT, master);
    crypto_kdf_derive_from_key(out->secret_key, FPAY_KEY_BYTES, KDF_ID_SECRET,
                               KDF_CONTEXT, master);
    uint8_t digest[32];
    crypto_generichash(digest, sizeof digest, master, sizeof master, NULL, 0);
    fpay_hex(digest, 8, out->key_id);
    sodium_memzero(master, sizeof master);
    return FPAY_OK;
}

void fpay_keys_wipe(fpay_keys *keys)
{
    if (keys)
        sodium_memzero(keys, sizeof *keys);
}

void fpay_account_hash(const fpay_keys *keys, fpay_id_kind kind,
                       const char *normalized, uint8_t out[FPAY_HASH_BYTES])
{
    hash_kind_string(keys->id_key, (uint8_t)kind, normalized, out);
}

void fpay_secret_hash(const fpay_keys *keys, const void *data, size_t len,
                      uint8_t out[FPAY_HASH_BYTES])
{
    crypto_generichash(out, FPAY_HASH_BYTES, data, len, keys->secret_key,
                       FPAY_KEY_BYTES);
}

void fpay_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

fpay_status fpay_keygen(const char *path, char *err, size_t err_len)
{
    if (!path || !path[0]) {
        fpay_set_err(err, err_len, "keygen: no path");
        return FPAY_INVALID_ARGUMENT;
    }
    fpay_status st = sodium_ready(err, err_len);
    if (st != FPAY_OK)
        return st;
    /* O_EXCL: an existing key may be the only copy protecting a database. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
    if (fd < 0) {
        if (errno == EEXIST)
            fpay_set_err(err, err_len, "keygen: %s already exists; refusing to "
                                       "overwrite a key", path);
        else
            fpay_set_err(err, err_len, "keygen: %s: %s", path, strerror(errno));
        return errno == EEXIST ? FPAY_INVALID_ARGUMENT : FPAY_IO_ERROR;
    }
    uint8_t master[FPAY_KEY_BYTES];
    char text[MASTER_HEX + 2];
    randombytes_buf(master, sizeof master);
    fpay_hex(master, sizeof master, text);
    text[MASTER_HEX] = '\n';
    sodium_memzero(master, sizeof master);

    /* The umask may have taken bits away from 0600 (never added any); make
     * it exactly 0600 so the owner can read it back. */
    int ok = fchmod(fd, 0600) == 0;
    size_t done = 0;
    while (ok && done < MASTER_HEX + 1) {
        ssize_t w = write(fd, text + done, MASTER_HEX + 1 - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            ok = 0;
            break;
        }
        done += (size_t)w;
    }
    if (ok && fsync(fd) != 0)
        ok = 0;
    int saved = errno;
    sodium_memzero(text, sizeof text);
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        unlink(path); /* a half-written key must not be mistaken for one */
        fpay_set_err(err, err_len, "keygen: writing %s: %s", path,
                     strerror(saved));
        return FPAY_IO_ERROR;
    }
    return FPAY_OK;
}
