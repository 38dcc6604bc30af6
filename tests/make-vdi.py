#!/usr/bin/python3
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

"""make-vdi.py: write VirtualBox VDI test images and what a guest must see.

This is the independent model the C reader is checked against.  It is
written from the format notes (vdi-format.md sections 1 and 3) only,
and it can write layouts that neither qemu-img nor VirtualBox write.

Layout of the files it writes (all integers little-endian)
----------------------------------------------------------

  0x000  pre-header: 64 bytes of text, signature 0xBEDA107F, version
  0x048  header:
           version 0x00010001 ("1.1"), cbHeader 384 (plain 1.1, as QEMU
             writes it) or 400 ("1.1+": LCHS geometry at 0x1C8, as
             VirtualBox writes it); offBlocks and offData are fields;
           version 0x00000002 (legacy "v0"): a 348-byte header without
             offsets, cbBlockExtra, parent-modify UUID or LCHS; the map
             starts at 0x1A4 and the data right after the map.
  offBlocks  block map: cBlocks uint32 entries
           0xFFFFFFFF  FREE: not here (a base reads zeros, a diff reads
                       its parent)
           0xFFFFFFFE  ZERO: reads as zeros, never falls through
           otherwise   the slot index of the block's data
  offData  data area: slots of cbBlockExtra + cbBlock bytes; the extra
           bytes come first (this tool fills them, or their first MiB,
           with junk, so a reader that ignores cbBlockExtra reads wrong
           data).  Guest offset o is
           at offData + map[o / cbBlock] * (cbBlockExtra + cbBlock)
                   + cbBlockExtra + o % cbBlock.

  --align decides where the map and the data go in a 1.1 image:
    none   offBlocks = 72 + cbHeader, offData = offBlocks + 4 * cBlocks
    512    offBlocks = 0x200, offData = align_up(offBlocks + 4*cBlocks, 512)
           (QEMU and VirtualBox 1.x-3.x)
    1M     offBlocks = 0x100000, offData = align_up(..., 1 MiB)
           (current VirtualBox)

The guest sees cbDisk rounded DOWN to a multiple of 512 bytes (the
VirtualBox rule; QEMU rounds up).  --expect writes exactly those bytes:
for a base image FREE and ZERO blocks read as zeros; for a differencing
image (--type diff) FREE blocks read the parent's bytes (--parent-expect,
zeros past the parent's end), ZERO blocks zeros, data blocks their data.
Applying this layer by layer models a chain of any depth, even with a
different block size in each layer.  --print-extents does the same for
the allocation map (data / zero runs, in bytes; --parent-extents for a
diff).

Block states are given with --blocks, one letter per block:
    D  data: pseudo-random bytes
    d  data slot whose bytes are all zero (allocated, so still "data")
    Z  ZERO entry (0xFFFFFFFE)
    F  FREE entry (0xFFFFFFFF); "." is the same
Blocks past the end of the pattern are FREE.  "IDX:STATE,IDX:STATE"
(e.g. "0:D,2047:Z,4095:D") sets single blocks of an otherwise FREE map;
"random" (the default for dynamic images) chooses states from --seed.
Fixed images (--type fixed) always have every block allocated, in
order unless --shuffle is given.  A diff without --parent-expect reads
its FREE blocks as zeros.

Everything random comes from --seed, so the same command line always
writes the same bytes.  Use a different seed for each layer of a chain.

--corrupt KIND writes a deliberately broken image (see --list-corrupt);
--set FIELD=VALUE overwrites one header field after the layout is made.

--machine FOLDER --spec SPEC.json --model DIR writes a whole VirtualBox
machine folder instead: a .vbox settings file (nested HardDisk
elements, Snapshot elements, attachments), each disk's base image and
its differencing children as Snapshots/{uuid}.vdi, every image made as
above and its model in DIR (see make-vdi.py --machine X --help).

Only the Python standard library is used.
"""

import argparse
import json
import os
import random
import struct
import sys
import uuid

SIGNATURE = 0xBEDA107F
VERSION_1_1 = 0x00010001
VERSION_0 = 0x00000002

PREHEADER_SIZE = 72
V0_HEADER_SIZE = 348
V0_BLOCKS_OFFSET = PREHEADER_SIZE + V0_HEADER_SIZE       # 0x1A4

FREE = 0xFFFFFFFF
ZERO = 0xFFFFFFFE

TYPES = {"dynamic": 1, "normal": 1, "fixed": 2, "static": 2,
         "undo": 3, "diff": 4, "differencing": 4}

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

DEFAULT_FILE_INFO = "<<< Oracle VirtualBox Disk Image >>>\n"

# Header fields: name -> (offset in a 1.1 header, offset in a v0
# header or None, struct format).  Offsets are absolute file offsets.
FIELDS = {
    "signature":        (0x040, 0x040, "<I"),
    "version":          (0x044, 0x044, "<I"),
    "cbHeader":         (0x048, None, "<I"),
    "type":             (0x04C, 0x048, "<I"),
    "flags":            (0x050, 0x04C, "<I"),
    "offBlocks":        (0x154, None, "<I"),
    "offData":          (0x158, None, "<I"),
    "legacyCylinders":  (0x15C, 0x150, "<I"),
    "legacyHeads":      (0x160, 0x154, "<I"),
    "legacySectors":    (0x164, 0x158, "<I"),
    "legacySectorSize": (0x168, 0x15C, "<I"),
    "dummy":            (0x16C, None, "<I"),
    "cbDisk":           (0x170, 0x160, "<Q"),
    "cbBlock":          (0x178, 0x168, "<I"),
    "cbBlockExtra":     (0x17C, None, "<I"),
    "cBlocks":          (0x180, 0x16C, "<I"),
    "cBlocksAllocated": (0x184, 0x170, "<I"),
    "lchsCylinders":    (0x1C8, None, "<I"),
    "lchsHeads":        (0x1CC, None, "<I"),
    "lchsSectors":      (0x1D0, None, "<I"),
    "lchsSectorSize":   (0x1D4, None, "<I"),
}
UUID_FIELDS = {
    "uuidCreate":       (0x188, 0x174),
    "uuidModify":       (0x198, 0x184),
    "uuidLinkage":      (0x1A8, 0x194),
    "uuidParentModify": (0x1B8, None),
}

