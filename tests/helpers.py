#!/usr/bin/python3
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

"""helpers.py: the Python programs the test scripts call.

The scripts call it as $HELPERS (see functions.sh.in), which runs it
with the python3 configure found, the one with libnbd's nbd module:

  $HELPERS COMMAND ARGS...

Files and images:

  sha256 FILE
      A checksum to prove a file was not modified.  Sparse files of
      several GiB are hashed quickly: the hash covers the size and, for
      each part that holds data (SEEK_DATA/SEEK_HOLE), its offset and
      bytes.

  sums DIR
      "SHA256 ./PATH" (as above) for every .vdi, .vbox, .xml and .vmdk
      file under DIR, sorted by path; "unreadable ./PATH" for a file
      that cannot be opened.

  tree-state DIR [--skip NAME]...
      One line for every entry under DIR but the folders NAME (relative
      to DIR) and what they hold (symbolic links are not
      followed), sorted by path: "./PATH MODE SIZE MTIME_NS X", MODE as
      ls -l shows it (its type and permissions), X the sha256 (as
      above) of a regular file ("unreadable" if it cannot be opened),
      the target of a symbolic link, or "-".  FIFOs and other special
      files are only stat'ed, never opened.  Two runs differ if
      anything under DIR was written, made, removed or touched.

  cmp-sparse A B
      Like "cmp A B" (same size, same bytes) but reads only the parts
      that hold data in either file, so comparing sparse files of
      several GiB is quick.

  stream-prefix-then-zero EXPECTED < STREAM
      STREAM starts with the bytes of the file EXPECTED and has only
      zeros after them (7zz -so shows cbDisk exactly, while qemu rounds
      odd sizes up); gigabytes of zeros never reach the disk.

  write-data FILE OFFSET LENGTH SEED|zero
      Write LENGTH bytes at OFFSET in FILE (made if missing, never
      truncated): pseudo-random bytes from SEED, or with "zero", zeros
      written as data (not a hole).

  random-runs FILE SIZE SEED
      A new FILE of SIZE bytes: random data in runs of odd lengths,
      with runs of zeros written as data and holes between them.

  map-covers MODEL GOT
      Both are "OFFSET LENGTH data|zero" runs over the same size; every
      byte MODEL calls data must be data in GOT.

VDI headers (version 1.1; UUIDs are stored in GUID byte order):

  vdi-field FILE FIELD
      A header field as a number, or a UUID field (uuidCreate,
      uuidModify, uuidLinkage, uuidParentModify) as the 32 hex digits
      of its 16 bytes as stored.

  vdi-uuid FILE FIELD
      A UUID field in its text form, without braces.

  uuid-text HEX32
      The text form of a UUID given as its 16 bytes as stored.

  vdi-map FILE
      The block map, one "INDEX ENTRY" line per block, ENTRY being
      FREE, ZERO or the slot number.

  data-blocks FILE
      The number of allocated blocks whose data is not all zeros.

  check-compacted FILE N
      Fail unless FILE holds N slots, numbered 0..N-1, cBlocksAllocated
      is N and the file ends right after the last slot.

  check-diff-header DIFF PARENT BLOCK_SIZE
      DIFF is a differencing image in VirtualBox's layout made for
      PARENT, with blocks of BLOCK_SIZE: checked field by field.

Machine settings files (.vbox, as VirtualBox lays them out: one
element a line, two spaces an indentation level):

  registry-tree VBOX
      "UUID PARENT FORMAT LOCATION" for each HardDisk element of the
      media registry, in document order, PARENT being the UUID of the
      HardDisk element it is nested in, or "-" (UUIDs without braces,
      lower case).  Python's own XML parser: independent of libvdi's.

  settings-step PREV NEW take|restore SNAPSHOT-UUID
      NEW is PREV after "vdi-img snapshot take" (which made snapshot
      SNAPSHOT-UUID) or "restore" (of SNAPSHOT-UUID), and every byte
      that the step had no reason to change is as it was.  For both,
      leaving out of both files what the step may change (the
      Machine's currentSnapshot, currentStateModified and
      lastStateChange; the differencing images' HardDisk elements
      Snapshots/{UUID}.vdi, and so whether their parents' elements
      close themselves) must leave the same text.  take: NEW has a
      new Snapshot element (<Snapshot uuid name timeStamp> as
      VirtualBox writes it) whose children are an optional
      Description, then copies of PREV's Machine's Hardware, Platform
      and StorageControllers (re-indented, byte for byte); without it
      (and the Snapshots element made for it), NEW is PREV with the
      hard disk attachments of the Machine's own elements changed.
      restore: the Machine's own Hardware, Platform and
      StorageControllers are the snapshot's (re-indented; only hard
      disk attachments differ), and the rest is as it was; the
      Machine's lastStateChange is the snapshot's timeStamp.  Both:
      currentSnapshot is SNAPSHOT-UUID and currentStateModified
      "false".

Over NBD (URI is nbdkit's $uri):

  random-reads URI EXPECTED [--block N] [--reads N] [--seed S]
      The export's size is EXPECTED's, and N random reads (odd offsets
      and lengths, most of them across edges of blocks of --block
      bytes) return EXPECTED's bytes.

  req-one URI MAP
      Block status with the REQ_ONE flag at the start, the middle and
      the last byte of every "OFFSET LENGTH data|zero" run of MAP
      (runs of another kind on either side) answers one extent that
      does not go past the run, and calls it zero exactly when MAP
      does.

  zero-requests URI MODEL [--flush]
      The requests of test-vdidiff-zero.sh over ten 1 MiB blocks: zero,
      trim and fast zero of whole blocks, a write of zeros, zeros and
      trims inside blocks, a fast zero that must be refused; the disk
      must then equal MODEL with the same zeros, which is saved.  With
      --flush, a flush follows.

  same-disks PLUGIN < LIST
      Each line of LIST is FILE, then the parameters of the plugin, all
      separated by tabs: "nbdkit -r PLUGIN PARAMETERS" must serve exactly
      the bytes of FILE.  libnbd runs each nbdkit on a socket pair
      (connect_command), two at a time: the snapshot walk reads
      hundreds of disks, and a shell, nbdkit --run and nbdcopy for
      each take twice as long.

  modify-uuid URI IMAGE
      The modification UUID in IMAGE's header (the image the server
      writes) is renewed by the first write of a connection and by a
      flush after writes, and by nothing else.
"""

