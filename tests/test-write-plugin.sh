#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Writes through the vdi plugin, checked against a model (random-io.py):
# random writes, zeroes (also fast zeroes), trims, FUA writes and
# flushes at unaligned offsets and across block edges, then nbdcopy of
# a prepared raw file (data, holes and zero runs) over the whole disk,
# then more random requests, into
#   - a dynamic image made by qemu-img,
#   - a fixed image made by qemu-img (static=on), which must not grow,
#   - a dynamic image with extra data before each block (make-vdi),
#   - the top of a three-image differencing chain made by make-vdi,
#     whose parents must not change.
# Afterwards a fresh "nbdkit vdi" shows the model, $VDI_CHECK passes,
# and for the base images qemu-img check is clean and qemu-img
# convert and 7-Zip show the model too.  The modification UUID is
# renewed by writes, the create UUID kept.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires qemu-img --version
requires 7zz i
requires nbdcopy --version
requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-write-plugin.XXXXXX)"
cleanup_fn rm -rf "$tmp"

# prepare_raw FILE SIZE SEED: random data in runs of odd lengths,
# with zero runs and holes between them.
prepare_raw ()
{
    $HELPERS random-runs "$1" "$2" "$3"
}

# write_and_check IMAGE MODEL SEED [MAX_LEN]: the writes, then the
# checks that every image gets.
write_and_check ()
{
    local img="$1" model="$2" seed="$3" size create modify
    max_len="${4:-3M+7}"
    size="$(stat -c %s "$model")"
    create="$(vdi_field "$img" uuidCreate)"
    modify="$(vdi_field "$img" uuidModify)"

    export model seed tmp size RANDOM_IO max_len
    nbdkit -U - "$VDI_PLUGIN" "$img" --run '
        $RANDOM_IO run "$uri" "$model" --seed "$seed/1" --ops 250 \
            --max-len "$max_len" --expect-caps &&
        nbdcopy "$tmp/prepared.raw" "$uri" &&
        cp "$tmp/prepared.raw" "$model" &&
        $RANDOM_IO run "$uri" "$model" --seed "$seed/2" --ops 150
    '

    # A fresh server (read-only) shows the model.
    nbdkit -U - "$VDI_PLUGIN" "$img" readonly=true \
           --run '$RANDOM_IO verify "$uri" "$model"'
    $VDI_CHECK "$img"

    # The image was modified, and is still the same image.
    test "$(vdi_field "$img" uuidCreate)" = "$create"
    test "$(vdi_field "$img" uuidModify)" != "$modify"
}

# --- A dynamic image made by qemu-img -------------------------------

size=$(( 21 * 1024 * 1024 + 3584 ))
qemu-img create -f vdi "$tmp/dyn.vdi" $size
zeros "$tmp/dyn.model" $size
prepare_raw "$tmp/prepared.raw" $size dyn
write_and_check "$tmp/dyn.vdi" "$tmp/dyn.model" dyn
qemu-img check -f vdi "$tmp/dyn.vdi"
qemu-img convert -f vdi -O raw "$tmp/dyn.vdi" "$tmp/dyn.qemu"
cmp "$tmp/dyn.model" "$tmp/dyn.qemu"
7zz x -tvdi -so "$tmp/dyn.vdi" | cmp "$tmp/dyn.model" -

# --- A fixed image made by qemu-img ----------------------------------

size=$(( 13 * 1024 * 1024 + 512 ))
qemu-img create -f vdi -o static=on "$tmp/fixed.vdi" $size
file_size="$(stat -c %s "$tmp/fixed.vdi")"
zeros "$tmp/fixed.model" $size
prepare_raw "$tmp/prepared.raw" $size fixed
write_and_check "$tmp/fixed.vdi" "$tmp/fixed.model" fixed
test "$(stat -c %s "$tmp/fixed.vdi")" -eq "$file_size"
# Still fixed: every entry is its own slot.
test "$(vdi_field "$tmp/fixed.vdi" type)" -eq 2
test "$(vdi_field "$tmp/fixed.vdi" cBlocksAllocated)" -eq 14
vdi_map "$tmp/fixed.vdi" > "$tmp/fixed.map"
cat > "$tmp/fixed.map.expected" <<'EOF'
0 0
1 1
2 2
3 3
4 4
5 5
6 6
7 7
8 8
9 9
10 10
11 11
12 12
13 13
EOF
diff -u "$tmp/fixed.map.expected" "$tmp/fixed.map"
qemu-img check -f vdi "$tmp/fixed.vdi"
qemu-img convert -f vdi -O raw "$tmp/fixed.vdi" "$tmp/fixed.qemu"
cmp "$tmp/fixed.model" "$tmp/fixed.qemu"
7zz x -tvdi -so "$tmp/fixed.vdi" | cmp "$tmp/fixed.model" -

