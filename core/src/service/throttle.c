/*
 * throttle.c - how long an account must wait after failed verifications
 * (NIST SP 800-63B-4, rate limiting): free attempts, then an exponential
 * backoff, then a hard lock. Pure functions of the counters and a clock so
 * tests can drive them with any time.
 *
 * The counters come from the database and may be hostile or from a clock
 * that went backwards: no input can make a wait longer than the cap or
 * overflow the arithmetic.
 */
#include "service_internal.h"

#include <limits.h>

#define BACKOFF_CAP_S 86400L

/* Delay after `failures` consecutive failures, capped; 0 below the
 * threshold or when backoff is disabled (backoff_after or base <= 0). */
static long backoff_delay(const fpay_service_config *cfg, int failures)
{
    if (cfg->backoff_after <= 0 || cfg->backoff_base_s <= 0 ||
        failures < cfg->backoff_after)
        return 0;
    long delay = cfg->backoff_base_s;
    if (delay >= BACKOFF_CAP_S)
        return BACKOFF_CAP_S;
    /* Doubling stops at the cap, so a huge failure count cannot overflow. */
    for (int k = cfg->backoff_after; k < failures && delay < BACKOFF_CAP_S; k++)
        delay *= 2;
    return delay < BACKOFF_CAP_S ? delay : BACKOFF_CAP_S;
}

static int is_locked(const fpay_service_config *cfg, const fpay_counters *c)
{
    return c->locked || (cfg->lock_after > 0 &&
                         c->consecutive_failures >= cfg->lock_after);
}

long fpay_throttle_wait(const fpay_service_config *cfg, const fpay_counters *c,
                        int64_t now)
{
    if (!cfg || !c)
        return -1; /* no policy to apply: fail closed */
    if (is_locked(cfg, c))
        return -1;
    long delay = backoff_delay(cfg, c->consecutive_failures);
    if (delay == 0)
        return 0;
    /* A last failure in the future (clock stepped back, or a forged row)
     * waits at most one full delay, never until that future moment. */
    int64_t last = c->last_failure;
    if (last > now)
        last = now;
    if (last < now - delay)
        return 0;
    int64_t left = last + delay - now;
    return left > 0 ? (long)left : 0;
}

void fpay_throttle_record(const fpay_service_config *cfg, fpay_counters *c,
                          int success, int64_t now)
{
    if (!cfg || !c)
        return;
    if (success) {
        /* A hard lock stays: only unlock or re-enrollment clears it, and a
         * success cannot happen while locked anyway. */
        c->consecutive_failures = 0;
        c->last_failure = 0;
        return;
    }
    if (c->consecutive_failures < 0)
        c->consecutive_failures = 0; /* hostile row */
    if (c->consecutive_failures < INT_MAX)
        c->consecutive_failures++;
    c->last_failure = now;
    if (cfg->lock_after > 0 && c->consecutive_failures >= cfg->lock_after)
        c->locked = 1;
}
