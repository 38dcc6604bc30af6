#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# What the vdi plugin must serve read-only, however a client insists
# (random-io.py readonly: the export is read-only, and writes, zeroes
# and trims sent anyway are refused, changing nothing):
#   - readonly=true, and nbdkit -r;
#   - a snapshot state (registry= snapshot=), and an Immutable medium
#     of a machine chosen by uuid= (a .vbox written here), with a note
#     at start that points to the vdidiff filter (none with -r, or
#     when the filter is stacked already; a current state that
#     attaches the Immutable medium directly is refused, see
#     test-registry-autoreset.sh);
#   - a version 0 image;
#   - a protected medium under another path: a hard or symbolic link,
#     or a copy with its UUID;
#   - a file that nbdkit may not write (with a note, not refused).
# The machine's current state (the differencing image on top of the
# snapshot's base) stays writable, and the vdidiff filter makes the
# snapshot state writable without touching the machine's images.
# Every image is unchanged (checksums).

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-write-readonly.XXXXXX)"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

base_uuid=6f1e5a20-0b1c-4d2e-8f30-000000000001
diff_uuid=6f1e5a20-0b1c-4d2e-8f30-000000000002
imm_uuid=6f1e5a20-0b1c-4d2e-8f30-000000000003
machine_uuid=6f1e5a20-0b1c-4d2e-8f30-0000000000aa
snap_uuid=6f1e5a20-0b1c-4d2e-8f30-0000000000bb

mkdir "$tmp/Snapshots"
$MAKE_VDI --size 6M --seed ro-base --uuid-create $base_uuid \
          --expect "$tmp/base.raw" "$tmp/base.vdi"
$MAKE_VDI --type diff --parent "$tmp/base.vdi" --parent-expect "$tmp/base.raw" \
          --seed ro-diff --uuid-create $diff_uuid \
          --expect "$tmp/diff.raw" "$tmp/Snapshots/diff.vdi"
$MAKE_VDI --size 5M --seed ro-imm --uuid-create $imm_uuid \
          --expect "$tmp/imm.raw" "$tmp/imm.vdi"
$MAKE_VDI --header v0 --size 3M --seed ro-v0 \
          --expect "$tmp/v0.raw" "$tmp/v0.vdi"

cat > "$tmp/m.vbox" <<EOF
<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{$machine_uuid}" name="ro" currentSnapshot="{$snap_uuid}">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$base_uuid}" location="base.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$diff_uuid}" location="Snapshots/diff.vdi" format="VDI"/>
        </HardDisk>
        <HardDisk uuid="{$imm_uuid}" location="imm.vdi" format="VDI" type="Immutable"/>
      </HardDisks>
    </MediaRegistry>
    <Snapshot uuid="{$snap_uuid}" name="Before upgrade">
      <Hardware>
        <StorageControllers>
          <StorageController name="SATA" type="AHCI">
            <AttachedDevice type="HardDisk" port="0" device="0">
              <Image uuid="{$base_uuid}"/>
            </AttachedDevice>
          </StorageController>
        </StorageControllers>
      </Hardware>
    </Snapshot>
    <Hardware>
      <StorageControllers>
        <StorageController name="SATA" type="AHCI">
          <AttachedDevice type="HardDisk" port="0" device="0">
            <Image uuid="{$diff_uuid}"/>
          </AttachedDevice>
          <AttachedDevice type="HardDisk" port="1" device="0">
            <Image uuid="{$imm_uuid}"/>
          </AttachedDevice>
        </StorageController>
      </StorageControllers>
    </Hardware>
  </Machine>
</VirtualBox>
EOF

images="base.vdi Snapshots/diff.vdi imm.vdi v0.vdi"
sums () { for f in $images; do sha256_of "$tmp/$f"; done; }
before="$(sums)"

# read_only EXPECTED.raw NOTE_PATTERN nbdkit-args...
# Serve read-only: the disk shows EXPECTED.raw, writes are refused,
# and if NOTE_PATTERN is set, nbdkit says why at start.
read_only ()
{
    local expect="$1" note="$2"
    shift 2
    export expect
    nbdkit -U - "$@" --run '
        $RANDOM_IO readonly "$uri" &&
        $RANDOM_IO verify "$uri" "$expect"
    ' 2> "$tmp/err" || { cat "$tmp/err"; return 1; }
    cat "$tmp/err"
    if [ -n "$note" ]; then
        grep -E "$note" "$tmp/err"
        grep "vdidiff" "$tmp/err"
    fi
}

read_only "$tmp/base.raw" "" "$VDI_PLUGIN" "$tmp/base.vdi" readonly=true
read_only "$tmp/base.raw" "" -r "$VDI_PLUGIN" "$tmp/base.vdi"
read_only "$tmp/diff.raw" "" -r "$VDI_PLUGIN" "$tmp/Snapshots/diff.vdi"
read_only "$tmp/base.raw" "read-only because it is the state of a snapshot" \
          "$VDI_PLUGIN" registry="$tmp/m.vbox" snapshot="Before upgrade"
