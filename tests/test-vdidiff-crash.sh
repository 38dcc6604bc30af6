#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Reliability bar R2 for the vdidiff filter: kill -9 nbdkit while
# four clients (multi-conn) write, zero, trim and flush at once, 20
# rounds.  After each round the differencing image must pass the
# structural check (check_after_crash: leaked slots are allowed,
# nothing else), and the disk, served again, must hold every write
# acknowledged before each writer's last completed flush (or FUA);
# bytes written since may hold the old or the new data, and nothing
# else (the new block map reaches the file at a flush, so a write that
# allocated since may be lost).  The base image never changes.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
skip_if_valgrind "kill -9 of nbdkit under valgrind"

tmp="$(mktemp -d --suffix=.tmp test-vdidiff-crash.XXXXXX)"
cleanup_fn rm -rf "$tmp"
sock="$tmp/sock"
pid="$tmp/pid"
log="$tmp/log"

# 24 MiB + 512 base with data, ZERO and FREE blocks; the layer has
# 256 KiB blocks, so a writer's request often allocates several.
$MAKE_VDI --size 24M+512 --seed crash-base --weights 4,1,2,3 \
          --expect "$tmp/model" "$tmp/base.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"
diff="$tmp/diff.vdi"

for round in $(seq 1 20); do
    start_server "$pid" "$sock" "$log" \
        --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
        vdidiff="$diff" vdidiff-block-size=256K
    p="$(cat "$pid")"
    $RANDOM_IO crash "$(uri_of "$sock")" "$tmp/model" --kill "$p" \
        --writers 4 --seed "$round" --block-size 256K --max-len 700K \
        --min-delay 0.05 --max-delay 0.5
    wait_gone "$p"

    check_after_crash "$diff"

    start_server "$pid" "$sock" "$log" \
        --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
        vdidiff="$diff"
    $RANDOM_IO verify "$(uri_of "$sock")" "$tmp/model" \
        --pending "$tmp/model.pending" --update
    stop_server "$pid"
done

# The layer is a proper child of the base: the plugin alone finds the
# base and shows the same disk.
nbdkit -U - "$VDI_PLUGIN" "$diff" readonly=true \
       --run "$RANDOM_IO verify \"\$uri\" \"$tmp/model\""
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
