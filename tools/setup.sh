#!/usr/bin/env bash
# setup.sh - the first command on a fresh Debian 12 machine: installs the
# packages in tools/packages.txt that are missing, fetches the models,
# builds a Release build in build/ and runs the main job once: a
# pay-by-face checkout (enroll one photo, verify another of the same person
# and one of someone else) on faces from tests/data/faces.
#
# Safe to run again: installed packages, verified models and an up-to-date
# build are all left alone. .ci/run starts with it too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

# ---- packages: only the missing ones, one apt-get update before install
read -r -a wanted <<< "$(sed 's/#.*//' "$here/packages.txt" | tr -s '[:space:]' ' ')"
command -v npm >/dev/null 2>&1 || wanted+=(nodejs npm)
missing=()
for p in "${wanted[@]}"; do
  # One line per installed architecture (arm64 libraries for the NEON
  # cross build sit beside the amd64 ones): any installed copy counts.
  status=$(dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null || true)
  [[ $'\n'"$status"$'\n' == *$'\ninstall ok installed\n'* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
      echo "setup: not root and no sudo; install as root: ${missing[*]}" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#wanted[@]} packages present"
fi

# ---- models (no network when they are already there and verified)
"$here/fetch_models.sh"

# ---- Release build in build/
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build

# ---- the main job: a pay-by-face checkout. A master key (kept between
# runs), a fresh database, one enrollment, then a different photo of the
# same person (must APPROVE) and a photo of someone else (must DECLINE).
# Liveness is on: these photos are large enough for the anti-spoofing model.
fp=build/tools/facepay
key=build/facepay.key
db=build/checkout.db
[[ -f $key ]] || "$fp" keygen "$key"
rm -f "$db" "$db-wal" "$db-shm"
export FACEPAY_KEY_FILE=$key FACEPAY_DB=$db
phone=+8613800138000
faces=tests/data/faces
echo "setup: facepay enroll --phone $phone $faces/obama.jpg"
"$fp" enroll --phone "$phone" "$faces/obama.jpg"
checkout() { # want image
  local rc=0
  echo "setup: facepay verify --phone $phone $2"
  "$fp" verify --phone "$phone" "$2" | tee build/checkout.out || rc=$?
  if ! head -n 1 build/checkout.out | grep -q "^$1 "; then
    echo "setup: checkout of $2 should $1 (exit $rc); the build is broken" >&2
    exit 1
  fi
}
checkout APPROVE "$faces/obama1.jpg"
checkout DECLINE "$faces/Tom_Cruise_avp_2014_4.jpg"
rm -f build/checkout.out
echo "setup: done. Next: tools/test.sh"
