#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# End to end with a real guest filesystem, as a user would go:
#
#   - a 128 MiB disk with an MBR partition and an ext4 filesystem that
#     looks like a Debian root (virt-make-fs), converted to a dynamic
#     VDI by qemu-img: state 0;
#   - the guest's files changed by guestfish (added, modified, partly
#     overwritten, deleted) through
#     "nbdkit --filter=vdidiff vdi base.vdi vdidiff=...": state 1, kept
#     in a differencing image, renamed Snapshots/{UUID}.vdi as
#     VirtualBox names them;
#   - changed again through "vdi-serve --diff" over that differencing
#     image: state 2, in a second one;
#   - a machine settings file e2e.vbox, written here with the create
#     UUIDs read from the headers: the nested HardDisk chain, snapshot
#     "Snapshot 1" holding the base (state 0), its child "Snapshot 2"
#     holding the first differencing image (state 1), and the current
#     state on the second one (state 2), as VirtualBox does it.
#
# One guestfish session (one appliance launch) then reads eight drives:
# each state through the plugin (file=, registry= with snapshot= by
# name and by UUID, the current state through "vdi-serve
# --background", a differencing image whose parents are found by
# folder scan) and the qcow2 files "vdi-convert" made of each state.
# Every drive must hold exactly the files of its state (names and
# SHA-256 of every file, against copies kept on the host, so also the
# host name in /etc/hostname), and list-filesystems must show ext4.
# qemu-img compare must find each qcow2 identical to its state served
# over NBD.  nbdcopy of the chain must stay sparse.  Last, libguestfs
# inspection must find the Debian root of a snapshot's state and of
# the current one, with their host names: "vdi-inspect"
# (virt-inspector) and "vdi-inspect --shell" (guestfish -i, commands
# on stdin).
#
# libguestfs launches a small VM for each guestfish/virt-* command;
# with software emulation (force_tcg, used here because nested KVM
# often does not work) each launch takes about 20 seconds, so this
# test launches six, and inspects only twice (inspection takes about
# 8 seconds per disk under TCG).

source ./functions.sh
set -e
set -x
# Time stamps in the log show where the time goes (the launches).
PS4='+ $(date +%T) '

requires_python_nbd
requires guestfish --version
requires virt-make-fs --help
requires virt-inspector --help
requires qemu-img --version
requires nbdinfo --version
requires nbdcopy --version
skip_if_valgrind "libguestfs is too slow under valgrind"

source "$abs_srcdir/guestfs-functions.sh"

scripts="$abs_top_srcdir/scripts"
# The scripts find the build beside them; say so for VPATH builds.
export NBDKIT_VDI_PLUGIN="$VDI_PLUGIN"
export NBDKIT_VDIDIFF_FILTER="$VDIDIFF_FILTER"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-e2e-guestfs.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
vm="$tmp/VMs/e2e"
mkdir -p "$vm/Snapshots"

# --- state 0: the base ------------------------------------------------

# The files of each state are kept on the host (s0, s1, s2): what
# guestfish must find, and what is uploaded into the guest.
s0="$tmp/s0"
mkdir -p "$s0"/{bin,sbin,usr/bin,etc,var/lib/dpkg,data/docs}
printf '/dev/sda1 / ext4 defaults 0 1\n' > "$s0/etc/fstab"
cat > "$s0/etc/os-release" <<'EOF'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
EOF
echo 12.5 > "$s0/etc/debian_version"
echo e2e-state0 > "$s0/etc/hostname"
cat > "$s0/var/lib/dpkg/status" <<'EOF'
Package: hello
Status: install ok installed
Architecture: amd64
Version: 2.10-3
Description: example package

EOF
echo "kept as it is" > "$s0/data/keep.txt"
echo "version 0" > "$s0/data/modify.txt"
echo "deleted in state 1" > "$s0/data/delete1.txt"
echo "a document" > "$s0/data/docs/readme.txt"
head -c 3M /dev/urandom > "$s0/data/blob.bin"

