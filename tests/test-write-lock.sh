#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# No two writers share an image, and the refused side says "image is
# in use".  The locks are QEMU's lock bytes (OFD locks): readers hold
# consistent-read and refuse to share write and resize, the writer
# holds all three and refuses the same, so each project sees the
# other's users.
#   The vdi plugin takes the exclusive lock at start unless it will
#   never write (nbdkit -r, readonly=true, the vdidiff or cow filter):
#   - while one writable server serves an image, even before it has
#     written, a second server on it (writable, -r, readonly=true) is
#     refused at start, on stderr before nbdkit forks; the first keeps
#     serving and writing;
#   - two read-only servers (-r, readonly=true) serve one image at
#     once; a writable server beside them is refused at start, a cow
#     filter beside them starts and writes to its overlay;
#   - a writable server is refused while vdi-img merge (stopped
#     half-way) holds the image, and starts once the merge is done;
#   - QEMU's readers (qemu-img info, convert, compare, qemu-nbd -r)
#     and ours share an image, whichever came first; a writer of
#     either project is refused beside them;
#   - beside a writer of either project, the readers and writers of
#     both are refused (only QEMU's -U reads beside ours).
#   The vdidiff filter locks its differencing image at start:
#   - a second server with the same vdidiff= fails at start;
#   - two filters over one base (different layers) work at once, and a
#     writer on that base is refused at start;
#   - vdidiff-dir=: two servers on one folder share nothing but the
#     folder: the same export on both is refused on the second while
#     a client of the first uses it.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires qemu-img --version
requires_nbdsh
requires test -f "$KILL_AT_LIB"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-write-lock.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export RANDOM_IO tmp

$MAKE_VDI --size 5M --seed lock --expect "$tmp/model" "$tmp/img.vdi"
uri () { uri_of "$tmp/$1.sock" $2; }
# write_one URI [MODEL]: a write and a flush, and the same write to
# the model ($tmp/model by default).
write_one ()
{
    nbdsh -u "$1" -c 'h.pwrite(b"locked" * 1000, 4097); h.flush()'
    yes locked | head -n 1000 | tr -d '\n' |
        dd of="${2:-$tmp/model}" bs=6000 seek=4097 oflag=seek_bytes \
           conv=notrunc iflag=fullblock status=none
}

in_use_writing="nbdkit: error: $tmp/img.vdi: image is in use: another process has it open for writing"
in_use_open="nbdkit: error: $tmp/img.vdi: image is in use: another process has opened it"

# qemu_nbd PIDFILE SOCKET qemu-nbd-args...: serve in the background
# once the image is open and locked, beyond the first client (-t),
# until stopped.
qemu_nbd ()
{
    local pidfile="$1" sock="$2"
    shift 2
    rm -f "$pidfile" "$sock"
    qemu-nbd --fork -t --pid-file="$pidfile" -k "$sock" "$@"
    cleanup_fn stop_pid "$(cat "$pidfile")"
}
# qemu_refused COMMAND...: QEMU fails to get one of its locks.
qemu_refused ()
{
    must_fail timeout 60 "$@" 2> "$tmp/qerr"
    cat "$tmp/qerr"
    grep 'Failed to .*lock' "$tmp/qerr"
}

# --- Two writable servers, before either writes ------------------------

start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
# The second one says why on stderr and exits, before it forks: no
# pidfile, no socket.
rm -f "$tmp/b.pid" "$tmp/b.sock"
status=0
nbdkit -P "$tmp/b.pid" -U "$tmp/b.sock" "$VDI_PLUGIN" "$tmp/img.vdi" \
       2> "$tmp/err" || status=$?
cat "$tmp/err"
test $status -eq 1
grep -Fx "$in_use_writing" "$tmp/err"
test ! -e "$tmp/b.pid"
test ! -e "$tmp/b.sock"
expect_start_failure "$tmp/err" "$in_use_writing" "$VDI_PLUGIN" "$tmp/img.vdi"
expect_start_failure "$tmp/err" "$in_use_writing" "$VDI_PLUGIN" "$tmp/img.vdi" readonly=true
expect_start_failure "$tmp/err" "$in_use_writing" -r "$VDI_PLUGIN" "$tmp/img.vdi"
# QEMU's readers and writers are refused too; with -U it reads it.
qemu_refused qemu-img info "$tmp/img.vdi"
qemu_refused qemu-nbd -r -f vdi -k "$tmp/q.sock" "$tmp/img.vdi"
qemu_refused qemu-io -f vdi -c 'write -P 0x51 0 512' "$tmp/img.vdi"
qemu-img info -U "$tmp/img.vdi"
qemu-img convert -U -f vdi -O raw "$tmp/img.vdi" "$tmp/copy.raw"
cmp "$tmp/copy.raw" "$tmp/model"
# The first server still serves, and writes.
$RANDOM_IO verify "$(uri a)" "$tmp/model"
write_one "$(uri a)"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
stop_server "$tmp/a.pid"
$VDI_CHECK "$tmp/img.vdi"