# --corrupt KIND: what each kind does.  Every one of them must make a
# careful reader refuse the image.
CORRUPT_KINDS = {
    "bad-signature": "signature is 0xBEDA107E",
    "bad-version": "version 2.0 (0x00020000)",
    "bad-version-minor-0": "version 0x00000001 (major 0, not the v0 value 2)",
    "truncated-preheader": "file is 40 bytes long",
    "truncated-header": "file ends inside the header (200 bytes)",
    "truncated-map": "file ends in the middle of the block map",
    "truncated-data": "file ends in the middle of the last data slot",
    "block-size-zero": "cbBlock = 0",
    "block-size-not-power-of-2": "cbBlock = 1 MiB + 512",
    "block-size-too-small": "cbBlock = 64 KiB (VirtualBox opens 128 KiB..128 MiB)",
    "block-size-too-large": "cbBlock = 256 MiB",
    "block-count-zero": "cBlocks = 0",
    "blocks-not-covering-disk": "cBlocks * cbBlock < cbDisk",
    "allocated-more-than-blocks": "cBlocksAllocated = cBlocks + 1",
    "entry-past-eof": "a map entry points to a slot far past the end of file",
    "duplicate-entry": "two map entries name the same slot",
    "data-offset-inside-map": "offData < offBlocks + 4 * cBlocks",
    "map-offset-too-small": "offBlocks = 0x100 (inside the header)",
    "map-offset-past-eof": "offBlocks is past the end of the file",
    "header-size-too-small": "cbHeader = 300",
    "bad-type": "type = 5",
    "bad-type-zero": "type = 0",
    "bad-flags": "flags = 4 (not a bit VirtualBox allows)",
    "bad-lchs-sector-size": "the LCHS cbSector of a 1.1+ header is 4096 "
                            "(VirtualBox requires 512)",
    "entry-past-allocated": "a map entry names slot 2 (inside the file) but "
                            "cBlocksAllocated is 2",
    "null-create-uuid": "uuidCreate is all zeros",
    "null-modify-uuid": "uuidModify is all zeros",
    "block-extra-not-power-of-2": "cbBlockExtra = 3000",
    "block-extra-too-large": "cbBlockExtra = 2 GiB over 1 MiB blocks "
                             "(VirtualBox opens it; one allocation would "
                             "write 2 GiB)",
    "disk-size-zero": "cbDisk = 0",
    "overflow": "cbDisk = 2^64 - 1: rounding it up to a block overflows",
    "overflow-map-size": "cBlocks = 0x40000001: 4 * cBlocks overflows 32 bits "
                         "and offData = offBlocks + 4 would pass a 32-bit check",
    "overflow-disk-size": "cbDisk = 2^63 + 1 MiB with cBlocks = 2^32 - 1: "
                          "cBlocks * cbBlock < cbDisk unless computed in 32 bits",
    "overflow-slot-offset": "slots of 128 KiB + 128 KiB extra: an entry "
                            "names slot 16384, at 4 GiB past the end of the "
                            "file, but inside it if the offset is computed "
                            "in 32 bits",
    "huge-map": "cBlocks = 2^28 (a 1 GiB map) in a file of a few MiB",
    "v0-truncated-map": "a v0 image whose file ends inside the block map",
    "v0-entry-past-eof": "a v0 image with a map entry past the end of file",
}


def die(msg):
    sys.exit("make-vdi.py: " + msg)


def parse_size(text):
    """'1M+512', '4G', '1000001', '0x100000' -> int (binary suffixes)."""
    total = 0
    for term in text.split("+"):
        term = term.strip()
        mult = 1
        suffixes = {"K": KiB, "M": MiB, "G": GiB, "T": 1024 * GiB}
        if term and term[-1].upper() in suffixes:
            mult = suffixes[term[-1].upper()]
            term = term[:-1]
        try:
            total += int(term, 0) * mult
        except ValueError:
            die("cannot parse size %r" % text)
    return total


def align_up(n, a):
    return (n + a - 1) // a * a


def uuid_to_disk(text):
    """Text form -> 16 bytes in GUID order (first 3 fields little-endian)."""
    try:
        return uuid.UUID(text.strip().strip("{}")).bytes_le
    except ValueError:
        die("bad UUID %r" % text)


def uuid_from_disk(raw):
    return str(uuid.UUID(bytes_le=bytes(raw)))


def random_uuid(rng):
    """A version-4 UUID drawn from rng (so it depends only on --seed)."""
    return str(uuid.UUID(bytes=rng.randbytes(16), version=4))


def block_bytes(seed, index, length):
    """The pseudo-random contents of data block index."""
    return random.Random("data/%s/%d" % (seed, index)).randbytes(length)


def junk_bytes(seed, what, length):
    return random.Random("junk/%s/%s" % (seed, what)).randbytes(length)


# --- reading another VDI (the parent of a diff) -----------------------------

def read_parent_header(path):
    """Return (uuidCreate, uuidModify, cbDisk) of an existing VDI file."""
    with open(path, "rb") as f:
        raw = f.read(512)
    if len(raw) < 0x1A4:
        die("%s: too short to be a VDI" % path)
    sig, version = struct.unpack_from("<II", raw, 0x40)
    if sig != SIGNATURE:
        die("%s: not a VDI file" % path)
    if version == VERSION_0:
        create, modify = raw[0x174:0x184], raw[0x184:0x194]
        (cb_disk,) = struct.unpack_from("<Q", raw, 0x160)
    else:
        create, modify = raw[0x188:0x198], raw[0x198:0x1A8]
        (cb_disk,) = struct.unpack_from("<Q", raw, 0x170)
    return uuid_from_disk(create), uuid_from_disk(modify), cb_disk


# --- block states -----------------------------------------------------------

