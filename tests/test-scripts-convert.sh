#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# ../scripts/vdi-convert on every kind of SOURCE it documents: a VDI,
# a differencing image (parents found by folder scan), a .vbox (the
# current state), FILE.vbox@SNAPSHOT by name and by UUID, --snapshot,
# a medium UUID with --registry (with and without braces), a file
# with --registry, a second disk (--disk 1); to each output format
# (by extension, by -O, -O overriding the extension; -o passed to
# qemu-img), in a folder and with a snapshot name that need quoting.
# Every output must hold the bytes of its state (qemu-img compare
# against a raw model made with qemu-io), be sparse, and the
# machine's files must not change.  --force overwrites, -q silences
# the progress that is shown otherwise.
#
# The machine: a 64 MiB base made by qemu-img and qemu-io, two
# differencing images written through the vdidiff filter with qemu-io
# (data, zeroes over the base's data, a write across a block edge), a
# second disk, and a .vbox with the nested chain and two snapshots.

source ./functions.sh
set -e
set -x

requires_python_nbd
requires qemu-img --version
requires qemu-io --version
requires nbdinfo --version

scripts="$abs_top_srcdir/scripts"
export NBDKIT_VDI_PLUGIN="$VDI_PLUGIN"
export NBDKIT_VDIDIFF_FILTER="$VDIDIFF_FILTER"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-scripts-convert.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
vm="$tmp/VirtualBox VMs/my vm"
mkdir -p "$vm/Snapshots"
M=$((1024 * 1024))

# layer IMAGE DIFF MODEL-IN MODEL-OUT QEMU-IO-COMMANDS...: write
# through the vdidiff filter over IMAGE into DIFF, and the same to a
# copy of the raw model.
layer ()
{
    local image="$1" diff="$2" in="$3" out="$4" c args=()
    shift 4
    for c in "$@"; do args+=(-c "$c"); done
    cp --sparse=always "$in" "$out"
    qemu-io -f raw "${args[@]}" "$out" > /dev/null
    t_args="$(printf '%q ' "${args[@]}")" \
    nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$image" \
           vdidiff="$diff" --run 'eval "qemu-io -f raw $t_args \"\$uri\"" > /dev/null'
}

# Disk 0: state 0 (base), 1, 2.
qemu-img create -q -f raw "$tmp/empty.raw" 64M
layer_base ()
{
    local c args=()
    for c in "$@"; do args+=(-c "$c"); done
    cp --sparse=always "$tmp/empty.raw" "$tmp/model0.raw"
    qemu-io -f raw "${args[@]}" "$tmp/model0.raw" > /dev/null
    qemu-img convert -f raw -O vdi "$tmp/model0.raw" "$vm/base.vdi"
}
layer_base "write -P 0x10 0 3M" "write -P 0x11 20M 1M" "write -P 0x12 $((40 * M - 512)) 4k"
layer "$vm/base.vdi" "$vm/Snapshots/new.vdi" "$tmp/model0.raw" "$tmp/model1.raw" \
      "write -P 0x21 1M 4k" "write -z 20M 1M" "write -P 0x22 $((50 * M - 100 * 1024)) 200k"
u0="$(vdi_uuid "$vm/base.vdi")"
u1="$(vdi_uuid "$vm/Snapshots/new.vdi")"
mv "$vm/Snapshots/new.vdi" "$vm/Snapshots/{$u1}.vdi"
layer "$vm/Snapshots/{$u1}.vdi" "$vm/Snapshots/new.vdi" \
      "$tmp/model1.raw" "$tmp/model2.raw" \
      "write -P 0x31 0 512" "write -z 2M 1M" "write -P 0x32 60M 1M"
u2="$(vdi_uuid "$vm/Snapshots/new.vdi")"
mv "$vm/Snapshots/new.vdi" "$vm/Snapshots/{$u2}.vdi"

# Disk 1: a base alone.
qemu-img create -q -f raw "$tmp/model-d1.raw" 8M
qemu-io -f raw -c "write -P 0x44 1M 1M" "$tmp/model-d1.raw" > /dev/null
qemu-img convert -f raw -O vdi "$tmp/model-d1.raw" "$vm/data.vdi"
ud="$(vdi_uuid "$vm/data.vdi")"

