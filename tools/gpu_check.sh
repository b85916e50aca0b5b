#!/bin/bash
# gpu_check.sh - the one prepared check of the Vulkan backend on a real GPU,
# for a session that is lent a machine by the `device`
# tool (an NVIDIA H100/H200 image with CUDA, CMake and ninja, but without
# this project's -dev packages, glslc or a Vulkan loader, and no network).
#
# Two steps:
#
#   1. Here (Debian 12, the project's packages installed):
#        tools/gpu_check.sh prepare
#      builds Release in build-gpu/ (oneDNN off: its 40 MB library would not
#      fit the 64 MiB the device tool carries) and stages build-gpu/bundle/:
#      the CLI, facepay-bench, test_backend_ops, libfacepay, the plugins and
#      every shared library they need that is not glibc (Debian's Vulkan
#      loader libvulkan.so.1 included), about 20 MB.
#
#   2. On the device machine, one call:
#        run(command="tools/gpu_check.sh", carry=["build-gpu/bundle", "models"],
#            timeout_s=540)
#      It uses the carried bundle (or, with no bundle, tries a Release build
#      there and says what is missing), points the loader at NVIDIA's ICD,
#      and writes under $OUT (default ./gpu-check-out):
#        env.txt          nvidia-smi, the ICD files, ldd of the plugin
#        backends.txt     `facepay backends` (device, driver, limits, fp16)
#        conformance.txt  test_backend_ops with FACEPAY_BACKEND=vulkan
#        robust.txt       backends/vulkan/test_vk_robust.sh (no lavapipe pin)
#        bench.txt        MobileFaceNet, vulkan vs cpu, batch 1/8/32/128
#        bench-fp16.txt   the same with FACEPAY_VK_PRECISION=fp16
#        summary.txt      one line per step: ok / FAILED, and the timings
#      Each step has its own time limit so that one stuck step still leaves
#      the others' results. RUNS/WARMUP/BATCHES/STEP_TIMEOUT override.
#
# Locally (lavapipe) the same device step runs with small counts:
#   RUNS=1 WARMUP=0 BATCHES=1,8 tools/gpu_check.sh
set -u
unset FACEPAY_BACKEND # the robustness step checks what "auto" picks
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build-gpu}
BUNDLE=$BUILD/bundle

