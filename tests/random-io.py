#!/usr/bin/python3
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

"""random-io.py: model-based random I/O over NBD, for the write tests.

The model is a raw file holding the bytes the disk must show.  Every
command takes an NBD URI (nbdkit's $uri) and the model's path.

  random-io.py run URI MODEL [--seed S] [--ops N] [--writers W] ...
      Random writes, zeroes (some with the fast-zero flag), trims,
      FUA writes and flushes, at unaligned offsets and across block
      edges, applied to the disk and to the model alike; reads in
      between must agree with the model.  With --writers W, W
      connections (threads) write at once, each into its own stripes
      of --stripe bytes (which are not block aligned, so that every
      block is shared by several writers and they race to allocate
      it).  At the end the whole disk must equal the model, which is
      saved.

  random-io.py verify URI MODEL [--pending FILE] [--update]
      The whole disk must equal the model.  With --pending (written
      by "crash"), bytes that requests in flight or not yet flushed
      could have changed may instead hold what any of those requests
      wrote there.  --update saves what was read as the new model.

  random-io.py extents URI MODEL
      Block status (extents) must never call data zero: every range
      reported as reading zeros reads zeros in the model.  Prints the
      merged runs as "OFFSET LENGTH data|zero".

  random-io.py readonly URI
      The export is read-only, and the server refuses writes, zeroes
      and trims sent anyway (libnbd's strict mode off), changing
      nothing.

  random-io.py crash URI MODEL --kill PID [--writers W] [--seed S]
      W connections write, zero, trim and flush at random until the
      server dies: after a random delay this kills PID with SIGKILL.
      Each writer records which of its requests were flushed (a
      flush it sent completed after them, or they were FUA).  MODEL
      is then set to the flushed state, and MODEL.pending lists the
      requests since each writer's last flush (acknowledged or not:
      a write that was not flushed may be lost).

Request data is random bytes from a seed per request, so a pending
file need only list (offset, length, seed).  Only the Python standard
library and the libnbd bindings are used.
"""

import argparse
import errno
import json
import os
import random
import signal
import sys
import threading
import time

import nbd

KiB = 1024
MiB = 1024 * KiB
CHUNK = 4 * MiB


def die(msg):
    sys.exit("random-io.py: " + msg)


def parse_size(text):
    """'1M+512', '256K', '4096' -> int."""
    total = 0
    for term in text.split("+"):
        mult = 1
        suffixes = {"K": KiB, "M": MiB, "G": 1024 * MiB}
        if term and term[-1].upper() in suffixes:
            mult = suffixes[term[-1].upper()]
            term = term[:-1]
        total += int(term, 0) * mult
    return total


def op_data(seed, length):
    """The bytes of a write request (zeros for seed None)."""
    if seed is None:
        return bytes(length)
    return random.Random(seed).randbytes(length)


def connect(uri, extents=False):
    h = nbd.NBD()
    # LIBNBD_DEBUG=1 (make check) would log every request.
    h.set_debug(False)
    if extents:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    return h


# ----------------------------------------------------------------------
# Choosing requests.

