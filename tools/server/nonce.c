/*
 * nonce.c - single-use nonces against replayed verify requests.
 *
 * A terminal asks GET /v1/nonce and puts the answer in its next verify; the
 * server accepts each nonce once, from the terminal it was issued to, within
 * its lifetime. A captured request replayed later therefore finds its nonce
 * gone. The table is a fixed array (no allocation per request, memory
 * bounded whatever clients do) scanned linearly: a few thousand slots cost
 * microseconds, nothing next to a face pipeline run. Each terminal may hold
 * only per_terminal live nonces, so one terminal asking in a loop evicts
 * its own oldest nonces, not the other terminals'.
 */
#include "server_internal.h"

#include <sodium.h>

#include <stdlib.h>
#include <string.h>

typedef struct nonce_slot {
    char nonce[SRV_NONCE_CHARS + 1];
    char terminal[SRV_MAX_TERMINAL_ID];
    double expires;      /* 0 = free */
    double issued;
} nonce_slot;

struct srv_nonces {
    pthread_mutex_t lock;
    nonce_slot *slots;
    int capacity, per_terminal, ttl_s;
};

srv_nonces *srv_nonces_new(int capacity, int per_terminal, int ttl_s)
{
    if (capacity < 1 || per_terminal < 1 || ttl_s < 1)
        return NULL;
    srv_nonces *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->slots = calloc((size_t)capacity, sizeof *n->slots);
    if (!n->slots || pthread_mutex_init(&n->lock, NULL)) {
        free(n->slots);
        free(n);
        return NULL;
    }
    n->capacity = capacity;
    n->per_terminal = per_terminal;
    n->ttl_s = ttl_s;
    return n;
}

void srv_nonces_free(srv_nonces *n)
{
    if (!n)
        return;
    pthread_mutex_destroy(&n->lock);
    free(n->slots);
    free(n);
}

int srv_nonces_ttl(const srv_nonces *n)
{
    return n->ttl_s;
}

static int live(const nonce_slot *s, double now)
{
    return s->expires > 0 && s->expires > now;
}

int srv_nonce_issue(srv_nonces *n, const char *terminal, double now, char *out,
                    size_t out_len)
{
    if (out_len < SRV_NONCE_CHARS + 1 || strlen(terminal) >= SRV_MAX_TERMINAL_ID)
        return -1;
    unsigned char raw[16];
    randombytes_buf(raw, sizeof raw);
    char text[sodium_base64_ENCODED_LEN(16, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);

    pthread_mutex_lock(&n->lock);
    int free_slot = -1, mine = 0, oldest_mine = -1;
    for (int i = 0; i < n->capacity; i++) {
        nonce_slot *s = &n->slots[i];
        if (!live(s, now)) {
            s->expires = 0;
            if (free_slot < 0)
                free_slot = i;
            continue;
        }
        if (!strcmp(s->terminal, terminal)) {
            mine++;
            if (oldest_mine < 0 || s->issued < n->slots[oldest_mine].issued)
                oldest_mine = i;
        }
    }
    /* A terminal at its quota gives up its oldest nonce. */
    if (mine >= n->per_terminal && oldest_mine >= 0)
        free_slot = oldest_mine;
    int rc = -1;
    if (free_slot >= 0) {
        nonce_slot *s = &n->slots[free_slot];
        memcpy(s->nonce, text, SRV_NONCE_CHARS);
        s->nonce[SRV_NONCE_CHARS] = 0;
        strcpy(s->terminal, terminal);
        s->issued = now;
        s->expires = now + n->ttl_s;
        memcpy(out, s->nonce, SRV_NONCE_CHARS + 1);
        rc = 0;
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

srv_nonce_check srv_nonce_consume(srv_nonces *n, const char *terminal, const char *nonce,
                                  double now)
{
    if (strlen(nonce) != SRV_NONCE_CHARS)
        return SRV_NONCE_UNKNOWN;
    srv_nonce_check rc = SRV_NONCE_UNKNOWN;
    pthread_mutex_lock(&n->lock);
    for (int i = 0; i < n->capacity; i++) {
        nonce_slot *s = &n->slots[i];
        /* Constant-time compare: the scan must not tell how much of a
         * guessed nonce was right. */
        if (s->expires <= 0 || sodium_memcmp(s->nonce, nonce, SRV_NONCE_CHARS) != 0)
            continue;
        if (s->expires <= now)
            rc = SRV_NONCE_EXPIRED;
        else if (strcmp(s->terminal, terminal) != 0)
            rc = SRV_NONCE_WRONG_TERMINAL;
        else
            rc = SRV_NONCE_OK;
        s->expires = 0;  /* used up, whatever the answer */
        break;
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}

int srv_nonces_live(srv_nonces *n, double now)
{
    int c = 0;
    pthread_mutex_lock(&n->lock);
    for (int i = 0; i < n->capacity; i++)
        c += live(&n->slots[i], now);
    pthread_mutex_unlock(&n->lock);
    return c;
}
