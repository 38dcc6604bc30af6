#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# A machine's current state attaching an autoreset differencing image
# (the child VirtualBox makes for an Immutable disk) is served as
# VirtualBox powers the machine on: clients see the parent's bytes,
# and the differencing image is emptied (same create UUID, no blocks,
# parent-modify UUID = the parent's modify UUID) just before the first
# write lands in it, never before:
#   (a) nbdkit -r: the base's bytes, no file changes, and a note that
#       says so;
#   (b) writable, read and flushed only: the same;
#   (c) a write: the image is emptied, the write lands in it, the rest
#       reads the base;
#   (d) a later server hides what (c) wrote until its own first write,
#       which empties the image again;
#   (e) an online current snapshot (stateFile), or a saved machine:
#       served as it is, writes on top, nothing emptied; an offline
#       one: its parent shown (a chain of three);
#   (f) autoreset=false: served as it is;
#   (g) each decision prints one note, checked word for word;
#   (h) an Immutable or MultiAttach medium attached directly, a
#       missing autoreset image, autoreset= without registry=: one
#       error line each, nothing changes.
# And: readonly=true, an autoreset child of a Normal base (emptied, as
# VirtualBox does), a MultiAttach child (written as it is), a
# Writethrough base (written directly), uuid= (as it is), and the
# vdidiff filter over the current state (its layer links to the base).

source ./functions.sh
set -e
set -x

source "$abs_srcdir/test-chain-functions.sh"
requires jq --version

nbdkit "$VDI_PLUGIN" --dump-plugin | grep '^vdi_autoreset=yes$'
nbdkit "$VDI_PLUGIN" --help | grep '^autoreset=false '

base_uuid=a7e5e7a0-1c2d-4e3f-8a4b-000000000001
diff_uuid=a7e5e7a0-1c2d-4e3f-8a4b-000000000002
s1_uuid=a7e5e7a0-1c2d-4e3f-8a4b-000000000003
cur_uuid=a7e5e7a0-1c2d-4e3f-8a4b-000000000004
stale_uuid=a7e5e7a0-1c2d-4e3f-8a4b-0000000000ff
machine_uuid=a7e5e7a0-1c2d-4e3f-8a4b-0000000000aa
snap_uuid=a7e5e7a0-1c2d-4e3f-8a4b-0000000000bb

vm="$tmp/Kiosk"
mkdir -p "$vm/Snapshots" "$tmp/orig"
base="$vm/base.vdi"
diff="$vm/Snapshots/diff.vdi"
s1="$vm/Snapshots/s1.vdi"
cur="$vm/Snapshots/cur.vdi"

# 6 blocks of 1 MiB.  The differencing images hold data in blocks
# whose base differs, a FREE block and a ZERO block; their
# parent-modify UUID is stale, so that emptying is seen to set it.
$MAKE_VDI --size 6M --blocks DDDDDD --seed ar-base \
          --uuid-create $base_uuid --expect "$tmp/base.raw" "$base"
$MAKE_VDI --type diff --parent "$base" --parent-expect "$tmp/base.raw" \
          --blocks DDDFZD --seed ar-diff --uuid-create $diff_uuid \
          --uuid-parent-modify $stale_uuid \
          --expect "$tmp/diff.raw" "$diff"
$MAKE_VDI --type diff --parent "$base" --parent-expect "$tmp/base.raw" \
          --blocks FDFDFF --seed ar-s1 --uuid-create $s1_uuid \
          --expect "$tmp/s1.raw" "$s1"
$MAKE_VDI --type diff --parent "$s1" --parent-expect "$tmp/s1.raw" \
          --blocks DFFFDZ --seed ar-cur --uuid-create $cur_uuid \
          --expect "$tmp/cur.raw" "$cur"
# Copies (not named .vdi, so that sums leaves them out) to start again
# from.
cp "$base" "$tmp/orig/base"
cp "$diff" "$tmp/orig/diff"
cp "$s1" "$tmp/orig/s1"
cp "$cur" "$tmp/orig/cur"
# Every image differs from the one below it.
must_fail cmp -s "$tmp/base.raw" "$tmp/diff.raw"
must_fail cmp -s "$tmp/s1.raw" "$tmp/cur.raw"
must_fail cmp -s "$tmp/base.raw" "$tmp/s1.raw"

# restore: every image as it was made.
restore ()
{
    cp "$tmp/orig/base" "$base"
    cp "$tmp/orig/diff" "$diff"
    cp "$tmp/orig/s1" "$s1"
    cp "$tmp/orig/cur" "$cur"
}

