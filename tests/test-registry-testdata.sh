#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Real VirtualBox settings files from ../shared/testdata (see its
# MANIFEST.md), copied here (the originals are never written to), with
# small VDI images made at the locations they name and with the UUIDs
# they name:
#
#  - tidev_androidlib/genymotion-google-pixel-8.0-api26.vbox: two VMDK
#    base disks, each with a child in Snapshots/, one snapshot
#    "factory-backup" (the current snapshot).  As it is, the plugin
#    must refuse it ("format VMDK is not supported"); with format
#    "VDI" and .vdi locations, the current state of disk 0 and disk 1
#    and the snapshot state must read as the model says.
#  - tidev_androidlib/linux-vm.vbox: one VDI, "Linux VM.vdi".
#  - StefanScherer_basebox-slave/VirtualBox.xml: a global registry
#    from Windows with no media, loaded together with a machine.

source ./functions.sh
set -e
set -x

requires_testdata

geny_src="$TESTDATA/tidev_androidlib/genymotion-google-pixel-8.0-api26.vbox"
linux_src="$TESTDATA/tidev_androidlib/linux-vm.vbox"
global_src="$TESTDATA/StefanScherer_basebox-slave/VirtualBox.xml"
for f in "$geny_src" "$linux_src" "$global_src"; do
    if [ ! -f "$f" ]; then
        echo "$0: test skipped: $f is absent from the test data"
        exit 77
    fi
done

source "$abs_srcdir/test-chain-functions.sh"

shared_sums="$(sha256sum "$geny_src" "$linux_src" "$global_src")"

# mk FILE ARGS...: a VDI image and its model (FILE.raw, FILE.ext).
mk ()
{
    local f="$1"
    shift
    mkdir -p "$(dirname "$f")"
    $MAKE_VDI --seed "$(basename "$f")" "$@" \
              --expect "$f.raw" --print-extents "$f.ext" "$f"
    mv "$f.raw" "$f.ext" "$tmp/models/"
}
mkdir "$tmp/models"
m="$tmp/models"

#----------------------------------------------------------------------
# Genymotion, as it is: VMDK disks.
g="$tmp/geny"
mkdir "$g"
cp "$geny_src" "$g/"
vbox="$g/$(basename "$geny_src")"
sys_base=72f9660a-2e75-4576-bb09-5480cc0e0462
sys_child=bf3e15cd-2a62-4561-91ba-78f9ca9b2d40
data_base=5b9870b6-b99d-4eff-a723-c149071c550b
data_child=96fb3733-225f-4780-929b-d723216b9b9a
snapshot=c760517a-3c69-4b8e-8941-b8e4a0eea992
# The file is the one described: these UUIDs, these locations.
grep -qF "uuid=\"{$sys_child}\" location=\"Snapshots/{$sys_child}.vmdk\" format=\"VMDK\"" "$vbox"
grep -qF "currentSnapshot=\"{$snapshot}\"" "$vbox"
grep -qF 'name="factory-backup"' "$vbox"

expect_fail geny-vmdk VMDK "not supported" "$(basename "$vbox")" \
    "Snapshots/{$sys_child}.vmdk" -- registry="$vbox"
expect_fail geny-vmdk-disk1 VMDK "not supported" \
    "Snapshots/{$data_child}.vmdk" -- registry="$vbox" disk=1
expect_fail geny-vmdk-snapshot VMDK "not supported" \
    "android_system_disk.vmdk" -- registry="$vbox" snapshot=factory-backup
expect_fail geny-vmdk-uuid VMDK "not supported" "android_data_disk.vmdk" \
    -- registry="$vbox" uuid="$data_base"

# Only the child made a VDI: its parent is still a VMDK.
sed "s|location=\"Snapshots/{$sys_child}.vmdk\" format=\"VMDK\"|location=\"Snapshots/{$sys_child}.vdi\" format=\"VDI\"|" \
    "$vbox" > "$g/mixed.vbox"
must_fail cmp -s "$vbox" "$g/mixed.vbox"
mk "$g/android_system_disk.vdi" --size 6M --uuid-create "$sys_base" \
   --blocks DZDFDd
mk "$g/Snapshots/{$sys_child}.vdi" --type diff --size 6M \
   --uuid-linkage "$sys_base" --uuid-parent-modify "$(vdi_modify "$g/android_system_disk.vdi")" \
   --uuid-create "$sys_child"
rm "$g/android_system_disk.vdi"
expect_fail geny-mixed "$sys_base" VMDK "android_system_disk.vmdk" \
    "{$sys_child}.vdi" -- registry="$g/mixed.vbox"

