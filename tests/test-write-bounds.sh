#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Images the vdi plugin reads but cannot write safely, and writes that
# fail, through the plugin:
#   - a fixed image with a FREE entry (a corrupt map) is refused for
#     writing with one error line naming it, the file unchanged, and
#     served read-only it reads as before;
#   - the vdidiff filter over a disk too large for a VDI image with its
#     block size (1 PiB with 1 MiB blocks) refuses to start, saying
#     the largest size that fits, and creates nothing; with 128 MiB
#     blocks the same disk gets its layer;
#   - a dozen writes into unallocated blocks that fail because the file
#     cannot grow (RLIMIT_FSIZE, set on the running server with
#     prlimit: EFBIG, as a full disk gives ENOSPC) leave the image as
#     valid as it was: after a flush, vdi-img check and qemu-img check
#     are clean and it reads as before, through the plugin and qemu-img.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires qemu-img --version
requires nbdcopy --version
requires prlimit --version
requires_nbdsh

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-write-bounds.XXXXXX)")"
cleanup_fn rm -rf "$tmp"

# set_map_entry FILE BLOCK VALUE: change one entry of the block map.
set_map_entry ()
{
    $PYTHON -c '
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(0x154)
    (off_blocks,) = struct.unpack("<I", f.read(4))
    f.seek(off_blocks + 4 * int(sys.argv[2]))
    f.write(struct.pack("<I", int(sys.argv[3], 0)))
' "$@"
}

# A fixed image whose block 1 is FREE.
$MAKE_VDI --type fixed --size 4M --seed fixed-free \
          --expect "$tmp/fixed.raw" "$tmp/fixed.vdi"
set_map_entry "$tmp/fixed.vdi" 1 0xffffffff
dd if=/dev/zero of="$tmp/fixed.raw" bs=1M seek=1 count=1 conv=notrunc
expect_refused "$tmp/fixed.vdi" \
    "cannot write to a fixed image with only 3 of 4 blocks allocated"
export tmp
nbdkit -U - "$VDI_PLUGIN" "$tmp/fixed.vdi" readonly=true --run '
    nbdcopy "$uri" "$tmp/fixed.served"
'
cmp "$tmp/fixed.raw" "$tmp/fixed.served"

# A 1 PiB disk under the vdidiff filter.
expect_start_failure "$tmp/pib.err" \
    "nbdkit: error: $tmp/pib.vdi: the disk is too large for a VDI image with 1 MiB blocks: 1 PiB (1125899906842624 bytes), and the largest that fits is 1023.5 TiB (1125350151028736 bytes)" \
    --filter="$VDIDIFF_FILTER" null size=1P vdidiff="$tmp/pib.vdi"
test "$(grep -c error "$tmp/pib.err")" -eq 1
test "$(ls "$tmp" | grep -c pib.vdi)" -eq 0
nbdkit -U - --filter="$VDIDIFF_FILTER" null size=1P vdidiff="$tmp/pib.vdi" \
       vdidiff-block-size=128M --run 'nbdinfo --size "$uri"' > "$tmp/pib.size"
test "$(cat "$tmp/pib.size")" -eq $(( 1 << 50 ))
$VDI_CHECK "$tmp/pib.vdi"

# Failed allocations.  SIGXFSZ, ignored here, stays ignored in nbdkit,
# whose writes past the limit then fail with EFBIG.
$MAKE_VDI --size 16M --blocks DFFFFFFFFFFFFFFF --seed fail \
          --expect "$tmp/fail.raw" "$tmp/fail.vdi"
trap '' XFSZ
start_server "$tmp/fail.pid" "$tmp/fail.sock" "$tmp/fail.log" \
             -v "$VDI_PLUGIN" "$tmp/fail.vdi"
prlimit --pid "$(cat "$tmp/fail.pid")" \
        --fsize="$(stat -c %s "$tmp/fail.vdi")":unlimited
# NBD has no EFBIG: the client sees ENOSPC.
nbdsh -u "$(uri_of "$tmp/fail.sock")" -c '
import errno
for b in range(1, 13):
    try:
        h.pwrite(b"x" * 4096, b * 1024 * 1024 + 512)
        assert False, "the write succeeded"
    except nbd.Error as e:
        assert e.errnum == errno.ENOSPC, e
'
prlimit --pid "$(cat "$tmp/fail.pid")" --fsize=unlimited:unlimited
nbdsh -u "$(uri_of "$tmp/fail.sock")" -c 'h.flush()'
stop_server "$tmp/fail.pid"
cat "$tmp/fail.log"
test "$(grep -c "error: $tmp/fail.vdi: writing block" "$tmp/fail.log")" -eq 12
test "$(vdi_field "$tmp/fail.vdi" cBlocksAllocated)" -eq 1
$VDI_CHECK "$tmp/fail.vdi"
qemu-img check -f vdi "$tmp/fail.vdi"
qemu-img convert -f vdi -O raw "$tmp/fail.vdi" "$tmp/fail.out"
cmp "$tmp/fail.raw" "$tmp/fail.out"
nbdkit -U - "$VDI_PLUGIN" "$tmp/fail.vdi" \
       --run 'nbdcopy "$uri" "$tmp/fail.served"'
cmp "$tmp/fail.raw" "$tmp/fail.served"
