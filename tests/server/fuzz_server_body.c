/*
 * fuzz_server_body.c - libFuzzer target for the request bodies of
 * `facepay serve` (tools/server/json_io.c): the same bytes through the
 * verify and the enroll parser and the account check of DELETE paths.
 * Built with FACEPAY_FUZZ=ON (clang); the broken bodies of corpus/ are
 * seeds here and are replayed by test_server_http in every build.
 *
 *   build-fuzz/tests/server/fuzz_server_body tests/server/corpus -max_total_time=60
 */
#include "server_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const srv_limits lim = {1u << 20, 64u << 10, 5};
    srv_verify_body v;
    srv_enroll_body e;
    srv_error err;
    if (srv_parse_verify_json((const char *)data, size, &lim, "86", &v, &err) == 0)
        srv_verify_body_free(&v);
    else if (err.http < 400 || err.http > 599 || !err.code || !err.message[0])
        abort();  /* every refusal is a 4xx/5xx with a code and a sentence */
    if (srv_parse_enroll_json((const char *)data, size, &lim, "86", &e, &err) == 0)
        srv_enroll_body_free(&e);
    else if (err.http < 400 || err.http > 599 || !err.code || !err.message[0])
        abort();
    srv_account a;
    srv_account_set(&a, size % 2 ? "phone" : "id_card", (const char *)data, size, "86", &err);
    return 0;
}
