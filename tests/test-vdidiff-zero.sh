#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Zeroed data must stay zero (VirtualBox issue #850: older VirtualBox
# marked zeroed blocks of a differencing image ZERO only in memory,
# left them FREE on disk, and the parent's data came back after a
# restart).  Over a base full of data, through the vdidiff filter:
# zero whole blocks, trim whole blocks, write whole blocks of zeros,
# zero with the fast-zero flag, zero inside blocks; restart (and once
# kill -9 after a flush); the disk reads zeros there, the
# differencing image's map has ZERO (0xFFFFFFFE) entries for the whole
# blocks and never FREE, and "nbdkit vdi DIFF.vdi" alone reads the
# same.  The same for the vdi plugin writing the top of a chain.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
skip_if_valgrind "kill -9 of nbdkit under valgrind"

tmp="$(mktemp -d --suffix=.tmp test-vdidiff-zero.XXXXXX)"
cleanup_fn rm -rf "$tmp"
export tmp RANDOM_IO HELPERS

# A base whose ten 1 MiB blocks all hold random data.
$MAKE_VDI --size 10M --blocks DDDDDDDDDD --seed z-base \
          --expect "$tmp/base.raw" "$tmp/base.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"

# The requests are helpers.py zero-requests: over blocks of 1 MiB,
# block 0 written then zeroed whole, 1 zeroed, 2 trimmed, 3-4 zeroed
# (FUA), 5 written with zeros, 6 zeroed with the fast-zero flag, 7 a
# fast zero refused then a zero inside, 8 a trim inside, 9 untouched.
# The disk must then equal the model with those zeros, which is saved.

# check_map IMAGE: blocks 0, 7 and 8 allocated (which slots they got
# does not matter), 1-6 ZERO, 9 FREE.
cat > "$tmp/map.expected" <<'EOF'
0 slot
1 ZERO
2 ZERO
3 ZERO
4 ZERO
5 ZERO
6 ZERO
7 slot
8 slot
9 FREE
EOF
check_map ()
{
    vdi_map "$1" | sed 's/ [0-9][0-9]*$/ slot/' > "$tmp/map"
    diff -u "$tmp/map.expected" "$tmp/map"
}

# --- The vdidiff filter over the vdi plugin ---------------------------

export model="$tmp/model"
cp "$tmp/base.raw" "$model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run '$HELPERS zero-requests "$uri" "$model"'
# The model has zeros where the base had data.
must_fail cmp -s "$model" "$tmp/base.raw"
check_map "$tmp/diff.vdi"
$VDI_CHECK "$tmp/diff.vdi"

# After a restart: zeros, not the base's data.
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run '$RANDOM_IO verify "$uri" "$model"'
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$model"'
# And the extents say zero there: blocks 0, 7 and 8 are allocated
# (data, even if block 0 reads zeros), 9 is the base's data.
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run 'nbdinfo --map "$uri"' | normalise_nbdinfo_map > "$tmp/extents"
cat > "$tmp/extents.expected" <<'EOF'
0 1048576 data
1048576 6291456 zero
7340032 3145728 data
EOF
diff -u "$tmp/extents.expected" "$tmp/extents"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"

# --- kill -9 right after zeroing and a flush ---------------------------

cp "$tmp/base.raw" "$model"
start_server "$tmp/pid" "$tmp/sock" "$tmp/log" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/killed.vdi"
$HELPERS zero-requests "$(uri_of "$tmp/sock")" "$model" --flush
p="$(cat "$tmp/pid")"
kill -9 "$p"
wait_gone "$p"
$VDI_CHECK "$tmp/killed.vdi"
check_map "$tmp/killed.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/killed.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$model"'

# --- The vdi plugin writing the top of a chain ------------------------

# A differencing image with every block FREE over the base.
$MAKE_VDI --type diff --parent "$tmp/base.vdi" --parent-expect "$tmp/base.raw" \
          --blocks FFFFFFFFFF --seed z-top --expect "$tmp/top.raw" "$tmp/top.vdi"
cmp "$tmp/top.raw" "$tmp/base.raw"
cp "$tmp/top.raw" "$model"
nbdkit -U - "$VDI_PLUGIN" "$tmp/top.vdi" \
       --run '$HELPERS zero-requests "$uri" "$model"'
check_map "$tmp/top.vdi"
$VDI_CHECK "$tmp/top.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/top.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$model"'
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