# hardware INDENT UUID: a Hardware element whose one hard disk is UUID.
hardware ()
{
    sed "s/^/$1/" <<EOF
<Hardware>
  <StorageControllers>
    <StorageController name="SATA" type="AHCI" PortCount="1">
      <AttachedDevice type="HardDisk" port="0" device="0">
        <Image uuid="{$2}"/>
      </AttachedDevice>
    </StorageController>
  </StorageControllers>
</Hardware>
EOF
}

# machine FILE BASE-TYPE CHILD-ATTRS ATTACHED [MACHINE-ATTRS]
#
# The settings file of machine "Kiosk": base.vdi of type BASE-TYPE with
# the child diff.vdi (its HardDisk element gets CHILD-ATTRS), the
# current state attaching ATTACHED (a UUID), no snapshot.
machine ()
{
    cat > "$1" <<EOF
<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{$machine_uuid}" name="Kiosk" snapshotFolder="Snapshots"$5>
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$base_uuid}" location="base.vdi" format="VDI" type="$2">
          <HardDisk uuid="{$diff_uuid}" location="Snapshots/diff.vdi" format="VDI"$3/>
        </HardDisk>
      </HardDisks>
    </MediaRegistry>
$(hardware "    " "$4")
  </Machine>
</VirtualBox>
EOF
}

# snapshotted FILE SNAPSHOT-ATTRS [MACHINE-ATTRS]
#
# The same machine after a snapshot "Kiosk ready" (SNAPSHOT-ATTRS on
# its element), as VirtualBox leaves an Immutable disk: the snapshot
# attaches s1.vdi, the current state cur.vdi, a child of s1.vdi; both
# autoreset.
snapshotted ()
{
    cat > "$1" <<EOF
<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{$machine_uuid}" name="Kiosk" snapshotFolder="Snapshots" currentSnapshot="{$snap_uuid}"$3>
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$base_uuid}" location="base.vdi" format="VDI" type="Immutable">
          <HardDisk uuid="{$s1_uuid}" location="Snapshots/s1.vdi" format="VDI" autoReset="true">
            <HardDisk uuid="{$cur_uuid}" location="Snapshots/cur.vdi" format="VDI" autoReset="true"/>
          </HardDisk>
        </HardDisk>
      </HardDisks>
    </MediaRegistry>
$(hardware "    " $cur_uuid)
    <Snapshot uuid="{$snap_uuid}" name="Kiosk ready" timeStamp="2024-05-01T09:00:00Z"$2>
$(hardware "      " $s1_uuid)
    </Snapshot>
  </Machine>
</VirtualBox>
EOF
}

kiosk="$vm/Kiosk.vbox"
machine "$kiosk" Immutable ' autoReset="true"' $diff_uuid

# served_sum NAME nbdkit-args...: the SHA-256 of every byte served
# (nbdcopy), nbdkit's stderr in $tmp/NAME.err.
served_sum ()
{
    local name="$1" sum
    shift
    sum="$(nbdkit -U - "$@" --run 'nbdcopy "$uri" -' \
                  2> "$tmp/$name.err" | sha256sum
           exit "${PIPESTATUS[0]}")" || { cat "$tmp/$name.err" >&2; return 1; }
    cat "$tmp/$name.err" >&2
    echo "${sum%% *}"
}
sum_of () { sha256sum "$1" | cut -d' ' -f1; }

# note NAME TEXT: stderr of NAME has exactly one note, "nbdkit: vdi:
# note: TEXT".
note ()
{
    grep '^nbdkit: vdi: note: ' "$tmp/$1.err" > "$tmp/$1.notes" || true
    echo "nbdkit: vdi: note: $2" | diff -u - "$tmp/$1.notes"
}

# json IMAGE FIELD: a field of vdi-img info --output=json.
json ()
{
    "$VDI_IMG" info --output=json "$1" | jq -r ".\"$2\""
}

# write_patch URI-ARGS... : write 5000 bytes (seed "patch") at 1 MiB +
# 1000, inside block 1, where the differencing images hold data.
$HELPERS write-data "$tmp/patch.bin" 0 5000 patch
patch_off=$(( 1048576 + 1000 ))
with_patch ()
{
    cp "$1" "$2"
    $HELPERS write-data "$2" $patch_off 5000 patch
}
write_patch_cmd="h.pwrite(open('$tmp/patch.bin', 'rb').read(), $patch_off)"

