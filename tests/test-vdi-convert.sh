#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The clients people use: qemu-img convert from the nbd URI (to raw and
# to qcow2) and nbdcopy, through "nbdkit -U - vdi ... --run".  They
# must produce the data make-vdi.py expects, and because the plugin
# answers extents, the raw outputs must stay sparse: their allocated
# size (du) is the size of the non-zero data blocks, not of the disk;
# "nbdcopy --sparse=0" (no zero detection) shows the extents at work.

source ./functions.sh
set -e
set -x

requires_python_nbd
requires qemu-img --version
requires nbdcopy --version
requires jq --version

tmp="$(mktemp -d --suffix=.tmp test-vdi-convert.XXXXXX)"
cleanup_fn rm -rf "$tmp"

# 4 GiB + 512 bytes, 2 MiB blocks: six blocks of random data (12 MiB),
# one allocated block of zeros (d), ZERO and FREE everywhere else.
bs=$(( 2 * 1024 * 1024 ))
$MAKE_VDI --header 1.1+ --align 1M --size 4G+512 --block-size 2M --shuffle \
          --blocks '0:D,1:D,2:d,3:Z,700:D,1023:D,1024:D,1500:Z,2047:D' \
          --seed convert --expect "$tmp/expect" "$tmp/disk.vdi"
data=$(( 6 * bs ))

export tmp
nbdkit -U - "$VDI_PLUGIN" file="$tmp/disk.vdi" --run '
    qemu-img convert -f raw "$uri" "$tmp/qemu.raw" &&
    qemu-img convert -f raw -O qcow2 "$uri" "$tmp/qemu.qcow2" &&
    nbdcopy "$uri" "$tmp/nbdcopy.raw" &&
    nbdcopy --sparse=0 "$uri" "$tmp/extents.raw" &&
    qemu-img map --output=json -f raw "$uri" > "$tmp/qemu.map"
'

cmp_sparse "$tmp/expect" "$tmp/qemu.raw"
cmp_sparse "$tmp/expect" "$tmp/nbdcopy.raw"
cmp_sparse "$tmp/expect" "$tmp/extents.raw"
qemu-img compare -f raw -F qcow2 "$tmp/expect" "$tmp/qemu.qcow2"

# qemu sees the extents over NBD (block status): blocks 0-2, 700,
# 1023-1024 and 2047 are data, the rest (and the last 512 bytes) zero.
cat > "$tmp/extents" <<'EOF'
0 6291456 data
6291456 1461714944 zero
1468006400 2097152 data
1470103552 675282944 zero
2145386496 4194304 data
2149580800 2143289344 zero
4292870144 2097152 data
4294967296 512 zero
EOF
normalise_qemu_map < "$tmp/qemu.map" | diff -u "$tmp/extents" -

# Sparse: at least the data (it is random, so it cannot be a hole) and
# at most the data plus 1 MiB of slack.
for f in qemu.raw nbdcopy.raw; do
    used="$(du -B1 "$tmp/$f" | cut -f1)"
    echo "$f: $used bytes allocated, $data bytes of data"
    test "$used" -ge "$data"
    test "$used" -le $(( data + 1024 * 1024 ))
done
# nbdcopy --sparse=0 does not look for zeros in the data it reads: only
# the extents keep its output sparse, and the allocated block of zeros
# (d) is copied as data.
used="$(du -B1 "$tmp/extents.raw" | cut -f1)"
echo "extents.raw: $used bytes allocated"
test "$used" -ge $(( data + bs ))
test "$used" -le $(( data + bs + 1024 * 1024 ))
used="$(du -B1 "$tmp/qemu.qcow2" | cut -f1)"
test "$used" -le $(( data + 4 * 1024 * 1024 ))