# --- Two readers at once, and a writable server beside them ---------------

start_server "$tmp/b.pid" "$tmp/b.sock" "$tmp/b.log" -v "$VDI_PLUGIN" "$tmp/img.vdi" readonly=true
start_server "$tmp/c.pid" "$tmp/c.sock" "$tmp/c.log" -v -r "$VDI_PLUGIN" "$tmp/img.vdi"
start_server "$tmp/d.pid" "$tmp/d.sock" "$tmp/d.log" -v -r "$VDI_PLUGIN" "$tmp/img.vdi"
$RANDOM_IO verify "$(uri b)" "$tmp/model"
$RANDOM_IO verify "$(uri c)" "$tmp/model"
$RANDOM_IO verify "$(uri d)" "$tmp/model"
expect_start_failure "$tmp/err" "$in_use_open" "$VDI_PLUGIN" "$tmp/img.vdi"
# The cow filter never writes through: it only reads the image.
img_sum="$(sha256_of "$tmp/img.vdi")"
nbdkit -U - --filter=cow "$VDI_PLUGIN" "$tmp/img.vdi" \
       --run 'nbdsh -u "$uri" -c "h.pwrite(b\"cow\" * 1000, 0)" \
                  -c "assert h.pread(3000, 0) == b\"cow\" * 1000"'
test "$(sha256_of "$tmp/img.vdi")" = "$img_sum"
$RANDOM_IO verify "$(uri b)" "$tmp/model"
stop_server "$tmp/b.pid"
stop_server "$tmp/c.pid"
stop_server "$tmp/d.pid"
# The readers have gone: a writable server starts and writes.
start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a2.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
write_one "$(uri a)"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
stop_server "$tmp/a.pid"
$VDI_CHECK "$tmp/img.vdi"

# --- QEMU's readers and ours -----------------------------------------------

img_sum="$(sha256_of "$tmp/img.vdi")"
# Ours first.
start_server "$tmp/c.pid" "$tmp/c.sock" "$tmp/c.log" -v -r "$VDI_PLUGIN" "$tmp/img.vdi"
qemu-img info "$tmp/img.vdi"
qemu-img convert -f vdi -O raw "$tmp/img.vdi" "$tmp/copy.raw"
cmp "$tmp/copy.raw" "$tmp/model"
qemu-img compare -f vdi -F raw "$tmp/img.vdi" "$tmp/model"
qemu_nbd "$tmp/q.pid" "$tmp/q.sock" -r -f vdi "$tmp/img.vdi"
$RANDOM_IO verify "$(uri q)" "$tmp/model"
$RANDOM_IO verify "$(uri c)" "$tmp/model"
# No writer beside them, of either project.
qemu_refused qemu-nbd -f vdi -k "$tmp/q2.sock" "$tmp/img.vdi"
qemu_refused qemu-io -f vdi -c 'write -P 0x51 0 512' "$tmp/img.vdi"
expect_start_failure "$tmp/err" "$in_use_open" "$VDI_PLUGIN" "$tmp/img.vdi"
stop_server "$tmp/c.pid"
# QEMU's first: qemu-nbd -r still serves, and ours start beside it.
start_server "$tmp/d.pid" "$tmp/d.sock" "$tmp/d.log" -v -r "$VDI_PLUGIN" "$tmp/img.vdi"
$RANDOM_IO verify "$(uri d)" "$tmp/model"
$RANDOM_IO verify "$(uri q)" "$tmp/model"
expect_start_failure "$tmp/err" "$in_use_open" "$VDI_PLUGIN" "$tmp/img.vdi"
stop_server "$tmp/d.pid"
expect_start_failure "$tmp/err" "$in_use_open" "$VDI_PLUGIN" "$tmp/img.vdi"
stop_server "$tmp/q.pid"
test "$(sha256_of "$tmp/img.vdi")" = "$img_sum"

# --- QEMU's writer --------------------------------------------------------

