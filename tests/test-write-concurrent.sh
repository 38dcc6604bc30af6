#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Reliability bar R3: several connections (multi-conn) writing
# different regions at once, and the result equals the model
# (random-io.py run --writers N).  Each writer owns stripes of a few
# KiB that are not block aligned, so every block is shared by all the
# writers; --race first makes them write unaligned pieces into the
# same never-allocated block at the same moment, block after block,
# so they race to allocate it (and to copy it up from the parents).
#   - the vdi plugin on a dynamic image made by qemu-img (qemu-img
#     check is clean afterwards, and qemu-img convert shows the model);
#   - the vdi plugin on the top of a chain whose blocks are FREE over
#     a parent full of data;
#   - the vdidiff filter over the vdi plugin (256 KiB blocks), and
#     fio's nbd engine writing with verification through it.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires qemu-img --version
requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-write-concurrent.XXXXXX)"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

# --- The plugin, on a fresh dynamic image --------------------------------

size=$(( 16 * 1024 * 1024 + 1024 ))
qemu-img create -f vdi "$tmp/dyn.vdi" $size
zeros "$tmp/dyn.model" $size
nbdkit -U - "$VDI_PLUGIN" "$tmp/dyn.vdi" --run '
    $RANDOM_IO run "$uri" "$tmp/dyn.model" --seed c1 --writers 6 --race \
        --stripe 4099 --ops 150 --max-len 9000 --expect-caps &&
    $RANDOM_IO run "$uri" "$tmp/dyn.model" --seed c2 --writers 4 \
        --stripe 300K+1 --ops 100
'
$VDI_CHECK "$tmp/dyn.vdi"
qemu-img check -f vdi "$tmp/dyn.vdi"
qemu-img convert -f vdi -O raw "$tmp/dyn.vdi" "$tmp/dyn.qemu"
cmp "$tmp/dyn.model" "$tmp/dyn.qemu"
nbdkit -U - "$VDI_PLUGIN" "$tmp/dyn.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/dyn.model"'

# --- The plugin, on the top of a chain -----------------------------------

$MAKE_VDI --size 12M --blocks DDDDDDDDDDDD --seed cc-base \
          --expect "$tmp/base.raw" "$tmp/base.vdi"
$MAKE_VDI --type diff --parent "$tmp/base.vdi" --parent-expect "$tmp/base.raw" \
          --block-size 2M --blocks FFFFFF --seed cc-top \
          --expect "$tmp/top.model" "$tmp/top.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"
nbdkit -U - "$VDI_PLUGIN" "$tmp/top.vdi" --run '
    $RANDOM_IO run "$uri" "$tmp/top.model" --seed c3 --writers 5 --race \
        --block-size 2M --stripe 5003 --ops 100 --max-len 12000
'
$VDI_CHECK "$tmp/top.vdi"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
nbdkit -U - "$VDI_PLUGIN" "$tmp/top.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/top.model"'

# --- The vdidiff filter ------------------------------------------------------

cp "$tmp/base.raw" "$tmp/diff.model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" vdidiff-block-size=256K --run '
    $RANDOM_IO run "$uri" "$tmp/diff.model" --seed c4 --writers 6 --race \
        --block-size 256K --stripe 3001 --ops 150 --max-len 8000 \
        --expect-caps
'
$VDI_CHECK "$tmp/diff.vdi"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/diff.model"'

# --- fio: four jobs, each its own connection and its own 5 MiB, write
# blocks of 512 bytes to 96 KiB at random, then read them back and
# check them (verify=crc32c) ----------------------------------------------

if fio --enghelp=nbd >/dev/null 2>&1; then
    fio_job='fio --name=w --ioengine=nbd --uri="$uri" --rw=randwrite
             --bsrange=512-96k --size=4M --offset_increment=5M
             --numjobs=4 --iodepth=8 --verify=crc32c --do_verify=1
             --verify_fatal=1 --group_reporting'
    export fio_job
    # fio's nbd engine would log every request with LIBNBD_DEBUG=1.
    export LIBNBD_DEBUG=0
    nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
           vdidiff="$tmp/fio.vdi" vdidiff-block-size=256K --run 'eval $fio_job'
    $VDI_CHECK "$tmp/fio.vdi"
    test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"

    qemu-img create -f vdi "$tmp/fio-dyn.vdi" 20M
    nbdkit -U - "$VDI_PLUGIN" "$tmp/fio-dyn.vdi" --run 'eval $fio_job'
    $VDI_CHECK "$tmp/fio-dyn.vdi"
    qemu-img check -f vdi "$tmp/fio-dyn.vdi"
else
    echo "$0: fio without the nbd engine: fio part skipped"
fi
