#!/usr/bin/env bash
# test_exports.sh - the shared library exports the public API and nothing
# else. The API is what the public headers declare with FPAY_API
# (core/include/facepay/*.h); the library is built with -fvisibility=hidden,
# so anything else that shows up in `nm -D --defined-only` is a leak (an
# internal symbol becoming ABI by accident), and a declared function that
# does not show up is a broken promise.
#
#   test_exports.sh LIBFACEPAY.so HEADER...
#
# FPAY_EXPORTS_PENDING: space-separated header basenames whose functions may
# still be missing (their implementation is not in this build yet); every
# symbol exported must still be declared somewhere.
set -euo pipefail
lib=$1
shift
NM=${NM:-nm}
fail=0

[[ -e "$lib" ]] || { echo "test_exports: $lib not found" >&2; exit 1; }

# SONAME libfacepay.so.<FPAY_VERSION_MAJOR>.
major=$(sed -n 's/^#define FPAY_VERSION_MAJOR \([0-9]*\).*/\1/p' "$@" | head -n1)
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ "$soname" != "libfacepay.so.$major" ]]; then
    echo "FAIL: SONAME is '$soname', want libfacepay.so.$major" >&2
    fail=1
fi

declared=$(mktemp) exported=$(mktemp) pending=$(mktemp)
trap 'rm -f "$declared" "$exported" "$pending"' EXIT

# Every "FPAY_API <type> fpay_name(" of the headers (the #define of FPAY_API
# itself has no fpay_ name before its parenthesis).
for h in "$@"; do
    grep -ho 'FPAY_API[^(]*(' "$h" |
        sed -nE 's/.*[^A-Za-z0-9_](fpay_[A-Za-z0-9_]+)[[:space:]]*\($/\1/p' |
        while read -r sym; do
            printf '%s\n' "$sym" >>"$declared"
            case " ${FPAY_EXPORTS_PENDING:-} " in
            *" $(basename "$h") "*) printf '%s\n' "$sym" >>"$pending" ;;
            esac
        done
done
sort -u -o "$declared" "$declared"
sort -u -o "$pending" "$pending"
"$NM" -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | sort -u >"$exported"

n_decl=$(wc -l <"$declared")
n_exp=$(wc -l <"$exported")
if ((n_decl < 50)); then
    echo "FAIL: only $n_decl FPAY_API declarations parsed from the headers" >&2
    fail=1
fi

# Exported but not declared (or not even fpay_*).
while read -r sym; do
    case "$sym" in
    fpay_*) echo "FAIL: exported but not declared FPAY_API in a public header: $sym" >&2 ;;
    *) echo "FAIL: exported symbol outside the fpay_ namespace: $sym" >&2 ;;
    esac
    fail=1
done < <(comm -13 "$declared" "$exported")

# Declared but not exported.
missing=0
while read -r sym; do
    if grep -qx "$sym" "$pending"; then
        echo "note: $sym declared, not built yet (FPAY_EXPORTS_PENDING)"
        missing=$((missing + 1))
        continue
    fi
    echo "FAIL: declared FPAY_API but not exported: $sym" >&2
    fail=1
done < <(comm -23 "$declared" "$exported")

echo "test_exports: $soname: $n_exp symbols exported, $n_decl declared, $missing pending"
exit $fail
