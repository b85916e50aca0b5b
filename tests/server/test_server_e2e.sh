#!/usr/bin/env bash
# test_server_e2e.sh - `facepay serve` end to end: a temporary database and
# master key, the real models, curl as the terminal over loopback.
#
#   test_server_e2e.sh FACEPAY FACEPAY_LOAD MODELS_DIR TEST_DATA_DIR
#
# Every check prints "ok: ..." or "FAIL: ..."; the last line is
# "test_server_e2e: N passed, N failed" and the exit status is 1 on any
# failure. The LFW photos are 250x250, too small for the liveness model
# (docs/pipeline.md), so the server runs with --liveness off.
set -uo pipefail
cli=$1 load=$2 models=$3 data=$4
here=$(cd "$(dirname "$0")" && pwd)
faces=$data/faces images=$data/images

command -v curl >/dev/null || { echo "FAIL: curl is not installed (tools/packages.txt)"; exit 1; }

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$cli" keygen "$tmp/key" >/dev/null || { echo "FAIL: keygen"; exit 1; }
common=(--db "$tmp/db" --key-file "$tmp/key" --models "$models" --country 86 --liveness off)
key1=$("$cli" serve "${common[@]}" --add-terminal t1 | awk '{print $4}')
key2=$("$cli" serve "${common[@]}" --add-terminal t2 | awk '{print $4}')
[[ -n "$key1" && -n "$key2" ]] || { echo "FAIL: serve --add-terminal printed no key"; exit 1; }

# start_server EXTRA_ARGS...: sets $port and $server_pid.
start_server() {
    : >"$tmp/out"
    "$cli" serve "${common[@]}" --port 0 --workers 2 --max-body-bytes 1048576 "$@" \
        >"$tmp/out" 2>>"$tmp/err" &
    server_pid=$!
    port=
    for _ in $(seq 600); do
        port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$tmp/out")
        [[ -n "$port" ]] && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n "$port" ]] || { echo "FAIL: the server did not start"; cat "$tmp/err"; exit 1; }
}

stop_server() {
    kill -TERM "$server_pid"
    local rc=0
    for _ in $(seq 150); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        bad "server still running 15 s after SIGTERM"
        kill -KILL "$server_pid"
    fi
    wait "$server_pid"
    rc=$?
    server_pid=
    ((rc == 0)) && ok "SIGTERM: graceful shutdown, exit 0" || bad "exit $rc after SIGTERM"
}

url() { echo "http://127.0.0.1:$port$1"; }

# req NAME CURL_ARGS...: status in $tmp/NAME.code, body in $tmp/NAME.body.
req() {
    local name=$1
    shift
    curl -s -o "$tmp/$name.body" -w '%{http_code}' --max-time 60 "$@" >"$tmp/$name.code" 2>/dev/null
}

# check NAME STATUS FRAGMENT...: the answer has that status and each
# fragment; a JSON body never holds a score.
check() {
    local name=$1 want=$2
    shift 2
    local got body
    got=$(cat "$tmp/$name.code")
    body=$(head -c 600 "$tmp/$name.body")
    if [[ "$got" != "$want" ]]; then
        bad "$name: HTTP $got, want $want: $body"
        return
    fi
    for f in "$@"; do
        if ! grep -qF -- "$f" "$tmp/$name.body"; then
            bad "$name: '$f' not in $body"
            return
        fi
    done
    if grep -q '"score"' "$tmp/$name.body"; then
        bad "$name: the answer carries a score: $body"
        return
    fi
    ok "$name: $got $(head -1 "$tmp/$name.body" | head -c 160)"
}

auth1=(-H "X-Terminal-Id: t1" -H "Authorization: Bearer $key1")
auth2=(-H "X-Terminal-Id: t2" -H "Authorization: Bearer $key2")
json=(-H "Content-Type: application/json")

