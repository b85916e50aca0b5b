#!/usr/bin/env bash
# test.sh - the second command: builds (if needed) and runs every test.
#
#   tools/test.sh                      Release build in build/
#   FACEPAY_BUILD_DIR=build-asan FACEPAY_SANITIZE=1 tools/test.sh
#                                      ASan+UBSan build (RelWithDebInfo)
#   FACEPAY_CMAKE_ARGS="-DCMAKE_C_COMPILER=clang" FACEPAY_BUILD_DIR=build-clang tools/test.sh
#                                      extra cmake options, used when the
#                                      build folder is first configured
#
# The build always goes through `cmake --build`, so a stale build is never
# tested. Missing models are fetched (tools/fetch_models.sh). Ends with one
# line "N passed, N failed" and exits non-zero if anything failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

bd=${FACEPAY_BUILD_DIR:-build}
read -r -a extra <<< "${FACEPAY_CMAKE_ARGS:-}"

cfg=()
if [[ "${FACEPAY_SANITIZE:-0}" == 1 ]]; then
  # Passed on every run so an existing folder is switched over too.
  cfg=(-DFACEPAY_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
elif [[ ! -f "$bd/CMakeCache.txt" ]]; then
  cfg=(-DCMAKE_BUILD_TYPE=Release)
fi
if [[ ! -f "$bd/CMakeCache.txt" ]]; then
  cmake -S . -B "$bd" -G Ninja "${cfg[@]}" "${extra[@]}"
elif ((${#cfg[@]} || ${#extra[@]})); then
  cmake -S . -B "$bd" "${cfg[@]}" "${extra[@]}"
fi
if ! cmake --build "$bd"; then
  echo "test.sh: build failed in $bd"
  echo "0 passed, 1 failed"
  exit 1
fi

"$here/fetch_models.sh"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
ctest --test-dir "$bd" --output-on-failure --no-tests=error \
  --parallel "$(nproc)" 2>&1 | tee "$log" || rc=$?

# ctest ends with "NN% tests passed, F tests failed out of T"; skipped tests
# (exit code 77) are listed as "(Skipped)" and count as neither.
total=$(sed -n 's/.*tests failed out of \([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
failed=$(sed -n 's/.*, \([0-9][0-9]*\) tests failed out of.*/\1/p' "$log" | tail -n 1)
skipped=$(grep -c '(Skipped)$' "$log" || true)
if [[ -z "$total" || -z "$failed" ]]; then
  echo "test.sh: no ctest summary (ctest exit code $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
passed=$((total - failed - skipped))
if ((skipped)); then
  echo "$passed passed, $failed failed ($skipped skipped)"
else
  echo "$passed passed, $failed failed"
fi
if ((rc != 0 || failed != 0)); then
  exit 1
fi
