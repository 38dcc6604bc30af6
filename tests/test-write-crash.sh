#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Reliability bar R2 for the vdi plugin writing an image itself: kill
# -9 nbdkit while four clients (multi-conn) write, zero, trim and
# flush at once, a few rounds on a dynamic image made by qemu-img and
# on the top of a differencing chain.  After each round every image
# passes the structural check (check_after_crash: leaked slots are
# allowed, nothing else) and the disk, served again, holds every write
# acknowledged before each writer's last completed flush (or FUA);
# bytes written since hold the old or the new data (the new block map
# reaches the file at a flush, so a write that allocated since may be
# lost).  Parents never change.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires qemu-img --version
requires_nbdsh
skip_if_valgrind "kill -9 of nbdkit under valgrind"

tmp="$(mktemp -d --suffix=.tmp test-write-crash.XXXXXX)"
cleanup_fn rm -rf "$tmp"
sock="$tmp/sock"
pid="$tmp/pid"
log="$tmp/log"

# crash_rounds IMAGE MODEL ROUNDS SEED
crash_rounds ()
{
    local img="$1" model="$2" rounds="$3" seed="$4" round p
    for round in $(seq 1 "$rounds"); do
        start_server "$pid" "$sock" "$log" "$VDI_PLUGIN" "$img"
        p="$(cat "$pid")"
        $RANDOM_IO crash "$(uri_of "$sock")" "$model" --kill "$p" \
            --writers 4 --seed "$seed/$round" --max-len 2M+5 \
            --min-delay 0.05 --max-delay 0.5
        wait_gone "$p"

        check_after_crash "$img"

        start_server "$pid" "$sock" "$log" "$VDI_PLUGIN" "$img" readonly=true
        $RANDOM_IO verify "$(uri_of "$sock")" "$model" \
            --pending "$model.pending" --update
        stop_server "$pid"
    done
}

# A dynamic image made by qemu-img, 20 MiB + 512 bytes (the last block
# is partial).
qemu-img create -f vdi "$tmp/q.vdi" $(( 20 * 1024 * 1024 + 512 ))
zeros "$tmp/q.model" $(( 20 * 1024 * 1024 + 512 ))
crash_rounds "$tmp/q.vdi" "$tmp/q.model" 6 qemu

# The top of a chain of three made by make-vdi (data, ZERO and FREE
# blocks in each layer): partial writes copy up from the parents.
$MAKE_VDI --size 16M --seed c0 --expect "$tmp/c0.raw" "$tmp/c0.vdi"
$MAKE_VDI --type diff --parent "$tmp/c0.vdi" --parent-expect "$tmp/c0.raw" \
          --seed c1 --expect "$tmp/c1.raw" "$tmp/c1.vdi"
$MAKE_VDI --type diff --parent "$tmp/c1.vdi" --parent-expect "$tmp/c1.raw" \
          --seed c2 --expect "$tmp/c.model" "$tmp/c2.vdi"
sum0="$(sha256_of "$tmp/c0.vdi")"
sum1="$(sha256_of "$tmp/c1.vdi")"
crash_rounds "$tmp/c2.vdi" "$tmp/c.model" 4 chain
$VDI_CHECK "$tmp/c0.vdi" "$tmp/c1.vdi"
test "$(sha256_of "$tmp/c0.vdi")" = "$sum0"
test "$(sha256_of "$tmp/c1.vdi")" = "$sum1"

# qemu reads the crashed image as the plugin does.  (qemu-img check
# is not run: a kill between the header and the map entry leaks a
# slot, which is harmless but qemu-img counts as corruption.)
qemu-img convert -f vdi -O raw "$tmp/q.vdi" "$tmp/q.raw"
cmp "$tmp/q.raw" "$tmp/q.model"
