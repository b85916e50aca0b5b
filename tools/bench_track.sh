#!/usr/bin/env bash
# tools/bench_track.sh - build one commit in a temporary git worktree and
# record its benchmarks with its own facepay-bench (called by
# `facepay-bench track`, one commit per call).
#
#   bench_track.sh REPO REV HISTORY SUITES SELF [SUITE-OPTION...]
#
# REPO: the repository; REV: any revision; HISTORY: the JSON-lines file the
# rows are appended to; SUITES: comma-separated (models,checkout,...); SELF:
# the facepay-bench that called us (turns the rows of a bench older than
# `record` into history rows: `import-legacy`). The worktree and its build
# are removed afterwards, whatever happens. FPAY_TRACK_CMAKE_ARGS adds
# configure options; FPAY_MODELS_DIR points at the models.
set -euo pipefail
if (($# < 5)); then
  echo "usage: $0 REPO REV HISTORY SUITES SELF [SUITE-OPTION...]" >&2
  exit 2
fi
repo=$1 rev=$2 history=$3 suites=$4 self=$5
shift 5
models=${FPAY_MODELS_DIR:-$(cd "$(dirname "$0")/.." && pwd)/models}
sha=$(git -C "$repo" rev-parse --verify "$rev^{commit}")
wt=$(mktemp -d "${TMPDIR:-/tmp}/facepay-track-${sha:0:12}-XXXXXX")
cleanup() {
  git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
  git -C "$repo" worktree prune >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo "track: ${sha:0:12} ($(git -C "$repo" log -1 --format=%s "$sha")) in $wt"
git -C "$repo" worktree add --detach --quiet "$wt" "$sha"
build=$wt/build-track
# shellcheck disable=SC2086
cmake -S "$wt" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACEPAY_BUILD_TESTS=OFF \
  -DFACEPAY_MODELS_DIR="$models" ${FPAY_TRACK_CMAKE_ARGS:-} >"$wt/configure.log" 2>&1 || {
  tail -n 30 "$wt/configure.log" >&2
  exit 1
}
# The bench and whatever backend plugins this commit has.
targets=(facepay_bench)
mapfile -t plugins < <(ninja -C "$build" -t targets all 2>/dev/null |
  sed -n 's/^\(facepay_backend_[a-z0-9]*\): .*/\1/p' | sort -u)
targets+=("${plugins[@]}")
ninja -C "$build" "${targets[@]}" >"$wt/build.log" 2>&1 || {
  tail -n 30 "$wt/build.log" >&2
  exit 1
}
bench=$build/bench/facepay-bench
export FPAY_MODELS_DIR=$models FACEPAY_MODELS_DIR=$models
if "$bench" record --help >/dev/null 2>&1; then
  # shellcheck disable=SC2086
  "$bench" record --history "$history" "$@" ${suites//,/ }
else
  # A bench older than `record`: its `models --json` rows, converted.
  echo "track: ${sha:0:12} has no 'record'; legacy models rows (no samples, cpu only)"
  if [[ ",$suites," != *",models,"* ]]; then
    echo "track: ${sha:0:12}: nothing to record for suites '$suites' in a legacy bench" >&2
    exit 0
  fi
  runs=20
  args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[i]}" == --runs ]] && runs=${args[i + 1]}
  done
  # pnet is left out: old benches run it at its declared 1280x960, the
  # suite now at 320x240 (a pyramid level), so the rows would not match.
  for m in rnet onet MobileFaceNet FaceAntiSpoofing; do
    for t in 1 2; do
      "$bench" models --json --runs "$runs" --warmup 3 --batch 1 --threads "$t" \
        "$models/$m.tflite" || true
    done
  done | "$self" import-legacy --history "$history"
fi