import argparse
import errno
import hashlib
import os
import random
import re
import stat
import struct
import sys
import uuid

KiB = 1024
MiB = 1024 * KiB
CHUNK = 1 * MiB


def die(msg):
    sys.exit("helpers.py: " + msg)


def data_segments(fd, size):
    """The (start, end) parts of a file that hold data."""
    segs, off = [], 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        segs.append((start, end))
        off = end
    return segs


def sparse_sha256(fd):
    size = os.fstat(fd).st_size
    h = hashlib.sha256(b"size %d\n" % size)
    for start, end in data_segments(fd, size):
        h.update(b"data at %d\n" % start)
        while start < end:
            buf = os.pread(fd, min(end - start, CHUNK), start)
            if not buf:
                break
            h.update(buf)
            start += len(buf)
    return h.hexdigest()


def cmd_sha256(args):
    fd = os.open(args.file, os.O_RDONLY)
    print(sparse_sha256(fd))
    os.close(fd)


def cmd_sums(args):
    os.chdir(args.dir)
    names = []
    for dirpath, dirs, files in os.walk("."):
        for f in files:
            if f.lower().endswith((".vdi", ".vbox", ".xml", ".vmdk")):
                names.append(os.path.join(dirpath, f))
    for name in sorted(names):
        if not os.path.isfile(name):
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        except PermissionError:
            print("unreadable", name)
            continue
        print(sparse_sha256(fd), name)
        os.close(fd)


def cmd_tree_state(args):
    os.chdir(args.dir)
    skip = set(os.path.join(".", os.path.normpath(n)) for n in args.skip)
    entries = []
    for dirpath, dirs, files in os.walk("."):
        dirs[:] = [n for n in dirs if os.path.join(dirpath, n) not in skip]
        entries += [os.path.join(dirpath, n) for n in dirs + files]
    for name in sorted(entries):
        st = os.lstat(name)
        if stat.S_ISREG(st.st_mode):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW)
            except PermissionError:
                what = "unreadable"   # mode and mtime still tell
            else:
                what = sparse_sha256(fd)
                os.close(fd)
        elif stat.S_ISLNK(st.st_mode):
            what = "-> " + os.readlink(name)
        else:
            what = "-"
        print(name, stat.filemode(st.st_mode), st.st_size, st.st_mtime_ns,
              what)