def choose_states(args, n_blocks, rng):
    """One letter per block: D, d, Z or F."""
    spec = args.blocks
    if args.type == TYPES["fixed"]:
        if spec is None or spec == "random":
            return ["D"] * n_blocks
        if ":" in spec or len(spec) != n_blocks or set(spec) - set("Dd"):
            die("a fixed image has every block allocated: give one D or d "
                "per block (%d)" % n_blocks)
    if spec is None or spec == "random":
        weights = [float(w) for w in args.weights.split(",")]
        if len(weights) != 4:
            die("--weights needs four numbers: D,d,Z,F")
        return rng.choices("DdZF", weights=weights, k=n_blocks)
    states = ["F"] * n_blocks
    if ":" in spec:
        for item in spec.split(","):
            idx, st = item.split(":")
            idx = int(idx, 0)
            if not 0 <= idx < n_blocks:
                die("--blocks: block %d is outside 0..%d" % (idx, n_blocks - 1))
            states[idx] = st
    else:
        if len(spec) > n_blocks:
            die("--blocks has %d letters but the image has %d blocks"
                % (len(spec), n_blocks))
        states[:len(spec)] = list(spec)
    for s in states:
        if s not in "DdZF.":
            die("--blocks: unknown state %r (use D, d, Z, F or .)" % s)
    return ["F" if s == "." else s for s in states]


# --- the image --------------------------------------------------------------

class Image:
    """Everything needed to write one VDI file and its expected view."""

    def __init__(self, args):
        self.args = args
        rng = random.Random("layout/%s" % args.seed)
        self.rng = rng
        self.v0 = args.header == "v0"
        self.cb_disk = args.size
        self.cb_block = args.block_size
        self.extra = 0 if self.v0 else args.block_extra
        if self.cb_block <= 0:
            die("block size must be positive")
        # cBlocks covers cbDisk; VirtualBox also accepts more blocks.
        self.n_blocks = (self.cb_disk + self.cb_block - 1) // self.cb_block \
            + args.extra_blocks
        self.states = choose_states(args, self.n_blocks, rng)

        # Slots: data blocks in order, then shuffled if asked.
        data_blocks = [i for i, s in enumerate(self.states) if s in "Dd"]
        slots = list(range(len(data_blocks)))
        if args.shuffle:
            rng.shuffle(slots)
        self.entries = [FREE if s == "F" else ZERO for s in self.states]
        for b, slot in zip(data_blocks, slots):
            self.entries[b] = slot
        self.n_slots = len(data_blocks)
        # What goes into the file's map; only --corrupt makes it differ.
        self.map_entries = list(self.entries)

        # Offsets.
        if self.v0:
            self.cb_header = V0_HEADER_SIZE
            self.off_blocks = V0_BLOCKS_OFFSET
            self.off_data = self.off_blocks + 4 * self.n_blocks
        else:
            self.cb_header = 400 if args.header == "1.1+" else 384
            map_len = 4 * self.n_blocks
            if args.align == "none":
                self.off_blocks = PREHEADER_SIZE + self.cb_header
                self.off_data = self.off_blocks + map_len
            else:
                a = parse_size(args.align)
                self.off_blocks = align_up(PREHEADER_SIZE + self.cb_header, a)
                self.off_data = align_up(self.off_blocks + map_len, a)
        if args.off_blocks is not None:
            self.off_blocks = args.off_blocks
        if args.off_data is not None:
            self.off_data = args.off_data

        # UUIDs.
        self.uuids = {"uuidCreate": args.uuid_create or
                      random_uuid(random.Random("create/%s" % args.seed)),
                      "uuidModify": args.uuid_modify or
                      random_uuid(random.Random("modify/%s" % args.seed)),
                      "uuidLinkage": args.uuid_linkage,
                      "uuidParentModify": args.uuid_parent_modify}
        for k in ("uuidLinkage", "uuidParentModify"):
            if self.uuids[k] is None:
                self.uuids[k] = "00000000-0000-0000-0000-000000000000"

        self.fields = {
            "signature": SIGNATURE,
            "version": VERSION_0 if self.v0 else VERSION_1_1,
            "cbHeader": self.cb_header,
            "type": args.type,
            "flags": 0,
            "offBlocks": self.off_blocks,
            "offData": self.off_data,
            "legacyCylinders": 0, "legacyHeads": 0, "legacySectors": 0,
            "legacySectorSize": 512,
            "dummy": 0,
            "cbDisk": self.cb_disk,
            "cbBlock": self.cb_block,
            "cbBlockExtra": self.extra,
            "cBlocks": self.n_blocks,
            "cBlocksAllocated": self.n_slots,
            "lchsCylinders": args.lchs[0], "lchsHeads": args.lchs[1],
            "lchsSectors": args.lchs[2], "lchsSectorSize": 512,
        }
        self.file_size = self.off_data + self.n_slots * (self.extra +
                                                         self.cb_block)
        self.truncate_to = None   # set by some --corrupt kinds

    @property
    def virtual_size(self):
        return self.cb_disk // 512 * 512

    def slot_offset(self, slot):
        """File offset of the first guest byte stored in slot."""
        return self.off_data + slot * (self.extra + self.cb_block) + self.extra

    def block_data(self, b):
        """The guest bytes of data block b (the full block)."""
        if self.states[b] == "d":
            return bytes(self.cb_block)
        data = bytearray(block_bytes(self.args.seed, b, self.cb_block))
        # Bytes of the last block past the virtual size are never visible
        # to VirtualBox, which writes zeros there.  (QEMU rounds cbDisk
        # up and shows up to 511 of them, so keep them zero by default.)
        visible = max(0, self.virtual_size - b * self.cb_block)
        if visible < self.cb_block:
            tail = bytes(self.cb_block - visible) if not self.args.junk_tail \
                else junk_bytes(self.args.seed, "tail", self.cb_block - visible)
            data[visible:] = tail
        return bytes(data)

    # -- writing --

    def header_length(self):
        """How many bytes of pre-header and header this layout has."""
        if self.v0:
            return V0_BLOCKS_OFFSET                      # 0x1A4
        if self.cb_header >= 400 or \
           any(k.startswith("lchs") for k in self.args.set_fields):
            return PREHEADER_SIZE + 400                  # 0x1D8
        return PREHEADER_SIZE + 384                      # 0x1C8

    def header_bytes(self):
        """The pre-header and the header, from self.fields and self.uuids."""
        buf = bytearray(self.header_length())
        info = self.args.file_info.encode()[:63]
        buf[0:len(info)] = info
        for name, value in self.fields.items():
            off1, off0, fmt = FIELDS[name]
            off = off0 if self.v0 else off1
            if off is None or off >= len(buf):
                continue
            bits = 8 * struct.calcsize(fmt)
            struct.pack_into(fmt, buf, off, value % (1 << bits))
        comment = self.args.comment.encode()[:255]
        coff = 0x50 if self.v0 else 0x54
        buf[coff:coff + len(comment)] = comment
        for name, text in self.uuids.items():
            off1, off0 = UUID_FIELDS[name]
            off = off0 if self.v0 else off1
            if off is not None:
                buf[off:off + 16] = uuid_to_disk(text)
        return bytes(buf)

    def write(self, path):
        """Write the image: header, map, slots (sparse where all zero)."""
        with open(path + ".tmp", "wb") as f:
            f.truncate(self.file_size)
            f.write(self.header_bytes())
            f.seek(self.off_blocks)
            f.write(struct.pack("<%dI" % len(self.map_entries),
                                *self.map_entries))
            for b, slot in enumerate(self.entries):
                if slot >= ZERO:
                    continue
                off = self.slot_offset(slot)
                if self.extra:
                    # Junk in (at most the first 64 KiB of) the extra
                    # bytes: a reader that shows them shows junk.
                    f.seek(off - self.extra)
                    f.write(junk_bytes(self.args.seed, "extra/%d" % slot,
                                       min(self.extra, 64 * KiB)))
                if self.states[b] == "d":
                    continue                     # zeros: leave a hole
                data = self.block_data(b)
                if data.count(0) != len(data):
                    f.seek(off)
                    f.write(data)
            f.truncate(self.file_size if self.truncate_to is None
                       else self.truncate_to)
        os.replace(path + ".tmp", path)

    # -- the model --

    def write_expect(self, path, parent_path):
        """Write the virtual_size bytes the guest must read."""
        vsize = self.virtual_size
        parent = open(parent_path, "rb") if parent_path else None
        try:
            with open(path + ".tmp", "wb") as out:
                out.truncate(vsize)
                for b, st in enumerate(self.states):
                    start = b * self.cb_block
                    length = min(self.cb_block, vsize - start)
                    if length <= 0:
                        break
                    if st == "D":
                        data = self.block_data(b)[:length]
                    elif st == "F" and parent is not None:
                        parent.seek(start)
                        data = parent.read(length)   # short past its end
                    else:
                        continue                     # zeros
                    if data.count(0) != len(data):
                        out.seek(start)
                        out.write(data)
            os.replace(path + ".tmp", path)
        finally:
            if parent:
                parent.close()

    def extents(self, parent_runs):
        """[(offset, length, 'data'|'zero')] over the virtual size, merged."""
        vsize = self.virtual_size
        runs = []
        for b, st in enumerate(self.states):
            start = b * self.cb_block
            end = min(start + self.cb_block, vsize)
            if start >= end:
                break
            if st in "Dd":
                runs.append((start, end - start, "data"))
            elif st == "F" and parent_runs is not None:
                for (o, n, k) in parent_runs:
                    lo, hi = max(o, start), min(o + n, end)
                    if lo < hi:
                        runs.append((lo, hi - lo, k))
                pend = sum(n for _, n, _ in parent_runs)
                if pend < end:
                    lo = max(pend, start)
                    runs.append((lo, end - lo, "zero"))
            else:
                runs.append((start, end - start, "zero"))
        merged = []
        for o, n, k in sorted(runs):
            if merged and merged[-1][2] == k and \
               merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + n, k)
            else:
                merged.append((o, n, k))
        return merged


