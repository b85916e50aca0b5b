#!/usr/bin/env bash
# test_cli.sh FACEPAY MODELS_DIR DATA_DIR - the CLI on good and bad input.
# Bad input must give a non-zero exit below 128 (no signal, no sanitizer
# abort) and exactly one line on stderr that names the problem.
set -u
cli=$1 models=$2 data=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

ok()  { pass=$((pass + 1)); echo "ok   - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

# expect_error NAME PATTERN CMD...: fails cleanly with one line matching PATTERN.
expect_error() {
    local name=$1 pattern=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? lines
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && [ "$lines" -eq 1 ] && grep -qE -e "$pattern" "$tmp/err"; then
        ok "$name"
    else
        bad "$name (exit $rc, $lines stderr lines: $(head -c 300 "$tmp/err"))"
    fi
}

# expect_ok NAME PATTERN CMD...: succeeds and stdout matches PATTERN.
expect_ok() {
    local name=$1 pattern=$2; shift 2
    if "$@" >"$tmp/out" 2>"$tmp/err" && grep -qE -e "$pattern" "$tmp/out"; then
        ok "$name"
    else
        bad "$name ($(head -c 300 "$tmp/err"))"
    fi
}

mfn=$models/MobileFaceNet.tflite
: >"$tmp/empty.tflite"
head -c 1000 "$mfn" >"$tmp/truncated.tflite"
cp "$mfn" "$tmp/corrupt.tflite"
printf '\xff\xff\xff\x7f' | dd of="$tmp/corrupt.tflite" bs=1 seek=0 conv=notrunc 2>/dev/null
printf 'not an image at all' >"$tmp/not_image.jpg"
head -c 100 /dev/zero >"$tmp/short.f32"

expect_error "missing model"      "no-such|No such file"   "$cli" info "$tmp/no-such.tflite"
expect_error "empty model"        "empty"                  "$cli" info "$tmp/empty.tflite"
expect_error "truncated model"    "truncated.tflite: "     "$cli" info "$tmp/truncated.tflite"
expect_error "corrupt model"      "corrupt.tflite: "       "$cli" info "$tmp/corrupt.tflite"
expect_error "wrong-sized input"  "expected exactly 37632 float32" "$cli" run --batch 1 "$mfn" "$tmp/short.f32" "$tmp/o"
expect_error "wrong input count"  "has 1 inputs, 2 input files" "$cli" run "$mfn" "$tmp/short.f32" "$tmp/short.f32" "$tmp/o"
expect_error "bad batch"          "--batch"                "$cli" run --batch 0 "$mfn" "$tmp/short.f32" "$tmp/o"
expect_error "image not an image" "not_image.jpg"          "$cli" embed --model "$mfn" "$tmp/not_image.jpg"
expect_error "missing image"      "nope.png"               "$cli" embed --model "$mfn" "$tmp/nope.png"
expect_error "unknown command"   "unknown command"        "$cli" frobnicate
expect_error "missing models say what to do" "fetch_models.sh" "$cli" detect --models "$tmp/no-models" "$data/faces/amy1.png"
expect_error "unknown backend"   "unknown backend"        "$cli" embed --backend warp --model "$mfn" "$data/faces/amy1.png"

expect_ok "info MobileFaceNet"    "imported: +230 nodes"   "$cli" info "$mfn"
expect_ok "info optimized count"  "optimized: +53 nodes"   "$cli" info "$mfn"
expect_ok "run rnet golden input" "rnet/prob1"             "$cli" run "$models/rnet.tflite" "$data/golden/rnet_tomcruise.in0.f32" "$tmp/rnet"
if cmp -s <(od -An -tf4 "$tmp/rnet.out0.f32" | wc -w) <(echo 2); then ok "run writes 2 floats"; else bad "run output size"; fi
expect_ok "embed a face"          "raw L2 norm"            "$cli" embed --model "$mfn" "$data/faces/amy1.png"
expect_ok "help"                  "usage: facepay"         "$cli" --help
# Face pipeline commands.
expect_ok "detect a face"         "result ok"              "$cli" detect --models "$models" --liveness off "$data/faces/Tom_Cruise_0001.jpg"
expect_ok "detect --annotate"     "annotated: "            "$cli" detect --models "$models" --liveness off --annotate "$tmp/ann.png" "$data/faces/kit_with_rose.jpg"
expect_ok "embed via detection"   "raw L2 norm"            "$cli" embed --models "$models" --liveness off "$data/faces/Tom_Cruise_0001.jpg"
expect_ok "embed --whole"         "raw L2 norm"            "$cli" embed --whole --model "$mfn" "$data/faces/amy1.png"
expect_ok "compare same person"   "cosine: "               "$cli" compare --models "$models" --liveness off "$data/faces/Al_Pacino_0001.jpg" "$data/faces/Al_Pacino_0002.jpg"
expect_error "compare missing"    "nope.png"               "$cli" compare --models "$models" "$data/faces/amy1.png" "$tmp/nope.png"
expect_ok "compare verdict same"  "verdict: +SAME person"  "$cli" compare --models "$models" --liveness off "$data/faces/Al_Pacino_0001.jpg" "$data/faces/Al_Pacino_0002.jpg"
expect_ok "compare verdict other" "verdict: +DIFFERENT"    "$cli" compare --models "$models" --liveness off "$data/faces/Al_Pacino_0001.jpg" "$data/faces/Tom_Cruise_0001.jpg"
expect_ok "compare --threshold"   "DIFFERENT.*0.9990, from --threshold" "$cli" compare --models "$models" --liveness off --threshold 0.999 "$data/faces/Al_Pacino_0001.jpg" "$data/faces/Al_Pacino_0002.jpg"
# The group photo's payer is ambiguous: compare says which capture and why.
expect_ok "compare names unusable" "capture B: +NOT usable for payment: ambiguous_multiple_faces" "$cli" compare --models "$models" --liveness off "$data/faces/Al_Pacino_0001.jpg" "$data/faces/bbt3.jpg"
expect_error "compare bad threshold" "--threshold wants a cosine in \\(0, 1\\]" "$cli" compare --models "$models" --threshold 0 "$data/faces/amy1.png" "$data/faces/amy1.png"
expect_ok "align writes the crop" "aligned: .*112x112"     "$cli" align --models "$models" "$data/faces/Tom_Cruise_0001.jpg" "$tmp/crop.png"
if [ "$(od -An -tu1 -j16 -N8 "$tmp/crop.png" 2>/dev/null | tr -s ' ')" = " 0 0 0 112 0 0 0 112" ]; then ok "align PNG is 112x112"; else bad "align PNG size"; fi
expect_error "align no face"      "no face found"          "$cli" align --models "$models" "$data/images/gray.jpg" "$tmp/none.png"
# embed times its decode (it printed 0.0 before)
if "$cli" embed --models "$models" --liveness off "$data/faces/obama1.jpg" 2>/dev/null | grep -qE 'decode [0-9]*[1-9][0-9]*\.|decode 0\.[1-9]'; then ok "embed reports decode time"; else bad "embed decode time is 0"; fi
expect_error "detect not image"   "not_image.jpg"          "$cli" detect --models "$models" "$tmp/not_image.jpg"
expect_error "detect bad option"  "unknown or incomplete"  "$cli" detect --frobnicate "$data/faces/amy1.png"
expect_error "eval needs pairs"   "--pairs"                "$cli" eval --root "$tmp"
printf '2\nA\t1\n' >"$tmp/pairs_short.txt"
expect_error "eval short pairs"   "pairs_short.txt"        "$cli" eval --models "$models" --pairs "$tmp/pairs_short.txt" --root "$tmp"
# LFW View 2's format: first line "FOLDS N", then per fold N same and N
# different pairs. faces/lfw_layout holds 4 LFW images in LFW's layout
# (name/name_NNNN.jpg) and pairs_2folds.txt 2 folds of 1 + 1 pairs.
lfw=$data/faces/lfw_layout
expect_ok "eval View 2 folds"     "View 2, folds: 2 of 2 pairs" "$cli" eval --models "$models" --liveness off --threshold 0.5 --pairs "$lfw/pairs_2folds.txt" --root "$lfw"
if grep -qE '^2-fold accuracy: [0-9.]+% \+- [0-9.]+%' "$tmp/out" &&
   grep -qE '^best-threshold accuracy: [0-9.]+%' "$tmp/out" &&
   grep -qE '^accuracy at the given threshold: [0-9.]+% at cosine 0.5000' "$tmp/out"; then
    ok "eval View 2 accuracy"
else
    bad "eval View 2 accuracy ($(head -c 300 "$tmp/out"))"
fi
# The ROC's x axis starts at the smallest FAR the impostor pairs can
# measure: 2 different pairs here, so 1/2, not a fixed 1e-4.
expect_ok "eval --roc"            "ROC: " "$cli" eval --models "$models" --liveness off --pairs "$lfw/pairs_2folds.txt" --root "$lfw" --roc "$tmp/roc.svg"
if grep -q '>1/2</text>' "$tmp/roc.svg" && grep -q 'impostor pairs accepted, of 2;' "$tmp/roc.svg" &&
   ! grep -q '1e-[2-9]' "$tmp/roc.svg" && grep -q '</svg>' "$tmp/roc.svg"; then
    ok "eval ROC axis from 1/impostor pairs"
else
    bad "eval ROC axis from 1/impostor pairs ($(grep -o '<text[^<]*</text>' "$tmp/roc.svg" 2>/dev/null | head -c 300))"
fi
expect_error "eval bad threshold" "--threshold"            "$cli" eval --threshold 2 --pairs "$lfw/pairs_2folds.txt" --root "$lfw"
# Beyond the listed pairs: pairs_4people.txt lists 7 images of 4 people
# (Al_Pacino, Alan_Greenspan, Albert_Costa with 2 photos each, Tom_Cruise
# with 1). Every cross-identity pair: C(7,2) - 3 = 18 impostor pairs; every
# same-identity pair: 3 genuine pairs. At --fmr 0.25, floor(0.25 * 18) = 4
# impostors may reach the threshold. --enroll 1: 3 templates (people with
# more than 1 photo), 3 genuine probes, 3 x 5 = 15 impostor probes, of which
# floor(0.25 * 15) = 3 may reach it; --enroll 2: nobody has more than 2,
# and so nobody for the comparison of K = 1 on the people of K = 2.
p4=$lfw/pairs_4people.txt
expect_ok "eval all pairs counts" "^all pairs:  7 images with a face \(0 without left out\): 18 impostor pairs \(every cross-identity pair\), 3 genuine pairs \(every same-identity pair; 3 listed\)" \
    "$cli" eval --models "$models" --liveness off --pairs "$p4" --root "$lfw" --fmr 0.25 --enroll 1,2 --dump "$tmp/dump.tsv"
cp "$tmp/out" "$tmp/eval4.out"
if grep -qE '^  FMR=1e-4: not measurable \(18 impostor pairs, at least 10000 needed\)$' "$tmp/eval4.out" &&
   grep -qE '^  FMR=1e-6: not measurable \(18 impostor pairs, at least 1000000 needed\)$' "$tmp/eval4.out" &&
   grep -qE '^  FMR=0.25: threshold -?[0-9.]+, 4 of 18 impostors >= it, FNMR 0.00% \(0 of 3 genuine below\), listed pairs 0.00% \(0 of 3\)$' "$tmp/eval4.out"; then
    ok "eval FMR tail over all pairs"
else
    bad "eval FMR tail over all pairs ($(grep 'FMR=' "$tmp/eval4.out" | head -4))"
fi
if grep -qE '^enroll 1: +3 people with more than 1 photos with a face: .*probes: 3 genuine .*, 15 impostor ' "$tmp/eval4.out" &&
   grep -A4 '^enroll 1:' "$tmp/eval4.out" | grep -qE '^  FMR=0.25: threshold -?[0-9.]+, 3 of 15 impostors >= it, FNMR 0.00% \(0 of 3 genuine below\)$' &&
   grep -qE '^enroll 2: +0 people with more than 2 photos with a face: .*probes: 0 genuine .*, 0 impostor ' "$tmp/eval4.out" &&
   grep -qE '^enroll 1 of 2: the same 0 people \(more than 2 photos with a face\): .*probes: 0 genuine .*, 0 impostor$' "$tmp/eval4.out" &&
   [ "$(grep -c '^enroll' "$tmp/eval4.out")" = 3 ]; then
    ok "eval --enroll protocol counts"
else
    bad "eval --enroll protocol counts ($(grep -A4 '^enroll' "$tmp/eval4.out" | head -c 600))"
fi
# The dump: a header, one line per image in file-name order, 3 + 192
# columns, unit-length embeddings; and the 0.25 threshold recomputed from it
# (the next float above the 5th highest impostor cosine, shown to 4 places).
dump_check() { # FILE: prints "rows cols minnorm maxnorm t0.25 enroll1_t0.25"
    awk -F'\t' 'NR == 1 { next }
        { n++; id[n] = $2; cols = NF; s = 0
          for (d = 4; d <= NF; d++) { e[n, d] = $d; s += $d * $d }
          if (n == 1 || s < lo) lo = s; if (n == 1 || s > hi) hi = s }
        END { k = 0
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (id[i] != id[j]) {
              c = 0; for (d = 4; d <= cols; d++) c += e[i, d] * e[j, d]; imp[++k] = c }
          for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (imp[j] > imp[i]) { t = imp[i]; imp[i] = imp[j]; imp[j] = t }
          # --enroll 1: the template of a person with 2 photos is the first.
          m = 0
          for (i = 1; i <= n; i++) if (id[i] == id[i + 1] && id[i] != id[i - 1])
              for (j = 1; j <= n; j++) if (id[j] != id[i]) {
                  c = 0; for (d = 4; d <= cols; d++) c += e[i, d] * e[j, d]; en[++m] = c }
          for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (en[j] > en[i]) { t = en[i]; en[i] = en[j]; en[j] = t }
          printf "%d %d %.4f %.4f %.4f %.4f\n", n, cols, lo, hi, imp[5], en[4] }' "$1"
}
read -r rows cols lo hi t5 te <<<"$(dump_check "$tmp/dump.tsv")"
if [ "$rows" = 7 ] && [ "$cols" = 195 ] && [ "$lo" = 1.0000 ] && [ "$hi" = 1.0000 ] &&
   head -1 "$tmp/dump.tsv" | grep -qP '^path\tidentity\tusable\te0\t' &&
   sed -n 2p "$tmp/dump.tsv" | grep -qP "^$lfw/Al_Pacino/Al_Pacino_0001.jpg\tAl_Pacino\t1\t" &&
   sed -n 8p "$tmp/dump.tsv" | grep -qP "^$lfw/Tom_Cruise/Tom_Cruise_0001.jpg\tTom_Cruise\t1\t" &&
   grep -qE "^  FMR=0.25: threshold $t5, 4 of 18" "$tmp/eval4.out" &&
   grep -qE "^  FMR=0.25: threshold $te, 3 of 15" "$tmp/eval4.out"; then
    ok "eval --dump embeddings give the printed threshold"
else
    bad "eval --dump ($rows rows, $cols columns, norms $lo..$hi, 5th impostor $t5, 4th enroll-1 impostor $te; $(grep 'FMR=0.25' "$tmp/eval4.out" | head -2 | tr '\n' ' '))"
fi
# --flip averages with the mirrored crop: other unit-length embeddings.
expect_ok "eval --flip" "^all pairs:  7 images with a face" \
    "$cli" eval --models "$models" --liveness off --pairs "$p4" --root "$lfw" --flip --dump "$tmp/dumpf.tsv"
read -r rows cols lo hi t5 te <<<"$(dump_check "$tmp/dumpf.tsv")"
if [ "$rows" = 7 ] && [ "$lo" = 1.0000 ] && [ "$hi" = 1.0000 ] &&
   ! cmp -s "$tmp/dump.tsv" "$tmp/dumpf.tsv" &&
   [ "$(cut -f1-3 "$tmp/dump.tsv")" = "$(cut -f1-3 "$tmp/dumpf.tsv")" ]; then
    ok "eval --flip changes the embeddings"
else
    bad "eval --flip ($rows rows, norms $lo..$hi)"
fi
expect_error "eval bad --enroll"  "--enroll wants"         "$cli" eval --enroll 0 --pairs "$p4" --root "$lfw"
expect_error "eval bad --enroll list" "--enroll wants"     "$cli" eval --enroll 1,x --pairs "$p4" --root "$lfw"
expect_error "eval bad --fmr"     "--fmr wants"            "$cli" eval --fmr 1 --pairs "$p4" --root "$lfw"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
