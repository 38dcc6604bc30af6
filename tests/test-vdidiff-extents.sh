#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Extents through the vdidiff filter merge the layer's map with what
# the plugin below reports.  A base made by make-vdi (1 MiB blocks of
# data, zero data, ZERO and FREE, whose extents make-vdi prints), a
# layer with 512 KiB blocks, and known requests: "nbdinfo --map"
# through the filter, and through "nbdkit vdi LAYER.vdi" alone, must
# equal the base's extents with the layer's blocks laid over them
# (allocated: data; ZERO: zero).  Over the file plugin, the raw base's
# holes show through the same way.  Then after random requests the
# extents never call data zero (random-io.py extents).

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires nbdinfo --version
requires nbdkit file --version

tmp="$(mktemp -d --suffix=.tmp test-vdidiff-extents.XXXXXX)"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

K=1024
M=$(( 1024 * 1024 ))

# Base blocks: 0 D, 1 Z, 2 F, 3 d, 4 D, 5 Z, 6 F, 7 D, 8 Z, 9 F, 10 d, 11 D
$MAKE_VDI --size 12M --blocks DZFdDZFDZFdD --seed ext-base \
          --expect "$tmp/base.raw" --print-extents "$tmp/base.extents" \
          "$tmp/base.vdi"
cat "$tmp/base.extents"

# The requests, and the layer blocks (512 KiB) they leave as data or
# zero.
cat > "$tmp/requests.py" <<'EOF'
M = 1 << 20
K = 1 << 10
h.pwrite(b"a" * 100, 1 * M + 1000)          # layer 2 (base Z): data
h.zero(512 * K, 0)                          # layer 0 (base D): ZERO
h.trim(512 * K, 4 * M + 512 * K)            # layer 9 (base D): ZERO
h.pwrite(b"b" * (512 * K), 7 * M)           # layer 14 (base D): data
h.zero(100, 8 * M + 100)                    # layer 16 (base Z): copied up
h.zero(2 * M, 10 * M)                       # layers 20-23: ZERO
h.pwrite(b"c" * 10, 6 * M + 600 * K)        # layer 13 (base F): data
h.flush()
EOF
layer="0:zero 2:data 9:zero 13:data 14:data 16:data 20:zero 21:zero 22:zero 23:zero"

# expected_map BASE_EXTENTS "N:kind ..." BLOCK_SIZE: the merged runs.
expected_map ()
{
    $PYTHON -c '
import sys
base, layer, bs = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
runs = []
for line in open(base):
    o, n, k = line.split()
    runs.append([int(o), int(o) + int(n), k])
size = runs[-1][1]
kind = {}
for item in layer:
    b, k = item.split(":")
    kind[int(b)] = k
def at(o):
    b = o // bs
    if b in kind:
        return kind[b]
    for s, e, k in runs:
        if s <= o < e:
            return k
# Boundaries: every run edge and every layer block edge.
edges = sorted(set([s for s, e, k in runs] + [size] +
                   [b * bs for b in kind] + [(b + 1) * bs for b in kind]))
out = []
for s, e in zip(edges, edges[1:]):
    k = at(s)
    if out and out[-1][2] == k and out[-1][1] == s:
        out[-1][1] = e
    else:
        out.append([s, e, k])
for s, e, k in out:
    print(s, e - s, k)
' "$1" "$2" "$3"
}

expected_map "$tmp/base.extents" "$layer" $(( 512 * K )) > "$tmp/expected"
cat "$tmp/expected"

cp "$tmp/base.raw" "$tmp/model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" vdidiff-block-size=512K --run '
    nbdsh -u "$uri" -c "exec(open(\"$tmp/requests.py\").read())" &&
    nbdinfo --map "$uri" > "$tmp/map1"
'
normalise_nbdinfo_map < "$tmp/map1" > "$tmp/got1"
diff -u "$tmp/expected" "$tmp/got1"

