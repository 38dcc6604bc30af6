#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Files that are not VDI images at all: random bytes, an empty file, a
# raw disk, other disk formats, a directory, a FIFO and a device (as
# the disk, a parent and a vdidiff layer), a missing file.  Each must
# be refused before serving with one error line naming the file, no
# crash, and no change to the file; also under a path near PATH_MAX.

source ./functions.sh
set -e
set -x

requires_python_nbd
requires qemu-img --version

tmp="$(mktemp -d --suffix=.tmp test-vdi-not-vdi.XXXXXX)"
cleanup_fn rm -rf "$tmp"

head -c 1048576 /dev/urandom > "$tmp/random.vdi"
head -c 100 /dev/urandom > "$tmp/short-random.vdi"
: > "$tmp/empty.vdi"
truncate -s 10M "$tmp/zeros.vdi"
qemu-img create -f raw "$tmp/raw-disk.vdi" 4M
printf '\x55\xaa' | dd of="$tmp/raw-disk.vdi" bs=1 seek=510 conv=notrunc
qemu-img create -f qcow2 "$tmp/qcow2.vdi" 4M
qemu-img create -f vmdk "$tmp/vmdk.vdi" 4M
qemu-img create -f vpc "$tmp/vhd.vdi" 4M
# A VDI pre-header followed by random bytes.
$MAKE_VDI --seed x "$tmp/x.vdi"
{ head -c 72 "$tmp/x.vdi"; head -c 4M /dev/urandom; } > "$tmp/half.vdi"
mkdir "$tmp/directory.vdi"

failed=()
for f in random short-random empty zeros raw-disk qcow2 vmdk vhd half; do
    expect_refused "$tmp/$f.vdi" '' || failed+=("$f")
done

# The error for a directory says what is wrong with it.
expect_refused "$tmp/directory.vdi" 'director|not a regular file' ||
    failed+=(directory)

# refused_at_once MESSAGE NBDKIT-ARGS...: nbdkit with the plugin
# refuses to start, at once (a FIFO must not block it), with exactly
# one error line, which contains MESSAGE.
refused_at_once ()
{
    local msg="$1" status=0
    shift
    timeout 30 nbdkit -U - "$@" --run 'exit 0' 2> "$tmp/at-once.err" ||
        status=$?
    cat "$tmp/at-once.err"
    test $status -ne 0 && test $status -ne 124 && test $status -lt 126 &&
        test "$(grep -c error "$tmp/at-once.err")" -eq 1 &&
        grep -F -- "$msg" "$tmp/at-once.err"
}

# Only regular files are images: a FIFO (which would block the open)
# and a device, as the disk, as a parent named by a registry, and as
# the layer of the vdidiff filter.
mkfifo "$tmp/fifo.vdi"
refused_at_once \
    "$tmp/fifo.vdi: not a regular file (a FIFO): only files are VDI images" \
    "$VDI_PLUGIN" "$tmp/fifo.vdi" || failed+=(fifo)
refused_at_once \
    "/dev/null: not a regular file (a character device): only files are VDI images" \
    "$VDI_PLUGIN" /dev/null || failed+=(device)
fifo_parent=c0c0c0c0-0000-4000-8000-0000000000f1
$MAKE_VDI --type diff --uuid-linkage "$fifo_parent" --blocks DF \
          "$tmp/over-fifo.vdi"
cat > "$tmp/fifo.vbox" <<EOF
<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Global>
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$fifo_parent}" location="fifo.vdi" format="VDI" type="Normal"/>
      </HardDisks>
    </MediaRegistry>
  </Global>
</VirtualBox>
EOF
refused_at_once \
    "$tmp/fifo.vdi: not a regular file (a FIFO): only files are VDI images" \
    "$VDI_PLUGIN" registry="$tmp/fifo.vbox" file="$tmp/over-fifo.vdi" ||
    failed+=(fifo-parent)
refused_at_once \
    "$tmp/fifo.vdi: not a regular file (a FIFO): only files are VDI images" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/x.vdi" \
    vdidiff="$tmp/fifo.vdi" || failed+=(fifo-layer)

# A settings file given as the disk says so; a file that is not an
# image does not have its bytes repeated in the message.
refused_at_once \
    "$tmp/fifo.vbox: not a VDI image but a VirtualBox settings file, which names the disks: give it as the registry" \
    "$VDI_PLUGIN" "$tmp/fifo.vbox" || failed+=(settings-file)
{ head -c 64 /dev/zero; printf 'SECRET-BYTES'; head -c 1000 /dev/zero; } \
    > "$tmp/secret.vdi"
refused_at_once \
    "$tmp/secret.vdi: not a VDI image: no VDI signature at offset 64" \
    "$VDI_PLUGIN" "$tmp/secret.vdi" || failed+=(secret)
! grep -e SECRET -e 0x53454352 -e 0x52434553 "$tmp/at-once.err" ||
    failed+=(secret-echoed)

# A path near PATH_MAX (nested folders): the line still ends with the
# reason.
deep="$(realpath "$tmp")"
while [ ${#deep} -lt 3800 ]; do
    deep="$deep/$(printf 'd%.0s' {1..200})"
done
mkdir -p "$deep"
cp "$tmp/secret.vdi" "$deep/bad.vdi"
refused_at_once "$deep/bad.vdi: not a VDI image: no VDI signature at offset 64" \
    "$VDI_PLUGIN" "$deep/bad.vdi" || failed+=(long-path)

# A file that does not exist.
expect_refused "$tmp/missing.vdi" '' || failed+=(missing)
test ! -e "$tmp/missing.vdi"

if [ ${#failed[@]} -gt 0 ]; then
    echo "$0: FAILED for: ${failed[*]}" >&2
    exit 1
fi

# No file at all: one error.
status=0
nbdkit -U - "$VDI_PLUGIN" --run 'exit 0' 2> "$tmp/nofile.err" || status=$?
cat "$tmp/nofile.err"
test $status -ne 0
test $status -lt 126
grep -q error "$tmp/nofile.err"
