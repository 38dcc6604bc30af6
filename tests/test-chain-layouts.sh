#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Differencing chains in VirtualBox's layout (400-byte headers, map
# and data aligned to 1 MiB, the base in the machine folder, children
# in Snapshots/{uuid}.vdi), made by make-vdi.py --machine: depths 1,
# 2, 8 and 64; FREE, ZERO and data blocks at every level; block sizes
# from 128 KiB to 4 MiB mixed in one chain; parents smaller than their
# children (reads past a parent's end are zeros), also ending inside a
# block; parents in other folders (parent-dir=, and the folders of the
# parents found so far).
#
# Each top image is served as "nbdkit vdi TOP.vdi" (parents found by
# scanning folders) and again through the machine's .vbox (registry=,
# disk=N): nbdcopy, qemu-img convert over NBD and 300 random unaligned
# nbdsh reads must give exactly the model's bytes, and nbdinfo --map
# the model's data/zero runs.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/test-chain-functions.sh"

# The machine "Chains": five disks.
#   0  depth 1, 6 MiB + 512, 1 MiB blocks
#   1  depth 2, 1 MiB then 512 KiB blocks: every state (FREE, ZERO,
#      data, data that is all zeros) over every state
#   2  depth 8, block sizes 1M 512K 2M 128K 1M 256K 4M 512K, the base
#      12 MiB and the chain grown to 16 MiB at layer 3
#   3  depth 3, a base of 3 MiB + 512 (its last block is data and ends
#      512 bytes in) under children of 6 MiB with 1 MiB and 128 KiB
#      blocks
#   4  depth 3, the base in store/, the middle in store/sub/, the top in
#      Snapshots/: found through parent-dir=store/sub and then the
#      folder above the middle image
make_machine "$tmp/Chains" "$tmp/model" <<'EOF'
{"name": "Chains", "seed": "layouts",
 "disks": [
  {"layers": [{"size": "6M+512", "blocks": "DZFdDFD"}]},
  {"layers": [{"size": "16M", "blocks": "DZFdDZFdDZFdDZFd"},
              {"block_size": "512K",
               "blocks": "FZFZFZFZDdDdDdDdZDZDZDZDdFdFdFdF"}]},
  {"layers": [{"size": "12M", "weights": "4,1,2,2"},
              {"block_size": "512K", "weights": "2,0.5,1,6"},
              {"block_size": "2M", "weights": "2,0.5,1,6"},
              {"block_size": "128K", "size": "16M", "weights": "1,0.2,0.5,8"},
              {"block_size": "1M", "weights": "1,0.2,0.5,5"},
              {"block_size": "256K", "weights": "1,0.2,0.5,8"},
              {"block_size": "4M", "blocks": "FZFD"},
              {"block_size": "512K", "weights": "1,0.2,0.5,8"}]},
  {"layers": [{"size": "3M+512", "blocks": "DDDD"},
              {"size": "6M", "blocks": "FFFFFD"},
              {"block_size": "128K", "weights": "1,0,1,20"}]},
  {"layers": [{"size": "5M", "blocks": "DDZDF", "file": "../store/d4-base.vdi"},
              {"block_size": "512K", "blocks": "FFFFDFFFZF",
               "file": "../store/sub/d4-mid.vdi"},
              {"block_size": "2M", "blocks": "FDF"}]}
 ]}
EOF
cat "$tmp/model/media"
test "$(wc -l < "$tmp/model/media")" -eq 17
test "$(wc -l < "$tmp/model/snapshots")" -eq 7

# Deep: one disk, 64 images, block sizes from 128 KiB to 2 MiB in
# turn, mostly FREE so that the data comes from every level.
sizes=(128K 256K 512K 1M 2M)
{
    echo '{"name": "Deep", "seed": "deep", "disks": [{"layers": ['
    echo '  {"size": "3M", "block_size": "1M", "blocks": "DZD"}'
    for (( i = 1; i < 64; ++i )); do
        echo "  , {\"block_size\": \"${sizes[i % 5]}\", \"weights\": \"1,0.1,0.3,14\"}"
    done
    echo ']}]}'
} > "$tmp/deep.json"
make_machine "$tmp/Deep" "$tmp/deepmodel" --models top < "$tmp/deep.json"
test "$(wc -l < "$tmp/deepmodel/media")" -eq 64

