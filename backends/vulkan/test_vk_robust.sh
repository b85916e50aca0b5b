#!/bin/sh
# test_vk_robust.sh FACEPAY_CLI MODELS_DIR WORK_DIR
#
# The Vulkan plugin must never crash or hang the host: no loader, no driver,
# a lost device, a hung device (fence timeout) and a garbage pipeline-cache
# file each end in "unavailable" or an error status, and a cache that is not
# for this device is ignored (then rewritten whole). Also: the staging path
# (discrete GPUs) computes the same bits as the mapped path. Exit 77 (skip)
# when no Vulkan device is usable here. Prints "N passed, N failed".
set -u
unset FACEPAY_BACKEND # "auto" is part of what is checked
CLI=$1
MODELS=$2
WORK=$3
rm -rf "$WORK"
mkdir -p "$WORK"
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -f "$WORK/log" ] && sed 's/^/     /' "$WORK/log"; }

# Pin lavapipe where it is installed, so a machine with a GPU tests the same.
LVP=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
[ -f "$LVP" ] && [ -z "${VK_ICD_FILENAMES:-}" ] && export VK_ICD_FILENAMES=$LVP
export FACEPAY_VK_CACHE="$WORK/cache.bin"

"$CLI" backends > "$WORK/backends" 2>&1
if ! grep -q '^  vulkan .*probe: ok' "$WORK/backends"; then
    echo "skip: no usable Vulkan device here"
    cat "$WORK/backends"
    exit 77
fi

# rnet input: 24x24x3 floats (0.5, -0.25, 0.75 repeated), 6912 bytes.
i=0
: > "$WORK/rnet.f32"
while [ $i -lt 576 ]; do
    printf '\000\000\000\077\000\000\200\276\000\000\100\077' >> "$WORK/rnet.f32"
    i=$((i + 1))
done
RNET="$MODELS/rnet.tflite"
MFN="$MODELS/MobileFaceNet.tflite"
run() { # run NAME [env...] -- the CLI on rnet with the vulkan backend
    name=$1
    shift
    env "$@" timeout 300 "$CLI" run --backend vulkan "$RNET" "$WORK/rnet.f32" "$WORK/$name" \
        > "$WORK/log" 2>&1
}

# 1. reference run on vulkan (writes a valid cache)
if run ref && [ -s "$WORK/ref.out0.f32" ]; then ok "rnet on vulkan"; else bad "rnet on vulkan"; fi
hdr=$(od -An -tu4 -N8 "$WORK/cache.bin" 2>/dev/null | tr -s ' ')
if [ "$hdr" = " 32 1" ]; then
    ok "pipeline cache written ($(wc -c < "$WORK/cache.bin") bytes, header$hdr)"
else
    bad "pipeline cache written"
fi

# 2. a garbage cache file is ignored, and replaced by a valid one
head -c 4096 /dev/urandom > "$WORK/cache.bin"
cp "$WORK/cache.bin" "$WORK/garbage.bin"
if run garbage && cmp -s "$WORK/ref.out0.f32" "$WORK/garbage.out0.f32"; then
    ok "garbage cache ignored"
else
    bad "garbage cache ignored"
fi
if ! cmp -s "$WORK/cache.bin" "$WORK/garbage.bin" && [ -s "$WORK/cache.bin" ]; then
    ok "garbage cache replaced"
else
    bad "garbage cache replaced"
fi
# a cache with a valid header for another device (UUID changed)
{ head -c 16 "$WORK/cache.bin"; head -c 16 /dev/zero; } > "$WORK/other.bin"
cp "$WORK/other.bin" "$WORK/cache.bin"
if run other && cmp -s "$WORK/ref.out0.f32" "$WORK/other.out0.f32"; then
    ok "cache of another device ignored"
else
    bad "cache of another device ignored"
fi
# a truncated file and an unreadable path (a folder)
head -c 7 "$WORK/other.bin" > "$WORK/cache.bin"
if run trunc && cmp -s "$WORK/ref.out0.f32" "$WORK/trunc.out0.f32"; then
    ok "truncated cache ignored"
else
    bad "truncated cache ignored"
fi
mkdir -p "$WORK/dircache"
if run dir FACEPAY_VK_CACHE="$WORK/dircache" && cmp -s "$WORK/ref.out0.f32" "$WORK/dir.out0.f32"; then
    ok "cache path that is a folder ignored"
else
    bad "cache path that is a folder ignored"
fi

# 3. staging path (as on a discrete GPU) gives the same bits
if run staged FACEPAY_VK_STAGING=1 && cmp -s "$WORK/ref.out0.f32" "$WORK/staged.out0.f32" &&
    cmp -s "$WORK/ref.out1.f32" "$WORK/staged.out1.f32"; then
    ok "staging path bit-identical"
else
    bad "staging path bit-identical"
fi

# 4. no loader: the plugin is rejected with the reason, auto runs on the CPU
env FACEPAY_VK_LOADER=/nonexistent/libvulkan.so.1 "$CLI" backends > "$WORK/log" 2>&1
if grep -q 'no Vulkan loader' "$WORK/log"; then ok "no loader: rejected"; else bad "no loader: rejected"; fi
if env FACEPAY_VK_LOADER=/nonexistent/libvulkan.so.1 timeout 120 "$CLI" run "$RNET" \
    "$WORK/rnet.f32" "$WORK/noloader" > "$WORK/log" 2>&1 &&
    grep -q '^cpu:' "$WORK/log"; then
    ok "no loader: auto runs on cpu"
else
    bad "no loader: auto runs on cpu"
fi

# 5. no driver (ICD)
env VK_ICD_FILENAMES=/nonexistent/icd.json VK_DRIVER_FILES=/nonexistent/icd.json \
    "$CLI" backends > "$WORK/log" 2>&1
if grep -q 'vulkan.*rejected\|VK_ERROR_INCOMPATIBLE_DRIVER\|no Vulkan device' "$WORK/log"; then
    ok "no driver: rejected"
else
    bad "no driver: rejected"
fi

# 6. lost device (fault injection): an error status, no crash
run lost FACEPAY_VK_FAULT_LOST=1
rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -q 'VK_ERROR_DEVICE_LOST' "$WORK/log"; then
    ok "lost device: error status (rc $rc)"
else
    bad "lost device: error status (rc $rc)"
fi

# 7. hung device: a fence wait that times out (0 ms) is an error, not a hang
head -c 150528 /dev/zero > "$WORK/mfn.f32" # one 112x112x3 face
env FACEPAY_VK_TIMEOUT_MS=0 timeout 300 "$CLI" run --batch 1 --backend vulkan "$MFN" \
    "$WORK/mfn.f32" "$WORK/hung" > "$WORK/log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 124 ] && grep -q 'VK_TIMEOUT' "$WORK/log"; then
    ok "fence timeout: error status (rc $rc)"
else
    bad "fence timeout: error status (rc $rc)"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