# The layer's map on disk is what the requests should leave.
vdi_map "$tmp/diff.vdi" > "$tmp/diffmap"
for item in $layer; do
    b="${item%:*}"; k="${item#*:}"
    e="$(awk -v b=$b '$1 == b { print $2 }' "$tmp/diffmap")"
    if [ "$k" = zero ]; then test "$e" = ZERO; else test "$e" -ge 0; fi
done
test "$(grep -vc FREE "$tmp/diffmap")" -eq 10

# After a restart, through the filter and through the plugin alone.
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run 'nbdinfo --map "$uri"' > "$tmp/map2"
normalise_nbdinfo_map < "$tmp/map2" | diff -u "$tmp/expected" -
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run 'nbdinfo --map "$uri"' > "$tmp/map3"
normalise_nbdinfo_map < "$tmp/map3" | diff -u "$tmp/expected" -
# The first extent only (NBD_CMD_FLAG_REQ_ONE), at a few offsets.
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run 'nbdsh --base-allocation -u "$uri" -c "
import os
runs = [l.split() for l in open(os.environ[\"tmp\"] + \"/expected\")]
for o, n, k in runs:
    o, n = int(o), int(n)
    for start in (o, o + n // 2, o + n - 1):
        got = []
        def cb(meta, off, entries, err):
            got.extend(entries)
        h.block_status(min(1 << 20, h.get_size() - start), start, cb,
                       nbd.CMD_FLAG_REQ_ONE)
        assert got[0] >= 1 and got[0] <= o + n - start, (start, got, o, n)
        assert (got[1] & nbd.STATE_ZERO != 0) == (k == \"zero\"), (start, got, k)
"'

# --- Over the file plugin: the raw base's holes show through -----------

$PYTHON -c '
import random, sys
M = 1 << 20
rng = random.Random("ext-file")
with open(sys.argv[1], "wb") as f:
    f.write(rng.randbytes(2 * M))
    f.seek(6 * M)
    f.write(rng.randbytes(2 * M))
    f.truncate(10 * M)
' "$tmp/base2.raw"
printf '%s\n' "0 $((2*M)) data" "$((2*M)) $((4*M)) zero" "$((6*M)) $((2*M)) data" \
              "$((8*M)) $((2*M)) zero" > "$tmp/base2.extents"
# Only if the file system reports these holes as such.
nbdkit -U - file "$tmp/base2.raw" --run 'nbdinfo --map "$uri"' |
    normalise_nbdinfo_map > "$tmp/file.map"
if diff -u "$tmp/base2.extents" "$tmp/file.map"; then
    expected_map "$tmp/base2.extents" "0:zero 2:data 9:zero 13:data 14:data 16:data" \
                 $(( 512 * K )) > "$tmp/expected2"
    nbdkit -U - --filter="$VDIDIFF_FILTER" file "$tmp/base2.raw" \
           vdidiff="$tmp/diff2.vdi" vdidiff-block-size=512K --run '
        nbdsh -u "$uri" -c "
exec(open(\"$tmp/requests.py\").read().replace(\"h.zero(2 * M, 10 * M)\", \"\"))
" &&
        nbdinfo --map "$uri"
    ' > "$tmp/map4"
    normalise_nbdinfo_map < "$tmp/map4" | diff -u "$tmp/expected2" -
else
    echo "$0: this file system does not report the holes: file part skipped"
fi

# --- Random requests: extents never call data zero -------------------

cp "$tmp/base.raw" "$tmp/model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff3.vdi" vdidiff-block-size=256K --run '
    $RANDOM_IO run "$uri" "$tmp/model" --seed ext --ops 150 --block-size 256K \
        --region 0:5M &&
    $RANDOM_IO extents "$uri" "$tmp/model" > "$tmp/ext1"
'
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff3.vdi" readonly=true \
       --run '$RANDOM_IO extents "$uri" "$tmp/model"' > "$tmp/ext2"
diff -u "$tmp/ext1" "$tmp/ext2"
# Something of each kind.
grep -q data "$tmp/ext1"
grep -q zero "$tmp/ext1"
