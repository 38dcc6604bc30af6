#!/usr/bin/python3
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

"""clones-load.py: many clones on one vdidiff-dir server, under load.

  clones-load.py --plugin VDI.so --filter VDIDIFF.so --base BASE.vdi
                 --raw BASE.raw --dir DIR [--count N] [--concurrency C]
                 [--nofile L] [--vdi-img VDI-IMG] [--independent K]
                 [--timeout S] [--rss-tolerance MiB] [--markdown]

Starts nbdkit in the foreground on a Unix socket, with the soft and
hard limit on file descriptors set to L (default 1024, as ulimit -n
would), serving BASE.vdi through the vdidiff filter with
vdidiff-dir=DIR (empty or missing: it is created).  Then:

  1. N clients (default 2000), C at a time (default 64), each with its
     own export name clone-NNNNN: connect, write a pattern of its own
     at three offsets (inside the first block, across a block edge and
     near the end of the disk), flush, read back around each write
     (the model is BASE.raw with the client's writes on it), and
     disconnect.
  2. The server's open descriptors (/proc/PID/fd) must come back to
     their number at the start, exactly: every layer and every
     connection has been closed.  Its RSS (VmRSS) must end within
     --rss-tolerance MiB (default 16) of the start: when its last
     clone closes, the filter gives back what libvdi and glibc's
     malloc arenas kept for reuse (vdi_release_memory), and what stays
     is glibc's cache of the stacks of ended threads and the like.
     That left 5 to 9 MiB here after 2,000 clients, so the default is
     about twice the most seen; a leak of 8 KiB per clone would exceed
     it.  0 checks nothing: under a sanitizer the RSS is the
     sanitizer's (AddressSanitizer keeps freed memory in quarantine).
  3. Every export is read back through the same server (its layer is
     reopened from DIR) and must equal its model.
  4. After the server has stopped: "VDI-IMG check" on every layer, and
     K layers (default 16, spread over the range) are read through
     nbdkit's vdi plugin alone, finding BASE.vdi as their parent, and
     must equal their model.

Prints the figures (seconds, connections/s, descriptors and RSS at
start, peak and end), or with --markdown the rows of a markdown table
for bench/RESULTS.md.  Exits 1 after the first failure, saying what
failed; a run that exceeds --timeout seconds (default 600) fails too,
rather than waiting for ever.  The server's stderr is kept in
DIR.log; it must hold no error.
"""

import argparse
import concurrent.futures
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time

import nbd

KiB = 1024
MiB = 1024 * KiB
# The block size of the differencing images the filter creates.
BLOCK = MiB


def die(msg):
    sys.stdout.flush()
    sys.stderr.write("clones-load.py: " + msg + "\n")
    sys.stderr.flush()
    # Threads may be stuck in libnbd: do not wait for them.
    os._exit(1)


def name_of(i):
    return "clone-%05d" % i