base_sum="$(sum_of "$tmp/base.raw")"
note_reset="$diff is the autoreset differencing image of Immutable $base: served as the base shows it, and emptied at the first write, as VirtualBox does at power-on"

#----------------------------------------------------------------------
# (a) nbdkit -r: the base, and nothing changes.  Like readonly=true,
# it says it will never empty the image.
note_ro="$diff is the autoreset differencing image of Immutable $base: served as the base shows it, as VirtualBox does at power-on, and never emptied (read-only)"
before="$(sums)"
test "$(served_sum ro -r "$VDI_PLUGIN" registry="$kiosk")" = "$base_sum"
note ro "$note_ro"
test "$(sums)" = "$before"
test "$(served_sum ro-key "$VDI_PLUGIN" registry="$kiosk" readonly=true)" = \
     "$base_sum"
note ro-key "$note_ro"
test "$(sums)" = "$before"
# Negative control: the image itself holds other bytes.
test "$(served_sum plain "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/diff.raw")"

#----------------------------------------------------------------------
# (b) Writable, but only read (and flushed): the same.  The extents
# are the base's: all data.
test "$(served_sum rw "$VDI_PLUGIN" registry="$kiosk")" = "$base_sum"
note rw "$note_reset"
t_tmp="$tmp" nbdkit -U - "$VDI_PLUGIN" registry="$kiosk" --run '
    nbdinfo --can write "$uri" &&
    nbdinfo --map "$uri" > "$t_tmp/rw.map" &&
    nbdsh -u "$uri" -c "h.pread(4096, 4 * 1048576)" -c "h.flush()"
' 2> "$tmp/rw2.err"
normalise_nbdinfo_map < "$tmp/rw.map" > "$tmp/rw.runs"
echo "0 6291456 data" | diff -u - "$tmp/rw.runs"
test "$(sums)" = "$before"

#----------------------------------------------------------------------
# (c) A write empties the image first, then lands in it.
old_modify="$(json "$diff" modify-uuid)"
nbdkit -U - "$VDI_PLUGIN" registry="$kiosk" \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\"" 2> "$tmp/c.err"
cat "$tmp/c.err"
note c "$note_reset"
test "$(json "$diff" uuid)" = $diff_uuid
test "$(json "$diff" parent-uuid)" = $base_uuid
test "$(json "$diff" parent-modify-uuid)" = "$(json "$base" modify-uuid)"
test "$(json "$diff" parent-modify-uuid)" != $stale_uuid
test "$(json "$diff" modify-uuid)" != "$old_modify"
test "$(json "$diff" blocks-allocated)" -eq 1
test "$(json "$diff" blocks-data)" -eq 1
test "$(json "$diff" blocks-zero)" -eq 0
$VDI_CHECK "$diff"
# The image alone (no registry: as it is): the base and the write; its
# old data (and its ZERO block) gone.
with_patch "$tmp/base.raw" "$tmp/c.model"
test "$(served_sum c-after "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/c.model")"
# The base never changed.
test "$(sum_of "$base")" = "$(sum_of "$tmp/orig/base")"

#----------------------------------------------------------------------
# (d) The next power-on: the base again, what (c) wrote hidden, and
# emptied away at the first write of that server.
test "$(served_sum d-read "$VDI_PLUGIN" registry="$kiosk")" = "$base_sum"
c_sum="$(sum_of "$diff")"
nbdkit -U - "$VDI_PLUGIN" registry="$kiosk" --run '
    nbdsh -u "$uri" -c "h.pwrite(b\"\\xd4\" * 4096, 5 * 1048576)"
' 2> "$tmp/d.err"
note d "$note_reset"
test "$(sum_of "$diff")" != "$c_sum"
test "$(json "$diff" blocks-allocated)" -eq 1
cp "$tmp/base.raw" "$tmp/d.model"
printf '\xd4%.0s' $(seq 4096) |
    dd of="$tmp/d.model" bs=1 seek=$(( 5 * 1048576 )) conv=notrunc status=none
test "$(served_sum d-after "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/d.model")"

# Many connections writing at once: the image is emptied once, before
# any of their writes lands.
restore
$HELPERS write-data "$tmp/many.raw" 0 6291456 many
t_src="$tmp/many.raw" nbdkit -U - "$VDI_PLUGIN" registry="$kiosk" --run '
    nbdcopy --connections=4 --requests=16 --request-size=65536 \
            "$t_src" "$uri"
