#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The vdidiff filter over the vdi plugin, checked against a model
# (random-io.py): random writes, zeroes, trims, FUA writes, flushes.
#   - The base never changes (checksum).
#   - The differencing image it creates is VirtualBox's layout: type 4,
#     version 1.1, 400-byte header, map and data at 1 MiB boundaries,
#     cbDisk of the base, linkage UUID = the base's create UUID and
#     parent-modify UUID = the base's modify UUID; it passes
#     $VDI_CHECK, and "nbdkit vdi DIFF.vdi" alone finds the base and
#     shows the model.
#   - Over a chain (the plugin serving a differencing image), it links
#     to the top of the chain.
#   - Persistent: a restart keeps the data.  vdidiff-autoreset=true
#     empties it at start, keeping its create and linkage UUIDs, with a
#     new modify UUID.
#   - vdidiff-block-size= sets the block size of new images (128K and
#     4M here), and bad sizes are refused.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires jq --version

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-vdi.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

# check_header DIFF PARENT BLOCK_SIZE
# The differencing image's header, field by field.
check_header ()
{
    $HELPERS check-diff-header "$1" "$2" "$3"
}

# A base with data, zero-data, ZERO and FREE blocks, 2 MiB blocks,
# a size that is not a multiple of 1 MiB.
$MAKE_VDI --size 18M+1536 --block-size 2M --seed vd-base --shuffle \
          --uuid-create 0d1ff000-0000-4000-8000-0000000000b0 \
          --expect "$tmp/base.raw" "$tmp/base.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"

# --- A few requests, then a restart -----------------------------------
# (Few enough that many blocks keep the state the first request gave
# them: a ZERO entry that only lived in memory would show the base's
# data again after the restart.)

for seed in 1 2 3 4; do
    cp "$tmp/base.raw" "$tmp/model"
    rm -f "$tmp/short.vdi"
    nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
           vdidiff="$tmp/short.vdi" --run "
        \$RANDOM_IO run \"\$uri\" \"\$tmp/model\" --seed short$seed --ops 12 \
            --whole 0.6
    "
    $VDI_CHECK "$tmp/short.vdi"
    nbdkit -U - "$VDI_PLUGIN" "$tmp/short.vdi" readonly=true \
           --run '$RANDOM_IO verify "$uri" "$tmp/model"'
done
rm "$tmp/short.vdi"

# --- Persistent, over a base --------------------------------------------

cp "$tmp/base.raw" "$tmp/model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run '
    $RANDOM_IO run "$uri" "$tmp/model" --seed vd1 --ops 250 --expect-caps
'
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
$VDI_CHECK "$tmp/diff.vdi"
check_header "$tmp/diff.vdi" "$tmp/base.vdi" 1048576

# A restart keeps the data; more writes.
create="$(vdi_field "$tmp/diff.vdi" uuidCreate)"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run '
    $RANDOM_IO verify "$uri" "$tmp/model" &&
    $RANDOM_IO run "$uri" "$tmp/model" --seed vd2 --ops 100 --writers 3
'
test "$(vdi_field "$tmp/diff.vdi" uuidCreate)" = "$create"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
$VDI_CHECK "$tmp/diff.vdi" "$tmp/base.vdi"

# The plugin alone finds the base (by UUID, in the same folder) and
# shows the model; so does it from another folder with parent-dir=.
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/model"'
mkdir "$tmp/elsewhere"
cp "$tmp/diff.vdi" "$tmp/elsewhere/copy.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/elsewhere/copy.vdi" parent-dir="$tmp" \
       readonly=true --run '$RANDOM_IO verify "$uri" "$tmp/model"'
rm -r "$tmp/elsewhere"

# --- A layer of another base, or of another size, is refused ----------

diff_sum="$(sha256_of "$tmp/diff.vdi")"
$MAKE_VDI --size 18M+1536 --seed vd-other \
          --uuid-create 0d1ff000-0000-4000-8000-0000000000e1 "$tmp/other.vdi"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/diff.vdi: differencing image of parent 0d1ff000-0000-4000-8000-0000000000b0, but the disk below is 0d1ff000-0000-4000-8000-0000000000e1" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/other.vdi" \
    vdidiff="$tmp/diff.vdi"
# The same UUID as the base but another size.
$MAKE_VDI --size 19M --seed vd-other \
          --uuid-create 0d1ff000-0000-4000-8000-0000000000b0 "$tmp/resized.vdi"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/diff.vdi: its size 18875904 differs from the size 19922944 of the disk below" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/resized.vdi" \
    vdidiff="$tmp/diff.vdi"
test "$(sha256_of "$tmp/diff.vdi")" = "$diff_sum"
# (Two files with the base's UUID in one folder would make the chain
# ambiguous.)
rm "$tmp/resized.vdi" "$tmp/other.vdi"

# --- Autoreset -----------------------------------------------------------

modify="$(vdi_field "$tmp/diff.vdi" uuidModify)"
linkage="$(vdi_field "$tmp/diff.vdi" uuidLinkage)"
cp "$tmp/base.raw" "$tmp/model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" vdidiff-autoreset=true --run '
    $RANDOM_IO verify "$uri" "$tmp/model"