def writes_of(i, size):
    """The client's writes: (offset, data) inside its first block,
    across a block edge (a different one for each client) and near the
    end of the disk."""
    rng = random.Random(name_of(i))
    edge = BLOCK * (1 + i % (size // BLOCK - 1))
    places = [
        (512 * rng.randrange(1, 64) + rng.randrange(0, 512),
         rng.randrange(1, 8 * KiB)),
        (edge - rng.randrange(1, 4 * KiB), rng.randrange(5 * KiB, 12 * KiB)),
        (size - 64 * KiB + rng.randrange(0, 60 * KiB), rng.randrange(1, 4 * KiB)),
    ]
    return [(off, rng.randbytes(length)) for off, length in places]


class Base:
    """BASE.raw, the disk every clone starts from."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    def expected(self, writes, off, length):
        """What the clone with these writes holds at [off, off+length)."""
        buf = bytearray(os.pread(self.fd, length, off))
        for w_off, data in writes:
            lo = max(off, w_off)
            hi = min(off + length, w_off + len(data))
            if lo < hi:
                buf[lo - off:hi - off] = data[lo - w_off:hi - w_off]
        return bytes(buf)


def check_reads(h, base, writes, who):
    """Read around each write: it and 512 bytes either side."""
    for off, data in writes:
        lo = max(0, off - 512)
        hi = min(base.size, off + len(data) + 512)
        got = h.pread(hi - lo, lo)
        if got != base.expected(writes, lo, hi - lo):
            raise Exception("%s: bytes %d-%d differ from the model"
                            % (who, lo, hi - 1))


def connect(sock, name):
    h = nbd.NBD()
    h.set_debug(False)              # LIBNBD_DEBUG=1 in make check
    h.set_export_name(name)
    h.connect_unix(sock)
    return h


def client(sock, base, i):
    """One client of step 1."""
    name = name_of(i)
    writes = writes_of(i, base.size)
    h = connect(sock, name)
    if h.get_size() != base.size:
        raise Exception("%s: size %d, expected %d"
                        % (name, h.get_size(), base.size))
    for off, data in writes:
        h.pwrite(data, off)
    h.flush()
    check_reads(h, base, writes, name)
    h.shutdown()


def reread(sock, base, i):
    """Step 3: a new connection to the export sees what was written."""
    name = name_of(i)
    h = connect(sock, name)
    check_reads(h, base, writes_of(i, base.size), name + " (reopened)")
    h.shutdown()


def independent(args, base, i):
    """Step 4: the layer through the vdi plugin alone, without the
    filter, its parent found in the folder of BASE.vdi."""
    layer = os.path.join(args.dir, name_of(i) + ".vdi")
    h = nbd.NBD()
    h.set_debug(False)
    h.connect_command(["nbdkit", "-s", "--exit-with-parent", args.plugin,
                       "file=" + layer, "readonly=true",
                       "parent-dir=" + os.path.dirname(args.base)])
    check_reads(h, base, writes_of(i, base.size), layer)
    h.shutdown()


class Server:
    """nbdkit in the foreground, its descriptors limited."""

    def __init__(self, args):
        self.sock = os.path.join(os.path.dirname(args.dir) or ".",
                                 "clones-load.%d.sock" % os.getpid())
        self.log = args.dir + ".log"
        nofile = args.nofile

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        cmd = ["nbdkit", "-f", "--log=stderr", "-U", self.sock,
               "--filter=" + args.filter, args.plugin, "file=" + args.base,
               "vdidiff-dir=" + args.dir]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stderr=log, preexec_fn=limit)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                die("nbdkit did not start: see " + self.log)
            time.sleep(0.02)
        self.pid = self.proc.pid

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            die("nbdkit did not exit after SIGTERM")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        return status


class Peaks(threading.Thread):
    """Samples the server's descriptors and RSS every 10 ms."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.fds = server.fds()
        self.rss = server.rss_kib()
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.01):
            try:
                self.fds = max(self.fds, self.server.fds())
                self.rss = max(self.rss, self.server.rss_kib())
            except OSError:
                return


def run_all(what, fn, items, concurrency, deadline):
    """fn(i) for every i, concurrency at a time; dies at the first
    failure or at the deadline.  Returns the seconds taken."""
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(fn, i) for i in items]
        done, pending = concurrent.futures.wait(
            futures, timeout=max(0, deadline - time.monotonic()),
            return_when=concurrent.futures.FIRST_EXCEPTION)
        for f in done:
            if f.exception():
                die("%s: %s" % (what, f.exception()))
        if pending:
            die("%s: %d clients still running after the time allowed "
                "(--timeout): the server hangs" % (what, len(pending)))
    return time.monotonic() - start


