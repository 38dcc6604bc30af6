#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Choosing the disk through VirtualBox's settings files (registry=):
# the machine's current state of its first disk, disk=1, uuid= (with
# and without braces, any case), snapshot= by name and by UUID (served
# read-only: writes fail, no file changes), file= together with
# registry=, a VirtualBox.xml holding the media of a machine whose
# .vbox has none (registry= twice, in either order).  -D vdi.chain=1
# must list the chain top to base with UUIDs and files, and the export
# description must name the chain depth.  Every disk read must be the
# model's (make-vdi.py --machine).

source ./functions.sh
set -e
set -x

source "$abs_srcdir/test-chain-functions.sh"

# "Deb": two disks, each a base and three snapshots' children (so
# three snapshots, nested), with different block sizes per layer.
make_machine "$tmp/VMs/Deb" "$tmp/m" <<'EOF'
{"name": "Deb", "seed": "select",
 "snapshot_names": ["Fresh install", "Before upgrade",
                    "Tom & Jerry's <test> \u00e9t\u00e9"],
 "disks": [
  {"layers": [{"size": "8M", "weights": "4,1,2,1"},
              {"block_size": "512K", "weights": "2,1,1,6"},
              {"block_size": "2M", "weights": "2,1,1,4"},
              {"block_size": "256K", "weights": "2,1,1,6"}]},
  {"layers": [{"size": "6M", "block_size": "2M", "blocks": "DZD"},
              {"block_size": "1M", "blocks": "FDFZFF"},
              {"size": "7M", "block_size": "128K", "weights": "1,0,1,8"},
              {"block_size": "1M", "blocks": "DFFFFFZ"}]}]}
EOF
m="$tmp/m"
vbox="$tmp/VMs/Deb/Deb.vbox"
cat "$m/media" "$m/snapshots"

before="$(sums)"

# chain_lines MODEL DISK TOP-LAYER: what -D vdi.chain=1 must list,
# "[i] UUID TYPE FILE" from the top down to the base.
chain_lines ()
{
    local i=0 l type
    for (( l = $3; l >= 0; --l )); do
        type=differencing
        [ "$l" -eq 0 ] && type=dynamic
        echo "[$i] $(media_uuid "$1" "$2" "$l") $type $(media_path "$1" "$2" "$l")"
        i=$((i + 1))
    done
}

# served NAME ARGS...: the -v -D vdi.chain=1 output of the plugin
# (chain lines only, "[i] UUID TYPE FILE") and its export description
# (in $tmp/NAME.desc); whether clients may write ($tmp/NAME.rw: 0 yes).
served ()
{
    local name="$1"
    shift
    t_prefix="$tmp/$name" \
    nbdkit -U - -v -D vdi.chain=1 "$VDI_PLUGIN" "$@" --run '
        nbdinfo "$uri" | sed -n "s/^\tdescription: //p" > "$t_prefix.desc"
        nbdinfo --can write "$uri"; echo $? > "$t_prefix.rw"
    ' 2> "$tmp/$name.log"
    sed -n 's/^nbdkit: debug:   \(\[[0-9]*\] [^ ]* [^ ]* .*\) ([0-9]* bytes, block size [0-9]*)$/\1/p' \
        "$tmp/$name.log" > "$tmp/$name.chain"
    cat "$tmp/$name.chain" "$tmp/$name.desc" "$tmp/$name.rw"
}

# The current state: the first disk (the DVD attached before it does
# not count), the whole chain, writable (not written here).
t_block=262144 check_served current "$m/d0.l3.raw" "$m/d0.l3.extents" \
    registry="$vbox"
served current registry="$vbox"
chain_lines "$m" 0 3 | diff -u - "$tmp/current.chain"
grep -q "^VirtualBox differencing image {$(media_uuid "$m" 0 3)}, modification {$(media_modify "$m" 0 3)}, chain depth 4$" \
    "$tmp/current.desc"
test "$(cat "$tmp/current.rw")" -eq 0

# disk=1.
t_block=131072 check_served disk1 "$m/d1.l3.raw" "$m/d1.l3.extents" \
    registry="$vbox" disk=1
served disk1 registry="$vbox" disk=1
chain_lines "$m" 1 3 | diff -u - "$tmp/disk1.chain"
grep -q "chain depth 4$" "$tmp/disk1.desc"

# uuid=: any medium, in any form.
u="$(media_uuid "$m" 0 1)"
t_block=524288 check_served uuid-plain "$m/d0.l1.raw" "$m/d0.l1.extents" \
    registry="$vbox" uuid="$u"
t_block=524288 check_served uuid-upper "$m/d0.l1.raw" "$m/d0.l1.extents" \
    registry="$vbox" uuid="$(upper_braced "$u")"
served uuid-upper registry="$vbox" uuid="$(upper_braced "$u")"
chain_lines "$m" 0 1 | diff -u - "$tmp/uuid-upper.chain"
grep -q "chain depth 2$" "$tmp/uuid-upper.desc"
# A medium with differencing children is a parent: never written.
test "$(cat "$tmp/uuid-upper.rw")" -ne 0
grep -q "read-only because it has differencing images" "$tmp/uuid-upper.log"
u="$(media_uuid "$m" 1 0)"
t_block=1048576 check_served uuid-base "$m/d1.l0.raw" "$m/d1.l0.extents" \
    registry="$vbox" uuid="{$u}"
served uuid-base registry="$vbox" uuid="{$u}"
test "$(cat "$tmp/uuid-base.rw")" -ne 0
grep -q "^VirtualBox dynamic image {$u}, .*, chain depth 1$" "$tmp/uuid-base.desc"

