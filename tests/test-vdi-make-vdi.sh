#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Check the independent model, make-vdi.py, against qemu-img and
# 7-Zip on every layout they can read (cbHeader 384 or 400, 1 MiB
# blocks, 512-byte or 1 MiB alignment, dynamic or fixed, no extra
# bytes): their raw output must equal make-vdi.py's --expect file
# (qemu rounds odd sizes up and 7-Zip uses cbDisk exactly, so past the
# expected bytes they must show only zeros), and qemu-img map must
# agree with --print-extents.  The plugin is not used here.

VDI_PLUGIN_NOT_NEEDED=1
source ./functions.sh
set -e
set -x

requires qemu-img --version
requires 7zz i
requires jq --version
requires_python_nbd

tmp="$(mktemp -d --suffix=.tmp test-vdi-make-vdi.XXXXXX)"
cleanup_fn rm -rf "$tmp"

# Self-checks of the tool itself.
$MAKE_VDI --help | grep -- '--corrupt'
$MAKE_VDI --list-corrupt | grep '^duplicate-entry'
# Same arguments, same bytes; another seed, other bytes.
$MAKE_VDI --seed 7 --size 3M "$tmp/a.vdi"
$MAKE_VDI --seed 7 --size 3M "$tmp/b.vdi"
$MAKE_VDI --seed 8 --size 3M "$tmp/c.vdi"
cmp "$tmp/a.vdi" "$tmp/b.vdi"
must_fail cmp -s "$tmp/a.vdi" "$tmp/c.vdi"
# The UUID text form is stored in GUID byte order.
$MAKE_VDI --uuid-create '{aabbccdd-eeff-1122-3344-556677889900}' \
          --uuid-modify 01020304-0506-0708-090a-0b0c0d0e0f10 "$tmp/u.vdi"
test "$(od -An -tx1 -j $((0x188)) -N 32 "$tmp/u.vdi" | tr -d ' \n')" = \
     "ddccbbaaffee22113344556677889900""0403020106050807090a0b0c0d0e0f10"

# Layouts qemu-img and 7-Zip read.
n=0
while read -r args; do
    [ -n "$args" ] || continue
    n=$((n + 1))
    t="$tmp/l$n"
    $MAKE_VDI $args --expect "$t.expect" --print-extents "$t.extents" "$t.vdi"
    size="$(stat -c %s "$t.expect")"

    qemu-img convert -f vdi -O raw "$t.vdi" "$t.qemu"
    cmp_prefix_then_zero "$t.expect" "$t.qemu"

    7zz x -tvdi -so "$t.vdi" | stream_prefix_then_zero "$t.expect"
    rm "$t.qemu"

    qemu-img map --output=json -f vdi "$t.vdi" |
        normalise_qemu_map | clip_map "$size" > "$t.qmap"
    diff -u "$t.extents" "$t.qmap"
done <<'LAYOUTS'
--header 1.1 --align 512 --size 9728 --blocks D --seed 1
--header 1.1+ --align 512 --size 9728 --blocks Z --seed 2
--header 1.1 --align 1M --size 1M+512 --blocks DD --shuffle --seed 3
--header 1.1+ --align 1M --size 1474560 --blocks dD --seed 4
--header 1.1+ --align 512 --size 1000001 --blocks D --seed 5
--header 1.1+ --align 1M --size 24M --shuffle --seed 6
--header 1.1 --align 512 --size 24M+1536 --shuffle --seed 7 --lchs 10,16,63
--header 1.1+ --align 1M --size 5M+512 --type fixed --seed 8
--header 1.1 --align 512 --size 3M --type fixed --blocks DdD --seed 9
--header 1.1 --align 512 --size 3G --blocks 0:D,1500:Z,1501:d,3071:D --seed 10
LAYOUTS
test $n -eq 10

# --junk-tail really puts bytes past the virtual size (qemu sees them).
$MAKE_VDI --header 1.1 --align 512 --size 1000001 --blocks D --junk-tail \
          --expect "$tmp/j.expect" "$tmp/j.vdi"
qemu-img convert -f vdi -O raw "$tmp/j.vdi" "$tmp/j.qemu"
must_fail cmp_prefix_then_zero "$tmp/j.expect" "$tmp/j.qemu"

# The model of a differencing layer: FREE shows the parent, ZERO zeros,
# data the child's data.  Check it on a pair of 1 MiB-block images
# against qemu-img on the child with its FREE entries turned into the
# parent's data (by hand, through the map).
$MAKE_VDI --header 1.1 --align 512 --size 4M --blocks DDDD --seed 20 \
          --expect "$tmp/p.expect" --print-extents "$tmp/p.extents" "$tmp/p.vdi"
$MAKE_VDI --header 1.1 --align 512 --parent "$tmp/p.vdi" --blocks FZDF \
          --seed 21 --parent-expect "$tmp/p.expect" \
          --parent-extents "$tmp/p.extents" \
          --expect "$tmp/c.expect" --print-extents "$tmp/c.extents" "$tmp/c.vdi"
# The header links to the parent.
test "$(od -An -tx1 -j $((0x188)) -N 32 "$tmp/p.vdi")" = \
     "$(od -An -tx1 -j $((0x1a8)) -N 32 "$tmp/c.vdi")"
test "$(od -An -tu4 -j $((0x4c)) -N 4 "$tmp/c.vdi" | tr -d ' ')" = 4
M=1048576
cmp -n $M "$tmp/c.expect" "$tmp/p.expect"                  # FREE
cmp -n $M -i $M:0 "$tmp/c.expect" /dev/zero                # ZERO
must_fail cmp -s -n $M -i $((2*M)):$((2*M)) "$tmp/c.expect" "$tmp/p.expect" # data
cmp -n $M -i $((3*M)):$((3*M)) "$tmp/c.expect" "$tmp/p.expect" # FREE
printf '%s\n' "0 1048576 data" "1048576 1048576 zero" "2097152 2097152 data" |
    diff -u - "$tmp/c.extents"
