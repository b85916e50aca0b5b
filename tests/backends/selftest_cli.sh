#!/bin/sh
# selftest_cli.sh FACEPAY MODELS_DIR WRONG_PLUGIN_DIR - `facepay selftest`
# on the three small models: every registered backend must PASS (exit 0),
# and a plugin whose RESHAPE adds 1 to one value (FIXTURE_KIND 6) must be
# caught: exit 1 and a FAIL line naming it on MobileFaceNet, whose final
# RESHAPE it takes. Prints "N passed, N failed".
set -u
cli=$1 models=$2 wrong=$3
pass=0 fail=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

"$cli" selftest --models "$models" MobileFaceNet rnet onet >"$out" 2>&1
rc=$?
cat "$out"
lines=$(grep -c '^PASS ' "$out")
if [ "$rc" -eq 0 ] && [ "$lines" -ge 3 ] && ! grep -q '^FAIL ' "$out"; then
    pass=$((pass + 1)); echo "ok   - selftest passes with this build's backends ($lines lines)"
else
    fail=$((fail + 1)); echo "FAIL - selftest with this build's backends: exit $rc, $lines PASS lines"
fi

FACEPAY_BACKEND_PATH=$wrong "$cli" selftest --models "$models" MobileFaceNet rnet >"$out" 2>&1
rc=$?
cat "$out"
if [ "$rc" -eq 1 ] && grep -q '^FAIL  MobileFaceNet *fixture-wrong ' "$out" &&
   grep -q '^PASS  MobileFaceNet *cpu ' "$out"; then
    pass=$((pass + 1)); echo "ok   - selftest catches the wrong plugin"
else
    fail=$((fail + 1)); echo "FAIL - selftest missed the wrong plugin (exit $rc)"
fi

"$cli" selftest --models "$models" NoSuchNet >"$out" 2>&1
rc=$?
if [ "$rc" -eq 2 ] && grep -q "no bundled model 'NoSuchNet'" "$out"; then
    pass=$((pass + 1)); echo "ok   - unknown model refused"
else
    fail=$((fail + 1)); echo "FAIL - unknown model: exit $rc: $(cat "$out")"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
