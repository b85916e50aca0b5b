#!/usr/bin/env bash
# setup.sh - the first command on a fresh Debian 12 machine: installs the
# packages in tools/packages.txt that are missing, fetches the models,
# builds a Release build in build/ and runs the main job once
# (`facepay embed` on a face from tests/data/faces).
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

# ---- the main job: one embedding of a real face
face=tests/data/faces/Tom_Cruise_0001.jpg
echo "setup: build/tools/facepay embed $face"
build/tools/facepay embed "$face"
echo "setup: done. Next: tools/test.sh"
