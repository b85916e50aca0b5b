#!/usr/bin/env bash
# ci_arm64.sh - the NEON path's correctness check: cross-builds
# facepay for aarch64 with aarch64-linux-gnu-gcc (cmake/aarch64-linux-gnu.cmake,
# arm64 libraries from Debian multiarch: tools/packages-arm64.txt) into
# build-arm64 and runs ctest there; ctest runs the tests through
# qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR). Proves correctness, not speed:
# qemu emulates every float operation, NEON or scalar, in software.
# Then installs it, builds the terminal example against the installed arm64
# package and runs the CLI (version, cpuinfo, embed) and the example
# (enroll, verify) under qemu.
#
#   tools/ci_arm64.sh            (from anywhere; BUILD_DIR overrides build-arm64,
#                                 FACEPAY_MODELS_DIR the models, default models/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-arm64}
models=${FACEPAY_MODELS_DIR:-$root/models}
cd "$root"
# The host's compiler settings must not reach the cross compiler: CPATH and
# C_INCLUDE_PATH would put the host's headers (/usr/include/x86_64-linux-gnu)
# before the target's, LIBRARY_PATH its libraries, CFLAGS/LDFLAGS its
# options, PKG_CONFIG_PATH its .pc files (the toolchain file and the make
# step below set pkg-config's paths themselves).
unset CPATH C_INCLUDE_PATH LIBRARY_PATH CFLAGS CPPFLAGS LDFLAGS \
      PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
[[ -f "$models/MobileFaceNet.tflite" ]] ||
    { echo "ci_arm64: no models in $models (set FACEPAY_MODELS_DIR)" >&2; exit 1; }

for tool in aarch64-linux-gnu-gcc qemu-aarch64 cmake ninja; do
    command -v "$tool" >/dev/null || { echo "ci_arm64: $tool not found" >&2; exit 1; }
done
if [ ! -e /usr/lib/aarch64-linux-gnu/pkgconfig/libsodium.pc ] ||
   [ ! -e /usr/lib/aarch64-linux-gnu/pkgconfig/sqlite3.pc ]; then
    echo "ci_arm64: arm64 libraries missing; as root:" >&2
    echo "  dpkg --add-architecture arm64 && apt-get update &&" \
         "apt-get install -y \$(grep -v '^#' tools/packages-arm64.txt)" >&2
    exit 1
fi

t0=$(date +%s)
cmake -S . -B "$build" -G Ninja \
      -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
      -DCMAKE_BUILD_TYPE=Release -DFACEPAY_MODELS_DIR="$models" >/dev/null
# No compile or link line may name a folder of the host's architecture or
# the host's /usr/local (headers and libraries installed for x86-64 only).
if ninja -C "$build" -t commands | grep -E -o \
       '(-I|-isystem |-L)[^ ]*(x86_64-linux-gnu|/usr/local/(include|lib))[^ ]*' | sort -u | grep .; then
    echo "ci_arm64: FAIL: host include or library paths in the cross build (above)" >&2
    exit 1
fi
t1=$(date +%s)
ninja -C "$build"
t2=$(date +%s)
ctest --test-dir "$build" --output-on-failure -V
t3=$(date +%s)

# ---- What a terminal maker ships on an arm64 board: the installed
# library, the CLI and the terminal example (docs/examples/terminal) built
# against the installed arm64 package (CMake shared, make+pkg-config
# static), all run under qemu.
work=$(mktemp -d "${TMPDIR:-/tmp}/facepay-arm64.XXXXXX")
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$work"' EXIT; fi
prefix=$work/prefix
faces=$root/tests/data/faces
emu=(qemu-aarch64 -L /usr/aarch64-linux-gnu -E "LD_LIBRARY_PATH=$prefix/lib")
fail() { echo "ci_arm64: FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
file -L "$prefix/lib/libfacepay.so.0" | grep -q 'ARM aarch64' || fail "libfacepay.so.0 is not aarch64"
file "$prefix/bin/facepay" | grep -q 'ARM aarch64' || fail "bin/facepay is not aarch64"
ls -l "$prefix"/lib/libfacepay.* "$prefix/bin/facepay"
"${emu[@]}" "$prefix/bin/facepay" version
"${emu[@]}" "$prefix/bin/facepay" cpuinfo
"${emu[@]}" "$prefix/bin/facepay" --help >/dev/null
"${emu[@]}" "$prefix/bin/facepay" embed --models "$models" "$faces/Al_Pacino_0002.jpg" |
    tee "$work/embed.out" | head -n 4
grep -q . "$work/embed.out" || fail "facepay embed printed nothing"

example=$root/docs/examples/terminal
cmake -S "$example" -B "$work/ex-cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS=-Werror >/dev/null
cmake --build "$work/ex-cmake"
mkdir -p "$work/ex-make"
cp "$example"/terminal.c "$example"/make_nv21.c "$example"/Makefile "$work/ex-make/"
PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig" \
    PKG_CONFIG_PATH="" make -C "$work/ex-make" CC=aarch64-linux-gnu-gcc STATIC=1 CFLAGS="-O2 -Werror"
file "$work/ex-make/terminal" | grep -q 'ARM aarch64' || fail "example is not aarch64"

# Camera frames as in tools/ci_install.sh: enrolled obama.jpg, the same man
# in another photo (APPROVE), someone else (DECLINE).
w=1480 h=1136
"${emu[@]}" "$work/ex-cmake/make_nv21" "$faces/obama.jpg" "$work/enroll.nv21" $w $h >/dev/null
"${emu[@]}" "$work/ex-make/make_nv21" "$faces/obama1.jpg" "$work/same.nv21" $w $h >/dev/null
"${emu[@]}" "$work/ex-make/make_nv21" "$faces/Tom_Cruise_avp_2014_4.jpg" "$work/other.nv21" \
    $w $h >/dev/null
key=$work/master.key db=$work/terminal.db phone=13800138000
if "${emu[@]}" "$prefix/bin/facepay" keygen --help >/dev/null 2>&1; then
    "${emu[@]}" "$prefix/bin/facepay" keygen "$key"
else
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key")
fi
export FACEPAY_MODELS_DIR=$models
# Liveness off under qemu only: FaceAntiSpoofing takes minutes per frame
# there (tools/ci_install.sh runs it natively on x86-64).
# One thread: qemu-aarch64 7.2 never returns from a guest's pthread_create,
# and a one-worker service would otherwise start a thread pool.
run_terminal() {
    "${emu[@]}" "$1" --db "$db" --key-file "$key" --width $w --height $h --liveness off \
        --threads 1 "${@:2}"
}
run_terminal "$work/ex-make/terminal" --enroll "$work/enroll.nv21" "$phone"
for t in "$work/ex-cmake/terminal" "$work/ex-make/terminal"; do
    run_terminal "$t" "$work/same.nv21" "$phone" | tee "$work/approve.out"
    grep -q '^decision: APPROVE' "$work/approve.out" || fail "$t: want APPROVE"
    run_terminal "$t" "$work/other.nv21" "$phone" | tee "$work/decline.out"
    grep -q '^decision: DECLINE' "$work/decline.out" || fail "$t: want DECLINE"
done
t4=$(date +%s)
echo "ci_arm64: configure $((t1 - t0)) s, build $((t2 - t1)) s, tests under qemu $((t3 - t2)) s," \
     "install + CLI + example under qemu $((t4 - t3)) s"