virt-make-fs --partition=mbr --type=ext4 --size=128M "$s0" "$tmp/base.img"
qemu-img convert -f raw -O vdi "$tmp/base.img" "$vm/base.vdi"
u0="$(vdi_uuid "$vm/base.vdi")"

# --- state 1: first differencing image, through the filter ------------

s1="$tmp/s1"
make_state1 "$s0" "$s1" e2e-state1

state1_layer "$s1" /dev/sda1 "$vm/base.vdi" guestfish
u1="$layer1_uuid"

# --- state 2: second differencing image, through vdi-serve --diff -----

s2="$tmp/s2"
cp -a "$s1" "$s2"
echo "version 2" > "$s2/data/modify.txt"
echo "added in state 2" > "$s2/data/new2.txt"
rm "$s2/data/new1.txt"
mkdir "$s2/data/dir2"
head -c 2M /dev/urandom > "$s2/data/dir2/new2.bin"
printf 'XXXXXXXX' |
    dd of="$s2/data/blob.bin" bs=1 seek=$((1024 * 1024 + 7)) conv=notrunc
echo e2e-state2 > "$s2/etc/hostname"

"$scripts/vdi-serve" --background --socket "$tmp/w2.sock" \
                     --pidfile "$tmp/w2.pid" \
                     --diff "$vm/Snapshots/new.vdi" "$vm/Snapshots/{$u1}.vdi" \
                     > "$tmp/w2.out"
cleanup_fn kill_nbdkit "$(cat "$tmp/w2.pid")"
cat "$tmp/w2.out"
grep -F "nbd+unix:///?socket=$tmp/w2.sock" "$tmp/w2.out"
grep -F "guestfish --format=raw -a 'nbd://?socket=$tmp/w2.sock' -i" "$tmp/w2.out"
guestfish --format=raw -a "nbd://?socket=$tmp/w2.sock" <<EOF
run
mount /dev/sda1 /
upload $s2/data/modify.txt /data/modify.txt
upload $s2/data/new2.txt /data/new2.txt
rm /data/new1.txt
mkdir /data/dir2
upload $s2/data/dir2/new2.bin /data/dir2/new2.bin
pwrite /data/blob.bin XXXXXXXX $((1024 * 1024 + 7))
upload $s2/etc/hostname /etc/hostname
umount-all
EOF
kill_nbdkit "$(cat "$tmp/w2.pid")"
u2="$(vdi_uuid "$vm/Snapshots/new.vdi")"
mv "$vm/Snapshots/new.vdi" "$vm/Snapshots/{$u2}.vdi"

# --- the machine ------------------------------------------------------

machine="$(cat /proc/sys/kernel/random/uuid)"
snap1="$(cat /proc/sys/kernel/random/uuid)"
snap2="$(cat /proc/sys/kernel/random/uuid)"

# attached UUID: the storage controllers of a machine or snapshot.
attached ()
{
    cat <<EOF
        <StorageControllers>
          <StorageController name="SATA" type="AHCI" PortCount="1" useHostIOCache="false" Bootable="true">
            <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
              <Image uuid="{$1}"/>
            </AttachedDevice>
          </StorageController>
        </StorageControllers>
EOF
}

cat > "$vm/e2e.vbox" <<EOF
<?xml version="1.0"?>
<!--
** DO NOT EDIT THIS FILE.
** Written by nbdkit-vdi's test-e2e-guestfs.sh in VirtualBox's layout.
-->
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{$machine}" name="e2e" OSType="Debian_64" currentSnapshot="{$snap2}" snapshotFolder="Snapshots" lastStateChange="2024-05-01T10:00:00Z">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$u0}" location="base.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$u1}" location="Snapshots/{$u1}.vdi" format="VDI">
            <HardDisk uuid="{$u2}" location="Snapshots/{$u2}.vdi" format="VDI"/>
          </HardDisk>
        </HardDisk>
      </HardDisks>
    </MediaRegistry>
    <Snapshot uuid="{$snap1}" name="Snapshot 1" timeStamp="2024-05-01T09:00:00Z">
      <Hardware>
        <Memory RAMSize="1024"/>