class Chooser:
    """Offsets and lengths, biased to block edges and whole blocks,
    inside a list of (start, end) areas the writer owns."""

    def __init__(self, rng, areas, block_size, max_len, whole=0.2):
        self.rng = rng
        self.whole = whole
        self.areas = areas
        self.bs = block_size
        self.max_len = max_len

    def range(self):
        rng = self.rng
        start, end = rng.choice(self.areas)
        size = end - start
        bs = self.bs
        r = rng.random()
        if r < self.whole and size >= bs:
            # Whole aligned blocks (zeroing those writes ZERO entries).
            first = (start + bs - 1) // bs
            last = end // bs
            if last > first:
                b = rng.randrange(first, last)
                n = rng.randint(1, min(last - b, max(1, self.max_len // bs)))
                return b * bs, n * bs
        if r < self.whole + 0.4:
            # Across or near a block edge.
            lo = (start + bs - 1) // bs
            hi = (end - 1) // bs
            if hi >= lo:
                edge = rng.randint(lo, hi) * bs
                off = max(start, edge - rng.randint(0, min(self.max_len, bs)))
                n = rng.randint(1, min(end - off, self.max_len))
                return off, n
        off = rng.randrange(start, end)
        if rng.random() < 0.3:
            n = rng.randint(1, min(end - off, 4096))
        else:
            n = rng.randint(1, min(end - off, self.max_len))
        return off, n


def stripes(size, writers, stripe):
    """Writer i owns the stripes i, i + W, i + 2W... of stripe bytes."""
    areas = [[] for _ in range(writers)]
    i = 0
    for off in range(0, size, stripe):
        areas[i % writers].append((off, min(size, off + stripe)))
        i += 1
    return areas


# ----------------------------------------------------------------------
# run

class Failure(Exception):
    pass


def race(args, h, rng, model, areas, barrier, counts):
    """All writers at once into the same blocks, block after block:
    each writes (or zeroes) an unaligned piece of its own stripes in
    the block, so that they race to allocate it."""
    bs = args.block_size
    size = len(model)
    blocks = list(range((size + bs - 1) // bs))
    random.Random("race/%s" % args.seed).shuffle(blocks)
    for b in blocks:
        lo, hi = b * bs, min(size, (b + 1) * bs)
        mine = [(max(s, lo), min(e, hi)) for s, e in areas
                if s < hi and e > lo]
        barrier.wait()
        if not mine:
            continue
        s, e = rng.choice(mine)
        off = rng.randrange(s, e)
        n = rng.randint(1, e - off)
        if rng.random() < 0.8:
            data = op_data(rng.getrandbits(64), n)
            h.pwrite(data, off)
            model[off:off + n] = data
            counts["race-write"] = counts.get("race-write", 0) + 1
        else:
            h.zero(n, off)
            model[off:off + n] = bytes(n)
            counts["race-zero"] = counts.get("race-zero", 0) + 1


def run_writer(args, uri, model, areas, seed, ops, errors, barrier=None):
    try:
        h = connect(uri)
        can_fua = h.can_fua()
        can_flush = h.can_flush()
        can_zero = h.can_zero()
        can_trim = h.can_trim()
        can_fast_zero = h.can_fast_zero()
        if args.expect_caps:
            for name, v in (("fua", can_fua), ("flush", can_flush),
                            ("zero", can_zero), ("trim", can_trim),
                            ("fast zero", can_fast_zero),
                            ("multi-conn", h.can_multi_conn())):
                if not v:
                    raise Failure("the server does not offer %s" % name)
        rng = random.Random(seed)
        ch = Chooser(rng, areas, args.block_size, args.max_len, args.whole)
        counts = {}
        if barrier:
            race(args, h, rng, model, areas, barrier, counts)
        for i in range(ops):
            r = rng.random()
            off, n = ch.range()
            if r < 0.45:
                kind = "write"
            elif r < 0.55:
                kind = "write-fua"
            elif r < 0.65:
                kind = "write-zeros"     # data that happens to be zero
            elif r < 0.78:
                kind = "zero"
            elif r < 0.83:
                kind = "fast-zero"
            elif r < 0.91:
                kind = "trim"
            elif r < 0.95:
                kind = "flush"
            else:
                kind = "read"
            counts[kind] = counts.get(kind, 0) + 1
            if kind in ("write", "write-fua"):
                data = op_data(rng.getrandbits(64), n)
                flags = nbd.CMD_FLAG_FUA if kind == "write-fua" and can_fua \
                    else 0
                h.pwrite(data, off, flags)
                model[off:off + n] = data
            elif kind == "write-zeros":
                h.pwrite(bytes(n), off)
                model[off:off + n] = bytes(n)
            elif kind == "zero":
                flags = nbd.CMD_FLAG_FUA if rng.random() < 0.2 and can_fua \
                    else 0
                h.zero(n, off, flags)
                model[off:off + n] = bytes(n)
            elif kind == "fast-zero":
                try:
                    h.zero(n, off, nbd.CMD_FLAG_FAST_ZERO)
                    model[off:off + n] = bytes(n)
                except nbd.Error as e:
                    # Refused: nothing may have changed.
                    if e.errnum not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    counts["fast-zero-refused"] = \
                        counts.get("fast-zero-refused", 0) + 1
            elif kind == "trim":
                h.trim(n, off)
                model[off:off + n] = bytes(n)
            elif kind == "flush":
                h.flush()
            else:
                got = h.pread(n, off)
                if got != bytes(model[off:off + n]):
                    raise Failure("read of %d bytes at %d differs from the "
                                  "model" % (n, off))
        h.flush()
        h.shutdown()
        print("writer %s: %s" % (seed, sorted(counts.items())))
    except Exception as e:
        errors.append("writer %s: %s" % (seed, e))


def cmd_run(args):
    model = bytearray(read_model(args.model))
    h = connect(args.uri)
    size = h.get_size()
    h.shutdown()
    del h
    if size != len(model):
        die("the disk has %d bytes, the model %d" % (size, len(model)))
    if args.region:
        a, b = (parse_size(x) for x in args.region.split(":"))
        base_areas = [(a, b)]
    else:
        base_areas = [(0, size)]
    if args.writers == 1:
        per_writer = [base_areas]
    else:
        per_writer = [[] for _ in range(args.writers)]
        for a, b in base_areas:
            for i, areas in enumerate(stripes(b - a, args.writers,
                                              args.stripe)):
                per_writer[i] += [(a + s, a + e) for s, e in areas]
    errors = []
    threads = []
    barrier = threading.Barrier(args.writers, timeout=60) if args.race \
        else None
    for i in range(args.writers):
        t = threading.Thread(target=run_writer,
                             args=(args, args.uri, model, per_writer[i],
                                   "%s/%d" % (args.seed, i), args.ops,
                                   errors, barrier))
        threads.append(t)
        t.start()
    for t in threads:
        t.join()
    if errors:
        die("; ".join(errors))
    write_model(args.model, model)
    if not args.no_verify:
        verify(args.uri, model, [], "run")


# ----------------------------------------------------------------------
# verify

def read_model(path):
    with open(path, "rb") as f:
        return f.read()


def write_model(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_disk(uri):
    h = connect(uri)
    size = h.get_size()
    out = bytearray()
    for off in range(0, size, CHUNK):
        out += h.pread(min(CHUNK, size - off), off)
    h.shutdown()
    return bytes(out)


def allowed(got, exp, pending, what):
    """got may differ from exp only where a pending request could have
    written it, and only with what that request wrote."""
    if len(got) != len(exp):
        return "%s: the disk has %d bytes, the model %d" % (
            what, len(got), len(exp))
    if got == exp:
        return None
    ops = [tuple(op) for op in pending]
    datas = {}

    def data(op):
        if op not in datas:
            datas[op] = piece_bytes(op)
        return datas[op]

    step = 4096
    for c in range(0, len(got), step):
        g = got[c:c + step]
        if g == exp[c:c + step]:
            continue
        end = c + len(g)
        cover = [op for op in ops if op[0] < end and op[0] + op[1] > c]
        # A whole chunk written by one request.
        if any(op[0] <= c and op[0] + op[1] >= end and
               data(op)[c - op[0]:end - op[0]] == g for op in cover):
            continue
        # Else byte by byte.
        for j in range(c, end):
            if got[j] == exp[j]:
                continue
            if not any(op[0] <= j < op[0] + op[1] and
                       data(op)[j - op[0]] == got[j] for op in cover):
                return ("%s: byte %d is 0x%02x, expected 0x%02x%s" %
                        (what, j, got[j], exp[j],
                         " or what a pending request wrote" if cover
                         else ""))
    return None


def verify(uri, model, pending, what, got=None):
    if got is None:
        got = read_disk(uri)
    err = allowed(got, bytes(model), pending, what)
    if err:
        die(err)
    return got


def cmd_verify(args):
    got = read_disk(args.uri)
    pending = []
    if args.pending:
        with open(args.pending) as f:
            pending = json.load(f)
    verify(args.uri, read_model(args.model), pending, args.model, got)
    print("%s: the disk matches (%d requests pending)" %
          (args.model, len(pending)))
    if args.update:
        write_model(args.model, got)
        if args.pending and os.path.exists(args.pending):
            os.unlink(args.pending)


# ----------------------------------------------------------------------
# crash

class CrashWriter:
    def __init__(self, args, index, areas, flushed):
        self.args = args
        self.index = index
        self.rng = random.Random("%s/%d" % (args.seed, index))
        self.chooser = Chooser(self.rng, areas, args.block_size, args.max_len)
        self.flushed = flushed   # shared model: flushed state
        self.pending = []        # sent since the last completed flush
        self.inflight = None
        self.ops = 0
        self.flushes = 0
        self.error = None

    def apply(self, model, op):
        model[op[0]:op[0] + op[1]] = piece_bytes(op)

    def run(self, uri, killed):
        try:
            h = connect(uri)
        except nbd.Error as e:
            if not killed.is_set():
                self.error = "connect: %s" % e
            return
        try:
            while True:
                r = self.rng.random()
                if r < 0.08:
                    self.inflight = ("flush",)
                    h.flush()
                    for op in self.pending:
                        self.apply(self.flushed, op)
                    self.pending = []
                    self.flushes += 1
                    self.inflight = None
                    continue
                off, n = self.chooser.range()
                fua = self.rng.random() < 0.1
                if r < 0.6:
                    seed = self.rng.getrandbits(64)
                else:
                    seed = None
                op = (off, n, seed, off, n)
                self.pending.append(op)
                self.inflight = op
                flags = nbd.CMD_FLAG_FUA if fua else 0
                if seed is not None:
                    h.pwrite(op_data(seed, n), off, flags)
                elif r < 0.85:
                    h.zero(n, off, flags)
                else:
                    h.trim(n, off, flags)
                self.inflight = None
                self.ops += 1
                if fua:
                    # Durable now: it is flushed, and it hides the
                    # older pending requests where it overlaps them.
                    self.apply(self.flushed, op)
                    self.pending.pop()
                    self.pending = cut(self.pending, off, off + n)
        except nbd.Error as e:
            if not killed.is_set():
                self.error = "%s (before the kill)" % e


def cut(ops, a, b):
    """Remove [a, b) from each pending request of ops."""
    out = []
    for op in ops:
        off, n, seed, whole_off, whole_n = op
        end = off + n
        if end <= a or off >= b:
            out.append(op)
            continue
        if off < a:
            out.append((off, a - off, seed, whole_off, whole_n))
        if end > b:
            out.append((b, end - b, seed, whole_off, whole_n))
    return out


def cmd_crash(args):
    flushed = bytearray(read_model(args.model))
    size = len(flushed)
    areas = stripes(size, args.writers, args.stripe) if args.writers > 1 \
        else [[(0, size)]]
    writers = [CrashWriter(args, i, areas[i], flushed)
               for i in range(args.writers)]
    killed = threading.Event()
    threads = [threading.Thread(target=w.run, args=(args.uri, killed))
               for w in writers]
    for t in threads:
        t.start()
    rng = random.Random("kill/%s" % args.seed)
    time.sleep(rng.uniform(args.min_delay, args.max_delay))
    killed.set()
    os.kill(args.kill, signal.SIGKILL)
    for t in threads:
        t.join()
    errors = [w.error for w in writers if w.error]
    if errors:
        die("; ".join(errors))
    pending = []
    for w in writers:
        pending += [list(op) for op in w.pending]
    write_model(args.model, flushed)
    with open(args.model + ".pending", "w") as f:
        json.dump(pending, f)
    print("crash: %d requests (%d flushes) acknowledged; %d pending since "
          "the last flushes" %
          (sum(w.ops for w in writers), sum(w.flushes for w in writers),
           len(pending)))
    if sum(w.ops for w in writers) == 0:
        die("no request completed before the kill")


def piece_bytes(op):
    """The bytes a pending request [off, n, seed, whole_off, whole_n]
    wrote: a piece of a request cut by a later FUA write keeps the
    seed and the extent of the whole request."""
    off, n, seed, whole_off, whole_n = op
    if seed is None:
        return bytes(n)
    whole = op_data(seed, whole_n)
    return whole[off - whole_off:off - whole_off + n]


# ----------------------------------------------------------------------
# extents

def cmd_extents(args):
    """Extents (block status) must never call data zero: every range
    the server reports as reading zeros reads zeros in the model.  The
    merged runs are printed as 'OFFSET LENGTH data|zero'."""
    model = read_model(args.model)
    h = connect(args.uri, extents=True)
    size = h.get_size()
    if not h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION):
        die("the server does not answer block status")
    runs = []
    off = 0
    while off < size:
        got = []

        def cb(meta, start, entries, err):
            if meta == nbd.CONTEXT_BASE_ALLOCATION:
                got.extend(entries)
            return 0
        h.block_status(min(size - off, 1 << 30), off, cb)
        if not got:
            die("no extents at %d" % off)
        for i in range(0, len(got), 2):
            n, flags = got[i], got[i + 1]
            n = min(n, size - off)
            kind = "zero" if flags & nbd.STATE_ZERO else "data"
            if kind == "zero" and model[off:off + n] != bytes(n):
                die("extent at %d (%d bytes) says zero, but the model has "
                    "data there" % (off, n))
            if runs and runs[-1][2] == kind:
                runs[-1][1] += n
            else:
                runs.append([off, n, kind])
            off += n
            if off >= size:
                break
    h.shutdown()
    for r in runs:
        print("%d %d %s" % tuple(r))


# ----------------------------------------------------------------------
# readonly

def cmd_readonly(args):
    """The export is read-only, and the server itself (not only libnbd)
    refuses writes, zeroes and trims, changing nothing."""
    h = connect(args.uri)
    if not h.is_read_only():
        die("the export is not read-only")
    size = h.get_size()
    before = h.pread(min(size, 3 * MiB), 0)
    # Send the requests anyway: libnbd would refuse them itself.
    h.set_strict_mode(0)
    n = min(size, 1 * MiB + 1000)
    for what, fn in (("write", lambda: h.pwrite(b"x" * n, 0)),
                     ("FUA write", lambda: h.pwrite(b"y" * 512, 0,
                                                    nbd.CMD_FLAG_FUA)),
                     ("zero", lambda: h.zero(n, 0)),
                     ("trim", lambda: h.trim(n, 0))):
        try:
            fn()
        except nbd.Error as e:
            if e.errnum not in (errno.EPERM, errno.EROFS):
                die("%s failed with %s, expected EPERM or EROFS" % (what, e))
            print("%s refused: %s" % (what, e))
            continue
        die("the server accepted a %s on a read-only export" % what)
    if h.can_flush():
        h.flush()
    if h.pread(len(before), 0) != before:
        die("the disk changed")
    h.shutdown()


# ----------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp):
        sp.add_argument("uri")
        sp.add_argument("model")
        sp.add_argument("--seed", default="1")
        sp.add_argument("--block-size", type=parse_size, default=MiB,
                        help="block size to aim at (default 1M)")
        sp.add_argument("--max-len", type=parse_size, default=3 * MiB + 7,
                        help="longest request (default 3M+7)")
        sp.add_argument("--writers", type=int, default=1)
        sp.add_argument("--stripe", type=parse_size, default=61 * KiB + 3,
                        help="bytes of each writer's stripes (default "
                        "61K+3)")

    sp = sub.add_parser("run")
    common(sp)
    sp.add_argument("--ops", type=int, default=200)
    sp.add_argument("--whole", type=float, default=0.2,
                    help="share of requests over whole aligned blocks "
                    "(default 0.2)")
    sp.add_argument("--region", help="START:END, only write there")
    sp.add_argument("--no-verify", action="store_true")
    sp.add_argument("--race", action="store_true",
                    help="first, every writer at once into each block in "
                    "turn (allocation races)")
    sp.add_argument("--expect-caps", action="store_true",
                    help="fail unless the server offers FUA, flush, "
                    "zero, fast zero, trim and multi-conn")

    sp = sub.add_parser("verify")
    sp.add_argument("uri")
    sp.add_argument("model")
    sp.add_argument("--pending")
    sp.add_argument("--update", action="store_true")

    sp = sub.add_parser("crash")
    common(sp)
    sp.add_argument("--kill", type=int, required=True)
    sp.add_argument("--min-delay", type=float, default=0.1)
    sp.add_argument("--max-delay", type=float, default=0.6)

    sp = sub.add_parser("readonly")
    sp.add_argument("uri")

    sp = sub.add_parser("extents")
    sp.add_argument("uri")
    sp.add_argument("model")

    args = p.parse_args()
    {"run": cmd_run, "verify": cmd_verify, "crash": cmd_crash,
     "readonly": cmd_readonly,
     "extents": cmd_extents}[args.cmd](args)


if __name__ == "__main__":
    main()
