#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end: "vdi-img merge" on a guest filesystem.
#
#   - state 0: a 64 MiB ext4 filesystem (mkfs.ext4 -d, no appliance
#     needed) converted to a dynamic VDI by qemu-img: base.vdi;
#   - state 1: files added, changed and deleted by guestfish through
#     "nbdkit --filter=vdidiff vdi base.vdi": a differencing image,
#     renamed Snapshots/{UUID}.vdi as VirtualBox names them;
#   - state 2: the same again over state 1 (more files, a file
#     deleted, a file overwritten, a file changed in the middle), in a
#     second differencing image with 256 KiB blocks.
#
# Then, in two copies of the folder: layer 1 merged into the base
# (into the parent), and the parent of layer 2 merged into layer 2
# (into the child, which becomes the base).  Each time the leaf serves
# the bytes it served (sha256 of nbdcopy's output), vdi-img check finds
# the images that are left clean, and one guestfish session over
# "nbdkit -r" finds exactly the files of state 2 with their content.
#
# libguestfs launches a small VM for each guestfish session; with
# software emulation (force_tcg, since nested KVM often does not work)
# a launch takes about 20 seconds, so this test launches four: two to
# write, one to read each merge.

source ./functions.sh
set -e
set -x
# Time stamps in the log show where the time goes (the launches).
PS4='+ $(date +%T) '

requires guestfish --version
requires mkfs.ext4 -V
skip_if_valgrind "libguestfs is too slow under valgrind"

source "$abs_srcdir/test-chain-functions.sh"
source "$abs_srcdir/guestfs-functions.sh"

vm="$tmp/vm"
mkdir -p "$vm/Snapshots"

# --- State 0 ----------------------------------------------------------

s0="$tmp/s0"
mkdir -p "$s0/etc" "$s0/data/docs"
echo merge-state0 > "$s0/etc/hostname"
echo "kept as it is" > "$s0/data/keep.txt"
echo "version 0" > "$s0/data/modify.txt"
echo "deleted in state 1" > "$s0/data/delete1.txt"
echo "a document" > "$s0/data/docs/readme.txt"
head -c 3M /dev/urandom > "$s0/data/blob.bin"

truncate -s 64M "$tmp/base.img"
mkfs.ext4 -q -F -d "$s0" "$tmp/base.img"
qemu-img convert -f raw -O vdi "$tmp/base.img" "$vm/base.vdi"
rm "$tmp/base.img"

# --- State 1, through the filter ---------------------------------------

s1="$tmp/s1"
make_state1 "$s0" "$s1" merge-state1

state1_layer "$s1" /dev/sda "$vm/base.vdi" guestfish_session
u1="$layer1_uuid"
l1="$vm/Snapshots/{$u1}.vdi"

# --- State 2, over state 1 ---------------------------------------------

s2="$tmp/s2"
cp -a "$s1" "$s2"
echo "version 2" > "$s2/data/modify.txt"
echo "added in state 2" > "$s2/data/new2.txt"
rm "$s2/data/new1.txt"
mkdir "$s2/data/dir2"
head -c 2M /dev/urandom > "$s2/data/dir2/new2.bin"
head -c 1M /dev/urandom > "$s2/data/new1.bin"
printf 'XXXXXXXX' |
    dd of="$s2/data/blob.bin" bs=1 seek=$((1024 * 1024 + 7)) conv=notrunc
echo merge-state2 > "$s2/etc/hostname"

start_nbdkit -P "$tmp/w2.pid" -U "$tmp/w2.sock" \
             --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$l1" \
             vdidiff="$vm/Snapshots/new.vdi" vdidiff-block-size=256K
guestfish_session --format=raw -a "nbd://?socket=$tmp/w2.sock" <<EOF
run
mount /dev/sda /
upload $s2/data/modify.txt /data/modify.txt
upload $s2/data/new2.txt /data/new2.txt
rm /data/new1.txt
mkdir /data/dir2
upload $s2/data/dir2/new2.bin /data/dir2/new2.bin
upload $s2/data/new1.bin /data/new1.bin
pwrite /data/blob.bin XXXXXXXX $((1024 * 1024 + 7))
upload $s2/etc/hostname /etc/hostname
umount-all
EOF
kill_nbdkit "$(cat "$tmp/w2.pid")"
u2="$(vdi_uuid "$vm/Snapshots/new.vdi")"
l2="$vm/Snapshots/{$u2}.vdi"
mv "$vm/Snapshots/new.vdi" "$l2"

$VDI_CHECK "$vm/base.vdi" "$l1" "$l2"
leaf_sha="$(served_sha256 "$l2")"
tree_list "$s2" > "$tmp/s2.list"
tree_sums "$s2" > "$tmp/s2.sums"

# --- The merges -------------------------------------------------------

# check_merged NAME LEAF IMAGE...: LEAF serves what the leaf served,
# the IMAGEs left are clean, and guestfish finds the files of state 2.
check_merged ()
{
    local name="$1" leaf="$2" g="$tmp/$1"
    shift 2
    test "$(served_sha256 "$leaf")" = "$leaf_sha"
    $VDI_CHECK "$@"

    start_nbdkit -P "$g.pid" -U "$g.sock" -r "$VDI_PLUGIN" file="$leaf"
    guestfish_session --ro --format=raw -a "nbd://?socket=$g.sock" \
                      > "$g.out" <<EOF
run
mount-ro /dev/sda /
find0 / $g.find
checksums-out sha256 / $g.sums
echo @@ modify
cat /data/modify.txt
echo @@ hostname
cat /etc/hostname
echo @@ new1
is-file /data/new1.txt
echo @@ data
ls /data
umount-all
EOF
    kill_nbdkit "$(cat "$g.pid")"
    cat "$g.out"
    tr '\0' '\n' < "$g.find" | LC_ALL=C sort | diff -u "$tmp/s2.list" -
    sed 's|  \./| |' "$g.sums" | LC_ALL=C sort -k2 | diff -u "$tmp/s2.sums" -
    # (guestfish's cat adds a newline after the file's own.)
    diff -u - "$g.out" <<'EOF'
@@ modify
version 2

@@ hostname
merge-state2

@@ new1
false
@@ data
blob.bin
dir2
docs
keep.txt
modify.txt
new1.bin
new2.txt
EOF
}

# Layer 1 into the base.
up="$tmp/up"
cp -a "$vm" "$up"
$VDI_IMG merge "$up/Snapshots/{$u1}.vdi"
test ! -e "$up/Snapshots/{$u1}.vdi"
test -z "$(find "$up" -name '*.merge*')"
check_merged up "$up/Snapshots/{$u2}.vdi" \
             "$up/base.vdi" "$up/Snapshots/{$u2}.vdi"

# The parent of layer 2 (layer 1) into layer 2.
down="$tmp/down"
cp -a "$vm" "$down"
$VDI_IMG merge --into-child "$down/Snapshots/{$u2}.vdi"
test ! -e "$down/Snapshots/{$u1}.vdi"
test -z "$(find "$down" -name '*.merge*')"
check_merged down "$down/Snapshots/{$u2}.vdi" \
             "$down/base.vdi" "$down/Snapshots/{$u2}.vdi"