$(attached "$u0")
      </Hardware>
      <Snapshots>
        <Snapshot uuid="{$snap2}" name="Snapshot 2" timeStamp="2024-05-01T09:30:00Z">
          <Hardware>
            <Memory RAMSize="1024"/>
$(attached "$u1")
          </Hardware>
        </Snapshot>
      </Snapshots>
    </Snapshot>
    <Hardware>
      <Memory RAMSize="1024"/>
$(attached "$u2")
    </Hardware>
  </Machine>
</VirtualBox>
EOF
cat "$vm/e2e.vbox"

images_sums ()
{
    local f
    for f in "$vm/e2e.vbox" "$vm/base.vdi" "$vm/Snapshots/"*.vdi; do
        echo "$(sha256_of "$f") $f"
    done
}
images_sums > "$tmp/images.sums"

# --- every state, through every path ----------------------------------

# vdi-convert of each state to qcow2.
"$scripts/vdi-convert" "$vm/base.vdi" "$tmp/state0.qcow2"
"$scripts/vdi-convert" "$vm/e2e.vbox@Snapshot 2" "$tmp/state1.qcow2"
"$scripts/vdi-convert" -q "$vm/e2e.vbox" "$tmp/state2.qcow2"
for s in 0 1 2; do
    qemu-img info "$tmp/state$s.qcow2" | grep '^file format: qcow2'
done

# The servers, read-only.
start_nbdkit -P "$tmp/a.pid" -U "$tmp/a.sock" -r \
             "$VDI_PLUGIN" file="$vm/base.vdi" readonly=true
start_nbdkit -P "$tmp/b.pid" -U "$tmp/b.sock" -r \
             "$VDI_PLUGIN" registry="$vm/e2e.vbox" snapshot="Snapshot 1" \
             readonly=true
start_nbdkit -P "$tmp/c.pid" -U "$tmp/c.sock" -r \
             "$VDI_PLUGIN" registry="$vm/e2e.vbox" snapshot="{$snap2}" \
             readonly=true
"$scripts/vdi-serve" --background --readonly --socket "$tmp/d.sock" \
                     "$vm/e2e.vbox" > "$tmp/d.out"
cleanup_fn kill_nbdkit "$(cat "$tmp/d.sock.pid")"
cat "$tmp/d.out"
grep -F "guestfish --ro --format=raw -a 'nbd://?socket=$tmp/d.sock' -i" \
     "$tmp/d.out"
start_nbdkit -P "$tmp/e.pid" -U "$tmp/e.sock" -r \
             "$VDI_PLUGIN" file="$vm/Snapshots/{$u2}.vdi" readonly=true

# drive letter, how it is added, its state.
drives=(
    "a nbd://?socket=$tmp/a.sock raw 0"
    "b nbd://?socket=$tmp/b.sock raw 0"
    "c nbd://?socket=$tmp/c.sock raw 1"
    "d nbd://?socket=$tmp/d.sock raw 2"
    "e nbd://?socket=$tmp/e.sock raw 2"
    "f $tmp/state0.qcow2 qcow2 0"
    "g $tmp/state1.qcow2 qcow2 1"
    "h $tmp/state2.qcow2 qcow2 2"
)
gf_args=()
gf_script="run
echo @@ filesystems
list-filesystems
"
for d in "${drives[@]}"; do
    read -r letter src format state <<< "$d"
    gf_args+=(--format="$format" -a "$src")
    gf_script+="mount-ro /dev/sd${letter}1 /
find0 / $tmp/find.sd$letter
checksums-out sha256 / $tmp/sums.sd$letter
umount /
"
done
guestfish --ro "${gf_args[@]}" <<< "$gf_script" > "$tmp/gf.out"
cat "$tmp/gf.out"

# section NAME: the lines of $tmp/gf.out after "@@ NAME", up to the
# next "@@".
section ()
{
    awk -v want="@@ $*" '/^@@ / { on = ($0 == want); next } on' "$tmp/gf.out"
}

