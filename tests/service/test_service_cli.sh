#!/usr/bin/env bash
# test_service_cli.sh FACEPAY MODELS_DIR DATA_DIR - the checkout commands of
# the facepay CLI: usage errors exit 2 with one clear line, --help works,
# keygen / enroll / verify / delete / unlock / audit / terminal / rotate-key
# round trip with the documented exit codes (0 APPROVE, 3 DECLINE, 1 error).
set -u
facepay=$1
export FACEPAY_MODELS_DIR=$2
data=$3
tmp=$(mktemp -d)
umask 022
trap 'rm -rf "$tmp"' EXIT
export FACEPAY_DB=$tmp/t.db
unset FACEPAY_KEY_FILE FACEPAY_MASTER_KEY
fails=0

# expect CODE DESCRIPTION CMD... : exit code CODE; for 1/2, exactly one
# stderr line starting "facepay: ".
expect() {
  local want=$1 what=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [[ $got != "$want" ]]; then
    echo "FAIL: $what: exit $got, want $want"; cat "$tmp/out" "$tmp/err"; fails=$((fails + 1))
    return
  fi
  if [[ $want == 1 || $want == 2 ]]; then
    if [[ $(wc -l <"$tmp/err") != 1 ]] || ! grep -q '^facepay: ' "$tmp/err"; then
      echo "FAIL: $what: want one 'facepay: ' line on stderr, got:"; cat "$tmp/err"
      fails=$((fails + 1)); return
    fi
  fi
  echo "ok: $what"
}
# contains PATTERN DESCRIPTION: the last command's stdout matches.
contains() {
  if grep -Eq "$1" "$tmp/out"; then echo "ok: $2"; else
    echo "FAIL: $2: stdout lacks /$1/:"; cat "$tmp/out"; fails=$((fails + 1)); fi
}

# ---- usage errors: exit 2, one line
expect 2 "enroll without account" "$facepay" enroll "$data/faces/obama.jpg"
expect 2 "verify without image" "$facepay" verify --phone +8613800138000
expect 2 "verify two images" "$facepay" verify --phone +8613800138000 a.jpg b.jpg
expect 2 "phone and id" "$facepay" verify --phone 1 --id 2 a.jpg
expect 2 "unknown option" "$facepay" verify --bogus 1 --phone 1 a.jpg
expect 2 "option without value" "$facepay" verify --phone
expect 2 "bad profile" "$facepay" verify --profile tv --phone 1 a.jpg
expect 2 "bad liveness" "$facepay" verify --liveness maybe --phone 1 a.jpg
expect 2 "bad threshold" "$facepay" verify --threshold 2 --phone 1 a.jpg
# A cosine threshold at or below 0 approves strangers (-1: anyone).
expect 2 "negative threshold" "$facepay" verify --threshold -1 --phone 1 a.jpg
expect 2 "zero threshold" "$facepay" verify --threshold 0 --phone 1 a.jpg
expect 2 "calibrate without fmr" "$facepay" calibrate --pairs p --root r
expect 2 "calibrate bad fmr" "$facepay" calibrate --pairs p --root r --fmr abc
expect 2 "audit what" "$facepay" audit check
expect 2 "terminal what" "$facepay" terminal remove x
expect 2 "keygen no path" "$facepay" keygen
expect 2 "delete no account" "$facepay" delete
expect 2 "pairs on verify" "$facepay" verify --pairs x --phone 1 a.jpg

# ---- --help: exit 0, text on stdout
for c in keygen enroll verify delete unlock calibrate audit terminal rotate-key; do
  expect 0 "$c --help" "$facepay" "$c" --help
  contains "^usage: facepay $c" "$c --help text"
done
expect 0 "facepay --help lists checkout" "$facepay" --help
contains "verify --phone N" "checkout commands in --help"

# ---- errors: exit 1, one line
expect 1 "no key" "$facepay" verify --phone +8613800138000 "$data/faces/obama.jpg"
expect 1 "missing image" "$facepay" verify --phone +8613800138000 "$tmp/none.jpg"
expect 1 "missing key file" "$facepay" verify --key-file "$tmp/no-such.key" \
  --phone +8613800138000 "$data/faces/obama.jpg"