read_only "$tmp/base.raw" "read-only because it is the state of a snapshot" \
          "$VDI_PLUGIN" registry="$tmp/m.vbox" snapshot="{$snap_uuid}"
read_only "$tmp/imm.raw" "read-only because it is an Immutable medium" \
          "$VDI_PLUGIN" registry="$tmp/m.vbox" uuid=$imm_uuid
read_only "$tmp/v0.raw" "version 0" "$VDI_PLUGIN" "$tmp/v0.vdi"
# Another path to a protected medium is that medium: a hard link, a
# symbolic link, a copy (same UUID).
mkdir "$tmp/aliases"
ln "$tmp/base.vdi" "$tmp/aliases/base-link.vdi"
ln -s ../base.vdi "$tmp/aliases/base-symlink.vdi"
ln "$tmp/imm.vdi" "$tmp/aliases/imm-link.vdi"
cp "$tmp/base.vdi" "$tmp/aliases/base-copy.vdi"
for f in base-link base-symlink base-copy; do
    read_only "$tmp/base.raw" "read-only because it has differencing images" \
              "$VDI_PLUGIN" registry="$tmp/m.vbox" file="$tmp/aliases/$f.vdi"
done
read_only "$tmp/imm.raw" "read-only because it is an Immutable medium" \
          "$VDI_PLUGIN" registry="$tmp/m.vbox" file="$tmp/aliases/imm-link.vdi"
test "$(sha256_of "$tmp/aliases/base-copy.vdi")" = \
     "$(sha256_of "$tmp/base.vdi")"
rm -r "$tmp/aliases"

test "$(sums)" = "$before"

# A file that nbdkit may not write (mode 0444, for a user other than
# root: root runs the server as nobody) is served read-only, with a
# note, as nbdkit's file plugin does, rather than refused.
perm="$(mktemp -d /tmp/test-write-readonly.XXXXXX)"
cleanup_fn rm -rf "$perm"
chmod 755 "$perm"
cp "$tmp/base.vdi" "$tmp/base.raw" "$perm/"
chmod 444 "$perm/base.vdi"
as_user=
if [ "$(id -u)" -eq 0 ]; then
    as_user="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
if [ -z "$as_user" ] || setpriv --version; then
    t_perm="$perm" $as_user nbdkit -U - "$VDI_PLUGIN" "$perm/base.vdi" --run '
        $RANDOM_IO readonly "$uri" &&
        $RANDOM_IO verify "$uri" "$t_perm/base.raw"
    ' 2> "$tmp/err" || { cat "$tmp/err"; exit 1; }
    cat "$tmp/err"
    grep -Fx "nbdkit: vdi: note: serving $perm/base.vdi read-only because the file cannot be written (Permission denied); to write, stack the vdidiff filter (--filter=vdidiff)" \
         "$tmp/err"
    test "$(sha256_of "$perm/base.vdi")" = "$(sha256_of "$tmp/base.vdi")"
fi

# The current state is writable: the writes go to the differencing
# image, never to the snapshot's base.
cp "$tmp/diff.raw" "$tmp/current.model"
nbdkit -U - "$VDI_PLUGIN" registry="$tmp/m.vbox" --run '
    $RANDOM_IO run "$uri" "$tmp/current.model" --ops 60 --seed current
'
test "$(sha256_of "$tmp/base.vdi")" = "$(echo "$before" | sed -n 1p)"
test "$(sha256_of "$tmp/Snapshots/diff.vdi")" != "$(echo "$before" | sed -n 2p)"
$VDI_CHECK "$tmp/Snapshots/diff.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/Snapshots/diff.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/current.model"'

# The snapshot state, writable through the vdidiff filter: the writes
# go to try.vdi, a child of the snapshot's base.  No note then (the
# filter is there already), nor with -r (nothing is to be written).
cp "$tmp/base.raw" "$tmp/try.model"
nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" registry="$tmp/m.vbox" \
       snapshot="Before upgrade" vdidiff="$tmp/try.vdi" --run '
    $RANDOM_IO run "$uri" "$tmp/try.model" --ops 60 --seed try
' 2> "$tmp/err" || { cat "$tmp/err"; exit 1; }
cat "$tmp/err"
test -z "$(grep "note: serving" "$tmp/err")"
nbdkit -U - -r "$VDI_PLUGIN" registry="$tmp/m.vbox" \
       snapshot="Before upgrade" --run 'nbdinfo "$uri"' 2> "$tmp/err" ||
    { cat "$tmp/err"; exit 1; }
cat "$tmp/err"
test -z "$(grep "note: serving" "$tmp/err")"
test "$(sha256_of "$tmp/base.vdi")" = "$(echo "$before" | sed -n 1p)"
test "$(vdi_field "$tmp/try.vdi" uuidLinkage)" = \
     "$(vdi_field "$tmp/base.vdi" uuidCreate)"
$VDI_CHECK "$tmp/try.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/try.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/try.model"'
