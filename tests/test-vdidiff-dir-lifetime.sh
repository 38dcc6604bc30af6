#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdidiff-dir=: a layer is open while connections use it, and closed
# (flushed, its lock dropped) when the last one ends:
#   - while a client is connected, vdi-img check finds the layer in
#     use; as soon as the client has disconnected (no waiting), it is
#     clean, and another process can write to it;
#   - a new connection reopens it and sees what was written before,
#     by the server and by that other process;
#   - a client that connects to an export while its last connection
#     is closing waits for the close, then reopens it (clients that
#     write and hang up in a loop: no error, no write lost);
#   - a layer that failed to open is not remembered as failed;
#   - with vdidiff-autoreset=true a layer is emptied once per run,
#     not at each reopening.
# The base never changes.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires timeout --version

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-dir-lifetime.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export tmp VDI_CHECK
sock="$tmp/sock"
pid="$tmp/pid"
T="timeout 60"

$MAKE_VDI --size 4M --seed lifetime-base --expect "$tmp/base.raw" "$tmp/base.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"
mkdir "$tmp/clones"
start_server "$pid" "$sock" "$tmp/log" -v -D vdidiff.verbose=1 \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff-dir="$tmp/clones"
uri="$(uri_of "$sock" p)"

# In use while connected; closed as soon as the client is gone.
$T nbdsh -u "$uri" -c '
import os, subprocess
h.pwrite(b"first" * 1000, 1048576 - 2000)
h.flush()
r = subprocess.run(os.environ["VDI_CHECK"].split() + [os.environ["tmp"] + "/clones/p.vdi"],
                   stderr=subprocess.PIPE, text=True)
print(r.stderr)
assert r.returncode != 0 and "image is in use" in r.stderr
h.shutdown()
# At once: the layer was closed before the server hung up.
import fcntl, struct
with open(os.environ["tmp"] + "/clones/p.vdi", "r+b") as f:
    fcntl.fcntl(f, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
r = subprocess.run(os.environ["VDI_CHECK"].split() + [os.environ["tmp"] + "/clones/p.vdi"])
assert r.returncode == 0
'
grep "clones/p.vdi: closing: its last connection has ended" "$tmp/log"

# Another process writes to the layer while the server is idle.
$T nbdkit -U - "$VDI_PLUGIN" "$tmp/clones/p.vdi" parent-dir="$tmp" \
    --run 'nbdsh -u "$uri" -c "h.pwrite(b\"other\" * 100, 3000000); h.flush()"'

# A new connection reopens it: both writes are there.
$T nbdsh -u "$uri" -c '
assert h.pread(5000, 1048576 - 2000) == b"first" * 1000
assert h.pread(500, 3000000) == b"other" * 100
'
test "$(grep -c "clones/p.vdi: opened differencing image" "$tmp/log")" -eq 1

# 4 clients, each on its own export, connect, write without flushing
# and hang up without waiting for the server, 25 times each, so that
# connections arrive while the previous one flushes and closes the
# layer.  Every write must be there at the end.
$T $PYTHON - "$sock" <<'PY'
import sys, threading, nbd
sock = sys.argv[1]
errors = []

def connect(name):
    h = nbd.NBD()
    h.set_debug(False)
    h.set_export_name(name)
    h.connect_unix(sock)
    return h

def writer(t):
    try:
        for k in range(25):
            h = connect("r%d" % t)
            h.pwrite(bytes([t * 25 + k]) * 1000, 4096 * k + 1000)
            del h               # hang up at once
    except Exception as e:
        errors.append("client %d: %s" % (t, e))

threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
assert not errors, errors
for t in range(4):
    h = connect("r%d" % t)
    for k in range(25):
        assert h.pread(1000, 4096 * k + 1000) == bytes([t * 25 + k]) * 1000, (t, k)
PY
must_fail grep ": error: " "$tmp/log"

# A layer that fails to open is not remembered: "bad" is not a VDI
# image, then it is removed and the export is served.
echo "not a VDI image" > "$tmp/clones/bad.vdi"
must_fail $T nbdsh -u "$(uri_of "$sock" bad)" -c 'h.get_size()'
grep "error.*clones/bad.vdi" "$tmp/log"
rm "$tmp/clones/bad.vdi"
$T nbdsh -u "$(uri_of "$sock" bad)" -c 'h.pwrite(b"good", 0)'
stop_server "$pid"
$VDI_CHECK "$tmp/clones/p.vdi" "$tmp/clones/bad.vdi"

# vdidiff-autoreset=true: a run keeps what it wrote across reopening;
# the next run starts empty.
for run in 1 2; do
    start_server "$pid" "$sock" "$tmp/reset.log" -v -D vdidiff.verbose=1 \
        --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
        vdidiff-dir="$tmp/clones" vdidiff-autoreset=true
    $T nbdsh -u "$uri" -c '
import os
assert h.pread(5000, 1048576 - 2000) == open(os.environ["tmp"] + "/base.raw", "rb").read()[1048576 - 2000:1048576 + 3000]
h.pwrite(b"reset" * 1000, 1048576 - 2000)
h.flush()
'
    $T nbdsh -u "$uri" -c '
assert h.pread(5000, 1048576 - 2000) == b"reset" * 1000
'
    stop_server "$pid"
done
test "$(grep -c "clones/p.vdi: reset differencing image" "$tmp/reset.log")" -eq 2
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
