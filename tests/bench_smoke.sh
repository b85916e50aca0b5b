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
# --terminals takes a list: one load (one row) per count.
"$bench" record --history "$tmp/a.jsonl" --terminals 1,2 --duration 2 server >"$tmp/s.out" ||
  fail "record server"
grep -h 'server' "$tmp/s.out" | head -n 3
if ! grep -q SKIPPED "$tmp/s.out"; then
  for t in 1 2; do
    grep -q "\"key\":\"server/t$t\"" "$tmp/a.jsonl" || fail "--terminals 1,2: no server/t$t row"
  done
fi
# A bad count is refused with a message that says what --terminals takes.
for bad in 0 1,x two; do
  rc=0
  "$bench" server --terminals "$bad" >/dev/null 2>"$tmp/t.err" || rc=$?
  [[ $rc == 2 ]] || fail "--terminals $bad: exit $rc, want 2"
  grep -q -- '--terminals takes a count or a list' "$tmp/t.err" || fail "--terminals $bad: no clear message"
done

for suite in models checkout kernels; do
  grep -q "\"suite\":\"$suite\"" "$tmp/a.jsonl" || fail "no $suite row in the history"
done
for field in commit dirty build_id compiler cflags cpu isa backend backend_version device date \
  samples p99 mad; do
  grep -q "\"$field\":" "$tmp/a.jsonl" || fail "rows lack \"$field\""
done
grep -q 'END TO END' "$tmp/a.out" || fail "checkout table lacks END TO END"
# Checkout rows name their kernel path, in the key as in the row.
isa=$(sed -n 's/.*"suite":"checkout".*"isa":"\([a-z0-9]*\)".*/\1/p' "$tmp/a.jsonl" | head -n 1)
[[ -n "$isa" ]] || fail "checkout row lacks its isa"
grep -q "\"key\":\"checkout/[a-z]*/cpu/$isa/t1\"" "$tmp/a.jsonl" || fail "checkout key lacks the ISA $isa"
grep -q "| ISA $isa |" "$tmp/a.out" || fail "checkout table header lacks the ISA"

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

# Rows of another kernel path (the same rows, "isa" changed) are refused,
# loudly, and compared only with --allow-mixed.
other=ref
[[ $isa == ref ]] && other=avx2
sed "s/\"isa\":\"[a-z0-9]*\"/\"isa\":\"$other\"/" "$tmp/b.jsonl" >"$tmp/mixed.jsonl"
rc=0
"$bench" compare "$tmp/a.jsonl" "$tmp/mixed.jsonl" >"$tmp/cmp-mixed.out" || rc=$?
[[ $rc == 4 ]] || fail "compare across ISAs: exit $rc, want 4 (refused)"
grep -q "REFUSED: ISA $isa (A) vs $other (B)" "$tmp/cmp-mixed.out" || fail "compare across ISAs did not say REFUSED"
grep -q 'latency_ms' "$tmp/cmp-mixed.out" && fail "compare across ISAs compared latency anyway"
"$bench" compare --allow-mixed "$tmp/a.jsonl" "$tmp/mixed.jsonl" >"$tmp/cmp-mixed.out" ||
  fail "compare --allow-mixed"
grep -q "e2e_ms .*MIXED: ISA $isa (A) vs $other (B)" "$tmp/cmp-mixed.out" ||
  fail "compare --allow-mixed did not mark the checkout MIXED"
# Old rows without an "isa" field (and old checkout keys without the ISA)
# are still read and compared, marked as such.
sed -e 's/"isa":"[a-z0-9]*",//' -e "s|\"key\":\"checkout/\([a-z]*\)/cpu/$isa/t1\"|\"key\":\"checkout/\1/cpu/t1\"|" \
  "$tmp/b.jsonl" >"$tmp/old.jsonl"
grep -q '"isa"' "$tmp/old.jsonl" && fail "could not make old rows"
"$bench" compare "$tmp/old.jsonl" "$tmp/a.jsonl" >"$tmp/cmp-old.out" || fail "compare old rows"
grep -q 'e2e_ms .*ISA not recorded on A' "$tmp/cmp-old.out" || fail "old checkout row not compared and marked"
grep -q 'latency_ms .*ISA not recorded on A' "$tmp/cmp-old.out" || fail "old models rows not compared and marked"

cat "$tmp/b.jsonl" >>"$tmp/a.jsonl"
"$bench" plot --history "$tmp/a.jsonl" --out "$tmp/plots" >/dev/null || fail "plot"
for svg in models-MobileFaceNet checkout-e2e checkout-stages; do
  [[ -s "$tmp/plots/$svg.svg" ]] || fail "$svg.svg not written"
  grep -q '</svg>' "$tmp/plots/$svg.svg" || fail "$svg.svg truncated"
done
# Axes named for what they show; checkout bars and lines name their ISA.
grep -q 'p50 per stage, stacked (ms)' "$tmp/plots/checkout-stages.svg" || fail "stages plot: y axis unnamed"
grep -q 'commit, backend, ISA, threads' "$tmp/plots/checkout-stages.svg" || fail "stages plot: x axis unnamed"
grep -q "cpu $isa t1</text>" "$tmp/plots/checkout-stages.svg" || fail "stages plot: bar label lacks the ISA"
grep -q 'p50 latency of one run (ms)' "$tmp/plots/models-MobileFaceNet.svg" || fail "models plot: y axis unnamed"
sed -n '/^stage/,/COLD verify/p' "$tmp/a.out"
echo "bench_smoke: ok"