'
test "$(served_sum many "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/many.raw")"
$VDI_CHECK "$diff"

#----------------------------------------------------------------------
# (e) An online current snapshot: served as it is, nothing emptied,
# writes on top.
restore
online="$vm/online.vbox"
snapshotted "$online" \
    " stateFile=\"Snapshots/{$snap_uuid}.sav\""
test "$(served_sum online "$VDI_PLUGIN" registry="$online")" = \
     "$(sum_of "$tmp/cur.raw")"
note online "$cur is the autoreset differencing image of Immutable $base, but the current snapshot \"Kiosk ready\" is online (it has a saved state): served as it is and not emptied, as VirtualBox does"
nbdkit -U - "$VDI_PLUGIN" registry="$online" \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\""
test "$(json "$cur" uuid)" = $cur_uuid
with_patch "$tmp/cur.raw" "$tmp/online.model"
test "$(served_sum online-after "$VDI_PLUGIN" "$cur" readonly=true)" = \
     "$(sum_of "$tmp/online.model")"
test "$(sum_of "$s1")" = "$(sum_of "$tmp/orig/s1")"

# A saved machine: the same.
restore
saved="$vm/saved.vbox"
snapshotted "$saved" "" " stateFile=\"Snapshots/2024-05-01T10-00-00-000000000Z.sav\""
before="$(sums)"
test "$(served_sum saved "$VDI_PLUGIN" registry="$saved")" = \
     "$(sum_of "$tmp/cur.raw")"
note saved "$cur is the autoreset differencing image of Immutable $base, but machine \"Kiosk\" is saved (it has a saved state): served as it is and not emptied, as VirtualBox does"
test "$(sums)" = "$before"

# An offline current snapshot: cur.vdi is hidden, s1.vdi (over the
# base) shown; emptied at the first write.
offline="$vm/offline.vbox"
snapshotted "$offline" ""
before="$(sums)"
test "$(served_sum offline "$VDI_PLUGIN" registry="$offline")" = \
     "$(sum_of "$tmp/s1.raw")"
note offline "$cur is the autoreset differencing image of Immutable $base: served as its parent $s1 shows it, and emptied at the first write, as VirtualBox does at power-on"
test "$(sums)" = "$before"
nbdkit -U - "$VDI_PLUGIN" registry="$offline" \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\""
test "$(json "$cur" parent-modify-uuid)" = "$(json "$s1" modify-uuid)"
with_patch "$tmp/s1.raw" "$tmp/offline.model"
test "$(served_sum offline-after "$VDI_PLUGIN" "$cur" readonly=true)" = \
     "$(sum_of "$tmp/offline.model")"
test "$(sum_of "$s1")" = "$(sum_of "$tmp/orig/s1")"

#----------------------------------------------------------------------
# (f) autoreset=false: as the last run left it, written on top.
restore
test "$(served_sum keep "$VDI_PLUGIN" registry="$kiosk" autoreset=false)" = \
     "$(sum_of "$tmp/diff.raw")"
note keep "$diff is the autoreset differencing image of Immutable $base: served as it is and not emptied (autoreset=false)"
nbdkit -U - "$VDI_PLUGIN" registry="$kiosk" autoreset=false \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\""
with_patch "$tmp/diff.raw" "$tmp/keep.model"
test "$(served_sum keep-after "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/keep.model")"

#----------------------------------------------------------------------
# Chosen by uuid=: a medium as it is, written as it is.
restore
test "$(served_sum by-uuid "$VDI_PLUGIN" registry="$kiosk" uuid=$diff_uuid)" = \
     "$(sum_of "$tmp/diff.raw")"
note by-uuid "$diff is the autoreset differencing image of Immutable $base; chosen by uuid=, it is served as it is and not emptied (VirtualBox empties it only when it powers on the machine that attaches it)"
nbdkit -U - "$VDI_PLUGIN" registry="$kiosk" uuid=$diff_uuid \
       --run 'nbdinfo --can write "$uri"'
# The Immutable base itself: read-only, as before (as a parent first;
# the Immutable rule is test-write-readonly.sh's).
test "$(served_sum base-uuid "$VDI_PLUGIN" registry="$kiosk" uuid=$base_uuid)" = \
     "$base_sum"
note base-uuid "serving $base read-only because it has differencing images in the media registry; to write, stack the vdidiff filter (--filter=vdidiff)"