def cmd_cmp_sparse(args):
    a, b = args.a, args.b
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    size = os.fstat(fa).st_size
    if os.fstat(fb).st_size != size:
        die("cmp-sparse: %s has %d bytes, %s has %d"
            % (a, size, b, os.fstat(fb).st_size))
    segs = sorted(data_segments(fa, size) + data_segments(fb, size))
    merged = []
    for s, e in segs:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    for s, e in merged:
        off = s
        while off < e:
            n = min(e - off, CHUNK)
            x, y = os.pread(fa, n, off), os.pread(fb, n, off)
            if x != y:
                i = next(i for i in range(len(x)) if x[i] != y[i])
                die("cmp-sparse: %s %s differ: byte %d" % (a, b, off + i + 1))
            off += n


def cmd_stream_prefix_then_zero(args):
    stream = sys.stdin.buffer
    with open(args.expected, "rb") as f:
        pos = 0
        while True:
            want = f.read(CHUNK)
            got = stream.read(len(want)) if want else b""
            if got != want:
                for i in range(min(len(got), len(want))):
                    if got[i] != want[i]:
                        break
                else:
                    i = min(len(got), len(want))
                die("%s: stream differs at byte %d (%s)" %
                    (args.expected, pos + i,
                     "stream too short" if len(got) < len(want) else "data"))
            if not want:
                break
            pos += len(want)
    while True:
        rest = stream.read(CHUNK)
        if not rest:
            break
        if rest.count(0) != len(rest):
            die("%s: stream has non-zero bytes past the expected %d"
                % (args.expected, pos))
        pos += len(rest)


