#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# No two writers share an image (OFD locks: shared for readers,
# exclusive for the writer), and the refused side says "image is in
# use".
#   The vdi plugin takes the exclusive lock at its first write:
#   - while one server writes an image, a second server on it (even
#     read-only) fails at start;
#   - while a read-only server serves it, a writable server starts and
#     its clients read, but their writes fail and its log says why;
#     once the reader has gone, the next write succeeds;
#   - two idle writable servers read, and neither can write while the
#     other serves the image;
#   - two read-only servers serve one image at once;
#   - qemu-img sees a written image as in use (and -U reads it).
#   The vdidiff filter locks its differencing image at start:
#   - a second server with the same vdidiff= fails at start;
#   - two filters over one base (different layers) work at once, and a
#     writer on that base is refused;
#   - vdidiff-dir=: two servers on one folder share nothing but the
#     folder: the same export on both is refused on the second.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires qemu-img --version
requires_nbdsh

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-write-lock.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

$MAKE_VDI --size 5M --seed lock --expect "$tmp/model" "$tmp/img.vdi"
uri () { uri_of "$tmp/$1.sock" $2; }
# write_one URI: a write and a flush, and the same write to the model.
write_one ()
{
    nbdsh -u "$1" -c 'h.pwrite(b"locked" * 1000, 4097); h.flush()'
    yes locked | head -n 1000 | tr -d '\n' |
        dd of="$tmp/model" bs=6000 seek=4097 oflag=seek_bytes conv=notrunc \
           iflag=fullblock status=none
}

# --- One writer, and a second server -----------------------------------

start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
write_one "$(uri a)"
msg="nbdkit: error: $tmp/img.vdi: image is in use: another process is writing to it"
expect_start_failure "$tmp/err" "$msg" "$VDI_PLUGIN" "$tmp/img.vdi"
expect_start_failure "$tmp/err" "$msg" "$VDI_PLUGIN" "$tmp/img.vdi" readonly=true
expect_start_failure "$tmp/err" "$msg" -r "$VDI_PLUGIN" "$tmp/img.vdi"
# qemu sees it in use too; with -U it reads it.
! qemu-img info "$tmp/img.vdi" 2> "$tmp/qerr"
cat "$tmp/qerr"
qemu-img info -U "$tmp/img.vdi"
# The writer still serves.
$RANDOM_IO verify "$(uri a)" "$tmp/model"
stop_server "$tmp/a.pid"
$VDI_CHECK "$tmp/img.vdi"

# --- Two readers at once --------------------------------------------------

start_server "$tmp/b.pid" "$tmp/b.sock" "$tmp/b.log" -v "$VDI_PLUGIN" "$tmp/img.vdi" readonly=true
start_server "$tmp/c.pid" "$tmp/c.sock" "$tmp/c.log" -v -r "$VDI_PLUGIN" "$tmp/img.vdi"
$RANDOM_IO verify "$(uri b)" "$tmp/model"
$RANDOM_IO verify "$(uri c)" "$tmp/model"

# --- A writable server while a reader serves -----------------------------

start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
if nbdsh -u "$(uri a)" -c 'h.pwrite(b"x", 0)'; then
    echo "$0: the writable server wrote an image another server reads" >&2
    exit 1
fi
cat "$tmp/a.log"
grep "error.*img.vdi: image is in use" "$tmp/a.log"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
$RANDOM_IO verify "$(uri b)" "$tmp/model"
stop_server "$tmp/b.pid"
stop_server "$tmp/c.pid"
# The readers have gone: the next connection writes.
write_one "$(uri a)"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
stop_server "$tmp/a.pid"

# --- Two idle writable servers: neither writes while the other serves ------

start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a2.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
start_server "$tmp/b.pid" "$tmp/b.sock" "$tmp/b2.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
$RANDOM_IO verify "$(uri b)" "$tmp/model"
! nbdsh -u "$(uri b)" -c 'h.pwrite(b"x", 0)'
grep "error.*img.vdi: image is in use" "$tmp/b2.log"
! nbdsh -u "$(uri a)" -c 'h.zero(512, 0)'
grep "error.*img.vdi: image is in use" "$tmp/a2.log"
stop_server "$tmp/b.pid"
write_one "$(uri a)"
stop_server "$tmp/a.pid"
nbdkit -U - "$VDI_PLUGIN" "$tmp/img.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/model"'
$VDI_CHECK "$tmp/img.vdi"

# --- The vdidiff filter -------------------------------------------------------

base_sum="$(sha256_of "$tmp/img.vdi")"
start_server "$tmp/f.pid" "$tmp/f.sock" "$tmp/f.log" -v \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/img.vdi" vdidiff="$tmp/d1.vdi"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/d1.vdi: image is in use: another process has opened it" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/img.vdi" vdidiff="$tmp/d1.vdi"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/d1.vdi: image is in use: another process is writing to it" \
    "$VDI_PLUGIN" "$tmp/d1.vdi" readonly=true
# A second layer over the same base works at once.
start_server "$tmp/g.pid" "$tmp/g.sock" "$tmp/g.log" -v \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/img.vdi" vdidiff="$tmp/d2.vdi"
cp "$tmp/model" "$tmp/model1"
cp "$tmp/model" "$tmp/model2"
$RANDOM_IO run "$(uri f)" "$tmp/model1" --seed lock1 --ops 60 &
p1=$!
$RANDOM_IO run "$(uri g)" "$tmp/model2" --seed lock2 --ops 60
wait $p1
# But nobody may write the base.
start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a3.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
! nbdsh -u "$(uri a)" -c 'h.pwrite(b"x", 0)'
grep "error.*img.vdi: image is in use" "$tmp/a3.log"
stop_server "$tmp/a.pid"
stop_server "$tmp/f.pid"
stop_server "$tmp/g.pid"
test "$(sha256_of "$tmp/img.vdi")" = "$base_sum"
$VDI_CHECK "$tmp/d1.vdi" "$tmp/d2.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/d1.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/model1"'
nbdkit -U - "$VDI_PLUGIN" "$tmp/d2.vdi" readonly=true \
       --run '$RANDOM_IO verify "$uri" "$tmp/model2"'

# --- vdidiff-dir: one export on two servers --------------------------------

mkdir "$tmp/clones"
for s in f g; do
    start_server "$tmp/$s.pid" "$tmp/$s.sock" "$tmp/$s-dir.log" -v \
        --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/img.vdi" \
        vdidiff-dir="$tmp/clones"
done
nbdsh -u "$(uri f alice)" -c 'h.pwrite(b"alice", 0)'
! nbdsh -u "$(uri g alice)" -c 'h.pwrite(b"alice on g", 0)'
grep "error.*alice.vdi: image is in use" "$tmp/g-dir.log"
nbdsh -u "$(uri g bob)" -c 'h.pwrite(b"bob", 0)'
stop_server "$tmp/f.pid"
stop_server "$tmp/g.pid"
$VDI_CHECK "$tmp/clones/alice.vdi" "$tmp/clones/bob.vdi"
test "$(sha256_of "$tmp/img.vdi")" = "$base_sum"
