#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdi-img resize: a grown image reads its old bytes, then zeros, takes
# writes past its old end, and checks clean.
#
# Images made by make-vdi.py and by qemu-img, grown with the new map
# fitting before the data and with the map running into the data (the
# first slots move to the end of the file): read back through the
# plugin (and through qemu-img for bases) before and after a write
# past the old end, vdi-img check and qemu-img check clean.  A
# differencing image over a larger parent reads zeros past its old
# end.  Shrinks over data, a fixed image and an image that a writable
# nbdkit serves are refused and leave the file as it was.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/write-functions.sh"

requires qemu-img --version
requires qemu-io --version
requires nbdcopy --version
requires nbdsh --version
requires test -x "$VDI_IMG"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdi-img-resize.XXXXXX)")"
cleanup_fn rm -rf "$tmp"

# write_disk IMAGE EXPECTED OFFSET: write 64 KiB of 'Z' at OFFSET (a
# multiple of 64 KiB) through the plugin, and into the file EXPECTED.
write_disk ()
{
    nbdkit -U - "$VDI_PLUGIN" "$1" \
           --run "nbdsh -u \"\$uri\" -c 'h.pwrite (b\"Z\" * 65536, $3)'"
    head -c 65536 /dev/zero | tr '\0' Z |
        dd of="$2" bs=64K seek=$(( $3 / 65536 )) conv=notrunc status=none
}

# resize_ok IMAGE SIZE [--base]: grow IMAGE to SIZE and check it.
resize_ok ()
{
    local img="$1" size="$2" base="$3" old
    old="$(vdi_field "$img" cbDisk)"
    served_raw "$img" "$tmp/expected"
    truncate -s "$size" "$tmp/expected"
    $VDI_IMG resize "$img" "$size"
    test "$(vdi_field "$img" cbDisk)" = "$size"
    served_raw "$img" "$tmp/after"
    cmp "$tmp/expected" "$tmp/after"
    # Writes past the old end, at it and at the new end.
    write_disk "$img" "$tmp/expected" "$old"
    write_disk "$img" "$tmp/expected" "$(( size - 65536 ))"
    served_raw "$img" "$tmp/after"
    cmp "$tmp/expected" "$tmp/after"
    $VDI_CHECK "$img"
    if [ "$base" = "--base" ]; then
        qemu-img check -f vdi "$img"
        rm -f "$tmp/qemu.raw"
        qemu-img convert -f vdi -O raw "$img" "$tmp/qemu.raw"
        cmp "$tmp/expected" "$tmp/qemu.raw"
    fi
}

# --- make-vdi.py images -------------------------------------------------

# The map fits before the data (aligned to 1 MiB): nothing moves.
$MAKE_VDI --size 16M --block-size 1M --blocks DdDZFdDDdFDdDDZd --seed a \
          "$tmp/a.vdi"
off_data="$(vdi_field "$tmp/a.vdi" offData)"
resize_ok "$tmp/a.vdi" $(( 64 * 1024 * 1024 )) --base
test "$(vdi_field "$tmp/a.vdi" offData)" = "$off_data"

# The map runs into the data: 512 entries after 16, with the data
# right after the map.  Small blocks with extra bytes, shuffled slots.
$MAKE_VDI --size 2M --block-size 128K --block-extra 512 --align none \
          --blocks DDdFDDZDDdDDFDDD --shuffle --seed b "$tmp/b.vdi"
off_data="$(vdi_field "$tmp/b.vdi" offData)"
resize_ok "$tmp/b.vdi" $(( 64 * 1024 * 1024 ))
# The map moved to where the data started.
test "$(vdi_field "$tmp/b.vdi" offBlocks)" = "$off_data"

# A differencing image over a larger parent with data past the
# child's end: grown, it reads zeros there, not the parent's data.
$MAKE_VDI --size 16M --block-size 1M --blocks DDDDDDDDDDDDDDDD --seed p \
          "$tmp/parent.vdi"
$MAKE_VDI --type diff --parent "$tmp/parent.vdi" --size 8M --block-size 1M \
          --blocks dDFdZdDF --seed d "$tmp/diff.vdi"
resize_ok "$tmp/diff.vdi" $(( 16 * 1024 * 1024 ))

# --- qemu-img images ----------------------------------------------------

# qemu-img puts the data right after the map, rounded to 512 bytes:
# 64 entries fit there, 256 do not.
for size in 64M 256M; do
    rm -f "$tmp/q.vdi"
    qemu-img create -f vdi "$tmp/q.vdi" 16M
    qemu-io -f vdi \
            -c 'write -P 0xab 0 1M' \
            -c 'write -P 0xcd 3M 4096' \
            -c 'write -P 0x11 12M 1M' \
            -c 'write -P 0x22 15M 1M' \
            "$tmp/q.vdi"
    off_data="$(vdi_field "$tmp/q.vdi" offData)"
    resize_ok "$tmp/q.vdi" "$(numfmt --from=iec "$size")" --base
    if [ "$size" = 64M ]; then
        test "$(vdi_field "$tmp/q.vdi" offBlocks)" = 512
    else
        test "$(vdi_field "$tmp/q.vdi" offBlocks)" = "$off_data"
    fi
done

# --- Refused, and nothing changes -------------------------------------

# expect_resize_refused MESSAGE ARGS...
expect_resize_refused ()
{
    local message="$1" img="${*: -2:1}"
    shift
    cp "$img" "$tmp/copy"
    must_fail $VDI_IMG resize "$@" 2> "$tmp/err"
    cat "$tmp/err"
    grep -Fx "$message" "$tmp/err"
    cmp "$img" "$tmp/copy"
}

$MAKE_VDI --size 16M --block-size 1M --blocks DdDZFdDDdFDdDDFF --seed s \
          "$tmp/s.vdi"
expect_resize_refused \
    "vdi-img: $tmp/s.vdi: the new size is smaller than the disk (16777216 bytes): shrinking needs --shrink" \
    "$tmp/s.vdi" 8M
expect_resize_refused \
    "vdi-img: $tmp/s.vdi: cannot shrink to 8388608 bytes: the image holds data past that size" \
    --shrink "$tmp/s.vdi" 8M
# Past the last data block, a shrink is allowed.
$VDI_IMG resize --shrink "$tmp/s.vdi" 14M
test "$(vdi_field "$tmp/s.vdi" cbDisk)" = $(( 14 * 1024 * 1024 ))
$VDI_CHECK "$tmp/s.vdi"

$MAKE_VDI --type fixed --size 4M --block-size 1M --seed f "$tmp/fixed.vdi"
expect_resize_refused \
    "vdi-img: $tmp/fixed.vdi: a fixed image cannot be resized (VirtualBox does not resize them either): convert it to a dynamic image first" \
    "$tmp/fixed.vdi" 8M

$MAKE_VDI --size 16M --block-size 1M --blocks DdDZFdDDdFDdDDZd --seed a \
          "$tmp/served.vdi"
start_server "$tmp/srv.pid" "$tmp/srv.sock" "$tmp/srv.log" \
             "$VDI_PLUGIN" "$tmp/served.vdi"
expect_resize_refused \
    "vdi-img: $tmp/served.vdi: image is in use: another process has opened it" \
    "$tmp/served.vdi" 64M
stop_server "$tmp/srv.pid"