# snapshot=: by name (names with spaces, XML escapes and UTF-8), by
# UUID in any form; the disk as it was then, with disk= too.
t_block=524288 check_served snap-name "$m/d0.l1.raw" "$m/d0.l1.extents" \
    registry="$vbox" snapshot="$(snapshot_name "$m" 1)"
t_block=1048576 check_served snap-uuid "$m/d0.l0.raw" "$m/d0.l0.extents" \
    registry="$vbox" snapshot="$(upper_braced "$(snapshot_uuid "$m" 0)")"
t_block=131072 check_served snap-name-disk1 "$m/d1.l2.raw" \
    "$m/d1.l2.extents" registry="$vbox" disk=1 \
    snapshot="$(snapshot_name "$m" 2)"
test "$(snapshot_name "$m" 2)" = "Tom & Jerry's <test> été"
t_block=262144 check_served snap-uuid-disk1 "$m/d1.l1.raw" \
    "$m/d1.l1.extents" registry="$vbox" disk=1 \
    snapshot="$(snapshot_uuid "$m" 1)"
served snap registry="$vbox" snapshot="Before upgrade"
chain_lines "$m" 0 1 | diff -u - "$tmp/snap.chain"
grep -q "chain depth 2$" "$tmp/snap.desc"

# A snapshot state is read-only: the server says so, a client cannot
# write (libnbd refuses, and with its checks off the server refuses),
# and nothing changes.
test "$(cat "$tmp/snap.rw")" -ne 0
grep "read-only" "$tmp/snap.log"
grep "vdidiff" "$tmp/snap.log"
# (random-io.py readonly: the export is read-only, and the server
# refuses writes, FUA writes, zeroes and trims with EPERM or EROFS,
# libnbd's own checks off; random-io.py verify: the disk is still the
# model.)
t_raw="$m/d0.l1.raw" t_random_io="$RANDOM_IO" \
nbdkit -U - "$VDI_PLUGIN" registry="$vbox" snapshot="Before upgrade" \
       --run '$t_random_io readonly "$uri" && $t_random_io verify "$uri" "$t_raw"'
test "$(sums)" = "$before"

# file= with registry=: that file, its parents from the registry.
t_block=524288 check_served file "$m/d0.l2.raw" "$m/d0.l2.extents" \
    registry="$vbox" file="$(media_path "$m" 0 2)"
served file registry="$vbox" file="$(media_path "$m" 0 2)"
chain_lines "$m" 0 2 | diff -u - "$tmp/file.chain"

# Negative control: the chain check can fail.
chain_lines "$m" 0 2 | sed 1d > "$tmp/wrong.chain"
must_fail diff -u "$tmp/wrong.chain" "$tmp/file.chain"

# An older machine whose media are in the global VirtualBox.xml (with
# absolute locations) and whose .vbox has none: StorageControllers
# directly in Machine and Snapshot, the innotek namespace, settings
# 1.12.  Both files are needed, in either order.
make_machine "$tmp/VMs/Old" "$tmp/o" <<EOF
{"name": "Old", "seed": "old", "version": "1.12-linux",
 "namespace": "http://www.innotek.de/VirtualBox-settings",
 "storage_in_hardware": false,
 "global": "$tmp/home/VirtualBox.xml",
 "disks": [{"layers": [{"size": "4M", "blocks": "DZDF"},
                       {"block_size": "512K", "blocks": "FFDZFFFZ"}]}]}
EOF
o="$tmp/o"
must_fail grep -q MediaRegistry "$tmp/VMs/Old/Old.vbox"
grep -q "location=\"$(media_path "$o" 0 1)\"" "$tmp/home/VirtualBox.xml"
t_block=524288 check_served global "$o/d0.l1.raw" "$o/d0.l1.extents" \
    registry="$tmp/home/VirtualBox.xml" registry="$tmp/VMs/Old/Old.vbox"
t_block=524288 check_served global-reversed "$o/d0.l1.raw" \
    "$o/d0.l1.extents" registry="$tmp/VMs/Old/Old.vbox" \
    registry="$tmp/home/VirtualBox.xml"
t_block=1048576 check_served global-snapshot "$o/d0.l0.raw" \
    "$o/d0.l0.extents" registry="$tmp/VMs/Old/Old.vbox" \
    registry="$tmp/home/VirtualBox.xml" snapshot="Snapshot 1"
# VirtualBox.xml alone, with uuid=.
t_block=524288 check_served global-uuid "$o/d0.l1.raw" "$o/d0.l1.extents" \
    registry="$tmp/home/VirtualBox.xml" uuid="$(media_uuid "$o" 0 1)"
# The .vbox alone does not know where its disk is.
expect_fail global-missing "$(media_uuid "$o" 0 1)" Old.vbox -- \
    registry="$tmp/VMs/Old/Old.vbox"

# The same media in both files (VirtualBox merges them): fine.
make_machine "$tmp/VMs/Both" "$tmp/b" <<EOF
{"name": "Both", "seed": "both", "media_in": "both",
 "global": "$tmp/home2/VirtualBox.xml",
 "disks": [{"layers": [{"size": "4M", "blocks": "DZDF"},
                       {"blocks": "FDFZ"}]}]}
EOF
grep -q MediaRegistry "$tmp/VMs/Both/Both.vbox"
check_served both "$tmp/b/d0.l1.raw" "$tmp/b/d0.l1.extents" \
    registry="$tmp/home2/VirtualBox.xml" registry="$tmp/VMs/Both/Both.vbox"

# Nothing here wrote to Deb's files.
test "$(sums | grep -F ' ./VMs/Deb/')" = "$before"
