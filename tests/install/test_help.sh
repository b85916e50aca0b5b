#!/usr/bin/env bash
# test_help.sh - every command (and subcommand) that `facepay --help` lists
# answers `facepay CMD [SUB] --help` with exit 0 and a non-empty text on
# stdout. A command line of the listing is an indented lowercase
# word ("  embed [OPTS] IMAGE"); lowercase words right after it are
# subcommands ("  audit verify", "  terminal add ID").
#
#   test_help.sh path/to/facepay
set -uo pipefail
cli=$1
fail=0 n=0

top=$("$cli" --help) || { echo "FAIL: facepay --help exits $?" >&2; exit 1; }
[[ -n "$top" ]] || { echo "FAIL: facepay --help prints nothing" >&2; exit 1; }

# "cmd" or "cmd sub" per listed line, without duplicates.
mapfile -t cmds < <(printf '%s\n' "$top" | grep -vE '^  [a-z][a-z -]*:' |
    sed -nE 's/^  ([a-z][a-z0-9-]*)(( [a-z][a-z0-9-]*)*)( .*)?$/\1\2/p' | awk '!seen[$0]++')
if ((${#cmds[@]} < 9)); then
    echo "FAIL: only ${#cmds[@]} commands parsed from facepay --help" >&2
    fail=1
fi

check() { # check WORDS...: facepay WORDS --help
    local out rc
    out=$("$cli" "$@" --help 2>/dev/null)
    rc=$?
    n=$((n + 1))
    if ((rc != 0)); then
        echo "FAIL: facepay $* --help exits $rc" >&2
        fail=1
    elif [[ -z "$out" ]]; then
        echo "FAIL: facepay $* --help prints nothing on stdout" >&2
        fail=1
    else
        echo "ok: facepay $* --help ($(printf '%s\n' "$out" | wc -l) lines)"
    fi
}

declare -A parents=()
for c in "${cmds[@]}"; do
    read -ra words <<<"$c"
    # A parent of subcommands ("audit" of "audit verify") has a --help too.
    if ((${#words[@]} > 1)) && [[ -z "${parents[${words[0]}]:-}" ]]; then
        parents[${words[0]}]=1
        check "${words[0]}"
    fi
    check "${words[@]}"
done
# -h is the short form everywhere.
"$cli" version -h >/dev/null 2>&1 || { echo "FAIL: facepay version -h" >&2; fail=1; }

echo "test_help: $n help texts checked"
exit $fail