def wait_for_fds(server, target, deadline):
    """The server closes a connection's pipes just after its socket:
    give it a moment."""
    while server.fds() != target and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.fds()


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plugin", required=True)
    p.add_argument("--filter", required=True)
    p.add_argument("--base", required=True, help="the base VDI image")
    p.add_argument("--raw", required=True, help="its bytes, the model")
    p.add_argument("--dir", required=True, help="vdidiff-dir=")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--nofile", type=int, default=1024)
    p.add_argument("--vdi-img", default="vdi-img")
    p.add_argument("--independent", type=int, default=16)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--rss-tolerance", type=int, default=16, metavar="MiB")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()
    for a in ("plugin", "filter", "base", "raw", "dir"):
        setattr(args, a, os.path.abspath(getattr(args, a)))
    deadline = time.monotonic() + args.timeout

    base = Base(args.raw)
    os.makedirs(args.dir, exist_ok=True)
    if os.listdir(args.dir):
        die(args.dir + ": not empty")
    server = Server(args)
    try:
        fds_start = server.fds()
        rss_start = server.rss_kib()
        peaks = Peaks(server)
        peaks.start()
        seconds = run_all("clients", lambda i: client(server.sock, base, i),
                          range(args.count), args.concurrency, deadline)
        fds_end = wait_for_fds(server, fds_start, time.monotonic() + 5)
        rss_end = server.rss_kib()
        peaks.done.set()
        peaks.join()
        reread_seconds = run_all("re-read",
                                 lambda i: reread(server.sock, base, i),
                                 range(args.count), args.concurrency,
                                 deadline)
    finally:
        status = server.stop()

    row = {
        "seconds": seconds,
        "rate": args.count / seconds,
        "fds": (fds_start, peaks.fds, fds_end),
        "rss": (rss_start, peaks.rss, rss_end),
    }
    if args.markdown:
        # The columns of bench/RESULTS.md: bar, measure, this project,
        # other, ratio, target.
        print("| clones | %d exports, %d clients at a time, ulimit -n %d: "
              "connect, 3 writes, flush, read back, disconnect | %.2f s, "
              "%.0f connections/s | | | |"
              % (args.count, args.concurrency, args.nofile, seconds,
                 row["rate"]))
        print("| clones | server descriptors at start / peak / end | "
              "%d / %d / %d | | | end = start |" % row["fds"])
        print("| clones | server RSS KiB at start / peak / end | "
              "%d / %d / %d | | | end <= start + %d |"
              % (row["rss"] + (args.rss_tolerance * KiB,)))
    else:
        print("clients: %d exports, %d at a time: %.2f s, "
              "%.1f connections/s" % (args.count, args.concurrency,
                                      seconds, row["rate"]))
        print("server descriptors: start %d, peak %d, end %d (limit %d)"
              % (row["fds"] + (args.nofile,)))
        print("server RSS KiB: start %d, peak %d, end %d" % row["rss"])
        print("re-read through reopened layers: %.2f s" % reread_seconds)
    sys.stdout.flush()

    if status != 0:
        die("nbdkit exited with status %d: see %s" % (status, server.log))
    with open(server.log) as f:
        errors = [line for line in f if "error" in line]
    if errors:
        die("the server logged %d errors, the first: %s"
            % (len(errors), errors[0].strip()))
    if fds_end != fds_start:
        die("the server has %d descriptors open after the clients, "
            "%d at the start" % (fds_end, fds_start))
    if args.rss_tolerance and \
       rss_end > rss_start + args.rss_tolerance * KiB:
        die("the server's RSS is %d KiB after the clients, %d KiB at the "
            "start: more than %d MiB above"
            % (rss_end, rss_start, args.rss_tolerance))

    layers = sorted(os.listdir(args.dir))
    if layers != [name_of(i) + ".vdi" for i in range(args.count)]:
        die("%s holds %d files, expected the %d layers"
            % (args.dir, len(layers), args.count))
    for k in range(0, len(layers), 500):
        batch = [os.path.join(args.dir, f) for f in layers[k:k + 500]]
        r = subprocess.run([args.vdi_img, "check"] + batch,
                           stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            die("vdi-img check failed (status %d) on a layer of %s"
                % (r.returncode, args.dir))
    k = min(args.independent, args.count)
    sample = sorted({i * (args.count - 1) // max(1, k - 1) for i in range(k)})
    run_all("vdi plugin", lambda i: independent(args, base, i), sample, 2,
            deadline)
    if not args.markdown:
        print("vdi-img check: %d layers clean; %d read through the vdi "
              "plugin alone" % (len(layers), len(sample)))


if __name__ == "__main__":
    main()
