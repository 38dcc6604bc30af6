#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Images made by qemu-img (dynamic and static=on) in small sizes,
# written by qemu-io at scattered offsets, some unaligned: the plugin
# must show the same bytes as "qemu-img convert -O raw" and "7zz x",
# and nbdinfo --map must agree with "qemu-img map".

source ./functions.sh
set -e
set -x

requires qemu-img --version
requires qemu-io --version
requires 7zz i
requires jq --version
requires nbdinfo --version
requires nbdcopy --version
requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-vdi-qemu-created.XXXXXX)"
cleanup_fn rm -rf "$tmp"

for static in off on; do
    for size in 512 9728 1049088 5242880 7340544; do
        t="$tmp/q-$static-$size"
        qemu-img create -f vdi -o static=$static "$t.vdi" $size

        # Scattered writes: the start, a sector in the middle, the last
        # sector, an unaligned run, and (when there is room) runs that
        # cross a 1 MiB block boundary and fill a whole block.
        qemu-io -f vdi -c "write -P 0x11 0 512" "$t.vdi"
        qemu-io -f vdi -c "write -P 0x22 $(( size / 1024 * 512 )) 512" "$t.vdi"
        qemu-io -f vdi -c "write -P 0x33 $(( size - 512 )) 512" "$t.vdi"
        if [ $size -gt 4096 ]; then
            qemu-io -f vdi -c "write -P 0x44 1001 2047" "$t.vdi"
        fi
        if [ $size -gt 2097152 ]; then
            qemu-io -f vdi -c "write -P 0x55 $(( 1048576 - 3000 )) 7000" "$t.vdi"
            qemu-io -f vdi -c "write -P 0x66 $(( 3 * 1048576 )) 1048576" "$t.vdi"
        fi
        qemu-img check -f vdi "$t.vdi"

        qemu-img convert -f vdi -O raw "$t.vdi" "$t.qemu"
        qemu-img map --output=json -f vdi "$t.vdi" |
            normalise_qemu_map > "$t.qmap"

        # The plugin: size, bytes, random reads, map.
        check_with_plugin "$t.vdi" "$t.qemu" "$t.qmap"

        # 7-Zip's reading agrees too.
        7zz x -tvdi -so "$t.vdi" > "$t.7z"
        cmp "$t.qemu" "$t.7z"

        # And the written patterns are really there (not all zeros).
        must_fail cmp -s -n 512 "$t.qemu" /dev/zero
        rm -f "$t".*
    done
done