#----------------------------------------------------------------------
# Genymotion with VDI disks, made at the locations and with the UUIDs
# the file names; different block sizes in each chain.
sed 's/format="VMDK"/format="VDI"/g; s/\.vmdk"/.vdi"/g' "$vbox" > "$g/vdi.vbox"
must_fail grep -q -i vmdk "$g/vdi.vbox"
rm -f "$g"/Snapshots/*
mk "$g/android_system_disk.vdi" --size 6M --uuid-create "$sys_base" \
   --blocks DZDFDd
mk "$g/Snapshots/{$sys_child}.vdi" --uuid-create "$sys_child" \
   --parent "$g/android_system_disk.vdi" \
   --parent-expect "$m/android_system_disk.vdi.raw" \
   --parent-extents "$m/android_system_disk.vdi.ext" \
   --block-size 512K --blocks FDFZFFDDFZFF
mk "$g/android_data_disk.vdi" --size 5M+512 --uuid-create "$data_base" \
   --block-size 2M --blocks DZD
mk "$g/Snapshots/{$data_child}.vdi" --uuid-create "$data_child" \
   --parent "$g/android_data_disk.vdi" \
   --parent-expect "$m/android_data_disk.vdi.raw" \
   --parent-extents "$m/android_data_disk.vdi.ext" \
   --block-size 128K --weights 1,0,1,6
before="$(sums)"

t_block=524288 check_served geny-current \
    "$m/{$sys_child}.vdi.raw" "$m/{$sys_child}.vdi.ext" \
    registry="$g/vdi.vbox"
t_block=131072 check_served geny-disk1 \
    "$m/{$data_child}.vdi.raw" "$m/{$data_child}.vdi.ext" \
    registry="$g/vdi.vbox" disk=1
t_block=1048576 check_served geny-snapshot \
    "$m/android_system_disk.vdi.raw" "$m/android_system_disk.vdi.ext" \
    registry="$g/vdi.vbox" snapshot=factory-backup
t_block=2097152 check_served geny-snapshot-disk1 \
    "$m/android_data_disk.vdi.raw" "$m/android_data_disk.vdi.ext" \
    registry="$g/vdi.vbox" snapshot="$(upper_braced "$snapshot")" disk=1
t_block=131072 check_served geny-uuid \
    "$m/{$data_child}.vdi.raw" "$m/{$data_child}.vdi.ext" \
    registry="$g/vdi.vbox" uuid="$(upper_braced "$data_child")"
# The snapshot state is read-only.
nbdkit -U - "$VDI_PLUGIN" registry="$g/vdi.vbox" snapshot=factory-backup \
       --run 'nbdinfo --can write "$uri"' && exit 1
# Folder scanning finds the same chains.
t_block=524288 check_served geny-scan \
    "$m/{$sys_child}.vdi.raw" "$m/{$sys_child}.vdi.ext" \
    "$g/Snapshots/{$sys_child}.vdi"
# The machine has two disks, so disk=2 is refused.
expect_fail geny-disk2 "disk=2" "2 hard disks" -- registry="$g/vdi.vbox" disk=2
test "$(sums)" = "$before"

#----------------------------------------------------------------------
# linux-vm.vbox: "Linux VM.vdi", a name with a space.
l="$tmp/linux"
mkdir "$l"
cp "$linux_src" "$l/"
lvbox="$l/$(basename "$linux_src")"
lu=b48fd6c3-7041-4aa2-8b0f-b98d43fb739d
grep -qF "uuid=\"{$lu}\" location=\"Linux VM.vdi\" format=\"VDI\"" "$lvbox"
mk "$l/Linux VM.vdi" --size 9M+512 --uuid-create "$lu" --blocks DFZDdDZFDD
check_served linux "$m/Linux VM.vdi.raw" "$m/Linux VM.vdi.ext" \
    registry="$lvbox"
check_served linux-uuid "$m/Linux VM.vdi.raw" "$m/Linux VM.vdi.ext" \
    registry="$lvbox" uuid="{$lu}"
check_served linux-file "$m/Linux VM.vdi.raw" "$m/Linux VM.vdi.ext" \
    "$l/Linux VM.vdi"
# It has no snapshots: snapshot= says so.
expect_fail linux-no-snapshot "no snapshots" "Linux VM" -- \
    registry="$lvbox" snapshot=anything

# A real global registry (from Windows, no media) with the machine.
cp "$global_src" "$l/VirtualBox.xml"
check_served linux-global "$m/Linux VM.vdi.raw" "$m/Linux VM.vdi.ext" \
    registry="$l/VirtualBox.xml" registry="$lvbox"
# Alone, it holds no machine: uuid= or file= is needed.
expect_fail global-alone "VirtualBox.xml" "uuid=" -- \
    registry="$l/VirtualBox.xml"
expect_fail global-alone-uuid "$lu" "VirtualBox.xml" -- \
    registry="$l/VirtualBox.xml" uuid="$lu"

# The shared files are unchanged.
test "$(sha256sum "$geny_src" "$linux_src" "$global_src")" = "$shared_sums"