def read_runs(path):
    runs = []
    with open(path) as f:
        for line in f:
            if line.strip():
                o, n, k = line.split()
                runs.append((int(o), int(n), k))
    return runs


# --- corruption -------------------------------------------------------------

# The slot of overflow-slot-offset: 2^32 / (128 KiB + 128 KiB).
OVERFLOW_SLOT = 16384


def corrupt_setup(kind, args):
    """Adjust the arguments before the layout is computed."""
    if kind not in CORRUPT_KINDS:
        die("unknown --corrupt kind %r (see --list-corrupt)" % kind)
    if kind.startswith("v0-"):
        args.header = "v0"
    if kind == "block-size-too-small":
        args.block_size = 64 * KiB
    elif kind == "block-size-too-large":
        args.block_size = 256 * MiB
        args.blocks = "F"            # keep the file small
    elif kind in ("truncated-map", "v0-truncated-map"):
        # A map of at least a few sectors, with nothing after it.
        args.size = max(args.size, 1024 * args.block_size)
        args.blocks = "D"
    elif kind == "overflow-slot-offset":
        args.block_extra = 128 * KiB
        args.block_size = 128 * KiB
        args.size = (OVERFLOW_SLOT + 1) * args.block_size
        args.blocks = "DD"
    elif kind == "block-extra-too-large":
        args.blocks = "F"            # no slot, only the header is wrong
    elif kind == "bad-lchs-sector-size":
        args.header = "1.1+"
    elif kind in ("duplicate-entry", "truncated-data", "entry-past-eof",
                  "v0-entry-past-eof", "entry-past-allocated"):
        args.size = max(args.size, 3 * args.block_size)
        args.blocks = "DDD"