if [ "${1:-}" = prepare ]; then
    set -e
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFACEPAY_ONEDNN=OFF \
        -DFACEPAY_VULKAN=ON
    ninja -C "$BUILD" -j"${JOBS:-2}" facepay_cli facepay_bench test_backend_ops \
        facepay_backend_vulkan
    rm -rf "$BUNDLE"
    mkdir -p "$BUNDLE/tools" "$BUNDLE/bench" "$BUNDLE/tests" "$BUNDLE/lib/facepay/backends" \
        "$BUNDLE/syslibs"
    cp "$BUILD/tools/facepay" "$BUNDLE/tools/"
    cp "$BUILD/bench/facepay-bench" "$BUNDLE/bench/"
    cp "$BUILD/tests/backends/test_backend_ops" "$BUNDLE/tests/"
    # vulkan, and xnnpack when built (never a stale onednn: 40 MB)
    for p in vulkan xnnpack; do
        f=$BUILD/lib/facepay/backends/libfacepay-backend-$p.so
        [ -f "$f" ] && cp "$f" "$BUNDLE/lib/facepay/backends/"
    done
    cp -L "$BUILD"/core/libfacepay.so.0 "$BUNDLE/lib/"
    # Every non-glibc library the programs and plugins need; libstdc++ and
    # libgcc_s stay the device's (its NVIDIA driver may need newer ones).
    for f in "$BUNDLE"/tools/facepay "$BUNDLE"/bench/facepay-bench "$BUNDLE"/tests/test_backend_ops \
        "$BUNDLE"/lib/facepay/backends/*.so /usr/lib/x86_64-linux-gnu/libvulkan.so.1; do
        LD_LIBRARY_PATH=$BUNDLE/lib ldd "$f" | awk '/=> \//{print $3}'
    done | sort -u | while read -r lib; do
        case $(basename "$lib") in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*|\
        libstdc++.so*|libgcc_s.so*|libfacepay.so*) ;;
        *) cp -L "$lib" "$BUNDLE/syslibs/" ;;
        esac
    done
    cp -L /usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$BUNDLE/syslibs/"
    du -sh "$BUNDLE"
    echo "bundle ready: run tools/gpu_check.sh on the device with carry [\"$BUNDLE\", \"models\"]"
    exit 0
fi

OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
BATCHES=${BATCHES:-1,8,32,128}
THREADS=${THREADS:-1,16}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
step() { # step NAME FILE CMD... : runs CMD with the step time limit into FILE
    local name=$1 file=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout -k 10 "$STEP_TIMEOUT" "$@" > "$file" 2>&1
    rc=$?
    note "$name: $([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc)") in $(($(date +%s) - t0)) s"
}

# ---- the programs: the carried bundle, else a Release build here
if [ -x "$BUNDLE/tools/facepay" ]; then
    BIN=$BUNDLE
    PLUGINS=$BUNDLE/lib/facepay/backends
    TEST=$BUNDLE/tests/test_backend_ops
    # Bundled system libraries only where the machine lacks them.
    LIBS=$(mktemp -d)
    for lib in "$BUNDLE"/syslibs/*; do
        name=$(basename "$lib")
        ldconfig -p 2>/dev/null | grep -q "^[[:space:]]*$name " || ln -s "$ROOT/$lib" "$LIBS/$name"
    done
    export LD_LIBRARY_PATH=$ROOT/$BUNDLE/lib:$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    note "programs: carried bundle ($BUNDLE), libraries brought: $(ls "$LIBS" | tr '\n' ' ')"
else
    note "programs: no bundle, building Release in $BUILD"
    step build "$OUT/build.txt" sh -c "cmake -S . -B '$BUILD' -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DFACEPAY_ONEDNN=OFF && ninja -C '$BUILD'"
    BIN=$BUILD
    PLUGINS=$BUILD/lib/facepay/backends
    TEST=$BUILD/tests/backends/test_backend_ops
    [ -x "$BIN/tools/facepay" ] || { note "no build: see build.txt"; tail -20 "$OUT/build.txt"; exit 1; }
fi

# ---- the NVIDIA ICD (the driver's folder on the lent machines), unless set
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
        /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do
        if [ -f "$icd" ]; then
            export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
            break
        fi
    done
fi
export FACEPAY_BACKEND_PATH=$ROOT/$PLUGINS FACEPAY_DISABLE_ONEDNN=1
export FPAY_TEST_DATA=$ROOT/tests/data FPAY_MODELS_DIR=$ROOT/models FACEPAY_MODELS_DIR=$ROOT/models
export FACEPAY_VK_CACHE=${FACEPAY_VK_CACHE:-$OUT/vk-pipelines.bin}

{
    date -u
    uname -a
    nvidia-smi 2>&1 | head -20
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
    ls /usr/local/nvidia/share/vulkan/icd.d/ /usr/share/vulkan/icd.d/ 2>&1
    ldd "$PLUGINS/libfacepay-backend-vulkan.so"
    ldconfig -p | grep -i 'vulkan\|nvidia' | head -20
} > "$OUT/env.txt" 2>&1

step backends "$OUT/backends.txt" "$BIN/tools/facepay" backends
grep -A1 '^  vulkan' "$OUT/backends.txt" | tee -a "$SUMMARY"

# ---- conformance: every op case and golden model, the vulkan backend forced
# for "auto"; the reference cpu backend on the reference kernels.
step conformance "$OUT/conformance.txt" env FACEPAY_BACKEND=vulkan FACEPAY_ISA=ref \
    "$TEST" --jobs 1
grep -E 'Synthesis|FAIL' "$OUT/conformance.txt" | head -20 | tee -a "$SUMMARY"
grep -c 'backend-ops vulkan .* OK$' "$OUT/conformance.txt" | sed 's/^/vulkan op cases OK: /' |
    tee -a "$SUMMARY"
grep 'backend-model vulkan' "$OUT/conformance.txt" | tee -a "$SUMMARY"

step robustness "$OUT/robust.txt" env VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-}" \
    backends/vulkan/test_vk_robust.sh "$BIN/tools/facepay" "$ROOT/models" "$OUT/robust-work"
tail -1 "$OUT/robust.txt" | tee -a "$SUMMARY"
rm -rf "$OUT/robust-work"

# ---- bench: MobileFaceNet, vulkan vs cpu, same machine, each batch
step bench "$OUT/bench.txt" "$BIN/bench/facepay-bench" models --backends cpu,vulkan \
    --batches "$BATCHES" --threads "$THREADS" --runs "$RUNS" --warmup "$WARMUP" --models-dir "$ROOT/models" \
    MobileFaceNet.tflite
cat "$OUT/bench.txt" | tee -a "$SUMMARY"
step bench-fp16 "$OUT/bench-fp16.txt" env FACEPAY_VK_PRECISION=fp16 "$BIN/bench/facepay-bench" \
    models --backends vulkan --batches "$BATCHES" --threads "$THREADS" --runs "$RUNS" \
    --warmup "$WARMUP" --models-dir "$ROOT/models" MobileFaceNet.tflite
cat "$OUT/bench-fp16.txt" | tee -a "$SUMMARY"
note "done: results in $OUT"
