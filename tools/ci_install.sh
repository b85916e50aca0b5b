#!/usr/bin/env bash
# ci_install.sh - what a terminal maker gets: `cmake --install` of
# a built tree into a fresh temporary prefix, a check of the installed
# layout, then the terminal example (docs/examples/terminal) built against
# that prefix only - with CMake (find_package(facepay), shared and static)
# and with its Makefile (pkg-config, shared and static) - and run: a key, an
# enrollment with the installed `facepay` CLI (or the example's --enroll
# while the CLI has no `enroll`), then verifications of NV21 frames.
#
#   tools/ci_install.sh        (BUILD_DIR: the built tree, default build;
#                               KEEP=1 keeps the temporary folder)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
[[ "$build" = /* ]] || build=$root/$build
models=${FACEPAY_MODELS_DIR:-$root/models}
faces=$root/tests/data/faces
cd "$root"

work=$(mktemp -d "${TMPDIR:-/tmp}/facepay-install.XXXXXX")
if [[ "${KEEP:-0}" != 1 ]]; then trap 'rm -rf "$work"' EXIT; fi
prefix=$work/prefix
fail() { echo "ci_install: FAIL: $*" >&2; exit 1; }
step() { echo; echo "--- ci_install: $*"; }

# ---- install
step "cmake --install $build --prefix $prefix"
cmake --build "$build" -j "${JOBS:-2}" >/dev/null
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$prefix/lib
[[ -d "$libdir/pkgconfig" ]] || libdir=$(dirname "$(find "$prefix" -name facepay.pc -print -quit)")/..
libdir=$(cd "$libdir" && pwd)
for f in "$libdir/libfacepay.so" "$libdir/libfacepay.a" "$libdir/pkgconfig/facepay.pc" \
         "$libdir/cmake/facepay/facepayConfig.cmake" \
         "$libdir/cmake/facepay/facepayConfigVersion.cmake" \
         "$prefix/include/facepay/facepay.h" "$prefix/include/facepay/backend.h" \
         "$prefix/include/facepay/pipeline.h" "$prefix/include/facepay/service.h" \
         "$prefix/bin/facepay" "$prefix/bin/facepay-bench" \
         "$prefix/share/man/man1/facepay.1" "$prefix/share/man/man1/facepay-bench.1" \
         "$prefix/share/man/man1/facepay-load.1"; do
    [[ -e "$f" ]] || fail "not installed: ${f#"$prefix"/}"
done
major=$(sed -n 's/^#define FPAY_VERSION_MAJOR \([0-9]*\).*/\1/p' "$prefix/include/facepay/facepay.h")
soname=$(readelf -d "$libdir/libfacepay.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[[ "$soname" == "libfacepay.so.$major" && -e "$libdir/$soname" ]] ||
    fail "SONAME '$soname' (want libfacepay.so.$major, installed beside it)"
ls "$libdir"/facepay/backends/ 2>/dev/null || echo "(no backend plugins in this build)"
find "$prefix" -type f | sed "s|^$prefix/||" | sort
ls -l "$libdir"/libfacepay.*
"$root/tests/install/test_exports.sh" "$libdir/libfacepay.so" "$prefix"/include/facepay/*.h
# The man page renders without warnings.
if command -v groff >/dev/null; then
    for page in facepay facepay-bench facepay-load; do
        warn=$(groff -man -Tutf8 -ww -z "$prefix/share/man/man1/$page.1" 2>&1 || true)
        [[ -z "$warn" ]] || fail "groff warnings in $page.1: $warn"
    done
fi
"$prefix/bin/facepay" version
"$prefix/bin/facepay" backends

# ---- the example, against the prefix only. The build tree's libraries must
# not be found: nothing but $prefix on the paths. PKG_CONFIG_PATH is given
# on make's command line, as the Makefile's header says, not exported.
unset PKG_CONFIG_PATH
export LD_LIBRARY_PATH=$libdir
unset CMAKE_PREFIX_PATH
example=$root/docs/examples/terminal

step "example with CMake (find_package(facepay)), shared and static"
for kind in shared static; do
    static=OFF
    [[ $kind == static ]] && static=ON
    cmake -S "$example" -B "$work/cmake-$kind" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$prefix" -DFACEPAY_STATIC=$static \
        -DCMAKE_C_FLAGS="-Werror" >/dev/null
    cmake --build "$work/cmake-$kind"
done

step "example with make + pkg-config, shared, static and shared with RPATH=1"
for kind in shared static rpath; do
    mkdir -p "$work/make-$kind"
    cp "$example"/terminal.c "$example"/make_nv21.c "$example"/Makefile "$work/make-$kind/"
    st=0 rp=0
    [[ $kind == static ]] && st=1
    [[ $kind == rpath ]] && rp=1
    make -C "$work/make-$kind" PKG_CONFIG_PATH="$libdir/pkgconfig" STATIC=$st RPATH=$rp \
        CFLAGS="-O2 -Werror"
done

# Shared builds load libfacepay from the prefix, static ones not at all.
for b in cmake-shared make-shared; do
    lib=$(ldd "$work/$b/terminal" | awk '/libfacepay/ {print $3}')
    [[ "$lib" == "$libdir"/* ]] || fail "$b/terminal loads libfacepay from '$lib'"
done
# RPATH=1: the program finds libfacepay.so.0 in the prefix by itself.
readelf -d "$work/make-rpath/terminal" | grep -q "R.*PATH.*\[$libdir\]" ||
    fail "make-rpath/terminal has no rpath to $libdir"
lib=$(env -u LD_LIBRARY_PATH ldd "$work/make-rpath/terminal" | awk '/libfacepay/ {print $3}')
[[ "$lib" == "$libdir"/* ]] || fail "make-rpath/terminal without LD_LIBRARY_PATH loads '$lib'"
for b in cmake-static make-static; do
    if ldd "$work/$b/terminal" | grep -q libfacepay; then
        fail "$b/terminal is meant to be static but needs libfacepay.so"
    fi
done

# ---- run it
# The camera: 1480x1136 NV21 frames made from the test photos (make_nv21
# centres a photo on the frame without scaling it down: the liveness model
# wants the camera's own detail). Enrolled: obama.jpg; the same man in
# another photo must be approved, someone else declined, and the brief's
# LFW crop (Al_Pacino_0002, 250x250 at its own size) declined too: it is
# too blurry for the liveness model, and a terminal never lets that pass.
step "run: camera frames, key, enrollment, verifications"
cli=$prefix/bin/facepay
mk=$work/cmake-shared/make_nv21
w=1480 h=1136
"$mk" "$faces/obama.jpg" "$work/enroll.nv21" $w $h >/dev/null
"$mk" "$faces/obama1.jpg" "$work/same.nv21" $w $h >/dev/null
"$mk" "$faces/Tom_Cruise_avp_2014_4.jpg" "$work/other.nv21" $w $h >/dev/null
read -r pw ph < <("$mk" "$faces/Al_Pacino_0002.jpg" "$work/pacino.nv21")
echo "frames: ${w}x${h} NV21 ($(stat -c %s "$work/same.nv21") bytes), Al_Pacino_0002 ${pw}x${ph}"

key=$work/master.key
db=$work/terminal.db
phone=13800138000
if "$cli" keygen --help >/dev/null 2>&1; then
    "$cli" keygen "$key"
else
    echo "(facepay keygen not in this build: key from /dev/urandom)"
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key")
fi

export FACEPAY_MODELS_DIR=$models
term=("$work/cmake-shared/terminal" --db "$db" --key-file "$key" --width $w --height $h)
if "$cli" enroll --help 2>/dev/null | grep -q -- --db; then
    "$cli" enroll --db "$db" --key-file "$key" --country 86 --phone "$phone" "$faces/obama.jpg"
else
    echo "(facepay enroll not in this build: the example's --enroll)"
    "${term[@]}" --enroll "$work/enroll.nv21" "$phone"
fi

# A refused enrollment (the LFW crop: too blurry for the liveness model)
# says so and exits non-zero, so that a bring-up script cannot miss it.
refused=$work/refused.out
if "$work/cmake-shared/terminal" --db "$db" --key-file "$key" --width "$pw" --height "$ph" \
    --enroll "$work/pacino.nv21" 13700137000 >"$refused"; then
    cat "$refused"
    fail "a refused enrollment exited 0"
fi
cat "$refused"
grep -q '^enrollment: REFUSED' "$refused" || fail "a refused enrollment did not say REFUSED"

expect() { # expect DECISION TERMINAL [ARGS...]
    local want=$1 out
    shift
    out=$("$@") || true
    echo "$out"
    [[ "$out" == "decision: $want"* ]] || fail "$1: want $want"
}
for b in cmake-shared cmake-static make-shared make-static make-rpath; do
    t=("$work/$b/terminal")
    # RPATH=1 must run without LD_LIBRARY_PATH.
    [[ $b == make-rpath ]] && t=(env -u LD_LIBRARY_PATH "$work/$b/terminal")
    echo "[$b]"
    expect APPROVE "${t[@]}" --db "$db" --key-file "$key" --width $w --height $h "$work/same.nv21" "$phone"
    expect DECLINE "${t[@]}" --db "$db" --key-file "$key" --width $w --height $h "$work/other.nv21" "$phone"
done
expect DECLINE "$work/cmake-shared/terminal" --db "$db" --key-file "$key" --width "$pw" \
    --height "$ph" "$work/pacino.nv21" "$phone"
# Several customers, one boot (models loaded once); an unknown number
# declines like a wrong face.
printf '%s %s\n' "$phone" "$work/same.nv21" 13900139000 "$work/same.nv21" \
    "$phone" "$work/other.nv21" "$phone" "$work/same.nv21" | "${term[@]}" | tee "$work/batch.out"
[[ "$(grep -c '^decision: APPROVE' "$work/batch.out")" == 2 &&
   "$(grep -c '^decision: DECLINE' "$work/batch.out")" == 2 ]] || fail "stdin requests"
echo
echo "ci_install: ok (prefix $prefix)"
