#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The vdidiff filter over nbdkit's file plugin and a raw base, checked
# against a model (random-io.py): the raw file never changes, the
# layer is a differencing VDI whose linkage UUID is
# vdidiff-parent-uuid= (random without it), and a restart keeps the
# data.  An existing layer made for another parent is refused with an
# error naming both UUIDs; one whose size differs from the disk below,
# and a file that is not a differencing image, are refused too.  The
# vdi plugin alone says that such a layer needs the filter over its
# disk.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires nbdkit file --version

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-file.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

u1=0a1b2c3d-4e5f-4061-8273-8495a6b7c8d9
u2=0a1b2c3d-4e5f-4061-8273-000000000002

# A raw base: random data, zeros written as data, a hole, random data
# and a hole.
M=$(( 1024 * 1024 ))
size=$(( 10 * M + 512 ))
$HELPERS write-data "$tmp/base.raw" 0 $(( 3 * M + 777 )) file-base
$HELPERS write-data "$tmp/base.raw" $(( 3 * M + 777 )) $(( 2 * M )) zero
$HELPERS write-data "$tmp/base.raw" $(( 7 * M - 5 )) $(( 2 * M )) file-base-2
truncate -s $size "$tmp/base.raw"
base_sum="$(sha256_of "$tmp/base.raw")"
cp "$tmp/base.raw" "$tmp/model"

nbdkit -U - --filter="$VDIDIFF_FILTER" file "$tmp/base.raw" \
       vdidiff="$tmp/diff.vdi" vdidiff-parent-uuid="{$u1}" --run '
    $RANDOM_IO run "$uri" "$tmp/model" --seed f1 --ops 250 --expect-caps
'
test "$(sha256_of "$tmp/base.raw")" = "$base_sum"
$VDI_CHECK "$tmp/diff.vdi"
test "$(vdi_field "$tmp/diff.vdi" type)" -eq 4
test "$(vdi_field "$tmp/diff.vdi" cbHeader)" -eq 400
test "$(vdi_field "$tmp/diff.vdi" cbDisk)" -eq $size
test $(( $(vdi_field "$tmp/diff.vdi" offBlocks) % 1048576 )) -eq 0
test $(( $(vdi_field "$tmp/diff.vdi" offData) % 1048576 )) -eq 0
test "$(uuid_text "$(vdi_field "$tmp/diff.vdi" uuidLinkage)")" = $u1
test "$(vdi_field "$tmp/diff.vdi" uuidParentModify)" = \
     00000000000000000000000000000000

# A restart with the same parent keeps the data (UUID in upper case,
# without braces this time), and so does one without a parent UUID
# (then the layer is not checked).
nbdkit -U - --filter="$VDIDIFF_FILTER" file "$tmp/base.raw" \
       vdidiff="$tmp/diff.vdi" vdidiff-parent-uuid="${u1^^}" --run '
    $RANDOM_IO verify "$uri" "$tmp/model" &&
    $RANDOM_IO run "$uri" "$tmp/model" --seed f2 --ops 100 --writers 2
'
nbdkit -U - --filter="$VDIDIFF_FILTER" file "$tmp/base.raw" \
       vdidiff="$tmp/diff.vdi" --run '$RANDOM_IO verify "$uri" "$tmp/model"'
test "$(sha256_of "$tmp/base.raw")" = "$base_sum"
$VDI_CHECK "$tmp/diff.vdi"
diff_sum="$(sha256_of "$tmp/diff.vdi")"

# Another parent: refused, naming both UUIDs, changing nothing.
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/diff.vdi: differencing image of parent 0a1b2c3d-4e5f-4061-8273-8495a6b7c8d9, but the disk below is 0a1b2c3d-4e5f-4061-8273-000000000002" \
    --filter="$VDIDIFF_FILTER" file "$tmp/base.raw" \
    vdidiff="$tmp/diff.vdi" vdidiff-parent-uuid=$u2
test "$(sha256_of "$tmp/diff.vdi")" = "$diff_sum"

# A disk below of another size: refused.
truncate -s $(( size + 1048576 )) "$tmp/bigger.raw"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/diff.vdi: its size 10486272 differs from the size 11534848 of the disk below" \
    --filter="$VDIDIFF_FILTER" file "$tmp/bigger.raw" \
    vdidiff="$tmp/diff.vdi" vdidiff-parent-uuid=$u1
test "$(sha256_of "$tmp/diff.vdi")" = "$diff_sum"

# A dynamic (not differencing) image as the layer: refused.
$MAKE_VDI --size $size --seed f-dyn "$tmp/dyn.vdi"
dyn_sum="$(sha256_of "$tmp/dyn.vdi")"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/dyn.vdi: is a dynamic image, not a differencing image" \
    --filter="$VDIDIFF_FILTER" file "$tmp/base.raw" vdidiff="$tmp/dyn.vdi"
test "$(sha256_of "$tmp/dyn.vdi")" = "$dyn_sum"

# A new layer without vdidiff-parent-uuid links to a random UUID.
nbdkit -U - --filter="$VDIDIFF_FILTER" file "$tmp/base.raw" \
       vdidiff="$tmp/anon.vdi" --run '
    nbdsh -u "$uri" -c "h.pwrite(b\"a\" * 5000, 1048000); h.flush()"
'
test "$(vdi_field "$tmp/anon.vdi" uuidLinkage)" != \
     00000000000000000000000000000000
$VDI_CHECK "$tmp/anon.vdi"

# Either layer, served alone by the vdi plugin, says that it was made
# over a disk that is not a VDI image, and how to serve it.
# layer_alone NAME PARENT-UUID
layer_alone ()
{
    expect_start_failure "$tmp/err" \
        "nbdkit: error: $tmp/$1.vdi: the vdidiff filter made this differencing image over a disk that is not a VDI image (its parent UUID $2 names no VDI image): serve it with the filter over that disk (--filter=vdidiff ... vdidiff=$tmp/$1.vdi)" \
        "$VDI_PLUGIN" "$tmp/$1.vdi"
}
layer_alone diff $u1
layer_alone anon "$(uuid_text "$(vdi_field "$tmp/anon.vdi" uuidLinkage)")"

# A base whose size is not a multiple of 512 cannot have a VDI layer.
truncate -s 1000001 "$tmp/odd.raw"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/odd.vdi: cannot create a differencing image for a disk of 1000001 bytes: VDI sizes are multiples of 512" \
    --filter="$VDIDIFF_FILTER" file "$tmp/odd.raw" vdidiff="$tmp/odd.vdi"
test ! -e "$tmp/odd.vdi"

test "$(sha256_of "$tmp/base.raw")" = "$base_sum"
