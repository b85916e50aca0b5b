#!/usr/bin/env bash
# ci_arm64.sh - the NEON path's correctness check (issue 3): cross-builds
# facepay for aarch64 with aarch64-linux-gnu-gcc (cmake/aarch64-linux-gnu.cmake,
# arm64 libraries from Debian multiarch: tools/packages-arm64.txt) into
# build-arm64 and runs ctest there; ctest runs the tests through
# qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR). Proves correctness, not speed:
# qemu emulates every float operation, NEON or scalar, in software.
#
#   tools/ci_arm64.sh            (from anywhere; BUILD_DIR overrides build-arm64)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-arm64}
cd "$root"

for tool in aarch64-linux-gnu-gcc qemu-aarch64 cmake ninja; do
    command -v "$tool" >/dev/null || { echo "ci_arm64: $tool not found" >&2; exit 1; }
done
if [ ! -e /usr/lib/aarch64-linux-gnu/pkgconfig/libsodium.pc ]; then
    echo "ci_arm64: arm64 libraries missing; as root:" >&2
    echo "  dpkg --add-architecture arm64 && apt-get update &&" \
         "apt-get install -y \$(grep -v '^#' tools/packages-arm64.txt)" >&2
    exit 1
fi

t0=$(date +%s)
cmake -S . -B "$build" -G Ninja \
      -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
t1=$(date +%s)
ninja -C "$build"
t2=$(date +%s)
ctest --test-dir "$build" --output-on-failure -V
t3=$(date +%s)
echo "ci_arm64: configure $((t1 - t0)) s, build $((t2 - t1)) s, tests under qemu $((t3 - t2)) s"