def corrupt_apply(kind, img):
    """Break the finished layout."""
    f = img.fields
    if kind == "bad-signature":
        f["signature"] = SIGNATURE - 1
    elif kind == "bad-version":
        f["version"] = 0x00020000
    elif kind == "bad-version-minor-0":
        f["version"] = 0x00000001
    elif kind == "truncated-preheader":
        img.truncate_to = 40
    elif kind == "truncated-header":
        img.truncate_to = 200
    elif kind in ("truncated-map", "v0-truncated-map"):
        img.truncate_to = img.off_blocks + 2 * img.n_blocks
    elif kind == "truncated-data":
        img.truncate_to = img.file_size - img.cb_block // 2
    elif kind == "block-size-zero":
        f["cbBlock"] = 0
    elif kind == "block-size-not-power-of-2":
        f["cbBlock"] = img.cb_block + 512
    elif kind == "block-count-zero":
        f["cBlocks"] = 0
    elif kind == "blocks-not-covering-disk":
        f["cbDisk"] = img.n_blocks * img.cb_block + 512
    elif kind == "allocated-more-than-blocks":
        f["cBlocksAllocated"] = img.n_blocks + 1
    elif kind in ("entry-past-eof", "v0-entry-past-eof"):
        img.map_entries[1] = 0x00100000 + img.n_slots
    elif kind == "duplicate-entry":
        img.map_entries[2] = img.map_entries[0]
    elif kind == "data-offset-inside-map":
        f["offData"] = img.off_blocks + 4 * img.n_blocks - 4
    elif kind == "map-offset-too-small":
        f["offBlocks"] = 0x100
    elif kind == "map-offset-past-eof":
        f["offBlocks"] = img.file_size + 0x100000
        f["offData"] = f["offBlocks"] + 0x100000
    elif kind == "header-size-too-small":
        f["cbHeader"] = 300
    elif kind == "bad-type":
        f["type"] = 5
    elif kind == "bad-type-zero":
        f["type"] = 0
    elif kind == "bad-flags":
        f["flags"] = 4
    elif kind == "bad-lchs-sector-size":
        f["lchsSectorSize"] = 4096
    elif kind == "entry-past-allocated":
        f["cBlocksAllocated"] = 2
    elif kind == "null-create-uuid":
        img.uuids["uuidCreate"] = str(uuid.UUID(int=0))
    elif kind == "null-modify-uuid":
        img.uuids["uuidModify"] = str(uuid.UUID(int=0))
    elif kind == "block-extra-not-power-of-2":
        f["cbBlockExtra"] = 3000
    elif kind == "block-extra-too-large":
        f["cbBlockExtra"] = 2 * GiB
    elif kind == "disk-size-zero":
        f["cbDisk"] = 0
    elif kind == "overflow":
        f["cbDisk"] = 2 ** 64 - 1
    elif kind == "overflow-map-size":
        f["cBlocks"] = 0x40000001
        f["cbDisk"] = 0x40000001 * img.cb_block
        f["offData"] = (img.off_blocks + 4 * 0x40000001) & 0xFFFFFFFF
    elif kind == "overflow-slot-offset":
        # Slot OVERFLOW_SLOT starts 4 GiB + 128 KiB into the data area.
        img.map_entries[1] = OVERFLOW_SLOT
        f["cBlocksAllocated"] = OVERFLOW_SLOT + 1
    elif kind == "huge-map":
        f["cBlocks"] = 1 << 28
        f["cbDisk"] = (1 << 28) * img.cb_block
        f["offData"] = img.off_blocks + 4 * (1 << 28)
    elif kind == "overflow-disk-size":
        f["cBlocks"] = 0xFFFFFFFF
        f["cbDisk"] = 2 ** 63 + MiB
    # Other kinds were handled in corrupt_setup.