# --- A dynamic image with extra data before each block ---------------

# VirtualBox opens such images but never makes them.  The extra bytes
# of slots the plugin allocates are zeros, and nothing shifts the data.
$MAKE_VDI --size 6M+512 --block-extra 4096 --seed extra \
          --expect "$tmp/extra.model" "$tmp/extra.vdi"
allocated="$(vdi_field "$tmp/extra.vdi" cBlocksAllocated)"
prepare_raw "$tmp/prepared.raw" $(( 6 * 1024 * 1024 + 512 )) extra
write_and_check "$tmp/extra.vdi" "$tmp/extra.model" extra
test "$(vdi_field "$tmp/extra.vdi" cBlocksAllocated)" -gt "$allocated"
# The extra bytes of the slots the writes allocated are zeros.
test "$(vdi_field "$tmp/extra.vdi" cbBlockExtra)" -eq 4096
data="$(vdi_field "$tmp/extra.vdi" offData)"
block="$(vdi_field "$tmp/extra.vdi" cbBlock)"
count="$(vdi_field "$tmp/extra.vdi" cBlocksAllocated)"
for (( slot = allocated; slot < count; ++slot )); do
    cmp -n 4096 -i $(( data + slot * (4096 + block) )):0 \
        "$tmp/extra.vdi" /dev/zero
done

# --- The top of a differencing chain ---------------------------------

# Three layers with data, ZERO and FREE blocks; the middle one has
# 512 KiB blocks and the top 2 MiB blocks, so copy-up reads across
# the parents' block edges.
$MAKE_VDI --size 12M+512 --seed p0 --expect "$tmp/p0.raw" "$tmp/p0.vdi"
$MAKE_VDI --type diff --parent "$tmp/p0.vdi" --parent-expect "$tmp/p0.raw" \
          --block-size 512K --seed p1 --expect "$tmp/p1.raw" "$tmp/p1.vdi"
$MAKE_VDI --type diff --parent "$tmp/p1.vdi" --parent-expect "$tmp/p1.raw" \
          --block-size 2M --blocks FFDFZFF --seed p2 \
          --expect "$tmp/top.model" "$tmp/top.vdi"
sum0="$(sha256_of "$tmp/p0.vdi")"
sum1="$(sha256_of "$tmp/p1.vdi")"
prepare_raw "$tmp/prepared.raw" $(( 12 * 1024 * 1024 + 512 )) chain
# (Short requests: most of them copy a block up from the parents.)
write_and_check "$tmp/top.vdi" "$tmp/top.model" chain 300K
test "$(sha256_of "$tmp/p0.vdi")" = "$sum0"
test "$(sha256_of "$tmp/p1.vdi")" = "$sum1"
$VDI_CHECK "$tmp/p0.vdi" "$tmp/p1.vdi"
# The top is still the parent's child.
test "$(vdi_field "$tmp/top.vdi" type)" -eq 4
test "$(vdi_field "$tmp/top.vdi" uuidLinkage)" = \
     "$(vdi_field "$tmp/p1.vdi" uuidCreate)"

# --- Flush renews the modification UUID after writes only ------------

m0="$(vdi_field "$tmp/dyn.vdi" uuidModify)"
nbdkit -U - "$VDI_PLUGIN" "$tmp/dyn.vdi" --run 'nbdsh -u "$uri" -c "h.flush()"'
test "$(vdi_field "$tmp/dyn.vdi" uuidModify)" = "$m0"
# The first write renews it, a second write does not, a flush after
# writes does, a flush without writes does not (helpers.py
# modify-uuid).
export HELPERS img="$tmp/dyn.vdi"
nbdkit -U - "$VDI_PLUGIN" "$img" --run '$HELPERS modify-uuid "$uri" "$img"'