# The service refuses a capture it has seen (DUPLICATE_CAPTURE), so tests
# that reuse a photo send a variant: a JPEG comment segment after SOI,
# which changes the bytes and not the pixels.
variant() { # variant FILE TAG > stdout
    local tag=$2 n=$((${#2} + 2))
    printf '\xff\xd8\xff\xfe'
    printf "\\x$(printf %02x $((n >> 8)))\\x$(printf %02x $((n & 255)))"
    printf '%s' "$tag"
    tail -c +3 "$1"
}

nonce() { # nonce AUTH...: prints a fresh nonce
    curl -s --max-time 30 "$@" "$(url /v1/nonce)" | sed -n 's/.*"nonce":"\([^"]*\)".*/\1/p'
}

# verify_body FILE PHONE NONCE > stdout (a JSON verify request)
verify_body() {
    printf '{"phone":"%s","nonce":"%s","image":"' "$2" "$3"
    base64 -w0 "$1"
    printf '"}'
}

verify() { # verify NAME FILE PHONE [AUTH...]: nonce + JSON verify
    local name=$1 file=$2 phone=$3
    shift 3
    local a=("$@")
    ((${#a[@]})) || a=("${auth1[@]}")
    verify_body "$file" "$phone" "$(nonce "${a[@]}")" >"$tmp/$name.req"
    req "$name" "${a[@]}" "${json[@]}" --data-binary @"$tmp/$name.req" "$(url /v1/verify)"
}

# ---------------------------------------------------------------- flags
"$cli" serve --help | grep -q -- '--batch-window-ms' && ok "serve --help" || bad "serve --help"
for args in "--port 70000" "--listen nocolon" "--workers 0" "--max-batch 0" "--frobnicate 1"; do
    # shellcheck disable=SC2086
    "$cli" serve "${common[@]}" $args >/dev/null 2>"$tmp/usage.err"
    rc=$?
    if ((rc == 2)) && grep -q '^facepay: serve: ' "$tmp/usage.err"; then
        ok "serve $args: exit 2, $(head -1 "$tmp/usage.err")"
    else
        bad "serve $args: exit $rc, $(head -1 "$tmp/usage.err")"
    fi
done
"$cli" serve "${common[@]}" --listen 203.0.113.9:0 >/dev/null 2>"$tmp/usage.err"
rc=$?
((rc == 1)) && grep -q 'cannot listen' "$tmp/usage.err" && ok "unbindable address: exit 1" ||
    bad "unbindable address: exit $rc, $(cat "$tmp/usage.err")"

# ---------------------------------------------------------------- start
start_server
ok "serve --port 0 printed port $port"

req health "$(url /healthz)"
check health 200 '"ok"'
req notfound "${auth1[@]}" "$(url /v1/nothing)"
check notfound 404 '"error":"not_found"'
req method -X PUT "${auth1[@]}" "$(url /v1/verify)"
check method 405 '"error":"method_not_allowed"'

# ---------------------------------------------------------------- enroll
{
    printf '{"phone":"13800138000","images":["'
    base64 -w0 "$faces/Al_Pacino_0001.jpg"
    printf '"]}'
} >"$tmp/enroll.req"
req enroll "${auth1[@]}" "${json[@]}" --data-binary @"$tmp/enroll.req" "$(url /v1/enroll)"
check enroll 201 '"decision":"APPROVE"'

# ---------------------------------------------------------------- verify
verify same "$faces/Al_Pacino_0002.jpg" 13800138000
check same 200 '"decision":"APPROVE"' '"reason":"NONE"'
verify other "$faces/Alan_Greenspan_0001.jpg" 13800138000
check other 200 '"decision":"DECLINE"' '"reason":"NO_MATCH"'

# The same request again (its nonce is spent): refused before any face work.
req replay "${auth1[@]}" "${json[@]}" --data-binary @"$tmp/same.req" "$(url /v1/verify)"
check replay 409 '"error":"nonce_refused"' 'replayed'

# An unknown number answers exactly like a known one with the wrong face.
verify unknown "$faces/Albert_Costa_0002.jpg" 13900139000
check unknown 200 '"reason":"NO_MATCH"'
if cmp -s "$tmp/other.body" "$tmp/unknown.body"; then
    ok "unknown number and wrong face: identical bodies"
else
    bad "unknown number and wrong face differ: $(cat "$tmp/other.body") / $(cat "$tmp/unknown.body")"
fi

# Multipart: fields phone and nonce, file part image.
variant "$faces/Al_Pacino_0002.jpg" multipart >"$tmp/mp.jpg"
req multipart "${auth1[@]}" -F phone=13800138000 -F "nonce=$(nonce "${auth1[@]}")" \
    -F "image=@$tmp/mp.jpg;type=image/jpeg" "$(url /v1/verify)"
check multipart 200 '"decision":"APPROVE"'

# ---------------------------------------------------------------- hostile
req nokey -H "X-Terminal-Id: t1" -H "Authorization: Bearer wrong" "$(url /v1/nonce)"
check nokey 401 'unknown terminal or wrong API key'
req noauth "${json[@]}" --data-binary @"$tmp/same.req" "$(url /v1/verify)"
check noauth 401 'X-Terminal-Id'
req empty "${auth2[@]}" "${json[@]}" --data-binary '' "$(url /v1/verify)"
check empty 400 '"error":"empty_body"'
req badjson "${auth2[@]}" "${json[@]}" --data-binary '{"phone": "13800138000", ' "$(url /v1/verify)"
check badjson 400 '"error":"bad_json"'
req badb64 "${auth2[@]}" "${json[@]}" \
    --data-binary "{\"phone\":\"13800138000\",\"nonce\":\"$(nonce "${auth2[@]}")\",\"image\":\"%%%not base64%%%\"}" \
    "$(url /v1/verify)"
check badb64 400 '"error":"bad_base64"'
req ctype "${auth2[@]}" -H "Content-Type: text/plain" --data-binary @"$tmp/same.req" "$(url /v1/verify)"
check ctype 415 '"error":"unsupported_media_type"'
req phone "${auth2[@]}" "${json[@]}" \
    --data-binary "{\"phone\":\"12-abc\",\"nonce\":\"x\",\"image\":\"QQ==\"}" "$(url /v1/verify)"
check phone 400 '"error":"invalid_account"' 'invalid phone'
head -c 2097152 /dev/zero | tr '\0' ' ' >"$tmp/big.req"
req big "${auth2[@]}" "${json[@]}" --data-binary @"$tmp/big.req" "$(url /v1/enroll)"
check big 413 '"error":"body_too_large"'
# Headers past the connection memory limit (32 KiB): refused by the HTTP
# library itself, the server lives on.
req bighead "${auth2[@]}" -H "X-Padding: $(head -c 40000 /dev/zero | tr '\0' a)" "$(url /healthz)"
code=$(cat "$tmp/bighead.code")
[[ "$code" == 431 || "$code" == 413 || "$code" == 400 ]] && ok "40 KB of headers: $code" ||
    bad "40 KB of headers: HTTP $code"
# Chunked (no Content-Length): counted while it arrives.
req bigchunked "${auth2[@]}" "${json[@]}" -H "Transfer-Encoding: chunked" \
    --data-binary @"$tmp/big.req" "$(url /v1/enroll)"
check bigchunked 413 '"error":"body_too_large"'

# Images that are not usable captures: 422 with the reason.
printf 'this is not an image at all' >"$tmp/corrupt.jpg"
verify corrupt "$tmp/corrupt.jpg" 13700137000 "${auth2[@]}"
check corrupt 422 '"reason":"BAD_IMAGE"'
size=$(stat -c %s "$faces/Al_Pacino_0002.jpg")
head -c $((size / 3)) "$faces/Al_Pacino_0002.jpg" >"$tmp/trunc.jpg"
verify truncated "$tmp/trunc.jpg" 13700137000 "${auth2[@]}"
check truncated 422 '"reason":"BAD_IMAGE"'
verify bomb "$images/huge_4000x4000.png" 13700137000 "${auth2[@]}"
check bomb 422 '"reason":"BAD_IMAGE"'
verify noface "$images/quad.png" 13700137000 "${auth2[@]}"
check noface 422 '"reason":"NO_FACE"'
verify twofaces "$faces/bbt3.jpg" 13700137000 "${auth2[@]}"
check twofaces 422 '"reason":"AMBIGUOUS_MULTIPLE_FACES"'
verify tiny "$here/data/tiny_face.jpg" 13700137000 "${auth2[@]}"
check tiny 422 '"reason":"QUALITY"' 'TOO_SMALL'

# ---------------------------------------------------------------- concurrency
pids=()
for i in 1 2 3 4 5 6; do
    variant "$faces/Al_Pacino_0002.jpg" "conc$i" >"$tmp/conc$i.jpg"
    verify "conc$i" "$tmp/conc$i.jpg" 13800138000 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in 1 2 3 4 5 6; do check "conc$i" 200 '"decision":"APPROVE"'; done

# ---------------------------------------------------------------- metrics
req metrics "$(url /metrics)"
check metrics 200 'facepay_http_requests_total{route="verify",status="200"}' \
    'facepay_decisions_total{route="verify",decision="DECLINE",reason="NO_MATCH"} 2' \
    'facepay_stage_duration_seconds_bucket{stage="embed",le="+Inf"}'
# Prometheus text format: comments, or NAME{LABELS} VALUE.
badlines=$(grep -vE '^# (HELP|TYPE) [a-z_]+ .+$|^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$' \
    "$tmp/metrics.body" | head -3)
[[ -z "$badlines" ]] && ok "metrics: every line parses as Prometheus text" ||
    bad "metrics lines that do not parse: $badlines"

# ---------------------------------------------------------------- load client
"$load" --url "$(url '')" --terminal t1 --key "$key1" --phone 13800138000 \
    --image "$faces/Al_Pacino_0002.jpg" --terminals 2 --duration 3 --json >"$tmp/load.json" \
    2>"$tmp/load.err"
rc=$?
if ((rc == 0)) && grep -q '"errors":0' "$tmp/load.json" && grep -q '"approve":[1-9]' "$tmp/load.json"; then
    ok "facepay-load: $(cat "$tmp/load.json")"
else
    bad "facepay-load exit $rc: $(cat "$tmp/load.json" "$tmp/load.err")"
fi

# ---------------------------------------------------------------- delete
req delete -X DELETE "${auth1[@]}" "$(url /v1/accounts/%2B8613800138000)"
check delete 200 '"decision":"APPROVE"'
variant "$faces/Al_Pacino_0002.jpg" afterdelete >"$tmp/ad.jpg"
verify afterdelete "$tmp/ad.jpg" 13800138000
check afterdelete 200 '"reason":"NO_MATCH"'
stop_server

# ---------------------------------------------------------------- batching
# The batcher forced on with the CPU backend: the same decisions.
{
    printf '{"phone":"13600136000","images":["'
    base64 -w0 "$faces/Al_Pacino_0001.jpg"
    printf '"]}'
} >"$tmp/enroll2.req"
start_server --batch-window-ms 20 --max-batch 4
grep -q 'batching=on' "$tmp/err" && ok "batching on when forced" || bad "batching not on"
req enroll2 "${auth1[@]}" "${json[@]}" --data-binary @"$tmp/enroll2.req" "$(url /v1/enroll)"
check enroll2 201 '"decision":"APPROVE"'
pids=()
for i in 1 2 3 4; do
    if ((i % 2)); then src=$faces/Al_Pacino_0002.jpg; else src=$faces/Alan_Greenspan_0005.jpg; fi
    variant "$src" "batch$i" >"$tmp/batch$i.jpg"
    verify "batch$i" "$tmp/batch$i.jpg" 13600136000 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in 1 3; do check "batch$i" 200 '"decision":"APPROVE"'; done
for i in 2 4; do check "batch$i" 200 '"reason":"NO_MATCH"'; done
req metrics2 "$(url /metrics)"
count=$(sed -n 's/^facepay_verify_batch_size_count \([0-9]*\)$/\1/p' "$tmp/metrics2.body")
sum=$(sed -n 's/^facepay_verify_batch_size_sum \([0-9.]*\)$/\1/p' "$tmp/metrics2.body")
if [[ -n "$count" ]] && ((count >= 1 && count <= 4)) && [[ "${sum%.*}" == 4 ]]; then
    ok "4 verifies in $count batch call(s)"
else
    bad "batch metrics: count '$count' sum '$sum'"
fi
stop_server

# The operator log has the scores; the terminal never saw one.
grep -q 'verify terminal=t1 .* score=' "$tmp/err" && ok "operator log carries scores" ||
    bad "no operator line in the log"

echo "test_server_e2e: $pass passed, $fail failed"
((fail == 0))