# The layout is VirtualBox's: children named {uuid}.vdi in Snapshots,
# 400-byte headers, offBlocks and offData 1 MiB-aligned.
top="$(media_path "$tmp/model" 2 7)"
test "$top" = "$tmp/Chains/Snapshots/{$(media_uuid "$tmp/model" 2 7)}.vdi"
test "$(od -An -tu4 -j $((0x48)) -N 4 "$top" | tr -d ' ')" = 400
test "$(od -An -tu4 -j $((0x4c)) -N 4 "$top" | tr -d ' ')" = 4
test $(( $(od -An -tu4 -j $((0x154)) -N 4 "$top") % 1048576 )) = 0
test $(( $(od -An -tu4 -j $((0x158)) -N 4 "$top") % 1048576 )) = 0
test -f "$tmp/Chains/Chains-disk0.vdi"

before="$(sums)"

# Folder scanning: "nbdkit vdi TOP.vdi".
m="$tmp/model"
t_block=1048576 check_served d0 "$m/d0.l0.raw" "$m/d0.l0.extents" \
    "$(media_path "$m" 0 0)"
t_block=524288 check_served d1 "$m/d1.l1.raw" "$m/d1.l1.extents" \
    "$(media_path "$m" 1 1)"
t_block=131072 check_served d2 "$m/d2.l7.raw" "$m/d2.l7.extents" \
    "$(media_path "$m" 2 7)"
t_block=1048576 t_map=covers check_served d3.1 "$m/d3.l1.raw" \
    "$m/d3.l1.extents" "$(media_path "$m" 3 1)"
t_block=131072 t_map=covers check_served d3.2 "$m/d3.l2.raw" \
    "$m/d3.l2.extents" "$(media_path "$m" 3 2)"
t_block=524288 check_served d4 "$m/d4.l2.raw" "$m/d4.l2.extents" \
    "$(media_path "$m" 4 2)" parent-dir="$tmp/store/sub"
t_block=131072 t_reads=500 check_served deep "$tmp/deepmodel/d0.l63.raw" \
    "$tmp/deepmodel/d0.l63.extents" "$(media_path "$tmp/deepmodel" 0 63)"

# A middle image alone: the chain below it, not above.
t_block=131072 check_served d2.3 "$m/d2.l3.raw" "$m/d2.l3.extents" \
    "$(media_path "$m" 2 3)"

# The parent ending 512 bytes into its last block really has data
# there, and zeros right after it (up to its child's data at 5 MiB): the model and the plugin agree on
# the bytes (checked above); here the bytes themselves.
cmp -s -n 512 -i $((3 * 1048576)):0 "$m/d3.l1.raw" /dev/zero && exit 1
cmp -n $((2 * 1048576 - 512)) -i $((3 * 1048576 + 512)) \
    "$m/d3.l1.raw" /dev/zero
# Disk 2 grew from 12 to 16 MiB at layer 3: past 12 MiB its data comes
# from layer 3 and above only, and the model has some of each.
grep -q data "$m/d2.l7.extents"
grep -q zero "$m/d2.l7.extents"

# Without parent-dir= the middle image of disk 4 is not found, and the
# error says where the plugin looked.
expect_fail d4-no-parent-dir \
    "$(media_uuid "$m" 4 1)" "$tmp/Chains/Snapshots" "$tmp/Chains" \
    "parent-dir=" -- "$(media_path "$m" 4 2)"

# The same disks through the machine's registry, as disk=N (the DVD
# attached first does not count).
reg="registry=$tmp/Chains/Chains.vbox"
t_block=1048576 check_served r0 "$m/d0.l0.raw" "$m/d0.l0.extents" "$reg"
t_block=524288 check_served r1 "$m/d1.l1.raw" "$m/d1.l1.extents" "$reg" disk=1
t_block=131072 check_served r2 "$m/d2.l7.raw" "$m/d2.l7.extents" "$reg" disk=2
t_block=131072 t_map=covers check_served r3 "$m/d3.l2.raw" \
    "$m/d3.l2.extents" "$reg" disk=3
t_block=524288 check_served r4 "$m/d4.l2.raw" "$m/d4.l2.extents" "$reg" disk=4
t_block=131072 t_reads=500 check_served rdeep "$tmp/deepmodel/d0.l63.raw" \
    "$tmp/deepmodel/d0.l63.extents" "registry=$tmp/Deep/Deep.vbox"

# Reading changed nothing.
test "$(sums)" = "$before"

# Negative controls: the checks can fail.  The layer below the top
# is not the top; a map with one run changed is not the map.
expect_must_fail check_served neg1 "$m/d2.l6.raw" - "$(media_path "$m" 2 7)"
awk 'NR == 1 { $3 = $3 == "data" ? "zero" : "data" } 1' \
    "$m/d1.l1.extents" > "$tmp/bad.extents"
must_fail cmp -s "$m/d1.l1.extents" "$tmp/bad.extents"
expect_must_fail check_served neg2 "$m/d1.l1.raw" "$tmp/bad.extents" \
    "$(media_path "$m" 1 1)"