# The states differ.
if cmp -s "$tmp/model0.raw" "$tmp/model1.raw"; then false; fi
if cmp -s "$tmp/model1.raw" "$tmp/model2.raw"; then false; fi

machine="$(cat /proc/sys/kernel/random/uuid)"
snap1="$(cat /proc/sys/kernel/random/uuid)"
snap2="$(cat /proc/sys/kernel/random/uuid)"
# The second snapshot's name needs quoting in XML and in the shell.
snap2_name='Snapshot 2 (it'"'"'s "$HOME" & more)'
snap2_xml='Snapshot 2 (it&apos;s &quot;$HOME&quot; &amp; more)'

attached ()
{
    cat <<EOF
        <StorageControllers>
          <StorageController name="SATA" type="AHCI" PortCount="2" useHostIOCache="false" Bootable="true">
            <AttachedDevice type="HardDisk" hotpluggable="false" port="0" device="0">
              <Image uuid="{$1}"/>
            </AttachedDevice>
            <AttachedDevice type="HardDisk" hotpluggable="false" port="1" device="0">
              <Image uuid="{$ud}"/>
            </AttachedDevice>
          </StorageController>
        </StorageControllers>
EOF
}

cat > "$vm/my vm.vbox" <<EOF
<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{$machine}" name="my vm" OSType="Debian_64" currentSnapshot="{$snap2}" snapshotFolder="Snapshots">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$u0}" location="base.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$u1}" location="Snapshots/{$u1}.vdi" format="VDI">
            <HardDisk uuid="{$u2}" location="Snapshots/{$u2}.vdi" format="VDI"/>
          </HardDisk>
        </HardDisk>
        <HardDisk uuid="{$ud}" location="data.vdi" format="VDI" type="Writethrough"/>
      </HardDisks>
    </MediaRegistry>
    <Snapshot uuid="{$snap1}" name="Snapshot 1" timeStamp="2024-05-01T09:00:00Z">
      <Hardware>
$(attached "$u0")
      </Hardware>
      <Snapshots>
        <Snapshot uuid="{$snap2}" name="$snap2_xml" timeStamp="2024-05-01T09:30:00Z">
          <Hardware>
$(attached "$u1")
          </Hardware>
        </Snapshot>
      </Snapshots>
    </Snapshot>
    <Hardware>
$(attached "$u2")
    </Hardware>
  </Machine>
</VirtualBox>
EOF
vbox="$vm/my vm.vbox"

