#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# "vdi-img merge" on differencing chains in VirtualBox's layout (made
# by make-vdi.py --machine: the base in the machine folder, the
# differencing images in Snapshots/), checked through the clients a
# user has: nbdkit with the plugin, nbdcopy, nbdinfo, qemu-img and
# 7-Zip.
#
# Four chains, of depth 2, 3, 8 and 32, with FREE, ZERO, data and
# all-zero data blocks, block sizes from 128 KiB to 4 MiB mixed in one
# chain, disks whose size ends inside a block, a chain that grows at
# one layer, 4 KiB of extra bytes before each block in one image,
# 384- and 400-byte headers, 512-byte and 1 MiB alignment.  The base
# and its child always have 1 MiB blocks, the only size qemu-img reads,
# since either may end up as a base.
#
# For each chain, each direction and a few positions (the top image,
# one in the middle, the child of the base), in a fresh copy of the
# machine folder:
#
#   - the leaf (the top image, or the parent when the top image was
#     merged into it) serves the same bytes as before (sha256 of
#     nbdcopy's output), and the model's bytes;
#   - the removed file (IMAGE, or its parent with --into-child) is
#     gone, the folder holds one image less and no journal
#     (IMAGE.merge) is left; the merge printed nothing;
#   - vdi-img check finds every remaining image clean;
#   - the chain of the leaf (vdi-img info --chain) is the one before
#     without the removed image, each link's parent-modify UUID is its
#     parent's modify UUID (so nothing warns), and it says nothing on
#     stderr; --into-child leaves IMAGE's modify UUID as it was;
#   - only the image that received the data and the images relinked
#     (the child of IMAGE, into the parent) changed: every other file,
#     the .vbox too, is byte for byte what it was;
#   - every remaining base passes qemu-img check, and qemu-img convert
#     and 7-Zip read the bytes that the plugin serves of it; when
#     --into-child made the child of the base a base, vdi-img info says
#     it is a dynamic image with a null parent UUID;
#   - the leaf's extents (nbdinfo --map) are those before, except
#     where the merge wrote; see check_merged_map.  On the depth 2
#     chain, which holds every pair of block states once, the maps
#     after the merge are written out in full.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/test-chain-functions.sh"
source "$abs_srcdir/write-functions.sh"

requires 7zz i
requires jq --version

M=1048576

# --- The chains -------------------------------------------------------

# Depth 2, 16 MiB + 512 in 1 MiB blocks: each state of IMAGE (D data,
# d data that is all zeros, Z ZERO, F FREE) over each state of its
# parent, then 512 bytes of data (the last block ends 512 bytes in)
# over a FREE block.
make_machine "$tmp/C2" "$tmp/m2" <<'EOF'
{"name": "C2", "seed": "merge-c2",
 "disks": [{"layers": [
   {"size": "16M+512", "blocks": "DdZFDdZFDdZFDdZFF"},
   {"blocks": "DDDDddddZZZZFFFFD"}]}]}
EOF

# Depth 3, 5 MiB + 512: a base as QEMU lays it out (384-byte header,
# 512-byte alignment), then 1 MiB and 256 KiB blocks.
make_machine "$tmp/C3" "$tmp/m3" <<'EOF'
{"name": "C3", "seed": "merge-c3",
 "disks": [{"layers": [
   {"size": "5M+512", "blocks": "DdZDFD", "header": "1.1", "align": "512"},
   {"blocks": "FZDdFZ"},
   {"block_size": "256K", "weights": "3,1,2,4"}]}]}
EOF

# Depth 8, 8 MiB growing to 10 MiB + 512 at layer 4; layer 5 has
# 4 KiB of extra bytes before each block.
make_machine "$tmp/C8" "$tmp/m8" <<'EOF'
{"name": "C8", "seed": "merge-c8",
 "disks": [{"layers": [
   {"size": "8M", "weights": "4,1,2,2", "header": "1.1", "align": "512"},
   {"weights": "2,1,1,4"},
   {"block_size": "512K", "weights": "2,0.5,1,6"},
   {"block_size": "2M", "blocks": "FDZF"},
   {"block_size": "128K", "size": "10M+512", "weights": "1,0.2,0.5,6"},
   {"block_size": "256K", "weights": "1,0.3,0.5,6",
    "args": ["--block-extra", "4096"]},
   {"block_size": "4M", "blocks": "FZD"},
   {"block_size": "512K", "weights": "1,0.2,0.5,5"}]}]}