def cmd_write_data(args):
    if args.seed == "zero":
        data = bytes(args.length)
    else:
        data = random.Random(args.seed).randbytes(args.length)
    fd = os.open(args.file, os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(fd, data, args.offset)
    os.close(fd)


def cmd_random_runs(args):
    rng = random.Random(args.seed)
    with open(args.file, "wb") as f:
        f.truncate(args.size)
        off = 0
        while off < args.size:
            n = min(args.size - off, rng.randint(1, 3 * MiB))
            r = rng.random()
            if r < 0.5:
                f.seek(off)
                f.write(rng.randbytes(n))
            elif r < 0.7:
                f.seek(off)
                f.write(bytes(n))          # zeros written as data
            off += n                       # else: a hole


def read_runs(path):
    out = []
    with open(path) as f:
        for line in f:
            o, n, k = line.split()
            out.append((int(o), int(n), k))
    return out


def cmd_map_covers(args):
    model, got = read_runs(args.model), read_runs(args.got)
    if sum(n for _, n, _ in model) != sum(n for _, n, _ in got):
        die("map-covers: the maps cover different sizes")
    for o, n, k in model:
        if k != "data":
            continue
        for go, gn, gk in got:
            lo, hi = max(o, go), min(o + n, go + gn)
            if lo < hi and gk != "data":
                die("map-covers: %d..%d is data in the model, zero in %s"
                    % (lo, hi, args.got))


# ----------------------------------------------------------------------
# VDI headers.

FIELDS = {"signature": (0x40, "<I"), "version": (0x44, "<I"),
          "cbHeader": (0x48, "<I"), "type": (0x4C, "<I"),
          "flags": (0x50, "<I"), "offBlocks": (0x154, "<I"),
          "offData": (0x158, "<I"), "cbDisk": (0x170, "<Q"),
          "cbBlock": (0x178, "<I"), "cbBlockExtra": (0x17C, "<I"),
          "cBlocks": (0x180, "<I"), "cBlocksAllocated": (0x184, "<I")}
UUIDS = {"uuidCreate": 0x188, "uuidModify": 0x198, "uuidLinkage": 0x1A8,
         "uuidParentModify": 0x1B8}


def read_header(path):
    with open(path, "rb") as f:
        return f.read(0x200)


def uuid_bytes(path, name):
    if name not in UUIDS:
        die("%s is not a UUID field (%s)" % (name, ", ".join(UUIDS)))
    return read_header(path)[UUIDS[name]:UUIDS[name] + 16]


def cmd_vdi_field(args):
    if args.field in UUIDS:
        print(uuid_bytes(args.file, args.field).hex())
    elif args.field in FIELDS:
        off, fmt = FIELDS[args.field]
        print(struct.unpack_from(fmt, read_header(args.file), off)[0])
    else:
        die("unknown header field %s" % args.field)


def cmd_vdi_uuid(args):
    print(uuid.UUID(bytes_le=uuid_bytes(args.file, args.field)))


def cmd_uuid_text(args):
    print(uuid.UUID(bytes_le=bytes.fromhex(args.hex)))


def cmd_vdi_map(args):
    with open(args.file, "rb") as f:
        hdr = f.read(0x200)
        off_blocks, = struct.unpack_from("<I", hdr, 0x154)
        n, = struct.unpack_from("<I", hdr, 0x180)
        f.seek(off_blocks)
        m = struct.unpack("<%dI" % n, f.read(4 * n))
    for i, e in enumerate(m):
        print(i, {0xFFFFFFFF: "FREE", 0xFFFFFFFE: "ZERO"}.get(e, e))


def read_map(f, hdr):
    off_blocks, = struct.unpack_from("<I", hdr, 0x154)
    n, = struct.unpack_from("<I", hdr, 0x180)
    f.seek(off_blocks)
    return struct.unpack("<%dI" % n, f.read(4 * n))


def cmd_data_blocks(args):
    """The allocated blocks whose data is not all zeros."""
    with open(args.file, "rb") as f:
        hdr = f.read(0x200)
        off_data, = struct.unpack_from("<I", hdr, 0x158)
        block, extra = struct.unpack_from("<II", hdr, 0x178)
        n = 0
        for e in read_map(f, hdr):
            if e < 0xFFFFFFFE:
                f.seek(off_data + e * (extra + block) + extra)
                n += f.read(block).count(0) != block
    print(n)


def cmd_check_compacted(args):
    """Exactly n slots, used in order of nothing but position: the
    slot entries are 0..n-1, the header counts n, and the file ends
    after the last slot."""
    with open(args.file, "rb") as f:
        hdr = f.read(0x200)
        slots = sorted(e for e in read_map(f, hdr) if e < 0xFFFFFFFE)
    off_data, = struct.unpack_from("<I", hdr, 0x158)
    block, extra, _, allocated = struct.unpack_from("<IIII", hdr, 0x178)
    size = os.path.getsize(args.file)
    if slots != list(range(args.n)):
        die("%s: slots %s, expected 0..%d" % (args.file, slots, args.n - 1))
    if allocated != args.n:
        die("%s: cBlocksAllocated %d, expected %d"
            % (args.file, allocated, args.n))
    if size != off_data + args.n * (extra + block):
        die("%s: %d bytes, expected %d" % (args.file, size,
                                           off_data + args.n * (extra + block)))


def cmd_check_diff_header(args):
    d, p = read_header(args.diff), read_header(args.parent)
    bs = args.block_size
    u = lambda b, o: struct.unpack_from("<I", b, o)[0]
    q = lambda b, o: struct.unpack_from("<Q", b, o)[0]
    checks = [
        (d[:64].rstrip(b"\0").endswith(b">>>\n"), "pre-header %r" % d[:64]),
        (u(d, 0x40) == 0xBEDA107F, "signature"),
        (u(d, 0x44) == 0x00010001, "version %x" % u(d, 0x44)),
        (u(d, 0x48) == 400, "cbHeader %d" % u(d, 0x48)),
        (u(d, 0x4C) == 4, "type %d" % u(d, 0x4C)),
        (u(d, 0x50) == 0, "flags"),
        (u(d, 0x154) % MiB == 0, "offBlocks %d" % u(d, 0x154)),
        (u(d, 0x158) % MiB == 0, "offData %d" % u(d, 0x158)),
        (u(d, 0x158) >= u(d, 0x154) + 4 * u(d, 0x180), "offData"),
        (u(d, 0x168) == 512, "legacy cbSector"),
        (q(d, 0x170) == q(p, 0x170),
         "cbDisk %d != %d" % (q(d, 0x170), q(p, 0x170))),
        (u(d, 0x178) == bs, "cbBlock %d" % u(d, 0x178)),
        (u(d, 0x17C) == 0, "cbBlockExtra"),
        (u(d, 0x180) == (q(d, 0x170) + bs - 1) // bs, "cBlocks"),
        (d[0x188:0x198] != bytes(16), "null create UUID"),
        (d[0x198:0x1A8] != bytes(16), "null modify UUID"),
        (d[0x188:0x198] != p[0x188:0x198], "same create UUID as the parent"),
        (d[0x1A8:0x1B8] == p[0x188:0x198], "linkage != parent create UUID"),
        (d[0x1B8:0x1C8] == p[0x198:0x1A8],
         "parent-modify != parent modify UUID"),
        (u(d, 0x1D4) == 512, "LCHS cbSector"),
    ]
    for ok, what in checks:
        if not ok:
            die("check-diff-header: %s: %s" % (args.diff, what))


# ----------------------------------------------------------------------
# Machine settings files.

def local_name(tag):
    return tag.rsplit("}", 1)[-1]


def cmd_registry_tree(args):
    import xml.etree.ElementTree as ET
    root = ET.parse(args.vbox).getroot()

    def braceless(u):
        return u.strip("{}").lower()

    def walk(el, parent):
        for c in el:
            if local_name(c.tag) != "HardDisk":
                continue
            u = braceless(c.get("uuid"))
            print(u, parent, c.get("format"), c.get("location"))
            walk(c, u)

    for machine in root:
        if local_name(machine.tag) != "Machine":
            continue
        for reg in machine:
            if local_name(reg.tag) != "MediaRegistry":
                continue
            for disks in reg:
                if local_name(disks.tag) == "HardDisks":
                    walk(disks, "-")


def read_lines(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read().split("\n")


def indent(line):
    return len(line) - len(line.lstrip(" "))


def tag_of(line):
    m = re.match(r"\s*<([A-Za-z]+)[\s/>]", line)
    return m.group(1) if m else None


def attr_of(line, name):
    m = re.search(r'\s%s="([^"]*)"' % name, line)
    return m.group(1) if m else None


def block_end(lines, i):
    """The last line of the element that starts on line i."""
    t, ind = tag_of(lines[i]), indent(lines[i])
    if lines[i].rstrip().endswith("/>") or "</%s>" % t in lines[i]:
        return i
    for j in range(i + 1, len(lines)):
        if t == "Description" and "</Description>" in lines[j]:
            return j
        if indent(lines[j]) == ind and lines[j].strip() == "</%s>" % t:
            return j
    die("settings-step: line %d: <%s> is not closed" % (i + 1, t))


def children(lines, i):
    """(start, end) of each child element of the element on line i."""
    out, j, end = [], i + 1, block_end(lines, i)
    while j < end:
        if lines[j].lstrip().startswith("<") and \
           not lines[j].lstrip().startswith("</"):
            k = block_end(lines, j)
            out.append((j, k))
            j = k + 1
        else:
            j += 1
    return out


def machine_line(lines):
    for i, line in enumerate(lines):
        if tag_of(line) == "Machine":
            return i
    die("settings-step: no <Machine>")


def find_snapshot(lines, uuid_text):
    for i, line in enumerate(lines):
        if tag_of(line) == "Snapshot" and \
           attr_of(line, "uuid").lower() == "{%s}" % uuid_text.lower():
            return i
    die("settings-step: no snapshot {%s}" % uuid_text)


STATE_ELEMENTS = ("Hardware", "Platform", "StorageControllers")


def state_blocks(lines, owner):
    """{name: (start, end)} of the owner's own Hardware, Platform and
    StorageControllers."""
    return {tag_of(lines[s]): (s, e) for s, e in children(lines, owner)
            if tag_of(lines[s]) in STATE_ELEMENTS}


def reindent(block, delta):
    """The lines of an element moved delta spaces right (or left)."""
    out = []
    for line in block:
        if delta >= 0:
            out.append(" " * delta + line if line else line)
        else:
            if line[:-delta].strip():
                die("settings-step: cannot move %r left" % line)
            out.append(line[-delta:])
    return out


def hide_disk_images(block):
    """The Image UUIDs of hard disk attachments replaced by "*"."""
    out, disk = [], False
    for line in block:
        if tag_of(line) == "AttachedDevice":
            disk = attr_of(line, "type") == "HardDisk"
        if disk and tag_of(line) == "Image":
            line = re.sub(r'uuid="[^"]*"', 'uuid="*"', line)
        out.append(line)
    return out


DIFF_ELEMENT = re.compile(
    r'\s*<HardDisk uuid="\{([0-9a-f-]+)\}" '
    r'location="Snapshots/\{\1\}\.vdi" format="VDI"'
    r'( autoReset="true")?/?>$')


def normalise(lines):
    """Leave out what both take and restore may change."""
    out = []
    for line in lines:
        if tag_of(line) == "Machine":
            line = re.sub(r' (currentSnapshot|currentStateModified|'
                          r'lastStateChange)="[^"]*"', "", line)
        elif DIFF_ELEMENT.match(line) or line.strip() == "</HardDisk>":
            continue
        elif tag_of(line) == "HardDisk" and line.endswith("/>"):
            line = line[:-2] + ">"
        out.append(line)
    return out


def same_text(what, a, b):
    if a != b:
        import difflib
        sys.stderr.writelines(
            l + "\n" for l in difflib.unified_diff(
                a, b, "before", "after", lineterm=""))
        die("settings-step: %s" % what)


def cmd_settings_step(args):
    prev, new = read_lines(args.prev), read_lines(args.new)
    s = args.uuid.strip("{}").lower()
    pm, nm = machine_line(prev), machine_line(new)
    child_indent = indent(prev[pm]) + 2

    if attr_of(new[nm], "currentSnapshot") != "{%s}" % s:
        die("settings-step: currentSnapshot is %s"
            % attr_of(new[nm], "currentSnapshot"))
    if attr_of(new[nm], "currentStateModified") != "false":
        die("settings-step: currentStateModified is %s"
            % attr_of(new[nm], "currentStateModified"))

    if args.step == "take":
        i = find_snapshot(new, s)
        end = block_end(new, i)
        if not re.match(r'\s*<Snapshot uuid="\{%s\}" name="[^"]*" '
                        r'timeStamp="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">$'
                        % s, new[i]):
            die("settings-step: the new snapshot's tag: %r" % new[i])
        # Its children: a Description, then copies of the state.
        kids = children(new, i)
        if kids and tag_of(new[kids[0][0]]) == "Description":
            kids = kids[1:]
        want = []
        for name, (a, b) in sorted(state_blocks(prev, pm).items(),
                                   key=lambda kv: STATE_ELEMENTS.index(kv[0])):
            want += reindent(prev[a:b + 1], indent(new[i]) + 2 - child_indent)
        got = [l for a, b in kids for l in new[a:b + 1]]
        same_text("the new snapshot does not hold the state's copy",
                  want, got)
        # NEW without it (and a Snapshots element made for it).
        rest = new[:i] + new[end + 1:]
        if tag_of(rest[i - 1]) == "Snapshots" and \
           rest[i].strip() == "</Snapshots>" and \
           indent(rest[i - 1]) == indent(new[i]) - 2:
            rest = rest[:i - 1] + rest[i + 1:]
        mine = state_blocks(rest, machine_line(rest))
        for a, b in mine.values():
            rest[a:b + 1] = hide_disk_images(rest[a:b + 1])
        before = list(prev)
        for a, b in state_blocks(before, pm).values():
            before[a:b + 1] = hide_disk_images(before[a:b + 1])
        same_text("take changed more than it should",
                  normalise(before), normalise(rest))
    else:
        i = find_snapshot(prev, s)
        stamp = attr_of(prev[i], "timeStamp")
        if attr_of(new[nm], "lastStateChange") != stamp:
            die("settings-step: lastStateChange is %s, the snapshot's "
                "timeStamp %s" % (attr_of(new[nm], "lastStateChange"),
                                  stamp))
        snap = state_blocks(prev, i)
        mine = state_blocks(new, nm)
        if set(snap) - set(mine):
            die("settings-step: the Machine lacks %s" % (set(snap) - set(mine)))
        for name, (a, b) in snap.items():
            want = reindent(prev[a:b + 1], child_indent - indent(prev[a]))
            c, d = mine[name]
            same_text("the Machine's %s is not the snapshot's" % name,
                      hide_disk_images(want), hide_disk_images(new[c:d + 1]))

        def without_state(lines):
            m = machine_line(lines)
            drop = set()
            for a, b in state_blocks(lines, m).values():
                drop |= set(range(a, b + 1))
            return [l for k, l in enumerate(lines) if k not in drop]
        same_text("restore changed more than it should",
                  normalise(without_state(prev)),
                  normalise(without_state(new)))


# ----------------------------------------------------------------------
# Over NBD.

def connect(uri, extents=False):
    import nbd
    h = nbd.NBD()
    if extents:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    return h


def cmd_random_reads(args):
    h = connect(args.uri)
    path = args.expected
    size = h.get_size()
    if size != os.path.getsize(path):
        die("random-reads: size %d != expected %d"
            % (size, os.path.getsize(path)))
    bs = args.block
    rng = random.Random(args.seed)
    with open(path, "rb") as f:
        for i in range(args.reads):
            if rng.random() < 0.6 and size > bs:
                # Start a little before a block boundary.
                b = rng.randrange(1, (size + bs - 1) // bs)
                off = max(0, b * bs - rng.randrange(1, 5000))
            else:
                off = rng.randrange(size)
            n = rng.randint(1, min(size - off, 2 * bs + 1000, 8 * MiB))
            f.seek(off)
            want = f.read(n)
            got = h.pread(n, off)
            if got != want:
                die("random-reads: read of %d bytes at %d differs" % (n, off))
    h.shutdown()


def cmd_req_one(args):
    import nbd
    h = connect(args.uri, extents=True)
    for o, n, k in read_runs(args.map):
        for start in (o, o + n // 2, o + n - 1):
            got = []

            def cb(meta, off, entries, err):
                got.extend(entries)
            h.block_status(min(MiB, h.get_size() - start), start, cb,
                           nbd.CMD_FLAG_REQ_ONE)
            if not 1 <= got[0] <= o + n - start:
                die("req-one: at %d: %s, the run is %d %d"
                    % (start, got, o, n))
            if (got[1] & nbd.STATE_ZERO != 0) != (k == "zero"):
                die("req-one: at %d: %s, the run is %s" % (start, got, k))
    h.shutdown()


def cmd_zero_requests(args):
    import nbd
    h = connect(args.uri)
    with open(args.model, "rb") as f:
        m = bytearray(f.read())

    def do(off, n, fn):
        fn()
        m[off:off + n] = bytes(n)

    # Block 0: written, then zeroed whole: stays allocated, reads zeros.
    h.pwrite(b"w" * 1000, 5000)
    do(0, MiB, lambda: h.zero(MiB, 0))
    # Block 1: zeroed whole.
    do(1 * MiB, MiB, lambda: h.zero(MiB, 1 * MiB))
    # Block 2: trimmed whole.
    do(2 * MiB, MiB, lambda: h.trim(MiB, 2 * MiB))
    # Blocks 3-4: one zero request, with FUA.
    do(3 * MiB, 2 * MiB,
       lambda: h.zero(2 * MiB, 3 * MiB, nbd.CMD_FLAG_FUA))
    # Block 5: a write of zeros over the whole block.
    do(5 * MiB, MiB, lambda: h.pwrite(bytes(MiB), 5 * MiB))
    # Block 6: a fast zero of the whole block needs no data: accepted.
    do(6 * MiB, MiB, lambda: h.zero(MiB, 6 * MiB, nbd.CMD_FLAG_FAST_ZERO))
    # Block 7: a fast zero of part of it would copy data up: refused,
    # nothing changes; then zeroed for real (copied up, allocated).
    try:
        h.zero(1000, 7 * MiB + 300, nbd.CMD_FLAG_FAST_ZERO)
        die("zero-requests: a fast zero that needs a copy-up was accepted")
    except nbd.Error as e:
        if e.errnum not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            die("zero-requests: the fast zero failed with %s" % e)
    do(7 * MiB + 300, 1000, lambda: h.zero(1000, 7 * MiB + 300))
    # Block 8: trimmed in part: copied up, allocated.
    do(8 * MiB + 4096, 70000, lambda: h.trim(70000, 8 * MiB + 4096))
    # Block 9: untouched.
    if h.pread(10 * MiB, 0) != bytes(m):
        die("zero-requests: the disk differs from the model")
    with open(args.model, "wb") as f:
        f.write(m)
    if args.flush:
        h.flush()
    h.shutdown()


def cmd_same_disks(args):
    import nbd
    import threading
    jobs = [line.rstrip("\n").split("\t") for line in sys.stdin if line.strip()]
    errors = []

    def check(job):
        path, params = job[0], job[1:]
        try:
            h = nbd.NBD()
            h.connect_command(["nbdkit", "-s", "-r", "--exit-with-parent",
                               args.plugin] + params)
            size = h.get_size()
            with open(path, "rb") as f:
                if size != os.fstat(f.fileno()).st_size:
                    raise Exception("%d bytes, not %d"
                                    % (size, os.fstat(f.fileno()).st_size))
                for off in range(0, size, 4 * MiB):
                    n = min(4 * MiB, size - off)
                    if h.pread(n, off) != f.read(n):
                        raise Exception("other bytes in %d..%d"
                                        % (off, off + n))
            h.shutdown()
        except Exception as e:
            errors.append("%s: %s" % (" ".join(params), e))

    def worker(part):
        for job in part:
            check(job)

    threads = [threading.Thread(target=worker, args=(jobs[i::2],))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        print("helpers.py: same-disks: %s" % e, file=sys.stderr)
    if errors:
        sys.exit(1)


def cmd_modify_uuid(args):
    h = connect(args.uri)

    def modify():
        return uuid_bytes(args.image, "uuidModify")

    m0 = modify()
    h.pwrite(b"x" * 1000, 12345)
    m1 = modify()
    if m1 == m0:
        die("modify-uuid: the first write did not renew the modify UUID")
    h.pwrite(b"y" * 1000, 22345)
    if modify() != m1:
        die("modify-uuid: a second write renewed the modify UUID")
    h.flush()
    m2 = modify()
    if m2 == m1:
        die("modify-uuid: flush after writes did not renew the modify UUID")
    h.flush()
    if modify() != m2:
        die("modify-uuid: flush without writes renewed the modify UUID")
    h.shutdown()


# ----------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(name, fn, *args):
        sp = sub.add_parser(name)
        for a in args:
            if isinstance(a, tuple):
                sp.add_argument(a[0], **a[1])
            else:
                sp.add_argument(a)
        sp.set_defaults(fn=fn)
        return sp

    integer = {"type": int}
    command("sha256", cmd_sha256, "file")
    command("sums", cmd_sums, "dir")
    command("tree-state", cmd_tree_state, "dir",
            ("--skip", {"action": "append", "default": []}))
    command("cmp-sparse", cmd_cmp_sparse, "a", "b")
    command("stream-prefix-then-zero", cmd_stream_prefix_then_zero,
            "expected")
    command("write-data", cmd_write_data, "file", ("offset", integer),
            ("length", integer), "seed")
    command("random-runs", cmd_random_runs, "file", ("size", integer),
            "seed")
    command("map-covers", cmd_map_covers, "model", "got")
    command("vdi-field", cmd_vdi_field, "file", "field")
    command("vdi-uuid", cmd_vdi_uuid, "file", "field")
    command("uuid-text", cmd_uuid_text, "hex")
    command("vdi-map", cmd_vdi_map, "file")
    command("data-blocks", cmd_data_blocks, "file")
    command("check-compacted", cmd_check_compacted, "file", ("n", integer))
    command("check-diff-header", cmd_check_diff_header, "diff", "parent",
            ("block_size", integer))
    command("random-reads", cmd_random_reads, "uri", "expected",
            ("--block", {"type": int, "default": MiB}),
            ("--reads", {"type": int, "default": 100}),
            ("--seed", {"default": "1"}))
    command("req-one", cmd_req_one, "uri", "map")
    command("zero-requests", cmd_zero_requests, "uri", "model",
            ("--flush", {"action": "store_true"}))
    command("same-disks", cmd_same_disks, "plugin")
    command("modify-uuid", cmd_modify_uuid, "uri", "image")
    command("registry-tree", cmd_registry_tree, "vbox")
    command("settings-step", cmd_settings_step, "prev", "new",
            ("step", {"choices": ["take", "restore"]}), "uuid")

    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
