#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdidiff-dir=: one differencing image per export name, DIR/NAME.vdi
# (DIR/default.vdi for the default export).  Three exports written at
# once (two connections each) get different data, checked against a
# model each (random-io.py); each file is a child of the base that
# "nbdkit vdi" alone serves as its model; a restart keeps them all;
# export names that would leave DIR are refused without creating
# anything.  The base never changes.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-vdidiff-dir.XXXXXX)"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp
sock="$tmp/sock"
pid="$tmp/pid"

$MAKE_VDI --size 9M+512 --seed dir-base --expect "$tmp/base.raw" "$tmp/base.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"
mkdir "$tmp/clones"

start_server "$pid" "$sock" "$tmp/log" -v \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff-dir="$tmp/clones"

# All three exports at once.
pids=
for name in alice bob ""; do
    cp "$tmp/base.raw" "$tmp/model-${name:-default}"
    $RANDOM_IO run "$(uri_of "$sock" "$name")" "$tmp/model-${name:-default}" \
        --seed "dir-${name:-default}" --ops 120 --writers 2 &
    pids="$pids $!"
done
for p in $pids; do wait $p; done

# Each export shows its own model, the others unchanged by it.
for name in alice bob ""; do
    $RANDOM_IO verify "$(uri_of "$sock" "$name")" "$tmp/model-${name:-default}"
done
must_fail cmp -s "$tmp/model-alice" "$tmp/model-bob"
must_fail cmp -s "$tmp/model-alice" "$tmp/model-default"

# Names that would leave the folder are refused.
for name in "a/b" ".hidden" "../escape"; do
    if nbdsh -u "$(uri_of "$sock" "$name")" -c 'h.get_size()'; then
        echo "$0: export '$name' was served" >&2
        exit 1
    fi
done
grep "export name 'a/b' cannot name a file" "$tmp/log"
grep "export name '.hidden' cannot name a file" "$tmp/log"
stop_server "$pid"
ls -la "$tmp" "$tmp/clones"
test "$(ls "$tmp/clones" | sort | tr '\n' ' ')" = "alice.vdi bob.vdi default.vdi "
test ! -e "$tmp/escape.vdi"

for name in alice bob default; do
    f="$tmp/clones/$name.vdi"
    $VDI_CHECK "$f"
    test "$(vdi_field "$f" type)" -eq 4
    test "$(vdi_field "$f" uuidLinkage)" = "$(vdi_field "$tmp/base.vdi" uuidCreate)"
    test "$(vdi_field "$f" uuidParentModify)" = "$(vdi_field "$tmp/base.vdi" uuidModify)"
    nbdkit -U - "$VDI_PLUGIN" "$f" parent-dir="$tmp" readonly=true \
           --run "\$RANDOM_IO verify \"\$uri\" \"$tmp/model-$name\""
done
# Three different images.
test "$(for n in alice bob default; do vdi_field "$tmp/clones/$n.vdi" uuidCreate; done | sort -u | wc -l)" -eq 3

# A restart keeps them.
start_server "$pid" "$sock" "$tmp/log" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff-dir="$tmp/clones"
for name in alice bob ""; do
    $RANDOM_IO verify "$(uri_of "$sock" "$name")" "$tmp/model-${name:-default}"
done
stop_server "$pid"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