EOF

# Depth 32, 3 MiB images with 512-byte alignment (small files), block
# sizes from 128 KiB to 2 MiB in turn above the first two layers,
# mostly FREE so that the leaf reads from every level.
$PYTHON - > "$tmp/c32.json" <<'EOF'
import json
sizes = ["128K", "256K", "512K", "1M", "2M"]
layers = [{"size": "3M", "blocks": "DZD", "header": "1.1", "align": "512"},
          {"weights": "1,1,1,2", "align": "512"}]
for i in range(2, 32):
    layers.append({"block_size": sizes[i % 5], "weights": "1,0.2,0.4,10",
                   "align": "512"})
print(json.dumps({"name": "C32", "seed": "merge-c32",
                  "disks": [{"layers": layers}]}))
EOF
make_machine "$tmp/C32" "$tmp/m32" --models top < "$tmp/c32.json"

test "$(wc -l < "$tmp/m2/media")" -eq 2
test "$(wc -l < "$tmp/m3/media")" -eq 3
test "$(wc -l < "$tmp/m8/media")" -eq 8
test "$(wc -l < "$tmp/m32/media")" -eq 32

# --- Helpers ----------------------------------------------------------

# leaf_map IMAGE: the normalised data/zero runs that nbdinfo --map
# gives of the disk "nbdkit vdi IMAGE" serves.
leaf_map ()
{
    nbdkit -U - "$VDI_PLUGIN" file="$1" --run 'nbdinfo --map "$uri"' |
        normalise_nbdinfo_map
    test "${PIPESTATUS[0]}" -eq 0
}

# chain_fields IMAGE: "UUID MODIFY PARENT PARENT-MODIFY TYPE" of each
# image of the chain of IMAGE, top first.  Fails if vdi-img says
# anything on stderr (a warning of a stale parent-modify UUID).
chain_fields ()
{
    local err="$tmp/chain_fields.err"
    $VDI_IMG info --chain --output=json "$1" 2> "$err" |
        jq -r '.[] | "\(.uuid) \(."modify-uuid") \(."parent-uuid") \(."parent-modify-uuid") \(."image-type")"'
    test "${PIPESTATUS[0]}" -eq 0
    cat "$err" >&2
    test ! -s "$err"
}

# check_links FIELDS: each image's parent UUID and parent-modify UUID
# are the UUID and modify UUID of the next one; the last is a base
# with null parent UUIDs.
check_links ()
{
    awk -v null=00000000-0000-0000-0000-000000000000 '
        NR > 1 && (pu != $1 || pm != $2) {
            print "bad link: " prev " -> " $0; bad = 1 }
        { pu = $3; pm = $4; prev = $0; last = $0 }
        END { split(last, f, " ");
              if (f[3] != null || f[4] != null || f[5] == "differencing") {
                  print "bad base: " last; bad = 1 }
              exit bad }' "$1"
}

# check_base IMAGE: a base image as qemu-img and 7-Zip read it: qemu-img
# check is clean, and qemu-img convert and 7-Zip give the bytes the
# plugin serves.
check_base ()
{
    local img="$1" want
    want="$(served_sha256 "$img")"
    qemu-img check -f vdi "$img"
    qemu-img convert -f vdi -O raw "$img" "$tmp/base.qemu"
    test "$(sha256sum < "$tmp/base.qemu" | cut -d' ' -f1)" = "$want"
    rm "$tmp/base.qemu"
    test "$(7zz x -tvdi -so "$img" | sha256sum | cut -d' ' -f1)" = "$want"
}