images_sums ()
{
    local f
    for f in "$vbox" "$vm"/*.vdi "$vm/Snapshots/"*.vdi; do
        echo "$(sha256_of "$f") $f"
    done
}
images_sums > "$tmp/images.sums"

# --- conversions ---------------------------------------------------------

out="$tmp/out dir"
mkdir "$out"

# convert FORMAT MODEL OUTPUT ARGS...: run vdi-convert ARGS; OUTPUT
# must be a FORMAT file holding MODEL's bytes.
convert ()
{
    local format="$1" model="$2" output="$3"
    shift 3
    "$scripts/vdi-convert" "$@" > "$tmp/convert.out"
    cat "$tmp/convert.out"
    qemu-img info "$output" | grep -Fx "file format: $format"
    qemu-img compare -f raw -F "$format" "$model" "$output"
}

# A VDI, a differencing image, the machine: by extension.
convert qcow2 "$tmp/model0.raw" "$out/s0.qcow2" "$vm/base.vdi" "$out/s0.qcow2"
convert vmdk "$tmp/model1.raw" "$out/s1.vmdk" "$vm/Snapshots/{$u1}.vdi" "$out/s1.vmdk"
convert vdi "$tmp/model2.raw" "$out/s2.vdi" "$vbox" "$out/s2.vdi"
convert raw "$tmp/model2.raw" "$out/s2.img" "$vbox" "$out/s2.img"
convert raw "$tmp/model2.raw" "$out/s2.unknown" "$vbox" "$out/s2.unknown"
cmp "$tmp/model2.raw" "$out/s2.img"

# Snapshots: @NAME, @UUID (with and without braces), --snapshot.
convert raw "$tmp/model0.raw" "$out/snap1.raw" "$vbox@Snapshot 1" "$out/snap1.raw"
convert raw "$tmp/model1.raw" "$out/snap2.raw" "$vbox@$snap2_name" "$out/snap2.raw"
convert qcow2 "$tmp/model1.raw" "$out/snap2u.qcow2" "$vbox@{$snap2}" "$out/snap2u.qcow2"
convert qcow2 "$tmp/model0.raw" "$out/snap1u.qcow2" "$vbox@$snap1" "$out/snap1u.qcow2"
convert vmdk "$tmp/model1.raw" "$out/snap2o.vmdk" \
        --snapshot "$snap2_name" "$vbox" "$out/snap2o.vmdk"

# A medium by UUID, a file, with --registry; the second disk.
convert raw "$tmp/model1.raw" "$out/u1.raw" --registry "$vbox" "{$u1}" "$out/u1.raw"
convert raw "$tmp/model2.raw" "$out/u2.raw" "${u2^^}" "$out/u2.raw" --registry="$vbox"
convert raw "$tmp/model1.raw" "$out/f1.raw" \
        --registry "$vbox" "$vm/Snapshots/{$u1}.vdi" "$out/f1.raw"
convert raw "$tmp/model-d1.raw" "$out/d1.raw" --disk 1 "$vbox" "$out/d1.raw"
convert raw "$tmp/model-d1.raw" "$out/d1s.raw" --disk=1 "$vbox@Snapshot 1" "$out/d1s.raw"

# -O: instead of the extension, and overriding it; -o to qemu-img.
convert qcow2 "$tmp/model2.raw" "$out/o.raw" -O qcow2 "$vbox" "$out/o.raw"
convert vdi "$tmp/model2.raw" "$out/o.bin" -Ovdi "$vbox" "$out/o.bin"
convert vdi "$tmp/model0.raw" "$out/fixed.vdi" -o static=on "$vm/base.vdi" "$out/fixed.vdi"
test "$(stat -c %s "$out/fixed.vdi")" -gt $((64 * M))
convert qcow2 "$tmp/model2.raw" "$out/compat.qcow2" -o compat=0.10 "$vbox" "$out/compat.qcow2"
qemu-img info "$out/compat.qcow2" | grep -F 'compat: 0.10'

# Progress is shown (qemu-img -p) unless -q.
"$scripts/vdi-convert" "$vm/base.vdi" "$out/p.raw" > "$tmp/p.out"
grep -F '100.00/100%' "$tmp/p.out"
"$scripts/vdi-convert" -q "$vm/base.vdi" "$out/q.raw" > "$tmp/q.out"
test ! -s "$tmp/q.out"

# --force overwrites; without it an existing output is refused.
echo "precious" > "$out/keep.raw"
if "$scripts/vdi-convert" -q "$vm/base.vdi" "$out/keep.raw"; then false; fi
test "$(cat "$out/keep.raw")" = precious
"$scripts/vdi-convert" -q --force "$vm/base.vdi" "$out/keep.raw"
cmp "$tmp/model0.raw" "$out/keep.raw"

# Sparse: the raw copy of the chain holds the data written (3 MiB and
# a little), not 64 MiB.
used="$(du -B1 "$out/s2.img" | cut -f1)"
echo "s2.img: $used bytes allocated"
test "$used" -ge $((3 * M))
test "$used" -le $((4 * M))
used="$(du -B1 "$out/s2.vdi" | cut -f1)"
test "$used" -le $((9 * M))

# A snapshot that does not exist: the plugin's one error line.
status=0
"$scripts/vdi-convert" "$vbox@No such snapshot" "$out/none.raw" 2> "$tmp/err" ||
    status=$?
cat "$tmp/err"
test $status -eq 1
test "$(wc -l < "$tmp/err")" -eq 1
grep -F 'No such snapshot' "$tmp/err"
test ! -e "$out/none.raw"

# Nothing of the machine changed.
images_sums | diff -u "$tmp/images.sums" -
