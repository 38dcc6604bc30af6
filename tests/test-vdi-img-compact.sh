#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdi-img compact: every allocated block whose data is all zeros stops
# taking space, and nothing else changes.
#
# Images made by make-vdi.py (zero and data slots spread through the
# file, ZERO and FREE entries, extra bytes before each slot, a
# differencing image over a parent with data) and by qemu-img (zeros
# and data written by qemu-io, a partially zero block): after compact
# each reads the same bytes through the plugin (and through qemu-img
# for bases), vdi-img check and qemu-img check are clean, the file
# holds exactly the header, the map and one slot per block of data,
# in the order of nothing but their slots, and a second compact
# changes nothing.  A fixed image, and an image that a writable nbdkit
# serves, are refused and left as they were.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/write-functions.sh"

requires qemu-img --version
requires qemu-io --version
requires nbdcopy --version
requires test -x "$VDI_IMG"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdi-img-compact.XXXXXX)")"
cleanup_fn rm -rf "$tmp"

# compact_ok IMAGE [--base]: compact IMAGE and check the result.
compact_ok ()
{
    local img="$1" base="$2" n
    served_raw "$img" "$tmp/before"
    n="$($HELPERS data-blocks "$img")"
    $VDI_IMG compact -p "$img"
    served_raw "$img" "$tmp/after"
    cmp "$tmp/before" "$tmp/after"
    $HELPERS check-compacted "$img" "$n"
    $VDI_CHECK "$img"
    if [ "$base" = "--base" ]; then
        qemu-img check -f vdi "$img"
        rm -f "$tmp/qemu.raw"
        qemu-img convert -f vdi -O raw "$img" "$tmp/qemu.raw"
        cmp "$tmp/before" "$tmp/qemu.raw"
    fi
    # Compacted already: nothing moves, nothing changes.
    cp "$img" "$tmp/again"
    $VDI_IMG compact "$img"
    cmp "$img" "$tmp/again"
}

# --- make-vdi.py images -------------------------------------------------

$MAKE_VDI --size 16M --block-size 1M --blocks DdDZFdDDdFDdDDZd --seed a \
          "$tmp/a.vdi"
compact_ok "$tmp/a.vdi" --base
# 7 blocks of data were left of 11 slots.
test "$($HELPERS vdi-field "$tmp/a.vdi" cBlocksAllocated)" = 7

# Extra bytes before each slot, small blocks, a map right after the
# header, random states.
$MAKE_VDI --size 6M --block-size 128K --block-extra 512 --align none \
          --seed b "$tmp/b.vdi"
compact_ok "$tmp/b.vdi"

# Only zero slots: the file keeps the header and the map.
$MAKE_VDI --size 4M --block-size 1M --blocks dZdd --seed c "$tmp/c.vdi"
compact_ok "$tmp/c.vdi" --base
test "$($HELPERS vdi-map "$tmp/c.vdi" | cut -d' ' -f2 | sort -u)" = ZERO

# A differencing image over a parent with data everywhere: its zero
# slots become ZERO, never FREE, so the parent does not show through.
$MAKE_VDI --size 8M --block-size 1M --blocks DDDDDDDD --seed p \
          "$tmp/parent.vdi"
$MAKE_VDI --type diff --parent "$tmp/parent.vdi" --size 8M --block-size 1M \
          --blocks dDFdZdDd --seed d "$tmp/diff.vdi"
compact_ok "$tmp/diff.vdi"
test "$($HELPERS vdi-map "$tmp/diff.vdi" | sed 's/ [0-9]*$/ slot/' |
       tr '\n' ' ')" = \
     "0 ZERO 1 slot 2 FREE 3 ZERO 4 ZERO 5 ZERO 6 slot 7 ZERO "

# --- qemu-img images ----------------------------------------------------

qemu-img create -f vdi "$tmp/q.vdi" 16M
qemu-io -f vdi \
        -c 'write -P 0 0 1M' \
        -c 'write -P 0xab 1M 1M' \
        -c 'write -P 0 2M 1M' \
        -c 'write -P 0xcd 3M 4096' \
        -c 'write -P 0 9M 64K' \
        -c 'write -P 0x11 12M 1M' \
        -c 'write -P 0 15M 1M' \
        "$tmp/q.vdi"
# Six slots, three of them zeros; 3M+4096.. is zeros in a block that
# keeps its data.
test "$($HELPERS vdi-field "$tmp/q.vdi" cBlocksAllocated)" = 7
compact_ok "$tmp/q.vdi" --base
test "$($HELPERS vdi-field "$tmp/q.vdi" cBlocksAllocated)" = 3

# --- Refused, and nothing changes -------------------------------------

# expect_compact_refused IMAGE MESSAGE
expect_compact_refused ()
{
    cp "$1" "$tmp/copy"
    must_fail $VDI_IMG compact "$1" 2> "$tmp/err"
    cat "$tmp/err"
    grep -Fx "$2" "$tmp/err"
    cmp "$1" "$tmp/copy"
}

$MAKE_VDI --type fixed --size 4M --block-size 1M --seed f "$tmp/fixed.vdi"
expect_compact_refused "$tmp/fixed.vdi" \
    "vdi-img: $tmp/fixed.vdi: a fixed image keeps a slot for every block: it cannot be compacted"

$MAKE_VDI --size 16M --block-size 1M --blocks DdDZFdDDdFDdDDZd --seed a \
          "$tmp/served.vdi"
start_server "$tmp/srv.pid" "$tmp/srv.sock" "$tmp/srv.log" \
             "$VDI_PLUGIN" "$tmp/served.vdi"
expect_compact_refused "$tmp/served.vdi" \
    "vdi-img: $tmp/served.vdi: image is in use: another process has opened it"
stop_server "$tmp/srv.pid"