# check_merged_map DIRECTION IMAGE-MAP IMAGE-BS PARENT-BS BEFORE AFTER
#
# The leaf's extents after a merge (AFTER) against those before
# (BEFORE), both "OFFSET LENGTH data|zero" runs over the same size.
# IMAGE-MAP is IMAGE's block map before the merge (vdi_map), IMAGE-BS
# and PARENT-BS the block sizes of IMAGE and its parent.
#
# The merge writes whole blocks of the image that receives the data,
# as the write engine does, and so:
#
#   - zero may become data only inside a block of the receiving image
#     that the merge wrote: into the parent, a parent block that a
#     non-FREE block of IMAGE overlaps (its data goes there, copied up
#     with the rest of the parent's block where the parent's blocks
#     are larger; a ZERO block of IMAGE over a block the parent has
#     allocated is zeroed in place, as the man page says, and that
#     block stays allocated); into the child, a block of IMAGE that
#     was FREE (filled with what it read through its parent);
#
#   - data may become zero anywhere the bytes are zeros: a whole block
#     of zeros written to an unallocated block becomes a ZERO entry,
#     even where the data was an allocated block of zeros.  The bytes
#     themselves are checked by the sha256 of the leaf.
#
# Everything else must be as before: holes stay holes.
check_merged_map ()
{
    $PYTHON -c '
import sys
direction, image_map, image_bs, parent_bs, before, after = sys.argv[1:]
image_bs, parent_bs = int(image_bs), int(parent_bs)

def runs(path):
    out = []
    for line in open(path):
        o, n, k = line.split()
        out.append((int(o), int(o) + int(n), k == "data"))
    return out

def size(rs):
    return rs[-1][1] if rs else 0

# The byte ranges the merge may have written, whole receiving blocks.
written = []
for line in open(image_map):
    i, entry = line.split()
    i = int(i)
    lo, hi = i * image_bs, (i + 1) * image_bs
    if direction == "into-parent" and entry != "FREE":
        written.append((lo // parent_bs * parent_bs,
                        -(-hi // parent_bs) * parent_bs))
    elif direction == "into-child" and entry == "FREE":
        written.append((lo, hi))

b, a = runs(before), runs(after)
if size(b) != size(a):
    sys.exit("the maps cover %d and %d bytes" % (size(b), size(a)))
edges = sorted({x for r in b + a for x in r[:2]} |
               {x for w in written for x in w if x < size(b)})
kind = lambda rs, x: next(k for lo, hi, k in rs if lo <= x < hi)
grown = shrunk = 0
for lo, hi in zip(edges, edges[1:]):
    was, now = kind(b, lo), kind(a, lo)
    if now and not was:
        if not any(w0 <= lo and hi <= w1 for w0, w1 in written):
            sys.exit("%d..%d was zero, is data, and the merge did not "
                     "write there" % (lo, hi))
        grown += hi - lo
    elif was and not now:
        shrunk += hi - lo
print("zero -> data: %d bytes, data -> zero: %d bytes" % (grown, shrunk))
' "$@"
}

# merge_case NAME CHAIN DEPTH POS DIRECTION
#
# Copy the machine folder $tmp/CHAIN (C2, C3, C8 or C32; its model is
# $tmp/m2 ... $tmp/m32) to $tmp/NAME, merge layer POS (0 is the base)
# of its chain of DEPTH images in DIRECTION (into-parent or
# into-child), and check everything the top of this file says.
merge_case ()
{
    local name="$1" chain="$2" depth="$3" pos="$4" direction="$5"
    local model="$tmp/m${chain#C}" w="$tmp/$1" i f
    local paths=() image parent leaf leaf_after removed receiver
    local removed_uuid image_uuid sha_before bs_image bs_parent opt=""

    rm -rf "$w"
    cp -a "$tmp/$chain" "$w"
    for (( i = 0; i < depth; ++i )); do
        f="$(media_path "$model" 0 $i)"
        paths[i]="$w/${f#"$tmp/$chain/"}"
        test -f "${paths[i]}"
    done
    image="${paths[pos]}"
    parent="${paths[pos - 1]}"
    leaf="${paths[depth - 1]}"
    image_uuid="$(media_uuid "$model" 0 "$pos")"
    if [ "$direction" = into-parent ]; then
        removed="$image"
        removed_uuid="$image_uuid"
        receiver="$parent"
        leaf_after="$leaf"
        if [ "$pos" -eq $((depth - 1)) ]; then leaf_after="$parent"; fi
    else
        opt=--into-child
        removed="$parent"
        removed_uuid="$(media_uuid "$model" 0 $((pos - 1)))"
        receiver="$image"
        leaf_after="$leaf"
    fi

    # Before.
    sha_before="$(served_sha256 "$leaf")"
    test "$sha_before" = "$(sha256sum < "$model/d0.l$((depth - 1)).raw" |
                            cut -d' ' -f1)"
    leaf_map "$leaf" > "$w.map.before"
    chain_fields "$leaf" > "$w.chain.before"
    check_links "$w.chain.before"
    test "$(wc -l < "$w.chain.before")" -eq "$depth"
    vdi_map "$image" > "$w.image.map"
    bs_image="$(vdi_field "$image" cbBlock)"
    bs_parent="$(vdi_field "$parent" cbBlock)"
    (cd "$w" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
        > "$w.files.before"

    # The merge says nothing when it succeeds.
    $VDI_IMG merge $opt "$image" 2> "$w.err"
    cat "$w.err"
    test ! -s "$w.err"

    # The removed file and the journal are gone, the rest is there.
    test ! -e "$removed"
    test ! -e "$image.merge"
    test -z "$(find "$w" -name '*.merge*')"
    test "$(find "$w" -name '*.vdi' | wc -l)" -eq $((depth - 1))
    for f in "${paths[@]}"; do
        if [ "$f" != "$removed" ]; then test -f "$f"; fi
    done

    # The leaf serves what it served.
    test "$(served_sha256 "$leaf_after")" = "$sha_before"

    # Every remaining image is clean.
    find "$w" -name '*.vdi' -print0 | xargs -0 $VDI_CHECK

    # The chain is the one before without the removed image, linked
    # to the modify UUIDs of the parents.
    chain_fields "$leaf_after" > "$w.chain.after"
    check_links "$w.chain.after"
    cut -d' ' -f1 "$w.chain.before" | grep -vFx "$removed_uuid" |
        diff -u - <(cut -d' ' -f1 "$w.chain.after")
    if [ "$direction" = into-child ]; then
        # IMAGE keeps its modify UUID: what it reads did not change.
        test "$(awk -v u="$image_uuid" '$1 == u { print $2 }' \
                    "$w.chain.before")" = \
             "$(awk -v u="$image_uuid" '$1 == u { print $2 }' \
                    "$w.chain.after")"
    fi

    # Only the receiver, the removed file and (into the parent) the
    # child of IMAGE, relinked, changed; the rest (.vbox too) did not.
    local changed=("./${receiver#"$w/"}" "./${removed#"$w/"}")
    if [ "$direction" = into-parent ] && [ "$pos" -lt $((depth - 1)) ]; then
        changed+=("./${paths[pos + 1]#"$w/"}")
    fi
    awk 'NR == FNR { skip[$0] = 1; next } !($2 in skip)' \
        <(printf '%s\n' "${changed[@]}") "$w.files.before" \
        > "$w.files.unchanged"
    test "$(wc -l < "$w.files.unchanged")" -eq $((depth + 1 - ${#changed[@]}))
    (cd "$w" && sha256sum -c --quiet -) < "$w.files.unchanged"

    # The bases, as qemu-img and 7-Zip read them.
    for f in "${paths[@]}"; do
        [ -f "$f" ] || continue
        if [ "$($VDI_IMG info --output=json "$f" | jq -r '."image-type"')" \
             != differencing ]; then
            check_base "$f"
        fi
    done
    if [ "$direction" = into-child ] && [ "$pos" -eq 1 ]; then
        $VDI_IMG info --output=json "$image" |
            jq -r '"\(."image-type") \(."parent-uuid") \(."parent-modify-uuid")"' |
            diff -u - <(echo "dynamic 00000000-0000-0000-0000-000000000000 00000000-0000-0000-0000-000000000000")
    fi

    # The extents.
    leaf_map "$leaf_after" > "$w.map.after"
    check_merged_map "$direction" "$w.image.map" "$bs_image" "$bs_parent" \
                     "$w.map.before" "$w.map.after"
}

# --- Depth 2, with the maps written out -------------------------------

merge_case c2-up C2 2 1 into-parent
# Into the parent: D anywhere stays data; d over an allocated block
# is written in place (data), over ZERO or FREE becomes a ZERO entry;
# Z over an allocated block zeros it in place (data), over ZERO or
# FREE is a ZERO entry; F shows the parent as before (D d Z F); the
# last 512 bytes (D over F) are data.
cat > "$tmp/c2-up.expected" <<EOF
0 $((6 * M)) data
$((6 * M)) $((2 * M)) zero
$((8 * M)) $((2 * M)) data
$((10 * M)) $((2 * M)) zero
$((12 * M)) $((2 * M)) data
$((14 * M)) $((2 * M)) zero
$((16 * M)) 512 data
EOF
diff -u "$tmp/c2-up.expected" "$tmp/c2-up.map.after"

merge_case c2-down C2 2 1 into-child
# Into the child: only its FREE blocks take the parent's: D is data,
# d (a block of zeros) and Z become ZERO entries, F stays FREE (the
# child is a base now: zeros).
cat > "$tmp/c2-down.expected" <<EOF
0 $((8 * M)) data
$((8 * M)) $((4 * M)) zero
$((12 * M)) $M data
$((13 * M)) $((3 * M)) zero
$((16 * M)) 512 data
EOF
diff -u "$tmp/c2-down.expected" "$tmp/c2-down.map.after"
# Before the merge the map was each block as the child shows it.
cat > "$tmp/c2.expected" <<EOF
0 $((8 * M)) data
$((8 * M)) $((4 * M)) zero
$((12 * M)) $((2 * M)) data
$((14 * M)) $((2 * M)) zero
$((16 * M)) 512 data
EOF
diff -u "$tmp/c2.expected" "$tmp/c2-up.map.before"
diff -u "$tmp/m2/d0.l1.extents" "$tmp/c2-up.map.before"

# --- Depth 3, 8 and 32 ------------------------------------------------

for direction in into-parent into-child; do
    merge_case c3-$direction-top C3 3 2 $direction
    merge_case c3-$direction-base C3 3 1 $direction
    merge_case c8-$direction-top C8 8 7 $direction
    merge_case c8-$direction-base C8 8 1 $direction
    merge_case c32-$direction-top C32 32 31 $direction
    merge_case c32-$direction-middle C32 32 16 $direction
    merge_case c32-$direction-base C32 32 1 $direction
done
# The middle of the depth 8 chain: into the parent, layer 5 into 4;
# into the child, layer 3 (8 MiB, 2 MiB blocks) into layer 4, which
# grew to 10 MiB + 512 (the chain reads zeros past the parent's end).
# (Layer 4 into its parent, which is smaller, would be refused, as
# test-merge-errors.sh shows.)
merge_case c8-into-parent-middle C8 8 5 into-parent
merge_case c8-into-child-middle C8 8 4 into-child

# --- Negative controls: the checks can fail ---------------------------

# Zero that becomes data where the merge did not write is caught.
expect_must_fail check_merged_map into-child "$tmp/c2-down.image.map" \
    $M $M "$tmp/c2-down.map.before" "$tmp/c2-up.map.after"
# A broken link is caught.
sed '1s/^\([^ ]* [^ ]*\) [^ ]*/\1 11111111-2222-3333-4444-555555555555/' \
    "$tmp/c8-into-child-middle.chain.after" > "$tmp/badlink"
expect_must_fail check_links "$tmp/badlink"
