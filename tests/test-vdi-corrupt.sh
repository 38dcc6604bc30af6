#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Every kind of broken image make-vdi.py writes (make-vdi.py
# --list-corrupt): nbdkit must refuse it before serving, exit non-zero
# without a crash, print exactly one error line naming the file, and
# leave the file unchanged.  Each kind is made from two seeds.

source ./functions.sh
set -e
set -x

requires_python_nbd

tmp="$(mktemp -d --suffix=.tmp test-vdi-corrupt.XXXXXX)"
cleanup_fn rm -rf "$tmp"

kinds="$($MAKE_VDI --list-corrupt | awk '{print $1}')"
test "$(echo "$kinds" | wc -l)" -ge 30

# The same layout without --corrupt is fine (so each failure below is
# due to the corruption).
# The check itself fails on a good image (negative control).
$MAKE_VDI --seed good "$tmp/good.vdi"
nbdkit -U - "$VDI_PLUGIN" file="$tmp/good.vdi" --run 'nbdinfo --size "$uri"'
if expect_refused "$tmp/good.vdi" ''; then
    echo "$0: expect_refused accepted a good image" >&2; exit 1
fi

# Try every kind, then list all that failed.
failed=()
for kind in $kinds; do
    for seed in 1 2; do
        f="$tmp/corrupt-$kind-$seed.vdi"
        $MAKE_VDI --corrupt "$kind" --seed "$seed" "$f"
        if ! expect_refused "$f" ''; then
            failed+=("$kind (seed $seed)")
        fi
        rm -f "$f"
    done
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "$0: FAILED for ${#failed[@]} corrupt images:" >&2
    printf '    %s\n' "${failed[@]}" >&2
    exit 1
fi

# The same checks with the file given without "file=" and with -r.
$MAKE_VDI --corrupt duplicate-entry "$tmp/dup.vdi"
sum="$(sha256_of "$tmp/dup.vdi")"
status=0
nbdkit -r -U - "$VDI_PLUGIN" "$tmp/dup.vdi" --run 'exit 0' 2> "$tmp/dup.err" ||
    status=$?
cat "$tmp/dup.err"
test $status -ne 0
test $status -lt 126
test "$(grep -c error "$tmp/dup.err")" -eq 1
grep -F dup.vdi "$tmp/dup.err"
test "$(sha256_of "$tmp/dup.vdi")" = "$sum"
