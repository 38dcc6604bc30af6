#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdidiff-max-open=N bounds the layers of vdidiff-dir= open at once:
#   - with N=3 and three exports held open by clients (and a second
#     client on one of them, which opens nothing), a fourth export is
#     refused: the client hears that the server has no such export,
#     the server's log says why, and nothing is created; as soon as
#     one client has disconnected, the fourth export is served;
#   - the default comes from the limit on descriptors: 240 for
#     ulimit -n 1024 ((1024 - 64) / 4);
#   - a layer that cannot be opened for want of descriptors (the
#     server's limit lowered with prlimit while it runs) is refused
#     with a message naming the cause and the remedy, creating
#     nothing, and served once descriptors are back;
#   - vdidiff-max-open is refused with vdidiff=, and so is 0.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires timeout --version
if [ "$(ulimit -H -n)" != unlimited ] && [ "$(ulimit -H -n)" -lt 1024 ]; then
    echo "$0: test skipped: the hard limit on descriptors is below 1024"
    exit 77
fi
ulimit -S -n 1024

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-max-open.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export tmp
sock="$tmp/sock"
pid="$tmp/pid"

$MAKE_VDI --size 4M --seed max-open-base --expect "$tmp/base.raw" "$tmp/base.vdi"
mkdir "$tmp/clones"

# The default, from ulimit -n.
start_server "$pid" "$sock" "$tmp/default.log" -v \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff-dir="$tmp/clones"
grep "vdidiff-dir: at most 240 differencing images open at once" "$tmp/default.log"
stop_server "$pid"

start_server "$pid" "$sock" "$tmp/log" -v \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff-dir="$tmp/clones" vdidiff-max-open=3
timeout 60 $PYTHON - "$sock" "$(cat "$pid")" "$tmp" <<'PY'
import os, resource, sys, time, nbd
sock, pid, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = tmp + "/log"

def connect(name):
    h = nbd.NBD()
    h.set_debug(False)
    h.set_export_name(name)
    h.connect_unix(sock)
    return h

def refused(name):
    try:
        connect(name)
    except nbd.Error as e:
        print("client: %s" % e)
        assert "server has no export named '%s'" % name in str(e), e
        return
    raise AssertionError("export %s was served" % name)

def log_has(text):
    with open(log) as f:
        return any(text in line for line in f)

held = {n: connect(n) for n in ("a", "b", "c")}
second_a = connect("a")
refused("d")
assert log_has("error: %s/clones/d.vdi: not opened: 3 differencing images "
               "are open at once (vdidiff-max-open=3), each for a client "
               "still connected" % tmp)
assert sorted(os.listdir(tmp + "/clones")) == ["a.vdi", "b.vdi", "c.vdi"]
# Two clients on "a": it stays open while one of them is connected.
held.pop("a").shutdown()
refused("d")
held.pop("b").shutdown()
d = connect("d")
d.pwrite(b"d" * 512, 0)
d.shutdown()

# A client does not wait for the server to close its connection and
# layer: wait until the server's descriptors stop changing.
def settled_fds():
    deadline = time.monotonic() + 10
    fds = None
    while True:
        now = sorted(os.listdir("/proc/%d/fd" % pid))
        if now == fds:
            return {int(f) for f in now}
        assert time.monotonic() < deadline, "the descriptors keep changing"
        fds = now
        time.sleep(0.2)

# Out of descriptors: leave the server just enough for a connection
# (its socket and a pair of pipes), none for the layer of "e": the
# limit is the lowest with 3 free descriptor numbers below it.
fds = settled_fds()
soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
limit = next(n for n in range(soft) if n - len([f for f in fds if f < n]) == 3)
resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
refused("e")
resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
assert log_has("error: %s/clones/e.vdi: nbdkit has no file descriptor left "
               "(ulimit -n is %d; differencing images open: 2, "
               "vdidiff-max-open=3): raise ulimit -n or lower "
               "vdidiff-max-open" % (tmp, limit))
assert "e.vdi" not in os.listdir(tmp + "/clones"), os.listdir(tmp + "/clones")
e = connect("e")
e.pwrite(b"e" * 512, 0)
e.shutdown()
PY
stop_server "$pid"
cat "$tmp/log" | grep error
ls -a "$tmp/clones"
test "$(ls -a "$tmp/clones" | tr '\n' ' ')" = ". .. a.vdi b.vdi c.vdi d.vdi e.vdi "
$VDI_CHECK "$tmp"/clones/*.vdi

# Refused at start.
expect_start_failure "$tmp/err" \
    "nbdkit: error: vdidiff-max-open is for vdidiff-dir=<DIR>, not vdidiff=<FILE.vdi>" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/diff.vdi" vdidiff-max-open=3
expect_start_failure "$tmp/err" \
    "nbdkit: error: vdidiff-max-open must be at least 1" \
    --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff-dir="$tmp/clones" vdidiff-max-open=0
test ! -e "$tmp/diff.vdi"
