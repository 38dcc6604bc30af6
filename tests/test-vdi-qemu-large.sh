#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# A few GiB, sparse: qemu-img made dynamic and static=on images of
# 3 GiB + 512 bytes (3073 blocks of 1 MiB, the last one holding a
# single sector), written by qemu-io near the start, across the 2 GiB
# and 2^31-byte boundaries, and at the very end.  The plugin must show
# the same bytes as qemu-img convert and 7-Zip, and the same map as
# qemu-img map.

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
skip_if_valgrind "reads gigabytes"

tmp="$(mktemp -d --suffix=.tmp test-vdi-qemu-large.XXXXXX)"
cleanup_fn rm -rf "$tmp"

size=$(( 3 * 1024 * 1024 * 1024 + 512 ))
for static in off on; do
    t="$tmp/big-$static"
    qemu-img create -f vdi -o static=$static "$t.vdi" $size
    qemu-io -f vdi \
            -c "write -P 0xa1 4096 8192" \
            -c "write -P 0xa2 $(( 2 * 1024 * 1024 * 1024 - 4096 )) 12288" \
            -c "write -P 0xa3 $(( 1500 * 1048576 + 77 )) 100000" \
            -c "write -P 0xa4 $(( size - 1536 )) 1536" \
            "$t.vdi"
    qemu-img check -f vdi "$t.vdi"

    qemu-img convert -f vdi -O raw "$t.vdi" "$t.qemu"
    qemu-img map --output=json -f vdi "$t.vdi" | normalise_qemu_map > "$t.qmap"
    cat "$t.qmap"
    check_with_plugin "$t.vdi" "$t.qemu" "$t.qmap"

    7zz x -tvdi -so "$t.vdi" | stream_prefix_then_zero "$t.qemu"
    rm -f "$t".*
done
