#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Extents through the vdidiff filter merge the layer's map with what
# the plugin below reports.  A base made by make-vdi (1 MiB blocks of
# data, zero data, ZERO and FREE), a layer with 512 KiB blocks, and
# known requests: "nbdinfo --map" through the filter, and through
# "nbdkit vdi LAYER.vdi" alone, must show the base's extents with the
# layer's blocks laid over them (allocated: data; ZERO: zero), as
# written out below.  Over the file plugin, the raw base's holes show
# through the same way.  Then after random requests the extents never
# call data zero (random-io.py extents).

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires nbdinfo --version
requires nbdkit file --version

tmp="$(mktemp -d --suffix=.tmp test-vdidiff-extents.XXXXXX)"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO HELPERS tmp

# Base blocks: 0 D, 1 Z, 2 F, 3 d, 4 D, 5 Z, 6 F, 7 D, 8 Z, 9 F, 10 d, 11 D
$MAKE_VDI --size 12M --blocks DZFdDZFDZFdD --seed ext-base \
          --expect "$tmp/base.raw" "$tmp/base.vdi"

# requests URI [NBDSH-ARGS...]: the requests, then a flush.  The
# blocks of the layer (512 KiB) they leave as data or zero:
#   layer 2 (base Z): data       100 bytes written at 1M + 1000
#   layer 0 (base D): ZERO       the whole block zeroed
#   layer 9 (base D): ZERO       the whole block trimmed
#   layer 14 (base D): data      the whole block written
#   layer 16 (base Z): data      100 bytes zeroed: copied up
#   layer 13 (base F): data      10 bytes written
# NBDSH-ARGS (more requests) come before the last write.
requests ()
{
    local uri="$1"
    shift
    nbdsh -u "$uri" \
          -c 'M = 1 << 20; K = 1 << 10' \
          -c 'h.pwrite(b"a" * 100, 1 * M + 1000)' \
          -c 'h.zero(512 * K, 0)' \
          -c 'h.trim(512 * K, 4 * M + 512 * K)' \
          -c 'h.pwrite(b"b" * (512 * K), 7 * M)' \
          -c 'h.zero(100, 8 * M + 100)' \
          "$@" \
          -c 'h.pwrite(b"c" * 10, 6 * M + 600 * K)' \
          -c 'h.flush()'
}

# The disk: the base's blocks, the layer's over them.
#   0-512K     zero   layer 0 ZERO
#   512K-1.5M  data   base 0 D, layer 2 (over base 1 Z)
#   1.5M-3M    zero   base 1 Z, base 2 F
#   3M-4.5M    data   base 3 d, base 4 D
#   4.5M-6.5M  zero   layer 9 ZERO, base 5 Z, base 6 F
#   6.5M-8.5M  data   layer 13 (over base 6 F), 14, base 7 D, layer 16
#   8.5M-12M   zero   base 8 Z, base 9 F, layers 20-23 ZERO
cat > "$tmp/expected" <<'EOF'
0 524288 zero
524288 1048576 data
1572864 1572864 zero
3145728 1572864 data
4718592 2097152 zero
6815744 2097152 data
8912896 3670016 zero
EOF

start_server "$tmp/pid" "$tmp/sock" "$tmp/log" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/diff.vdi" vdidiff-block-size=512K
# And 10M-12M zeroed: layers 20-23 ZERO.
requests "$(uri_of "$tmp/sock")" -c 'h.zero(2 * M, 10 * M)'
nbdinfo --map "$(uri_of "$tmp/sock")" > "$tmp/map1"
stop_server "$tmp/pid"
normalise_nbdinfo_map < "$tmp/map1" > "$tmp/got1"
diff -u "$tmp/expected" "$tmp/got1"

# The layer's map on disk is what the requests should leave (which
# slot an allocated block got does not matter).
vdi_map "$tmp/diff.vdi" | sed 's/ [0-9][0-9]*$/ slot/' > "$tmp/diffmap"
cat > "$tmp/diffmap.expected" <<'EOF'
0 ZERO
1 FREE
2 slot
3 FREE
4 FREE
5 FREE
6 FREE
7 FREE
8 FREE
9 ZERO
10 FREE
11 FREE
12 FREE
13 slot
14 slot
15 FREE
16 slot
17 FREE
18 FREE
19 FREE
20 ZERO
21 ZERO
22 ZERO
23 ZERO
EOF
diff -u "$tmp/diffmap.expected" "$tmp/diffmap"

# After a restart, through the filter and through the plugin alone.
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run 'nbdinfo --map "$uri"' > "$tmp/map2"
normalise_nbdinfo_map < "$tmp/map2" | diff -u "$tmp/expected" -
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run 'nbdinfo --map "$uri"' > "$tmp/map3"
normalise_nbdinfo_map < "$tmp/map3" | diff -u "$tmp/expected" -
# The first extent only (NBD_CMD_FLAG_REQ_ONE), at the start, the
# middle and the end of each run.
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/diff.vdi" --run '$HELPERS req-one "$uri" "$tmp/expected"'

# --- Over the file plugin: the raw base's holes show through -----------

# 10 MiB: data at 0-2M and 6M-8M, holes elsewhere.
$HELPERS write-data "$tmp/base2.raw" 0 2097152 ext-file
$HELPERS write-data "$tmp/base2.raw" 6291456 2097152 ext-file-2
truncate -s 10M "$tmp/base2.raw"
cat > "$tmp/base2.extents" <<'EOF'
0 2097152 data
2097152 4194304 zero
6291456 2097152 data
8388608 2097152 zero
EOF
# Only if the file system reports these holes as such.
nbdkit -U - file "$tmp/base2.raw" --run 'nbdinfo --map "$uri"' |
    normalise_nbdinfo_map > "$tmp/file.map"
if diff -u "$tmp/base2.extents" "$tmp/file.map"; then
    # The same requests but the last zero, over the holes 2M-6M and
    # 8M-10M: layer 0 ZERO, 2 data, 9 ZERO, 13, 14 and 16 data.
    cat > "$tmp/expected2" <<'EOF'
0 524288 zero
524288 1572864 data
2097152 4194304 zero
6291456 2621440 data
8912896 1572864 zero
EOF
    start_server "$tmp/pid" "$tmp/sock" "$tmp/log" \
        --filter="$VDIDIFF_FILTER" file "$tmp/base2.raw" \
        vdidiff="$tmp/diff2.vdi" vdidiff-block-size=512K
    requests "$(uri_of "$tmp/sock")"
    nbdinfo --map "$(uri_of "$tmp/sock")" > "$tmp/map4"
    stop_server "$tmp/pid"
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
