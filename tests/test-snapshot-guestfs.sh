#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end: "vdi-img snapshot take" and "restore" under a guest
# filesystem.
#
#   - state 0: a 64 MiB ext4 filesystem (mkfs.ext4 -d, no appliance
#     needed) converted to a dynamic VDI by qemu-img: the base of a
#     machine whose settings file is written here in VirtualBox's
#     layout (write_vbox), no snapshot;
#   - "vdi-img snapshot take M.vbox clean";
#   - state 1 (files added, changed and deleted, the host name set) by
#     guestfish through "nbdkit vdi registry=M.vbox", the current
#     state (launch 1);
#   - one read-only guestfish (launch 2) finds exactly the files of
#     state 1 (names and SHA-256 of each) in the current state and of
#     state 0 in snapshot "clean";
#   - "vdi-img snapshot restore M.vbox clean": the current state's
#     differencing image, which holds state 1, is removed;
#   - a read-only guestfish (launch 3) finds exactly the files of
#     state 0 in the current state: the new files are gone, the
#     changed and deleted ones are back; its bytes are those of
#     "clean".
#
# libguestfs launches a small VM for each guestfish session; with
# software emulation (force_tcg, since nested KVM often does not work)
# a launch takes about 20 seconds, so this test launches three.

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
source "$abs_srcdir/snapshot-functions.sh"

vm="$tmp/vm"
# The snapshot folder that VirtualBox makes with the machine.
mkdir -p "$vm/Snapshots"
vbox="$vm/Guest.vbox"

# --- State 0 ----------------------------------------------------------

s0="$tmp/s0"
mkdir -p "$s0/etc" "$s0/data/docs"
echo snapshot-state0 > "$s0/etc/hostname"
echo "kept as it is" > "$s0/data/keep.txt"
echo "version 0" > "$s0/data/modify.txt"
echo "deleted in state 1" > "$s0/data/delete1.txt"
echo "a document" > "$s0/data/docs/readme.txt"
head -c 3M /dev/urandom > "$s0/data/blob.bin"

truncate -s 64M "$tmp/base.img"
mkfs.ext4 -q -F -d "$s0" "$tmp/base.img"
qemu-img convert -f raw -O vdi "$tmp/base.img" "$vm/base.vdi"
rm "$tmp/base.img"
u0="$(vdi_uuid "$vm/base.vdi")"
write_vbox "$vbox" "$u0" <<EOF
        <HardDisk uuid="{$u0}" location="base.vdi" format="VDI" type="Normal"/>
EOF

$VDI_IMG snapshot take "$vbox" clean
clean_sha="$(disk_sha "$vbox" 0 clean)"
test "$(disk_sha "$vbox" 0)" = "$clean_sha"
diff1="$vm/Snapshots/{$(current_disks "$vbox")}.vdi"
test -f "$diff1"

# --- State 1, through the plugin, in the current state -----------------

s1="$tmp/s1"
make_state1 "$s0" "$s1" snapshot-state1
start_nbdkit -P "$tmp/w.pid" -U "$tmp/w.sock" "$VDI_PLUGIN" registry="$vbox"
write_state1 "$s1" /dev/sda \
             guestfish_session --format=raw -a "nbd://?socket=$tmp/w.sock"
kill_nbdkit "$(cat "$tmp/w.pid")"
test "$(disk_sha "$vbox" 0 clean)" = "$clean_sha"
test "$(disk_sha "$vbox" 0)" != "$clean_sha"

# check_trees NAME STATE... : the drives of guestfish session NAME
# (/dev/sda, /dev/sdb, ...) held exactly the files of these states
# (names, and the SHA-256 of each).
for s in s0 s1; do
    tree_list "$tmp/$s" > "$tmp/$s.list"
    tree_sums "$tmp/$s" > "$tmp/$s.sums"
done
check_trees ()
{
    local name="$1" i=0 s
    shift
    for s in "$@"; do
        tr '\0' '\n' < "$tmp/$name.$i.find" | LC_ALL=C sort |
            diff -u "$tmp/$s.list" -
        sed 's|  \./| |' "$tmp/$name.$i.sums" | LC_ALL=C sort -k2 |
            diff -u "$tmp/$s.sums" -
        i=$((i + 1))
    done
}

# --- Both states, read-only ----------------------------------------------

start_nbdkit -P "$tmp/c.pid" -U "$tmp/c.sock" -r "$VDI_PLUGIN" \
             registry="$vbox"
start_nbdkit -P "$tmp/k.pid" -U "$tmp/k.sock" -r "$VDI_PLUGIN" \
             registry="$vbox" snapshot=clean
guestfish_session --ro --format=raw -a "nbd://?socket=$tmp/c.sock" \
                  -a "nbd://?socket=$tmp/k.sock" <<EOF
run
mount-ro /dev/sda /
find0 / $tmp/before.0.find
checksums-out sha256 / $tmp/before.0.sums
umount-all
mount-ro /dev/sdb /
find0 / $tmp/before.1.find
checksums-out sha256 / $tmp/before.1.sums
umount-all
EOF
kill_nbdkit "$(cat "$tmp/c.pid")"
kill_nbdkit "$(cat "$tmp/k.pid")"
check_trees before s1 s0

# --- Restore "clean" ---------------------------------------------------

$VDI_IMG snapshot restore "$vbox" clean
test ! -e "$diff1"
test "$(disk_sha "$vbox" 0)" = "$clean_sha"

start_nbdkit -P "$tmp/r.pid" -U "$tmp/r.sock" -r "$VDI_PLUGIN" \
             registry="$vbox"
guestfish_session --ro --format=raw -a "nbd://?socket=$tmp/r.sock" \
                  > "$tmp/after.out" <<EOF
run
mount-ro /dev/sda /
find0 / $tmp/after.0.find
checksums-out sha256 / $tmp/after.0.sums
echo @@ new1
is-file /data/new1.txt
echo @@ delete1
cat /data/delete1.txt
echo @@ modify
cat /data/modify.txt
echo @@ hostname
cat /etc/hostname
umount-all
EOF
kill_nbdkit "$(cat "$tmp/r.pid")"
cat "$tmp/after.out"
check_trees after s0
# (guestfish's cat adds a newline after the file's own.)
diff -u - "$tmp/after.out" <<'EOF'
@@ new1
false
@@ delete1
deleted in state 1

@@ modify
version 0

@@ hostname
snapshot-state0

EOF