# --- command line -----------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="make-vdi.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="Examples:\n"
        "  make-vdi.py --size 9728 --blocks D --expect a.raw a.vdi\n"
        "  make-vdi.py --header 1.1+ --align 1M --block-size 2M --size 7M+512 \\\n"
        "      --blocks DZFD --shuffle --block-extra 4096 --expect b.raw b.vdi\n"
        "  make-vdi.py --header v0 --size 1000001 --block-size 128K c.vdi\n"
        "  make-vdi.py --type diff --parent a.vdi --parent-expect a.raw \\\n"
        "      --blocks FZ --seed 2 --expect child.raw child.vdi\n"
        "  make-vdi.py --corrupt duplicate-entry bad.vdi\n"
        "\nThe layout, block states and the expectation rules are described\n"
        "at the top of this file (make-vdi.py).")
    p.add_argument("output", nargs="?", help="the VDI file to write")
    p.add_argument("--size", type=parse_size, default=None,
                   help="cbDisk in bytes (suffixes K M G T, sums like 1M+512); "
                   "default 4M, or the parent's cbDisk for a diff")
    p.add_argument("--block-size", type=parse_size, default=MiB,
                   help="cbBlock (default 1M)")
    p.add_argument("--block-extra", type=parse_size, default=0,
                   help="cbBlockExtra (default 0; not in v0)")
    p.add_argument("--header", choices=["1.1", "1.1+", "v0"], default="1.1+",
                   help="1.1 = cbHeader 384 (QEMU), 1.1+ = cbHeader 400 with "
                   "LCHS (VirtualBox, the default), v0 = legacy version 2")
    p.add_argument("--align", default="1M",
                   help="alignment of map and data: none, 512, 1M or any size "
                   "(default 1M as VirtualBox)")
    p.add_argument("--off-blocks", type=parse_size, help="force offBlocks")
    p.add_argument("--off-data", type=parse_size, help="force offData")
    p.add_argument("--type", default="dynamic",
                   help="dynamic (1), fixed (2), undo (3), diff (4), or a number")
    p.add_argument("--extra-blocks", type=int, default=0, metavar="N",
                   help="N more blocks (map entries) than cbDisk needs; "
                   "they are never visible")
    p.add_argument("--blocks", default=None,
                   help="block states: letters D d Z F . per block, "
                   "'IDX:S,IDX:S', or 'random' (default)")
    p.add_argument("--weights", default="4,1,2,3",
                   help="relative weights of D,d,Z,F for random states "
                   "(default 4,1,2,3)")
    p.add_argument("--shuffle", action="store_true",
                   help="put the data slots in a random physical order")
    p.add_argument("--seed", default="1", help="seed of everything random")
    p.add_argument("--junk-tail", action="store_true",
                   help="fill the bytes of the last block past cbDisk with junk "
                   "(never visible; QEMU would show up to 511 of them)")
    p.add_argument("--parent", help="for a diff: take uuidLinkage and "
                   "uuidParentModify (and the default size) from this VDI")
    p.add_argument("--parent-expect", help="for a diff: the bytes the parent "
                   "shows; FREE blocks read them")
    p.add_argument("--parent-extents", help="for a diff: the parent's "
                   "--print-extents output")
    p.add_argument("--uuid-create")
    p.add_argument("--uuid-modify")
    p.add_argument("--uuid-linkage")
    p.add_argument("--uuid-parent-modify")
    p.add_argument("--comment", default="", help="the header comment")
    p.add_argument("--file-info", default=DEFAULT_FILE_INFO,
                   help="the pre-header text")
    p.add_argument("--lchs", default="0,0,0",
                   help="LCHS geometry C,H,S of a 1.1+ header (default 0,0,0)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="overwrite a header field after the layout is made "
                   "(fields: %s)" % ", ".join(FIELDS))
    p.add_argument("--corrupt", metavar="KIND",
                   help="write a broken image (see --list-corrupt)")
    p.add_argument("--list-corrupt", action="store_true",
                   help="list the --corrupt kinds and exit")
    p.add_argument("--expect", metavar="RAW",
                   help="write the bytes the guest must read to RAW")
    p.add_argument("--print-map", action="store_true",
                   help="print 'BLOCK STATE ENTRY' for each block on stdout")
    p.add_argument("--print-extents", metavar="FILE",
                   help="write the 'OFFSET LENGTH data|zero' runs the guest "
                   "must see to FILE ('-' for stdout)")
    args = p.parse_args(argv)

    if args.list_corrupt:
        for k, v in CORRUPT_KINDS.items():
            print("%-28s %s" % (k, v))
        sys.exit(0)
    if not args.output:
        p.error("the output file is required")
    try:
        args.type = TYPES[args.type] if args.type in TYPES else int(args.type, 0)
    except ValueError:
        die("unknown --type %r" % args.type)
    try:
        args.lchs = [int(x, 0) for x in args.lchs.split(",")]
        assert len(args.lchs) == 3
    except (ValueError, AssertionError):
        die("--lchs needs C,H,S")
    args.set_fields = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in FIELDS:
            die("--set: unknown field %r" % name)
        args.set_fields[name] = parse_size(value)

    if args.parent:
        create, modify, cb_disk = read_parent_header(args.parent)
        if args.uuid_linkage is None:
            args.uuid_linkage = create
        if args.uuid_parent_modify is None and args.header != "v0":
            args.uuid_parent_modify = modify
        if args.size is None:
            args.size = cb_disk
        if args.type == TYPES["dynamic"]:
            args.type = TYPES["diff"]
    if args.size is None:
        args.size = 4 * MiB
    if (args.parent_expect or args.parent_extents) and \
       args.type != TYPES["diff"]:
        die("--parent-expect/--parent-extents need --type diff")
    if args.block_extra and args.header == "v0":
        die("a v0 header has no cbBlockExtra")
    if args.corrupt:
        if args.expect or args.print_extents:
            die("--corrupt images have no expected contents")
        corrupt_setup(args.corrupt, args)
    return args


def make_one(args):
    """Write the image (and what was asked of the model) for parsed args."""
    img = Image(args)
    if args.corrupt:
        corrupt_apply(args.corrupt, img)
    img.fields.update(args.set_fields)
    img.write(args.output)
    if args.expect:
        img.write_expect(args.expect, args.parent_expect)
    if args.print_map:
        for b, (st, e) in enumerate(zip(img.states, img.map_entries)):
            print("%d %s %s" % (b, st, "0x%08x" % e if e >= ZERO else e))
    if args.print_extents:
        parent_runs = read_runs(args.parent_extents) \
            if args.parent_extents else None
        out = sys.stdout if args.print_extents == "-" \
            else open(args.print_extents, "w")
        for o, n, k in img.extents(parent_runs):
            print("%d %d %s" % (o, n, k), file=out)
        if out is not sys.stdout:
            out.close()
    return img


# --- a whole VirtualBox machine folder (--machine) --------------------------

MACHINE_DOC = """Write a whole VirtualBox machine folder from a JSON spec, as
VirtualBox lays it out, together with the model of every image:

  make-vdi.py --machine FOLDER --spec SPEC.json --model DIR [--models top]

FOLDER gets NAME.vbox, each disk's base image FOLDER/NAME-diskN.vdi (or
"file") and its differencing children FOLDER/Snapshots/{uuid}.vdi
(lowercase, braces included, as VirtualBox names implicit diffs).  The
.vbox nests the children's HardDisk elements under their parents, and
has one Snapshot per layer below the top: snapshot k (nested in k-1)
has layer k of each disk attached, the current state the top layer;
currentSnapshot is the last one.  A DVD is attached before the disks
(it must not count as a disk).

Every layer is made by the same code as a single image (so its model
is the one --expect and --print-extents give): DIR/dD.lL.raw is what
the guest sees of disk D served with layer L on top, DIR/dD.lL.extents
its data/zero runs.  DIR/media lists "D L UUID MODIFY-UUID PATH" for
every image, DIR/snapshots "K UUID NAME" (NAME may hold spaces),
DIR/machine "UUID PATH-OF-VBOX".  --models top keeps only the .raw of
each disk's top layer (for deep chains).

The spec (every key optional except "disks"):
  {"name": "Deb", "seed": "s", "vbox": "Deb.vbox" (null: none),
   "version": "1.19-linux", "namespace": "http://www.virtualbox.org/",
   "snapshot_folder": "Snapshots", "snapshots": N (default: one per
   layer below the top; 0 or false: none), "snapshot_names": [...],
   "storage_in_hardware": true (StorageControllers inside Hardware, as
   newer VirtualBox writes; false: directly in Machine and Snapshot),
   "global": "PATH/VirtualBox.xml" (also write a global registry, with
   absolute locations), "media_in": "machine" | "global" | "both",
   "disks": [{"name": ..., "file": "base.vdi", "type": "Normal",
              "attach": true,
              "layers": [{"size": "8M", "block_size": "1M",
                          "blocks": "DZF...", "weights": "4,1,2,3",
                          "shuffle": false, "header": "1.1+",
                          "align": "1M", "seed": ..., "uuid": ...,
                          "file": "other/place.vdi",
                          "args": ["--uuid-linkage", "..."],
                          "xml": {"uuid": "{...}", "format": "VMDK",
                                  "location": "...", "attr": null},
                          "in_registry": true}, ...]}]}
A layer's "args" are more make-vdi.py options for that image (after the
ones above); its "xml" changes the attributes of its HardDisk element
(null removes one).  Sizes are strings ("8M+512") or numbers.  Layer 0
is the base (4M by default); later layers are differencing images of
the one before, of the same size unless "size" says otherwise.
"""