'
test "$(vdi_field "$tmp/diff.vdi" uuidCreate)" = "$create"
test "$(vdi_field "$tmp/diff.vdi" uuidLinkage)" = "$linkage"
test "$(vdi_field "$tmp/diff.vdi" uuidModify)" != "$modify"
test "$(vdi_field "$tmp/diff.vdi" cBlocksAllocated)" -eq 0
test "$(stat -c %s "$tmp/diff.vdi")" -eq "$(vdi_field "$tmp/diff.vdi" offData)"
vdi_map "$tmp/diff.vdi" > "$tmp/diff.map"
cat > "$tmp/diff.map.expected" <<'EOF'
0 FREE
1 FREE
2 FREE
3 FREE
4 FREE
5 FREE
6 FREE
7 FREE
8 FREE
9 FREE
10 FREE
11 FREE
12 FREE
13 FREE
14 FREE
15 FREE
16 FREE
17 FREE
18 FREE
EOF
diff -u "$tmp/diff.map.expected" "$tmp/diff.map"
$VDI_CHECK "$tmp/diff.vdi"
check_header "$tmp/diff.vdi" "$tmp/base.vdi" 1048576

# Written again, and reset again at the next start.
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" vdidiff-autoreset=true --run '
    $RANDOM_IO run "$uri" "$tmp/model" --seed vd3 --ops 80
'
must_fail cmp -s "$tmp/model" "$tmp/base.raw"
cp "$tmp/base.raw" "$tmp/model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" vdidiff-autoreset=true --run '
    $RANDOM_IO verify "$uri" "$tmp/model"
'
test "$(vdi_field "$tmp/diff.vdi" uuidCreate)" = "$create"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"

# --- Over a chain: the layer links to the top of the chain -------------

$MAKE_VDI --type diff --parent "$tmp/base.vdi" --parent-expect "$tmp/base.raw" \
          --block-size 512K --seed vd-mid --expect "$tmp/mid.raw" "$tmp/mid.vdi"
mid_sum="$(sha256_of "$tmp/mid.vdi")"
cp "$tmp/mid.raw" "$tmp/model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/mid.vdi" \
       vdidiff="$tmp/top.vdi" --run '
    $RANDOM_IO run "$uri" "$tmp/model" --seed vd4 --ops 200
'
check_header "$tmp/top.vdi" "$tmp/mid.vdi" 1048576
$VDI_CHECK "$tmp/top.vdi"
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
test "$(sha256_of "$tmp/mid.vdi")" = "$mid_sum"
nbdkit -U - "$VDI_PLUGIN" "$tmp/top.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/model"'

# --- vdidiff-block-size ---------------------------------------------------

for bs_bytes in 128K:131072 4M:4194304; do
    bs="${bs_bytes%:*}"
    cp "$tmp/base.raw" "$tmp/model"
    nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
           vdidiff="$tmp/bs-$bs.vdi" vdidiff-block-size=$bs --run "
        \$RANDOM_IO run \"\$uri\" \"\$tmp/model\" --seed vd-$bs --ops 150 \
            --block-size $bs
    "
    check_header "$tmp/bs-$bs.vdi" "$tmp/base.vdi" "${bs_bytes#*:}"
    $VDI_CHECK "$tmp/bs-$bs.vdi"
    nbdkit -U - "$VDI_PLUGIN" "$tmp/bs-$bs.vdi" readonly=true \
           --run '$RANDOM_IO verify "$uri" "$tmp/model"'
    # An existing image keeps its block size.
    nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
           vdidiff="$tmp/bs-$bs.vdi" vdidiff-block-size=2M \
           --run '$RANDOM_IO verify "$uri" "$tmp/model"'
done
test "$(vdi_field "$tmp/bs-128K.vdi" cbBlock)" -eq 131072
test "$(vdi_field "$tmp/bs-4M.vdi" cbBlock)" -eq 4194304

# The block sizes clients are told: any size works; the preferred one
# is the larger of the layer's and the plugin's (the base's 2M), and
# the plugin alone prefers its top image's.
block_sizes ()
{
    nbdkit -U - "$@" --run 'nbdinfo --json "$uri"' |
        jq -r '.exports[0] | "\(.block_size_minimum) \(.block_size_preferred) \(.block_size_maximum)"'
}
test "$(block_sizes --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
        vdidiff="$tmp/bs-128K.vdi")" = "1 2097152 4294967295"
test "$(block_sizes --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
        vdidiff="$tmp/bs-4M.vdi")" = "1 4194304 4294967295"
test "$(block_sizes "$VDI_PLUGIN" "$tmp/bs-128K.vdi" readonly=true)" = \
     "1 131072 4294967295"

for bs in 64K 3M 256M 0 x; do
    if nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
              vdidiff="$tmp/bad.vdi" vdidiff-block-size=$bs \
              --run 'exit 0' 2> "$tmp/err"; then
        echo "$0: vdidiff-block-size=$bs was accepted" >&2
        exit 1
    fi
    cat "$tmp/err"
    grep -i "vdidiff-block-size\|size" "$tmp/err"
    test ! -e "$tmp/bad.vdi"
done

test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
