#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Layouts that only the independent model make-vdi.py writes: both 1.1
# header sizes and the legacy v0 header, map and data aligned to 1 MiB,
# 512 bytes or not at all, block sizes from 128 KiB to 8 MiB, extra
# bytes before each block (filled with junk), ZERO and FREE entries,
# shuffled slots, fixed and undo images, and disk sizes that are not a
# multiple of the block size or of 512.  For each, the plugin must show
# exactly make-vdi.py's --expect bytes and nbdinfo --map must agree with
# the block states it chose (--print-extents).

source ./functions.sh
set -e
set -x

requires nbdinfo --version
requires nbdcopy --version
requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-vdi-layouts.XXXXXX)"
cleanup_fn rm -rf "$tmp"

n=0
while read -r args; do
    case "$args" in ''|'#'*) continue ;; esac
    n=$((n + 1))
    t="$tmp/l$n"
    $MAKE_VDI $args --seed "l$n" --print-map \
              --expect "$t.expect" --print-extents "$t.extents" "$t.vdi"
    bs="$(od -An -tu4 -j $((0x178)) -N 4 "$t.vdi" | tr -d ' ')"
    if [ "$(od -An -tx4 -j $((0x44)) -N 4 "$t.vdi" | tr -d ' ')" = 00000002 ]
    then bs="$(od -An -tu4 -j $((0x168)) -N 4 "$t.vdi" | tr -d ' ')"; fi
    check_with_plugin "$t.vdi" "$t.expect" "$t.extents" "$bs"
    rm -f "$t.vdi" "$t.expect"
done <<'LAYOUTS'
# VirtualBox's own layout: 1.1+ header, 1 MiB alignment.
--header 1.1+ --align 1M --size 16M+512 --shuffle
--header 1.1+ --align 1M --size 6M --block-size 512K --blocks DZFDdZFFDDZD
--header 1.1+ --align 1M --size 9M+512 --block-size 2M --shuffle
--header 1.1+ --align 1M --size 13M+1536 --block-size 4M --blocks DZDF
--header 1.1+ --align 1M --size 20M --block-size 8M --blocks DFD --shuffle
--header 1.1+ --align 1M --size 1474560 --blocks DF --lchs 2,16,63
# Block sizes against sizes that are not a multiple of them.
--header 1.1+ --align 512 --size 1000001 --block-size 128K --shuffle
--header 1.1 --align 512 --size 9728 --block-size 128K --blocks D
--header 1.1 --align 512 --size 1M+512 --block-size 256K --blocks DZFDD
--header 1.1 --align none --size 3M+1024 --block-size 512K --shuffle
# Extra bytes before each block (junk: ignoring them reads junk).
--header 1.1+ --align 1M --size 5M --block-size 1M --block-extra 4096 --blocks DZDFD --shuffle
--header 1.1+ --align 512 --size 2M+512 --block-size 512K --block-extra 512 --shuffle
--header 1.1 --align none --size 1000001 --block-size 128K --block-extra 128K --shuffle
--header 1.1+ --align 1M --size 7M --block-size 2M --block-extra 64K --type fixed
# Slots past 4 GiB in the file (sparse, all zero but the junk in the
# extra bytes, which a 32-bit offset would show): 64-bit offsets.
--header 1.1+ --align 1M --size 2049M --block-size 1M --block-extra 1M --weights 0,1,0,0
# The legacy v0 header: map at 0x1A4, data right after it.
--header v0 --size 4M --blocks DZFD
--header v0 --size 1000001 --block-size 128K --shuffle
--header v0 --size 9728 --block-size 128K --blocks D
--header v0 --size 11M --block-size 4M --blocks DDZ --shuffle
--header v0 --size 3M --type fixed
# Fixed and undo images; all-ZERO and all-FREE maps.
--header 1.1 --align 512 --size 5M+512 --type fixed
--header 1.1+ --align 1M --size 8M --type undo --shuffle
--header 1.1+ --align 512 --size 4M --blocks ZZZZ
--header 1.1+ --align 512 --size 4M --blocks FFFF
--header 1.1+ --align 512 --size 4M --blocks dddd
# Offsets with gaps; an unusual alignment; bytes past the virtual size.
--header 1.1+ --off-blocks 0x1000 --off-data 0x20000 --size 3M --blocks DZD
--header 1.1 --align 4096 --size 2M+3584 --block-size 128K --shuffle
--header 1.1+ --align 512 --size 1000001 --block-size 256K --blocks FFFD --junk-tail
# More map entries than the disk needs (allowed; never visible).
--header 1.1+ --align 512 --size 3M --extra-blocks 2 --blocks DZDDD --shuffle
--header v0 --size 1M+512 --block-size 512K --extra-blocks 1 --blocks DDDD
# Many blocks, mostly FREE.
--header 1.1+ --align 1M --size 1G+512 --block-size 128K --weights 1,0,1,60 --shuffle
# A few GiB, sparse: data at both ends and in the middle.
--header 1.1+ --align 1M --size 3G+512 --block-size 8M --blocks 0:D,191:Z,192:D,384:D
--header 1.1 --align 512 --size 5G --blocks 0:D,2047:D,2048:D,4000:Z,5119:D --shuffle
LAYOUTS
test $n -eq 33

# Slots past 4 GiB in the file: a fixed image (slot i holds block i)
# with random data in blocks 0, 1, 4096 and 4097 and zeros elsewhere.
# A slot offset computed in 32 bits would read slot 0 for slot 4096.
# Every block is allocated: the map is one data run.
t="$tmp/far"
pattern="DD$(printf 'd%.0s' $(seq 4094))DD"
$MAKE_VDI --header 1.1+ --align 1M --size 4G+2M --type fixed \
          --blocks "$pattern" --seed far --expect "$t.expect" "$t.vdi"
cat > "$t.extents" <<'EOF'
0 4297064448 data
EOF
check_with_plugin "$t.vdi" "$t.expect" "$t.extents"
rm -f "$t.vdi" "$t.expect"

# Negative controls: the checks above can fail.  A wrong byte, a wrong
# size and a wrong map must each be caught.
t="$tmp/neg"
$MAKE_VDI --size 3M+512 --block-size 512K --blocks DZFDdD --shuffle --seed neg \
          --expect "$t.expect" --print-extents "$t.extents" "$t.vdi"
check_with_plugin "$t.vdi" "$t.expect" "$t.extents" 524288
cp "$t.expect" "$t.bad"
printf '\x01' | dd of="$t.bad" bs=1 seek=$(( 3 * 524288 + 1000 )) conv=notrunc
if check_with_plugin "$t.vdi" "$t.bad" "$t.extents" 524288; then
    echo "$0: a wrong byte was not noticed" >&2; exit 1
fi
cp "$t.expect" "$t.bad"
truncate -s +512 "$t.bad"
if check_with_plugin "$t.vdi" "$t.bad" "$t.extents" 524288; then
    echo "$0: a wrong size was not noticed" >&2; exit 1
fi
sed '2s/zero/data/' "$t.extents" > "$t.badmap"
must_fail cmp -s "$t.extents" "$t.badmap"
if check_with_plugin "$t.vdi" "$t.expect" "$t.badmap" 524288; then
    echo "$0: a wrong map was not noticed" >&2; exit 1
fi