if grep -q "make a master key with: facepay keygen" "$tmp/err"; then echo "ok: missing key says keygen"
else echo "FAIL: missing key file does not say what to do:"; cat "$tmp/err"; fails=$((fails + 1)); fi
expect 0 "keygen" "$facepay" keygen "$tmp/k.key"
expect 1 "keygen refuses overwrite" "$facepay" keygen "$tmp/k.key"
cp "$tmp/k.key" "$tmp/open.key"; chmod 644 "$tmp/open.key"
expect 1 "world-readable key refused" "$facepay" verify --key-file "$tmp/open.key" \
  --phone +8613800138000 "$data/faces/obama.jpg"
export FACEPAY_KEY_FILE=$tmp/k.key

# ---- calibrate (own database, so the round trip keeps the default
# threshold): 7 images of 4 people in tests/data/faces/lfw_layout, 2 listed
# same-person pairs of the 3 the images hold, and (cal3.txt) 40 images that
# do not exist, left out as unusable but still counted by the progress on
# stderr (not a terminal here: a line per 5% at most, so at most 20 lines
# for 47 images, the last one 47 / 47).
printf '1\nAl_Pacino\t1\t2\nAlan_Greenspan\t1\tAlbert_Costa\t2\n' >"$tmp/cal1.txt"
printf '1\nAlbert_Costa\t2\t6\nAlan_Greenspan\t5\tTom_Cruise\t1\n' >"$tmp/cal2.txt"
{ echo 20
  for k in $(seq 0 19); do printf 'Al_Pacino\t%d\t%d\n' $((2 * k + 10)) $((2 * k + 11)); done
  for k in $(seq 0 19); do printf 'Alan_Greenspan\t1\tAlbert_Costa\t2\n'; done
} >"$tmp/cal3.txt"
expect 0 "calibrate" "$facepay" calibrate --db "$tmp/cal.db" --liveness off --fmr 0.25 \
  --pairs "$tmp/cal1.txt" --pairs "$tmp/cal2.txt" --pairs "$tmp/cal3.txt" \
  --root "$data/faces/lfw_layout"
contains "^impostors:  18 pairs" "calibrate counts every cross-identity pair"
contains "^genuines:   2 pairs \(the listed same-person pairs\)" "calibrate counts the listed pairs"
contains "^            3 pairs \(every pair of usable images of the same person\)" "calibrate counts every same-person pair"
contains "^            [0-9.]+ \([0-3] of 3 same-person pairs of the images below\)" "calibrate FNMR over every same-person pair"
contains "^images:     47 listed, 40 unusable" "calibrate counts the missing images"
n=$(wc -l <"$tmp/err")
if ((n >= 2 && n <= 20)) && [[ $(grep -c '^calibrate: [0-9]* / 47 images embedded$' "$tmp/err") == "$n" ]] &&
   tail -1 "$tmp/err" | grep -q '^calibrate: 47 / 47 images embedded$'; then
  echo "ok: calibrate progress on stderr"
else
  echo "FAIL: calibrate progress on stderr:"; cat "$tmp/err"; fails=$((fails + 1))
fi

# ---- round trip (liveness off: the LFW photos are too small for it)
L=(--liveness off)
expect 0 "enroll" "$facepay" enroll "${L[@]}" --phone +8613800138000 "$data/faces/Al_Pacino_0001.jpg"
contains "^ENROLLED: " "enroll says ENROLLED"
expect 3 "re-enroll with the same photo" "$facepay" enroll "${L[@]}" --phone +8613800138001 \
  "$data/faces/Al_Pacino_0001.jpg"
contains "DUPLICATE_CAPTURE" "duplicate capture named"
contains "^NOT ENROLLED DUPLICATE_CAPTURE: " "a refused enrollment says NOT ENROLLED"
expect 0 "verify same person" "$facepay" verify "${L[@]}" --country 86 --phone "138 0013 8000" \
  "$data/faces/Al_Pacino_0002.jpg"
contains "^APPROVE NONE" "verify approves"
contains "^latency ms: decode .* detect .* select .* quality .* align .* liveness .* embed .* match .* total" "stage latencies"
contains "^operator: score [0-9.-]+ threshold [0-9.]+ \(FMR" "operator line"
if grep -q 13800138000 "$tmp/out"; then echo "FAIL: number printed"; fails=$((fails + 1)); fi
expect 3 "verify other person" "$facepay" verify "${L[@]}" --phone +8613800138000 \
  "$data/faces/Alan_Greenspan_0005.jpg"
contains "^DECLINE NO_MATCH" "other person declines"
expect 3 "verify unknown account" "$facepay" verify "${L[@]}" --phone +8613800138009 \
  "$data/faces/Al_Pacino_0002.jpg"
