#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end: ../scripts/vdi-fstrim on a guest filesystem with files
# deleted inside it.
#
#   - a 256 MiB ext4 filesystem holding six files of 4 MiB of random
#     data (mkfs.ext4 -d, no appliance), converted to a dynamic VDI by
#     qemu-img;
#   - guestfish, through "nbdkit vdi" read-write, deletes three of
#     them: their 12 MiB stay allocated in the VDI;
#   - vdi-fstrim trims the filesystem and compacts the image.
#
# The file must lose at least 8 MiB: the 12 MiB deleted, less 2 MiB
# for the 1 MiB blocks the deleted files may share with kept data, and
# 2 MiB for the journal blocks ext4 writes while mounted for fstrim
# (9 MiB was seen).  vdi-img check and qemu-img check find it clean,
# and one guestfish session over "nbdkit -r" finds the three files
# left with their checksums.  Three appliance launches, about 20 s
# each under TCG.

source ./functions.sh
set -e
set -x
PS4='+ $(date +%T) '

requires guestfish --version
requires mkfs.ext4 -V
requires qemu-img --version
skip_if_valgrind "libguestfs is too slow under valgrind"

source "$abs_srcdir/guestfs-functions.sh"

MiB=$((1024 * 1024))
tmp="$(realpath "$(mktemp -d --suffix=.tmp test-compact-guestfs.XXXXXX)")"
cleanup_fn rm -rf "$tmp"

s0="$tmp/s0"
mkdir -p "$s0/data"
for i in 1 2 3 4 5 6; do
    head -c 4M /dev/urandom > "$s0/data/f$i.bin"
done
truncate -s 256M "$tmp/disk.img"
mkfs.ext4 -q -F -d "$s0" "$tmp/disk.img"
qemu-img convert -f raw -O vdi "$tmp/disk.img" "$tmp/disk.vdi"
rm "$tmp/disk.img"

start_nbdkit -P "$tmp/w.pid" -U "$tmp/w.sock" "$VDI_PLUGIN" \
             file="$tmp/disk.vdi"
guestfish_session --format=raw -a "nbd://?socket=$tmp/w.sock" <<EOF
run
mount /dev/sda /
rm /data/f2.bin
rm /data/f4.bin
rm /data/f5.bin
umount-all
EOF
kill_nbdkit "$(cat "$tmp/w.pid")"
rm "$s0/data/f2.bin" "$s0/data/f4.bin" "$s0/data/f5.bin"
$VDI_CHECK "$tmp/disk.vdi"
before=$(stat -c %s "$tmp/disk.vdi")

# Where the build is not beside the scripts (VPATH), say where it is.
export NBDKIT_VDI_PLUGIN="$VDI_PLUGIN" VDI_IMG="$VDI_IMG"
"$abs_top_srcdir/scripts/vdi-fstrim" "$tmp/disk.vdi" 2> "$tmp/fstrim.err" ||
    { cat "$tmp/fstrim.err"; exit 1; }
cat "$tmp/fstrim.err"
grep -q '^vdi-fstrim: /dev/sda: ext4: trimmed$' "$tmp/fstrim.err"

after=$(stat -c %s "$tmp/disk.vdi")
echo "before: $before bytes, after: $after bytes"
test $after -le $((before - 8 * MiB))
$VDI_CHECK "$tmp/disk.vdi"
qemu-img check -f vdi "$tmp/disk.vdi"

start_nbdkit -P "$tmp/r.pid" -U "$tmp/r.sock" -r "$VDI_PLUGIN" \
             file="$tmp/disk.vdi"
guestfish_session --ro --format=raw -a "nbd://?socket=$tmp/r.sock" <<EOF
run
mount-ro /dev/sda /
find0 / $tmp/find
checksums-out sha256 / $tmp/sums
umount-all
EOF
kill_nbdkit "$(cat "$tmp/r.pid")"
tr '\0' '\n' < "$tmp/find" | LC_ALL=C sort | diff -u <(tree_list "$s0") -
sed 's|  \./| |' "$tmp/sums" | LC_ALL=C sort -k2 | diff -u <(tree_sums "$s0") -
