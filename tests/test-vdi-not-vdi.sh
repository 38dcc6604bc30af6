#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Files that are not VDI images at all: random bytes, an empty file, a
# raw disk, other disk formats, a directory, a missing file.  Each must
# be refused before serving with one error line naming the file, no
# crash, and no change to the file.

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