def xml_escape(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&quot;"))


def xml_attrs(attrs):
    return "".join(' %s="%s"' % (k, xml_escape(v))
                   for k, v in attrs.items() if v is not None)


def braced(u):
    return "{%s}" % u


class Layer:
    pass


def machine_layers(spec, folder, model, models):
    """Write every image; return [[Layer]] per disk."""
    seed = str(spec.get("seed", "machine"))
    name = spec.get("name", os.path.basename(folder))
    snap_folder = spec.get("snapshot_folder", "Snapshots")
    disks = []
    for d, disk in enumerate(spec["disks"]):
        layers = []
        for l, ls in enumerate(disk["layers"]):
            L = Layer()
            L.disk, L.index, L.spec = d, l, ls
            lseed = str(ls.get("seed", "%s/d%d/l%d" % (seed, d, l)))
            L.uuid = str(uuid.UUID(ls["uuid"].strip("{}"))) if "uuid" in ls \
                else random_uuid(random.Random("machine-create/" + lseed))
            if "file" in ls:
                rel = ls["file"]
            elif l == 0:
                rel = disk.get("file", "%s-disk%d.vdi" % (name, d))
            else:
                rel = os.path.join(snap_folder, "{%s}.vdi" % L.uuid)
            L.location = rel
            L.path = os.path.join(folder, rel)
            os.makedirs(os.path.dirname(L.path), exist_ok=True)
            L.raw = os.path.join(model, "d%d.l%d.raw" % (d, l))
            L.extents = os.path.join(model, "d%d.l%d.extents" % (d, l))
            argv = [L.path, "--seed", lseed, "--uuid-create", L.uuid,
                    "--header", str(ls.get("header", "1.1+")),
                    "--align", str(ls.get("align", "1M")),
                    "--block-size", str(ls.get("block_size", "1M"))]
            if "size" in ls:
                argv += ["--size", str(ls["size"])]
            if "blocks" in ls:
                argv += ["--blocks", ls["blocks"]]
            if "weights" in ls:
                argv += ["--weights", ls["weights"]]
            if ls.get("shuffle"):
                argv.append("--shuffle")
            if l > 0:
                argv += ["--parent", layers[-1].path]
            argv += [str(a) for a in ls.get("args", [])]
            args = parse_args(argv)
            args.expect = L.raw
            args.print_extents = L.extents
            if l > 0 and args.type == TYPES["diff"]:
                args.parent_expect = layers[-1].raw
                args.parent_extents = layers[-1].extents
            img = make_one(args)
            L.modify = img.uuids["uuidModify"]
            if models == "top" and l > 0:
                os.remove(layers[-1].raw)
            layers.append(L)
        disks.append(layers)
    return disks


def hard_disk_xml(disk_spec, layers, absolute):
    """Nested HardDisk elements of one disk's chain, as lines."""
    lines, depth = [], 0
    for L in layers:
        if not L.spec.get("in_registry", True):
            continue
        attrs = {"uuid": braced(L.uuid),
                 "location": L.path if absolute else L.location,
                 "format": "VDI"}
        if depth == 0:
            attrs["type"] = disk_spec.get("type", "Normal")
        for k, v in L.spec.get("xml", {}).items():
            attrs[k] = v
        lines.append("  " * (depth + 4) + "<HardDisk%s>" % xml_attrs(attrs))
        depth += 1
    for depth in range(depth - 1, -1, -1):
        lines.append("  " * (depth + 4) + "</HardDisk>")
    return lines


def media_registry_xml(spec, disks, absolute, indent):
    pad = "  " * indent
    lines = [pad + "<MediaRegistry>", pad + "  <HardDisks>"]
    for d, layers in enumerate(disks):
        for line in hard_disk_xml(spec["disks"][d], layers, absolute):
            lines.append(line)
    lines += [pad + "  </HardDisks>", pad + "  <DVDImages>",
              pad + '    <Image uuid="%s" location="%s"/>'
              % (braced(spec["_dvd_uuid"]), "/nonexistent/install.iso"),
              pad + "  </DVDImages>", pad + "  <FloppyImages/>",
              pad + "</MediaRegistry>"]
    return lines


def controllers_xml(spec, images, pad):
    lines = [pad + "<StorageControllers>",
             pad + '  <StorageController name="SATA" type="AHCI" '
             'PortCount="30" useHostIOCache="false" Bootable="true">',
             pad + '    <AttachedDevice passthrough="false" type="DVD" '
             'hotpluggable="false" port="0" device="0">',
             pad + '      <Image uuid="%s"/>' % braced(spec["_dvd_uuid"]),
             pad + "    </AttachedDevice>"]
    for port, u in enumerate(images, start=1):
        lines += [pad + '    <AttachedDevice type="HardDisk" '
                  'hotpluggable="false" port="%d" device="0">' % port,
                  pad + '      <Image uuid="%s"/>' % braced(u),
                  pad + "    </AttachedDevice>"]
    lines += [pad + "  </StorageController>", pad + "</StorageControllers>"]
    return lines


def hardware_and_controllers_xml(spec, images, pad):
    hw = [pad + "<Hardware>",
          pad + '  <CPU count="1"/>',
          pad + '  <Memory RAMSize="1024"/>']
    ctl = controllers_xml(spec, images, pad + ("  " if spec.get(
        "storage_in_hardware", True) else ""))
    if spec.get("storage_in_hardware", True):
        return hw + ctl + [pad + "</Hardware>"]
    return hw + [pad + "</Hardware>"] + ctl


def attached(spec, disks, k):
    """The UUIDs attached at snapshot k (None: the current state)."""
    out = []
    for d, layers in enumerate(disks):
        if not spec["disks"][d].get("attach", True):
            continue
        i = len(layers) - 1 if k is None else min(k, len(layers) - 1)
        out.append(layers[i].uuid)
    return out


def machine_main(argv):
    p = argparse.ArgumentParser(
        prog="make-vdi.py --machine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=MACHINE_DOC)
    p.add_argument("--machine", required=True, metavar="FOLDER")
    p.add_argument("--spec", required=True,
                   help="the JSON spec, or - for stdin")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--models", choices=["all", "top"], default="all")
    args = p.parse_args(argv)

    spec = json.load(sys.stdin if args.spec == "-" else open(args.spec))
    if not spec.get("disks"):
        die("--machine: the spec has no disks")
    folder = os.path.abspath(args.machine)
    model = os.path.abspath(args.model)
    os.makedirs(folder, exist_ok=True)
    os.makedirs(model, exist_ok=True)
    seed = str(spec.get("seed", "machine"))
    rng = random.Random("machine/%s" % seed)
    name = spec.get("name", os.path.basename(folder))
    machine_uuid = random_uuid(rng)
    spec["_dvd_uuid"] = random_uuid(rng)

    disks = machine_layers(spec, folder, model, args.models)

    with open(os.path.join(model, "media"), "w") as f:
        for layers in disks:
            for L in layers:
                f.write("%d %d %s %s %s\n" % (L.disk, L.index, L.uuid,
                                              L.modify, L.path))

    depth = max(len(layers) for layers in disks)
    n_snap = spec.get("snapshots", depth - 1)
    n_snap = int(n_snap or 0)
    names = spec.get("snapshot_names", [])
    snaps = []
    for k in range(n_snap):
        snaps.append((random_uuid(rng),
                      names[k] if k < len(names) else "Snapshot %d" % (k + 1)))
    with open(os.path.join(model, "snapshots"), "w") as f:
        for k, (u, n) in enumerate(snaps):
            f.write("%d %s %s\n" % (k, u, n))

    media_in = spec.get("media_in",
                        "global" if spec.get("global") else "machine")
    ns = spec.get("namespace", "http://www.virtualbox.org/")
    version = spec.get("version", "1.19-linux")
    vbox = spec.get("vbox", "%s.vbox" % name)
    vbox_path = os.path.join(folder, vbox) if vbox else ""

    if vbox:
        mattrs = {"uuid": braced(machine_uuid), "name": name,
                  "OSType": "Debian_64",
                  "currentSnapshot": braced(snaps[-1][0]) if snaps else None,
                  "snapshotFolder": spec.get("snapshot_folder", "Snapshots"),
                  "lastStateChange": "2024-05-01T10:00:00Z"}
        lines = ['<?xml version="1.0"?>',
                 "<!--",
                 "** DO NOT EDIT THIS FILE.",
                 "** Written by make-vdi.py (machine mode) for the nbdkit-vdi "
                 "tests.",
                 "-->",
                 '<VirtualBox xmlns="%s" version="%s">' % (ns, version),
                 "  <Machine%s>" % xml_attrs(mattrs)]
        if media_in in ("machine", "both"):
            lines += media_registry_xml(spec, disks, False, 2)
        lines += hardware_and_controllers_xml(spec, attached(spec, disks,
                                                             None), "    ")
        # Snapshots, nested: snapshot k holds snapshot k + 1.
        close = []
        for k, (u, n) in enumerate(snaps):
            pad = "    " + "    " * k
            lines.append(pad + '<Snapshot uuid="%s" name="%s" '
                         'timeStamp="2024-04-%02dT09:00:00Z">'
                         % (braced(u), xml_escape(n), 1 + k % 28))
            lines += hardware_and_controllers_xml(
                spec, attached(spec, disks, k), pad + "  ")
            close.append(pad + "</Snapshot>")
            if k + 1 < len(snaps):
                lines.append(pad + "  <Snapshots>")
                close.append(pad + "  </Snapshots>")
        # Close in the reverse order of opening.
        lines += close[::-1]
        lines += ["  </Machine>", "</VirtualBox>"]
        with open(vbox_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    if spec.get("global"):
        gpath = os.path.abspath(spec["global"])
        os.makedirs(os.path.dirname(gpath), exist_ok=True)
        lines = ['<?xml version="1.0"?>',
                 '<VirtualBox xmlns="%s" version="%s">' % (ns, version),
                 "  <Global>",
                 "    <ExtraData/>",
                 "    <MachineRegistry>"]
        if vbox:
            lines.append('      <MachineEntry uuid="%s" src="%s"/>'
                         % (braced(machine_uuid), xml_escape(vbox_path)))
        lines.append("    </MachineRegistry>")
        if media_in in ("global", "both"):
            lines += media_registry_xml(spec, disks, True, 2)
        lines += ['    <SystemProperties defaultMachineFolder="%s"/>'
                  % xml_escape(os.path.dirname(folder)),
                  "  </Global>", "</VirtualBox>"]
        with open(gpath, "w") as f:
            f.write("\n".join(lines) + "\n")

    with open(os.path.join(model, "machine"), "w") as f:
        f.write("%s %s\n" % (machine_uuid, vbox_path))


def main(argv):
    if "--machine" in argv:
        machine_main(argv)
    else:
        make_one(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