contains "^DECLINE NO_MATCH" "unknown account declines like a wrong face"
expect 3 "verify invalid number" "$facepay" verify "${L[@]}" --phone "12ab" \
  "$data/faces/Al_Pacino_0002.jpg"
contains "^DECLINE INVALID_ACCOUNT: invalid account number: phone number: character 3 is not a digit" \
  "invalid number names the rule it broke"
expect 3 "verify no face" "$facepay" verify "${L[@]}" --phone +8613800138000 "$data/images/quad.png"
contains "^DECLINE NO_FACE" "no face"
expect 3 "verify bomb" "$facepay" verify "${L[@]}" --phone +8613800138000 \
  "$data/images/huge_4000x4000.png"
contains "^DECLINE BAD_IMAGE" "decompression bomb"
# A FIFO with no writer as the image: refused at once, not read for ever
# (timeout's 124 would fail the expectation).
mkfifo "$tmp/capture.jpg"
expect 1 "FIFO image refused" timeout 20 "$facepay" verify "${L[@]}" --phone +8613800138000 \
  "$tmp/capture.jpg"
grep -q "not a regular file" "$tmp/err" && echo "ok: FIFO named" ||
  { echo "FAIL: FIFO message"; cat "$tmp/err"; fails=$((fails + 1)); }
# The database and its side files are the owner's alone, whatever the umask.
for f in "$FACEPAY_DB" "$FACEPAY_DB-wal" "$FACEPAY_DB-shm"; do
  [[ -e $f ]] || continue
  m=$(stat -c %a "$f")
  if [[ $m == 600 ]]; then echo "ok: ${f##*/} mode 600"; else
    echo "FAIL: ${f##*/} mode $m, want 600"; fails=$((fails + 1)); fi
done
# Every model is pinned by sha256 (tools/models.sha256): one modified byte in
# the detector or the liveness model and the service does not start.
for m in pnet.tflite FaceAntiSpoofing.tflite; do
  mkdir -p "$tmp/models-$m"
  for f in MobileFaceNet.tflite pnet.tflite rnet.tflite onet.tflite FaceAntiSpoofing.tflite; do
    ln -s "$FACEPAY_MODELS_DIR/$f" "$tmp/models-$m/$f"
  done
  rm "$tmp/models-$m/$m"
  cp "$FACEPAY_MODELS_DIR/$m" "$tmp/models-$m/$m"
  size=$(stat -c %s "$tmp/models-$m/$m")
  printf '\x5a' | dd of="$tmp/models-$m/$m" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
  expect 1 "modified $m refused" "$facepay" verify --liveness on --models "$tmp/models-$m" \
    --phone +8613800138000 "$data/faces/Al_Pacino_0002.jpg"
  grep -q "pinned" "$tmp/err" && echo "ok: $m pin named" ||
    { echo "FAIL: $m pin message"; cat "$tmp/err"; fails=$((fails + 1)); }
done
expect 0 "terminal add" "$facepay" terminal add kiosk-1
contains "^terminal kiosk-1 key: [A-Za-z0-9_-]{40,}" "terminal key printed"
expect 2 "terminal bad id" "$facepay" terminal add "bad id"
expect 0 "unlock" "$facepay" unlock --phone +8613800138000
expect 0 "audit verify" "$facepay" audit verify
contains "^audit chain OK: [0-9]+ records" "audit chain OK"
expect 0 "keygen 2" "$facepay" keygen "$tmp/k2.key"
expect 0 "rotate-key" "$facepay" rotate-key "$tmp/k2.key"
expect 0 "verify after rotation" "$facepay" verify "${L[@]}" --key-file "$tmp/k2.key" \
  --phone +8613800138000 "$data/faces/Al_Pacino_0002.jpg"
contains "^APPROVE" "approves under the new key"
expect 0 "delete" "$facepay" delete --key-file "$tmp/k2.key" --phone +8613800138000
expect 3 "verify after delete" "$facepay" verify "${L[@]}" --key-file "$tmp/k2.key" \
  --phone +8613800138000 "$data/faces/Al_Pacino_0002.jpg"
# Tampered audit log: detected, exit 1.
if command -v sqlite3 >/dev/null 2>&1; then
  sqlite3 "$FACEPAY_DB" "DROP TRIGGER IF EXISTS audit_no_update; UPDATE audit SET reason='NONE', decision='X' || decision WHERE seq=3;"
  expect 1 "tampered audit detected" "$facepay" audit verify --key-file "$tmp/k2.key"
fi

if ((fails)); then echo "$fails failed"; exit 1; fi
echo "all passed"
