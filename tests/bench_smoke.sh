#!/usr/bin/env bash
# tests/bench_smoke.sh BENCH MODELS_DIR FACES_DIR - keeps facepay-bench from
# rotting: records every suite with tiny run counts into a temp history,
# compares two records and plots them. Checks that rows and files appear;
# judges no timing (CI machines are shared).
set -euo pipefail
bench=$1 models=$2 faces=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-smoke-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export FPAY_MODELS_DIR=$models FPAY_FACES_DIR=$faces FPAY_BENCH_NO_HOST=1
fail() { echo "bench_smoke: FAIL: $*" >&2; exit 1; }
tiny=(--runs 2 --warmup 0 --threads 1 --batches 1 --backends cpu)

for h in a b; do
  "$bench" record --history "$tmp/$h.jsonl" "${tiny[@]}" --cold-runs 1 \
    --models MobileFaceNet,rnet models checkout >"$tmp/$h.out" || {
    cat "$tmp/$h.out"
    fail "record models checkout ($h)"
  }
done
"$bench" record --history "$tmp/a.jsonl" --runs 1 kernels >"$tmp/k.out" || fail "record kernels"
# The server suite skips (exit 0, a SKIPPED line) when facepay-load is not built.
"$bench" record --history "$tmp/a.jsonl" --terminals 2 --duration 2 server >"$tmp/s.out" ||
  fail "record server"
grep -h 'server' "$tmp/s.out" | head -n 3

for suite in models checkout kernels; do
  grep -q "\"suite\":\"$suite\"" "$tmp/a.jsonl" || fail "no $suite row in the history"
done
for field in commit dirty build_id compiler cflags cpu isa backend backend_version device date \
  samples p99 mad; do
  grep -q "\"$field\":" "$tmp/a.jsonl" || fail "rows lack \"$field\""
done
grep -q 'END TO END' "$tmp/a.out" || fail "checkout table lacks END TO END"

"$bench" compare "$tmp/a.jsonl" "$tmp/b.jsonl" >"$tmp/cmp.out" || fail "compare files"
grep -q 'metrics compared' "$tmp/cmp.out" || fail "compare printed no summary"
grep -q 'latency_ms' "$tmp/cmp.out" || fail "compare lacks the models latency"
commit=$(sed -n 's/.*"commit":"\([0-9a-f]\{7,\}\|unknown\)".*/\1/p' "$tmp/a.jsonl" | head -n 1)
if [[ "$commit" != unknown && -n "$commit" ]]; then
  dirty=$(grep -q '"dirty":true' "$tmp/a.jsonl" && echo + || true)
  "$bench" compare --history "$tmp/a.jsonl" "${commit:0:12}$dirty" "${commit:0:12}$dirty" \
    >/dev/null || fail "compare by commit"
fi
# Two identical rows are never a regression.
"$bench" compare --strict "$tmp/a.jsonl" "$tmp/a.jsonl" >/dev/null || fail "self-compare flagged"

cat "$tmp/b.jsonl" >>"$tmp/a.jsonl"
"$bench" plot --history "$tmp/a.jsonl" --out "$tmp/plots" >/dev/null || fail "plot"
for svg in models-MobileFaceNet checkout-e2e checkout-stages; do
  [[ -s "$tmp/plots/$svg.svg" ]] || fail "$svg.svg not written"
  grep -q '</svg>' "$tmp/plots/$svg.svg" || fail "$svg.svg truncated"
done
sed -n '/^stage/,/COLD verify/p' "$tmp/a.out"
echo "bench_smoke: ok"