for s in 0 1 2; do
    tree_list "$tmp/s$s" > "$tmp/s$s.list"
    tree_sums "$tmp/s$s" > "$tmp/s$s.sums"
done
for d in "${drives[@]}"; do
    read -r letter src format state <<< "$d"
    : "drive sd$letter: $src, state $state"
    section filesystems | grep -Fx "/dev/sd${letter}1: ext4"
    tr '\0' '\n' < "$tmp/find.sd$letter" | LC_ALL=C sort |
        diff -u "$tmp/s$state.list" -
    sed 's|  \./| |' "$tmp/sums.sd$letter" | LC_ALL=C sort -k2 |
        diff -u "$tmp/s$state.sums" -
done
test "$(section filesystems | wc -l)" -eq ${#drives[@]}

# Each qcow2 is the disk served over NBD, byte for byte; the states
# differ from each other.
qemu-img compare -f raw -F raw "$tmp/base.img" "nbd+unix:///?socket=$tmp/a.sock"
qemu-img compare -f qcow2 -F raw "$tmp/state0.qcow2" "nbd+unix:///?socket=$tmp/b.sock"
qemu-img compare -f qcow2 -F raw "$tmp/state1.qcow2" "nbd+unix:///?socket=$tmp/c.sock"
qemu-img compare -f qcow2 -F raw "$tmp/state2.qcow2" "nbd+unix:///?socket=$tmp/d.sock"
qemu-img compare -f qcow2 -F raw "$tmp/state2.qcow2" "nbd+unix:///?socket=$tmp/e.sock"
status=0
qemu-img compare -q -f qcow2 -F qcow2 "$tmp/state1.qcow2" "$tmp/state2.qcow2" ||
    status=$?
test $status -eq 1

# nbdcopy of the three-image chain keeps the holes: the copy's
# allocated size is at most the data the chain holds (whole 1 MiB
# blocks, of which nbdcopy skips the zeros), far below the 128 MiB.
nbdcopy "nbd+unix:///?socket=$tmp/d.sock" "$tmp/state2.raw"
qemu-img compare -f raw -F qcow2 "$tmp/state2.raw" "$tmp/state2.qcow2"
nbdinfo --map "nbd+unix:///?socket=$tmp/d.sock" > "$tmp/d.map"
data="$(normalise_nbdinfo_map < "$tmp/d.map" |
        awk '$3 == "data" { n += $2 } END { print n + 0 }')"
used="$(du -B1 "$tmp/state2.raw" | cut -f1)"
size="$(stat -c %s "$tmp/state2.raw")"
echo "state2.raw: $used bytes allocated, $data bytes of data, size $size"
test "$size" -eq $((128 * 1024 * 1024))
test "$used" -ge $((5 * 1024 * 1024))       # the random files
test "$used" -le $((data + 1024 * 1024))
test "$data" -le $((size / 4))

# --- vdi-inspect -------------------------------------------------------

# virt-inspector's XML of a snapshot (name as the second argument).
"$scripts/vdi-inspect" "$vm/e2e.vbox" "Snapshot 2" > "$tmp/inspect.xml"
cat "$tmp/inspect.xml"
grep -F '<hostname>e2e-state1</hostname>' "$tmp/inspect.xml"
grep -F '<distro>debian</distro>' "$tmp/inspect.xml"
grep -F '<type>ext4</type>' "$tmp/inspect.xml"
grep -F '<name>hello</name>' "$tmp/inspect.xml"

# The interactive shell (guestfish --ro -i) reading commands from
# stdin, on the current state.
"$scripts/vdi-inspect" --shell "$vm/e2e.vbox" > "$tmp/shell.out" <<'EOF'
cat /etc/hostname
cat /data/modify.txt
is-file /data/new1.txt
EOF
cat "$tmp/shell.out"
printf 'e2e-state2\n\nversion 2\n\nfalse\n' | diff -u - "$tmp/shell.out"

# Nothing was written to the machine's files while reading them.
images_sums | diff -u "$tmp/images.sums" -