qemu_nbd "$tmp/q.pid" "$tmp/q.sock" -f vdi "$tmp/img.vdi"
for ro in "" -r; do
    expect_start_failure "$tmp/err" "$in_use_writing" $ro "$VDI_PLUGIN" "$tmp/img.vdi"
done
expect_start_failure "$tmp/err" "$in_use_writing" "$VDI_PLUGIN" "$tmp/img.vdi" readonly=true
write_one "$(uri q)"
stop_server "$tmp/q.pid"
# Gone: ours writes what QEMU wrote and more.
$VDI_CHECK "$tmp/img.vdi"
start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a-q.log" -v "$VDI_PLUGIN" "$tmp/img.vdi"
$RANDOM_IO verify "$(uri a)" "$tmp/model"
$RANDOM_IO run "$(uri a)" "$tmp/model" --seed lockq --ops 20
stop_server "$tmp/a.pid"
$VDI_CHECK "$tmp/img.vdi"

# --- vdi-img merge holds the images --------------------------------------

# A child of a copy of the image, merged into its parent by vdi-img,
# which is stopped (kill-at.c, SIGSTOP) at its first change: it holds
# both images then.  (In a folder of their own: the copy has the
# image's UUID.)
m="$tmp/merge/vm"
mkdir -p "$m"
cp "$tmp/img.vdi" "$m/base.vdi"
$MAKE_VDI --parent "$m/base.vdi" --parent-expect "$tmp/model" \
          --blocks FDZF --seed child --expect "$m.model" "$m/child.vdi"
KILL_AT=1 KILL_AT_SIGNAL="$(kill -l STOP)" LD_PRELOAD="$KILL_AT_LIB" \
    $VDI_IMG merge -p "$m/child.vdi" &
merge=$!
cleanup_fn kill -9 $merge
for (( i = 0; i < 200; ++i )); do
    test "$(sed 's/.*) //' "/proc/$merge/stat" | cut -c1)" = T && break
    sleep 0.05
done
test "$(sed 's/.*) //' "/proc/$merge/stat" | cut -c1)" = T
for f in base child; do
    for ro in "" -r; do
        expect_start_failure "$tmp/err" \
            "nbdkit: error: $m/$f.vdi: image is in use: another process has it open for writing" \
            $ro "$VDI_PLUGIN" "$m/$f.vdi"
    done
done
kill -CONT $merge
wait $merge
test ! -e "$m/child.vdi"
start_server "$tmp/a.pid" "$tmp/a.sock" "$tmp/a3.log" -v "$VDI_PLUGIN" "$m/base.vdi"
write_one "$(uri a)" "$m.model"
$RANDOM_IO verify "$(uri a)" "$m.model"
stop_server "$tmp/a.pid"

# --- The vdidiff filter -------------------------------------------------------

base_sum="$(sha256_of "$tmp/img.vdi")"
start_server "$tmp/f.pid" "$tmp/f.sock" "$tmp/f.log" -v \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/img.vdi" vdidiff="$tmp/d1.vdi"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/d1.vdi: image is in use: another process has opened it" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/img.vdi" vdidiff="$tmp/d1.vdi"
expect_start_failure "$tmp/err" \
    "nbdkit: error: $tmp/d1.vdi: image is in use: another process has it open for writing" \
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
# But nobody may write the base; reading it is fine.
expect_start_failure "$tmp/err" "$in_use_open" "$VDI_PLUGIN" "$tmp/img.vdi"
nbdkit -U - -r "$VDI_PLUGIN" "$tmp/img.vdi" \
       --run '$RANDOM_IO verify "$uri" "$tmp/model"'
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
# A layer is locked while a client of f uses it (and only then, see
# test-vdidiff-dir-lifetime.sh): g tries while one is connected.
g_alice="$(uri g alice)" nbdsh -u "$(uri f alice)" -c 'h.pwrite(b"alice", 0)' -c '
import os, subprocess
r = subprocess.run(["nbdsh", "-u", os.environ["g_alice"],
                    "-c", "h.pwrite(b\"alice on g\", 0)"])
assert r.returncode != 0
'
grep "error.*alice.vdi: image is in use" "$tmp/g-dir.log"
nbdsh -u "$(uri g bob)" -c 'h.pwrite(b"bob", 0)'
stop_server "$tmp/f.pid"
stop_server "$tmp/g.pid"
$VDI_CHECK "$tmp/clones/alice.vdi" "$tmp/clones/bob.vdi"
test "$(sha256_of "$tmp/img.vdi")" = "$base_sum"