# An autoreset child of a Normal base: VirtualBox empties it all the
# same (the flag decides, not the base's type).
normal="$vm/normal.vbox"
machine "$normal" Normal ' autoReset="true"' $diff_uuid
test "$(served_sum normal "$VDI_PLUGIN" registry="$normal")" = "$base_sum"
note normal "$diff is an autoreset differencing image of $base, a Normal medium: VirtualBox empties it at power-on although its base is not Immutable: served as the base shows it, and emptied at the first write, as VirtualBox does at power-on"
nbdkit -U - "$VDI_PLUGIN" registry="$normal" \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\""
test "$(served_sum normal-after "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/c.model")"

# A MultiAttach base's child has no autoReset: written as it is.
restore
multi="$vm/multi.vbox"
machine "$multi" MultiAttach '' $diff_uuid
test "$(served_sum multi "$VDI_PLUGIN" registry="$multi")" = \
     "$(sum_of "$tmp/diff.raw")"
note multi "$diff is a differencing image of MultiAttach $base without autoReset: served as it is, and never emptied, as VirtualBox does"
nbdkit -U - "$VDI_PLUGIN" registry="$multi" \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\""
test "$(served_sum multi-after "$VDI_PLUGIN" "$diff" readonly=true)" = \
     "$(sum_of "$tmp/keep.model")"

# A Writethrough base (no child) is written directly.
restore
wt="$vm/writethrough.vbox"
sed "s|<HardDisk uuid=\"{$diff_uuid}\"[^>]*/>||" "$kiosk" |
    sed "s|type=\"Immutable\"|type=\"Writethrough\"|; s|<Image uuid=\"{$diff_uuid}\"/>|<Image uuid=\"{$base_uuid}\"/>|" \
    > "$wt"
must_fail grep -q $diff_uuid "$wt"
nbdkit -U - "$VDI_PLUGIN" registry="$wt" \
       --run "nbdsh -u \"\$uri\" -c \"$write_patch_cmd\"" 2> "$tmp/wt.err"
note wt "$base is a Writethrough medium: written directly, as VirtualBox writes it (it never gets a differencing image, and snapshots leave it alone)"
with_patch "$tmp/base.raw" "$tmp/wt.model"
test "$(served_sum wt-after "$VDI_PLUGIN" "$base" readonly=true)" = \
     "$(sum_of "$tmp/wt.model")"
restore

# The vdidiff filter over the current state: the plugin is opened
# read-only, shows the base, and the filter's layer links to the base
# (the export description names the image shown).
before="$(sums)"
test "$(served_sum filter --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" \
        registry="$kiosk" vdidiff="$tmp/over.vdi")" = "$base_sum"
test "$(json "$tmp/over.vdi" parent-uuid)" = $base_uuid
test "$(json "$tmp/over.vdi" parent-modify-uuid)" = "$(json "$base" modify-uuid)"
rm "$tmp/over.vdi"
test "$(sums)" = "$before"

#----------------------------------------------------------------------
# (h) Errors.
machine "$vm/direct.vbox" Immutable ' autoReset="true"' $base_uuid
expect_fail direct "$vm/direct.vbox: machine \"Kiosk\" attaches the Immutable medium $base_uuid ($base) directly, which VirtualBox never does (it attaches a differencing image of it); to read the medium itself, choose it with uuid=" -- \
    registry="$vm/direct.vbox"
machine "$vm/direct-multi.vbox" MultiAttach '' $base_uuid
expect_fail direct-multi "$vm/direct-multi.vbox: machine \"Kiosk\" attaches the MultiAttach medium $base_uuid ($base) directly, which VirtualBox never does (it attaches a differencing image of it); to read the medium itself, choose it with uuid=" -- \
    registry="$vm/direct-multi.vbox"
sed 's|Snapshots/diff.vdi|Snapshots/gone.vdi|' "$kiosk" > "$vm/gone.vbox"
expect_fail gone "$vm/gone.vbox: medium $diff_uuid is at $vm/Snapshots/gone.vdi, which cannot be opened: No such file or directory" -- \
    registry="$vm/gone.vbox"
expect_fail no-registry "autoreset= needs registry=: only a machine's settings say that a differencing image is emptied at power-on" -- \
    "$diff" autoreset=false
expect_fail bad-value "could not decipher boolean (maybe)" -- \
    registry="$kiosk" autoreset=maybe

# The refused starts changed nothing (expect_fail checks every file),
# and the images are as restore left them.
cmp "$tmp/orig/base" "$base"
cmp "$tmp/orig/diff" "$diff"
