#!/usr/bin/python3
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

"""bad-inputs.py: write the bad-input corpus that test-bad-input.sh runs.

  bad-inputs.py OUTDIR

Every case is a folder OUTDIR/CASE holding the files of one bad input
(broken VDI headers and block maps, broken chains, broken settings
files, files that are not files), and a line of OUTDIR/manifest.tsv
says how to serve it and the error it must give (a case has a line
for each group of tools that word the error alike).  The
tab-separated columns are

  CASE     the folder's name (CLASS-what)
  TOOLS    comma-separated, who must refuse it:
             nbdkit    nbdkit with the vdi plugin and ARGS
             vdidiff   the same under --filter=vdidiff
             check     vdi-img check IMAGE: exit 1 (does not open)
             check2    vdi-img check IMAGE: exit 2 (opens, has errors)
             info      vdi-img info IMAGE: exit 1
             chain     vdi-img info --chain IMAGE (--parent-dir DIR
                       for each parent-dir=): exit 1
             snaplist  vdi-img snapshot list VBOX (VBOX: registry=)
           IMAGE is the value of file= in ARGS.
  NAMED    the file the error line must name (relative to the case
           folder, or absolute)
  PHRASE   the exact text the error line must contain (libxml2's
           own words, which vary between its versions, are left out)
  ARGS...  the plugin's arguments, one a column

In NAMED, PHRASE and ARGS, @DIR@ stands for the case's folder (its
absolute path: the plugin names files by their absolute paths).

Every phrase is what the code that refuses the input says about what
this program broke: numbers in it (offsets, sizes, counts) come from
the layout make-vdi.py made (its model), never from running the code.

Cases that cannot be made here are left out with a line on stdout
("CASE: skipped: WHY"): an unreadable file when running as root.

Only the Python standard library is used; images are made by
make-vdi.py, loaded as a module (one process for the whole corpus).
"""

import importlib.util
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "make_vdi", os.path.join(HERE, "make-vdi.py"))
make_vdi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_vdi)

KiB = make_vdi.KiB
MiB = make_vdi.MiB

TOOLS = {"nbdkit", "vdidiff", "check", "check2", "info", "chain", "snaplist"}
# The tools that open one image as the plugin does.
IMAGE_TOOLS = "nbdkit,check,info"


def uuid(n):
    """A fixed UUID, so that messages can be written out."""
    return "c0c0c0c0-0000-4000-8000-%012d" % n


# Small images whose random blocks hold no data (slots of zeros are
# holes), so that the corpus takes little space; argv overrides them.
SMALL = ["--size", "512K", "--block-size", "128K", "--weights", "0,1,1,1"]


def vdi(path, *argv):
    """make-vdi.py ARGV PATH; return its Image (the layout)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return make_vdi.make_one(make_vdi.parse_args(
        [path] + SMALL + [str(a) for a in argv]))


class Corpus:
    def __init__(self, root):
        self.root = root
        self.lines = []
        self.names = set()

    def case(self, name):
        """A new, empty case folder; returns its path."""
        if name in self.names:
            sys.exit("bad-inputs.py: case %s made twice" % name)
        self.names.add(name)
        d = os.path.join(self.root, name)
        os.makedirs(d)
        return d

    def expect(self, name, tools, named, phrase, *args):
        """Record the case made in folder name."""
        assert name in self.names, name
        assert set(tools.split(",")) <= TOOLS, tools
        for text in (named, phrase) + args:
            assert text and "\t" not in text and "\n" not in text, text
        self.lines.append("\t".join((name, tools, named, phrase) + args))

    def skip(self, name, why):
        print("%s: skipped: %s" % (name, why))

    def write(self):
        with open(os.path.join(self.root, "manifest.tsv"), "w") as f:
            for line in self.lines:
                f.write(line + "\n")


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


# --- settings files ---------------------------------------------------------

VBOX_NS = "http://www.virtualbox.org/"
MACHINE_UUID = "5eed0000-0000-4000-8000-00000000abcd"


def vbox_lines(hard_disks, attached, snapshots=(), current=None):
    """A minimal machine settings file as a list of lines: the
    HardDisk element lines go into its media registry, the UUIDs of
    attached are its hard disks, snapshots are extra lines inside
    <Machine> (Snapshot elements)."""
    cur = ' currentSnapshot="{%s}"' % current if current else ""
    lines = ['<?xml version="1.0"?>',
             '<VirtualBox xmlns="%s" version="1.19-linux">' % VBOX_NS,
             '  <Machine uuid="{%s}" name="Hand" snapshotFolder="Snapshots"%s>'
             % (MACHINE_UUID, cur),
             "    <MediaRegistry>",
             "      <HardDisks>"]
    lines += ["        " + h for h in hard_disks]
    lines += ["      </HardDisks>",
              "    </MediaRegistry>",
              "    <StorageControllers>",
              '      <StorageController name="SATA" type="AHCI" '
              'PortCount="4">']
    for port, u in enumerate(attached):
        lines += ['        <AttachedDevice type="HardDisk" port="%d" '
                  'device="0">' % port,
                  '          <Image uuid="{%s}"/>' % u,
                  "        </AttachedDevice>"]
    lines += ["      </StorageController>",
              "    </StorageControllers>"]
    lines += ["    " + s for s in snapshots]
    lines += ["  </Machine>", "</VirtualBox>"]
    return lines


def write_lines(path, lines):
    write_text(path, "\n".join(lines) + "\n")


def line_of(lines, needle):
    """The 1-based number of the only line holding needle."""
    found = [i + 1 for i, l in enumerate(lines) if needle in l]
    assert len(found) == 1, (needle, found)
    return found[0]


def harddisk(u, location, fmt="VDI", extra=' type="Normal"', close=True):
    return '<HardDisk uuid="{%s}" location="%s" format="%s"%s%s>' % (
        u, location, fmt, extra, "/" if close else "")


# --- headers ----------------------------------------------------------------

def header_cases(c):
    # (case, make-vdi.py arguments, the phrase from the layout).
    notvdi = "not a VDI image: "
    bad = "bad VDI header: "
    trunc = "truncated VDI image: the block map ends at %d but the file is " \
        "%d bytes long"
    bsize = bad + "block size %d is outside the range VirtualBox opens " \
        "(128 KiB to 128 MiB)"
    cover = bad + "%d blocks of %d bytes do not cover the disk size %d"
    inside = bad + "data offset %d is %s the block map (offset %d, " \
        "%d entries)"

    def field(img, name):
        """The value the header holds (after --corrupt and --set)."""
        return img.fields[name]

    cases = [
        ("bad-signature", ["--corrupt", "bad-signature"],
         lambda i: notvdi + "no VDI signature at offset 64"),
        ("signature-swapped", ["--set", "signature=0x7F10DABE"],
         lambda i: notvdi + "no VDI signature at offset 64"),
        ("version-2-0", ["--corrupt", "bad-version"],
         lambda i: "unsupported VDI version 2.0 (0x00020000)"),
        ("version-0-1", ["--corrupt", "bad-version-minor-0"],
         lambda i: "unsupported VDI version 0.1 (0x00000001)"),
        ("version-ffff", ["--set", "version=0xFFFF0003"],
         lambda i: "unsupported VDI version 65535.3 (0xffff0003)"),
        ("header-size-300", ["--corrupt", "header-size-too-small"],
         lambda i: bad + "header size 300 is smaller than 384"),
        ("header-size-0", ["--set", "cbHeader=0"],
         lambda i: bad + "header size 0 is smaller than 384"),
        ("block-size-not-power-of-2", ["--corrupt",
                                       "block-size-not-power-of-2"],
         lambda i: bad + "block size %d is not a power of two"
         % field(i, "cbBlock")),
        ("block-size-zero", ["--corrupt", "block-size-zero"],
         lambda i: bad + "the block size is zero"),
        ("block-size-64k", ["--corrupt", "block-size-too-small"],
         lambda i: bsize % (64 * KiB)),
        ("block-size-4k", ["--block-size", "4K", "--size", "64K",
                           "--blocks", "DF"],
         lambda i: bsize % (4 * KiB)),
        ("block-size-256m", ["--corrupt", "block-size-too-large"],
         lambda i: bsize % (256 * MiB)),
        ("block-size-2g", ["--set", "cbBlock=2G"],
         lambda i: bsize % (2048 * MiB)),
        ("disk-not-covered", ["--corrupt", "blocks-not-covering-disk"],
         lambda i: cover % (i.n_blocks, i.cb_block, field(i, "cbDisk"))),
        ("disk-size-overflow", ["--corrupt", "overflow"],
         lambda i: cover % (i.n_blocks, i.cb_block, 2 ** 64 - 1)),
        ("disk-size-2-63", ["--corrupt", "overflow-disk-size"],
         lambda i: cover % (2 ** 32 - 1, i.cb_block, 2 ** 63 + MiB)),
        ("disk-size-zero", ["--corrupt", "disk-size-zero"],
         lambda i: bad + "the disk size is zero"),
        ("disk-size-100", ["--set", "cbDisk=100"],
         lambda i: bad + "disk size 100 is less than one sector"),
        ("block-count-zero", ["--corrupt", "block-count-zero"],
         lambda i: bad + "the block count is zero"),
        ("data-inside-map", ["--corrupt", "data-offset-inside-map"],
         lambda i: inside % (field(i, "offData"), "inside", i.off_blocks,
                             i.n_blocks)),
        ("data-before-map", ["--off-data", "0x200"],
         lambda i: inside % (512, "before", i.off_blocks, i.n_blocks)),
        ("map-size-overflow", ["--corrupt", "overflow-map-size"],
         lambda i: inside % (field(i, "offData"), "inside", i.off_blocks,
                             field(i, "cBlocks"))),
        ("map-inside-header", ["--corrupt", "map-offset-too-small"],
         lambda i: bad + "block map offset 256 is inside the header"),
        ("map-offset-zero", ["--set", "offBlocks=0"],
         lambda i: bad + "block map offset 0 is inside the header"),
        ("map-past-eof", ["--corrupt", "map-offset-past-eof"],
         lambda i: trunc % (field(i, "offBlocks") + 4 * i.n_blocks,
                            i.file_size)),
        ("block-extra-3000", ["--corrupt", "block-extra-not-power-of-2"],
         lambda i: bad + "extra block data size 3000 is neither 0 nor a "
         "power of two"),
        ("block-extra-odd", ["--set", "cbBlockExtra=513"],
         lambda i: bad + "extra block data size 513 is neither 0 nor a "
         "power of two"),
        ("block-extra-2g", ["--corrupt", "block-extra-too-large"],
         lambda i: "unsupported VDI header: extra block data size %d is "
         "larger than the block size %d (VirtualBox never makes such images)"
         % (field(i, "cbBlockExtra"), i.cb_block)),
        ("type-5", ["--corrupt", "bad-type"],
         lambda i: bad + "unknown image type 5"),
        ("type-0", ["--corrupt", "bad-type-zero"],
         lambda i: bad + "unknown image type 0"),
        ("flags-4", ["--corrupt", "bad-flags"],
         lambda i: bad + "unknown image flags 0x4"),
        ("lchs-sector-4096", ["--corrupt", "bad-lchs-sector-size"],
         lambda i: bad + "LCHS geometry sector size 4096 is not 512"),
        ("lchs-sector-0", ["--set", "lchsSectorSize=0"],
         lambda i: bad + "LCHS geometry sector size 0 is not 512"),
        ("null-uuid", ["--corrupt", "null-create-uuid"],
         lambda i: bad + "the image UUID is null"),
        ("null-modify-uuid", ["--corrupt", "null-modify-uuid"],
         lambda i: bad + "the modification UUID is null"),
        ("diff-without-parent-uuid", ["--type", "diff", "--uuid-create",
                                      uuid(1)],
         lambda i: bad + "differencing image %s has no parent UUID"
         % uuid(1)),
        ("truncated-preheader", ["--corrupt", "truncated-preheader"],
         lambda i: notvdi + "the file is only 40 bytes long"),
        ("truncated-header", ["--corrupt", "truncated-header"],
         lambda i: "truncated VDI header: the file is 200 bytes long, the "
         "header needs %d" % (72 + 400)),
        ("truncated-v0-header", ["--header", "v0", "--corrupt",
                                 "truncated-header"],
         lambda i: "truncated VDI header: the file is 200 bytes long, the "
         "header needs %d" % (72 + 348)),
    ]
    for name, argv, phrase in cases:
        d = c.case("header-" + name)
        img = vdi(os.path.join(d, "bad.vdi"), "--seed", name, *argv)
        c.expect("header-" + name, IMAGE_TOOLS, "bad.vdi", phrase(img),
                 "file=@DIR@/bad.vdi")

    d = c.case("header-zero-length")
    write_bytes(os.path.join(d, "empty.vdi"), b"")
    c.expect("header-zero-length", IMAGE_TOOLS, "empty.vdi",
             notvdi + "the file is only 0 bytes long", "file=@DIR@/empty.vdi")

    # Settings files given where an image belongs.
    settings = "not a VDI image but a VirtualBox settings file, which " \
        "names the disks: give it as the registry"
    d = c.case("header-vbox-as-image")
    write_lines(os.path.join(d, "Hand.vbox"), vbox_lines([], []))
    c.expect("header-vbox-as-image", IMAGE_TOOLS, "Hand.vbox", settings,
             "file=@DIR@/Hand.vbox")
    d = c.case("header-global-as-image")
    write_text(os.path.join(d, "VirtualBox.xml"),
               '\ufeff  \n<VirtualBox xmlns="%s" version="1.19-linux">'
               '<Global/></VirtualBox>\n' % VBOX_NS)
    c.expect("header-global-as-image", IMAGE_TOOLS, "VirtualBox.xml",
             settings, "file=@DIR@/VirtualBox.xml")


# --- block maps -------------------------------------------------------------

def map_cases(c):
    corrupt = "corrupt block map: "
    not_alloc = corrupt + "entry %d points to slot %d but only %d blocks " \
        "are allocated"
    past_eof = corrupt + "entry %d points to slot %d at offset %d, past the " \
        "end of the file (%d bytes)"
    trunc = "truncated VDI image: the block map ends at %d but the file is " \
        "%d bytes long"

    def slot_start(img, slot):
        return img.off_data + slot * (img.extra + img.cb_block)

    def file_len(img):
        return img.file_size if img.truncate_to is None else img.truncate_to

    cases = [
        ("entry-past-allocated", ["--corrupt", "entry-past-allocated"],
         lambda i: not_alloc % (2, 2, 2)),
        ("entry-far-past-eof", ["--corrupt", "entry-past-eof"],
         lambda i: not_alloc % (1, 0x00100000 + 3, 3)),
        ("entry-past-eof-v0", ["--corrupt", "v0-entry-past-eof"],
         lambda i: not_alloc % (1, 0x00100000 + 3, 3)),
        ("entry-reserved", ["--blocks", "dFdF", "--set",
                            "cBlocksAllocated=2"],
         None),                 # made below: entry 1 is 0xFFFFFFFD
        ("duplicate-slot", ["--corrupt", "duplicate-entry"],
         lambda i: corrupt + "entries 0 and 2 both point to slot 0"),
        ("duplicate-slot-shuffled", ["--blocks", "dddd", "--shuffle"],
         None),                 # made below: entry 3 is entry 1's slot
        ("data-past-eof", ["--blocks", "ddd", "--size", "384K"],
         None),                 # made below: cut where slot 2 starts
        # Slot 16384 lies 4 GiB past the file: not inside it, as an
        # offset computed in 32 bits would be.
        ("slot-offset-overflow", ["--corrupt", "overflow-slot-offset"],
         lambda i: past_eof % (1, 16384, slot_start(i, 16384),
                               file_len(i))),
        # The file ends in the middle of the last slot.
        ("slot-cut", ["--blocks", "DDD", "--size", "384K", "--corrupt",
                      "truncated-data"],
         lambda i: corrupt + "entry 2 points to slot 2 at offset %d, which "
         "runs to %d, past the end of the file (%d bytes)"
         % (slot_start(i, 2), slot_start(i, 3), file_len(i))),
        ("map-truncated", ["--corrupt", "truncated-map"],
         lambda i: trunc % (i.off_blocks + 4 * i.n_blocks, file_len(i))),
        ("map-truncated-v0", ["--corrupt", "v0-truncated-map"],
         lambda i: trunc % (i.off_blocks + 4 * i.n_blocks, file_len(i))),
        ("map-huge", ["--corrupt", "huge-map"],
         lambda i: trunc % (i.off_blocks + 4 * (1 << 28), i.file_size)),
        ("allocated-more-than-blocks", ["--corrupt",
                                        "allocated-more-than-blocks"],
         lambda i: "bad VDI header: %d blocks allocated but the image has "
         "only %d" % (i.n_blocks + 1, i.n_blocks)),
    ]
    for name, argv, phrase in cases:
        d = c.case("map-" + name)
        path = os.path.join(d, "bad.vdi")
        img = vdi(path, "--seed", name, *argv)
        if name == "entry-reserved":
            # 0xFFFFFFFD: neither FREE nor ZERO, so a slot number.
            patch_entry(path, img, 1, 0xFFFFFFFD)
            text = not_alloc % (1, 0xFFFFFFFD, 2)
        elif name == "data-past-eof":
            os.truncate(path, slot_start(img, 2))
            text = past_eof % (2, 2, slot_start(img, 2), slot_start(img, 2))
        elif name == "duplicate-slot-shuffled":
            slot = img.map_entries[1]
            patch_entry(path, img, 3, slot)
            text = corrupt + "entries 1 and 3 both point to slot %d" % slot
        else:
            text = phrase(img)
        c.expect("map-" + name, IMAGE_TOOLS, "bad.vdi", text,
                 "file=@DIR@/bad.vdi")

    # Images that open but are not sound: vdi-img check reports them,
    # and the plugin will not write to a fixed image with holes.
    for name, entry in (("map-fixed-missing-block", make_vdi.ZERO),
                        ("map-fixed-free-block", make_vdi.FREE)):
        d = c.case(name)
        path = os.path.join(d, "fixed.vdi")
        img = vdi(path, "--type", "fixed", "--seed", "fixed")
        patch_entry(path, img, 2, entry)
        c.expect(name, "check2", "fixed.vdi",
                 "fixed image with 3 of 4 blocks allocated",
                 "file=@DIR@/fixed.vdi")
        c.expect(name, "nbdkit", "fixed.vdi",
                 "@DIR@/fixed.vdi: cannot write to a fixed image with only 3 "
                 "of 4 blocks allocated (a corrupt block map): open it "
                 "read-only", "file=@DIR@/fixed.vdi")
    d = c.case("map-slots-past-eof")
    path = os.path.join(d, "short.vdi")
    img = vdi(path, "--blocks", "ddFF", "--set", "cBlocksAllocated=3",
              "--seed", "short")
    c.expect("map-slots-past-eof", "check2", "short.vdi",
             "the file (%d bytes) is shorter than its 3 allocated blocks"
             % img.file_size, "file=@DIR@/short.vdi")


def patch_entry(path, img, index, value):
    with open(path, "r+b") as f:
        f.seek(img.off_blocks + 4 * index)
        f.write(value.to_bytes(4, "little"))


# --- chains -----------------------------------------------------------------

def chain_cases(c):
    # A missing parent: the error says where the plugin looked (also
    # in the folders of parent-dir=).
    lost = os.path.join(c.root, "lost.vdi.tmp")
    vdi(lost, "--uuid-create", uuid(1), "--seed", "lost")
    for name, dirs in (("chain-missing-parent", []),
                       ("chain-missing-parent-dirs", ["elsewhere"])):
        d = c.case(name)
        vdi(os.path.join(d, "Snapshots", "child.vdi"), "--parent", lost,
            "--blocks", "Fd", "--seed", "child")
        for x in dirs:
            os.makedirs(os.path.join(d, x))
        c.expect(name, "nbdkit,chain", "Snapshots/child.vdi",
                 "@DIR@/Snapshots/child.vdi: parent %s not found; looked in "
                 "@DIR@/Snapshots, @DIR@%s"
                 % (uuid(1), "".join(", @DIR@/" + x for x in dirs)),
                 "file=@DIR@/Snapshots/child.vdi",
                 *["parent-dir=@DIR@/" + x for x in dirs])
    os.remove(lost)

    # A top image in 128 MiB blocks, every one ZERO, over a parent in
    # 128 KiB ones: a lookup table far larger than the files, refused
    # before it is allocated.
    d = c.case("chain-table-too-large")
    vdi(os.path.join(d, "base.vdi"), "--size", "1M", "--block-size", "128K",
        "--uuid-create", uuid(5), "--seed", "b")
    vdi(os.path.join(d, "Snapshots", "top.vdi"), "--type", "diff",
        "--parent", os.path.join(d, "base.vdi"), "--size", "2T",
        "--block-size", "128M", "--blocks", "Z" * 16384, "--seed", "t")
    c.expect("chain-table-too-large", "nbdkit", "Snapshots/top.vdi",
             "@DIR@/Snapshots/top.vdi: the chain's lookup table would need "
             "128 MiB (a 2 TiB disk in units of 128 KiB: block sizes 128 MiB "
             "in @DIR@/Snapshots/top.vdi over 128 KiB in @DIR@/base.vdi), "
             "more than the 18.1 MiB its images' block maps allow",
             "file=@DIR@/Snapshots/top.vdi")

    # The registry puts the parent in a file with another UUID.
    d = c.case("chain-parent-uuid-mismatch")
    vdi(os.path.join(d, "p.vdi"), "--uuid-create", uuid(11), "--seed", "p")
    vdi(os.path.join(d, "q.vdi"), "--uuid-create", uuid(12), "--seed", "q")
    vdi(os.path.join(d, "c.vdi"), "--parent", os.path.join(d, "q.vdi"),
        "--uuid-create", uuid(13), "--seed", "c", "--blocks", "Fd")
    write_lines(os.path.join(d, "m.vbox"), vbox_lines(
        [harddisk(uuid(12), "p.vdi", close=False),
         "  " + harddisk(uuid(13), "c.vdi", extra=""),
         "</HardDisk>"], [uuid(13)]))
    c.expect("chain-parent-uuid-mismatch", "nbdkit", "c.vdi",
             "@DIR@/c.vdi: parent %s was expected in @DIR@/p.vdi, which has "
             "UUID %s" % (uuid(12), uuid(11)), "registry=@DIR@/m.vbox")

    # The registry nests the image under another parent than its own.
    d = c.case("chain-registry-other-parent")
    vdi(os.path.join(d, "p.vdi"), "--uuid-create", uuid(21), "--seed", "p")
    vdi(os.path.join(d, "q.vdi"), "--uuid-create", uuid(22), "--seed", "q")
    vdi(os.path.join(d, "c.vdi"), "--parent", os.path.join(d, "q.vdi"),
        "--uuid-create", uuid(23), "--seed", "c", "--blocks", "Fd")
    write_lines(os.path.join(d, "m.vbox"), vbox_lines(
        [harddisk(uuid(21), "p.vdi", close=False),
         "  " + harddisk(uuid(23), "c.vdi", extra=""),
         "</HardDisk>",
         harddisk(uuid(22), "q.vdi")], [uuid(23)]))
    c.expect("chain-registry-other-parent", "nbdkit", "c.vdi",
             "@DIR@/c.vdi: parent UUID %s does not match the parent %s of "
             "medium %s in the media registry @DIR@/m.vbox"
             % (uuid(22), uuid(21), uuid(23)), "registry=@DIR@/m.vbox")

    # Cycles: itself, two, three.
    d = c.case("chain-cycle-self")
    vdi(os.path.join(d, "self.vdi"), "--type", "diff", "--uuid-create",
        uuid(31), "--uuid-linkage", uuid(31), "--uuid-parent-modify",
        uuid(99))
    c.expect("chain-cycle-self", "nbdkit,chain", "self.vdi",
             "@DIR@/self.vdi: the chain has a cycle: @DIR@/self.vdi names "
             "%s (@DIR@/self.vdi) as its parent, which is already in the "
             "chain" % uuid(31), "file=@DIR@/self.vdi")
    for n, names in ((2, "ab"), (3, "abc")):
        name = "chain-cycle-%d" % n
        d = c.case(name)
        for k, x in enumerate(names):
            vdi(os.path.join(d, x + ".vdi"), "--type", "diff",
                "--uuid-create", uuid(40 + k),
                "--uuid-linkage", uuid(40 + (k + 1) % n),
                "--uuid-parent-modify", uuid(99), "--seed", x)
        c.expect(name, "nbdkit,chain", "a.vdi",
                 "@DIR@/a.vdi: the chain has a cycle: @DIR@/%s.vdi names %s "
                 "(@DIR@/a.vdi) as its parent, which is already in the chain"
                 % (names[-1], uuid(40)), "file=@DIR@/a.vdi")

    # 301 images: one more than VirtualBox opens.
    d = c.case("chain-too-deep")
    prev = None
    for k in range(301):
        path = os.path.join(d, "l%03d.vdi" % k)
        argv = ["--block-size", "128K", "--align", "512", "--seed", str(k),
                "--uuid-create", uuid(1000 + k)]
        if prev is None:
            argv += ["--size", "256K", "--blocks", "dZ"]
        else:
            argv += ["--parent", prev, "--blocks", "Fd" if k % 2 else "dF"]
        vdi(path, *argv)
        prev = path
    c.expect("chain-too-deep", "nbdkit,chain", "l300.vdi",
             "@DIR@/l300.vdi: the chain is more than 300 images deep",
             "file=@DIR@/l300.vdi")

    # A fixed image in the middle of a chain.
    d = c.case("chain-fixed-middle")
    vdi(os.path.join(d, "base.vdi"), "--uuid-create", uuid(51), "--seed", "b")
    vdi(os.path.join(d, "mid.vdi"), "--parent", os.path.join(d, "base.vdi"),
        "--type", "fixed", "--uuid-create", uuid(52), "--seed", "m")
    vdi(os.path.join(d, "top.vdi"), "--parent", os.path.join(d, "mid.vdi"),
        "--uuid-create", uuid(53), "--seed", "t", "--blocks", "Fd")
    c.expect("chain-fixed-middle", "nbdkit,chain", "mid.vdi",
             "@DIR@/mid.vdi: a fixed image can only be the base of a chain, "
             "but this one has the parent %s (@DIR@/base.vdi)" % uuid(51),
             "file=@DIR@/top.vdi")

    # A parent found by its UUID whose block map is cut short.
    d = c.case("chain-broken-parent")
    base = os.path.join(d, "base.vdi")
    vdi(base, "--uuid-create", uuid(61), "--uuid-modify", uuid(62))
    vdi(os.path.join(d, "Snapshots", "child.vdi"), "--parent", base,
        "--blocks", "Fd", "--seed", "child")
    img = vdi(base, "--corrupt", "truncated-map", "--uuid-create", uuid(61),
              "--uuid-modify", uuid(62))
    c.expect("chain-broken-parent", "nbdkit,chain", "base.vdi",
             "@DIR@/base.vdi: truncated VDI image: the block map ends at %d "
             "but the file is %d bytes long"
             % (img.off_blocks + 4 * img.n_blocks, img.truncate_to),
             "file=@DIR@/Snapshots/child.vdi")

    # Two files with the parent's UUID.
    d = c.case("chain-ambiguous-parent")
    for x in "xy":
        vdi(os.path.join(d, x + ".vdi"), "--uuid-create", uuid(71),
            "--seed", x)
    vdi(os.path.join(d, "Snapshots", "child.vdi"), "--parent",
        os.path.join(d, "x.vdi"), "--blocks", "Fd", "--seed", "child")
    c.expect("chain-ambiguous-parent", "nbdkit", "Snapshots/child.vdi",
             "@DIR@/Snapshots/child.vdi: parent %s is ambiguous: " % uuid(71),
             "file=@DIR@/Snapshots/child.vdi")

    # Parents the registry puts in files that are not VDI images.
    def registry_parent(name, make_parent, phrase):
        d = c.case(name)
        make_parent(os.path.join(d, "parent.vdi"))
        tmp = os.path.join(c.root, name + ".parent.tmp")
        vdi(tmp, "--uuid-create", uuid(81), "--seed", "p")
        vdi(os.path.join(d, "c.vdi"), "--parent", tmp, "--uuid-create",
            uuid(82), "--blocks", "Fd", "--seed", "c")
        os.remove(tmp)
        write_lines(os.path.join(d, "m.vbox"), vbox_lines(
            [harddisk(uuid(81), "parent.vdi", close=False),
             "  " + harddisk(uuid(82), "c.vdi", extra=""),
             "</HardDisk>"], [uuid(82)]))
        c.expect(name, "nbdkit", "parent.vdi", "@DIR@/parent.vdi: " + phrase,
                 "registry=@DIR@/m.vbox")

    registry_parent(
        "chain-parent-not-vdi",
        lambda p: write_bytes(p, b"QFI\xfb" + bytes(4092)),
        "not a VDI image: no VDI signature at offset 64")
    registry_parent(
        "chain-parent-directory", os.makedirs,
        "not a regular file (a folder): only files are VDI images")
    registry_parent(
        "chain-parent-fifo", os.mkfifo,
        "not a regular file (a FIFO): only files are VDI images")

    # parent-dir= names no folder.
    d = c.case("chain-parent-dir-missing")
    vdi(os.path.join(d, "base.vdi"), "--uuid-create", uuid(91), "--seed", "b")
    vdi(os.path.join(d, "top.vdi"), "--parent", os.path.join(d, "base.vdi"),
        "--blocks", "Fd", "--seed", "t")
    c.expect("chain-parent-dir-missing", "nbdkit", "nowhere",
             "parent-dir=@DIR@/nowhere: No such file or directory",
             "file=@DIR@/top.vdi", "parent-dir=@DIR@/nowhere")


# --- settings files ---------------------------------------------------------

def settings_cases(c):
    def good_machine(d, attached=True, snapshots=()):
        """base.vdi and its child Snapshots/top.vdi, attached."""
        vdi(os.path.join(d, "base.vdi"), "--uuid-create", uuid(1),
            "--seed", "base")
        vdi(os.path.join(d, "Snapshots", "top.vdi"), "--parent",
            os.path.join(d, "base.vdi"), "--uuid-create", uuid(2),
            "--blocks", "Fd", "--seed", "top")
        return vbox_lines(
            [harddisk(uuid(1), "base.vdi", close=False),
             "  " + harddisk(uuid(2), "Snapshots/top.vdi", extra=""),
             "</HardDisk>"], [uuid(2)] if attached else [],
            snapshots=snapshots)

    def vbox_case(name, text, phrase, *args, tools="nbdkit,snaplist"):
        d = c.case(name)
        if isinstance(text, bytes):
            write_bytes(os.path.join(d, "m.vbox"), text)
        else:
            write_text(os.path.join(d, "m.vbox"), text)
        c.expect(name, tools, "m.vbox", "@DIR@/m.vbox: " + phrase,
                 "registry=@DIR@/m.vbox", *args)

    good = "\n".join(vbox_lines([harddisk(uuid(1), "base.vdi")],
                                [uuid(1)])) + "\n"
    hdr = '<?xml version="1.0"?>\n'
    vbox_open = '<VirtualBox xmlns="%s" version="1.19-linux">' % VBOX_NS
    machine = vbox_open + '<Machine uuid="{%s}" name="&e;"/></VirtualBox>\n' \
        % MACHINE_UUID
    dtd = "DTDs and entities are not allowed in VirtualBox settings files"

    vbox_case("settings-not-xml", b"not xml at all \x00\x01\x02\n",
              "not a well-formed XML file: line 1: ")
    vbox_case("settings-empty", b"",
              "the file is empty, not a VirtualBox settings file")
    vbox_case("settings-truncated", good[:-20].encode(),
              "not a well-formed XML file: line ")
    laughs = ['<!ENTITY l0 "lol">'] + [
        '<!ENTITY l%d "%s">' % (i, ("&l%d;" % (i - 1)) * 10)
        for i in range(1, 10)] + ['<!ENTITY e "&l9;">']
    vbox_case("settings-billion-laughs",
              hdr + "<!DOCTYPE VirtualBox [\n" + "\n".join(laughs) + "\n]>\n"
              + machine, dtd)
    vbox_case("settings-external-entity",
              hdr + '<!DOCTYPE VirtualBox [ <!ENTITY e SYSTEM '
              '"file:///etc/passwd"> ]>\n' + machine, dtd)
    vbox_case("settings-external-dtd",
              hdr + '<!DOCTYPE VirtualBox SYSTEM '
              '"http://127.0.0.1:9/evil.dtd">\n' + machine, dtd)
    vbox_case("settings-nesting-too-deep",
              hdr + vbox_open + "<x>" * 100000 + "</x>" * 100000
              + "</VirtualBox>\n",
              "line 2: elements are nested more than 1024 deep")
    vbox_case("settings-root-not-virtualbox",
              hdr + '<html xmlns="http://www.w3.org/1999/xhtml"/>\n',
              "not a VirtualBox settings file: the root element is <html>, "
              "not <VirtualBox>")
    vbox_case("settings-no-machine",
              hdr + vbox_open + "</VirtualBox>\n",
              "<VirtualBox> holds neither <Machine> (a .vbox file) nor "
              "<Global> (VirtualBox.xml)")

    # HardDisk elements nested deeper than VirtualBox's 300.
    lines = ['<?xml version="1.0"?>', vbox_open,
             '<Machine uuid="{%s}" name="x"><MediaRegistry><HardDisks>'
             % MACHINE_UUID]
    lines += [harddisk(uuid(5000 + k), "%d.vdi" % k, extra="", close=False)
              for k in range(301)]
    lines += ["</HardDisk>" * 301 + "</HardDisks></MediaRegistry></Machine>"
              "</VirtualBox>"]
    vbox_case("settings-harddisks-too-deep", "\n".join(lines) + "\n",
              "line %d: HardDisk elements are nested more than 300 deep "
              "(VirtualBox's limit)" % (3 + 301))

    # Snapshots nested deeper than VirtualBox's 250.
    lines = ['<?xml version="1.0"?>', vbox_open,
             '<Machine uuid="{%s}" name="x">' % MACHINE_UUID]
    lines += ['<Snapshot uuid="{%s}" name="s%d"><Snapshots>'
              % (uuid(6000 + k), k) for k in range(251)]
    lines += ["</Snapshots></Snapshot>" * 251 + "</Machine></VirtualBox>"]
    vbox_case("settings-snapshots-too-deep", "\n".join(lines) + "\n",
              "line %d: snapshots are nested more than 250 deep "
              "(VirtualBox's limit)" % (3 + 251))

    # Attributes missing or wrong.
    lines = vbox_lines(['<HardDisk uuid="{%s}" format="VDI" type="Normal"/>'
                        % uuid(1)], [uuid(1)])
    vbox_case("settings-harddisk-no-location", "\n".join(lines) + "\n",
              "line %d: <HardDisk> {%s} has no location attribute"
              % (line_of(lines, "<HardDisk "), uuid(1)))
    lines = vbox_lines(['<HardDisk location="base.vdi" format="VDI"/>'],
                       [uuid(1)])
    vbox_case("settings-harddisk-no-uuid", "\n".join(lines) + "\n",
              "line %d: <HardDisk> has no uuid attribute"
              % line_of(lines, "<HardDisk "))
    lines = vbox_lines([harddisk(uuid(1), "base.vdi"),
                        harddisk(uuid(1), "other.vdi")], [uuid(1)])
    vbox_case("settings-duplicate-uuid", "\n".join(lines) + "\n",
              "line %d: duplicate UUID {%s}"
              % (line_of(lines, "other.vdi"), uuid(1)))
    lines = vbox_lines(['<HardDisk uuid="{%s}x" location="base.vdi" '
                        'format="VDI"/>' % uuid(1)], [uuid(1)])
    vbox_case("settings-malformed-uuid", "\n".join(lines) + "\n",
              'line %d: malformed UUID "{%s}x" in <HardDisk uuid>'
              % (line_of(lines, "<HardDisk "), uuid(1)))
    lines = vbox_lines([harddisk(uuid(1), "base.vdi",
                                 extra=' type="Sometimes"')], [uuid(1)])
    vbox_case("settings-harddisk-bad-type", "\n".join(lines) + "\n",
              'line %d: <HardDisk> {%s} has type "Sometimes", which is not '
              "one of Normal, Immutable, Writethrough, Shareable, Readonly "
              "or MultiAttach" % (line_of(lines, "<HardDisk "), uuid(1)))
    lines = vbox_lines([harddisk(uuid(1), "")], [uuid(1)])
    vbox_case("settings-empty-location", "\n".join(lines) + "\n",
              "line %d: <HardDisk> has an empty location"
              % line_of(lines, "<HardDisk "))
    lines = vbox_lines([harddisk(uuid(1), "base.vdi")], [uuid(1)],
                       snapshots=['<Snapshot uuid="{%s}" name="a">' % uuid(7),
                                  '  <Snapshots>',
                                  '    <Snapshot uuid="{%s}" name="b"/>'
                                  % uuid(7),
                                  '  </Snapshots>', '</Snapshot>'],
                       current=uuid(7))
    vbox_case("settings-duplicate-snapshot", "\n".join(lines) + "\n",
              "duplicate snapshot UUID {%s}" % uuid(7))
    lines = vbox_lines([harddisk(uuid(1), "base.vdi")], [uuid(1)],
                       current=uuid(8))
    vbox_case("settings-current-snapshot-unknown", "\n".join(lines) + "\n",
              'the current snapshot {%s} of machine "Hand" is not one of its '
              "snapshots" % uuid(8))

    # Files and media the settings name.
    d = c.case("settings-location-missing")
    write_lines(os.path.join(d, "m.vbox"), vbox_lines(
        [harddisk(uuid(1), "gone.vdi")], [uuid(1)]))
    c.expect("settings-location-missing", "nbdkit", "m.vbox",
             "@DIR@/m.vbox: medium %s is at @DIR@/gone.vdi, which cannot be "
             "opened: No such file or directory" % uuid(1),
             "registry=@DIR@/m.vbox")
    d = c.case("settings-location-fifo")
    os.mkfifo(os.path.join(d, "fifo.vdi"))
    write_lines(os.path.join(d, "m.vbox"), vbox_lines(
        [harddisk(uuid(1), "fifo.vdi")], [uuid(1)]))
    c.expect("settings-location-fifo", "nbdkit", "fifo.vdi",
             "@DIR@/fifo.vdi: not a regular file (a FIFO): only files are "
             "VDI images", "registry=@DIR@/m.vbox")
    d = c.case("settings-format-vhd")
    vdi(os.path.join(d, "base.vdi"), "--uuid-create", uuid(1))
    write_lines(os.path.join(d, "m.vbox"), vbox_lines(
        [harddisk(uuid(1), "base.vdi", fmt="VHD")], [uuid(1)]))
    c.expect("settings-format-vhd", "nbdkit", "m.vbox",
             "@DIR@/m.vbox: medium %s (@DIR@/base.vdi) has format VHD, which "
             "is not supported (only VDI)" % uuid(1), "registry=@DIR@/m.vbox")

    # Choices that name nothing.
    d = c.case("settings-snapshot-not-found")
    write_lines(os.path.join(d, "m.vbox"), good_machine(d, snapshots=[
        '<Snapshot uuid="{%s}" name="Before">' % uuid(9),
        "  <StorageControllers/>", "</Snapshot>"]))
    c.expect("settings-snapshot-not-found", "nbdkit", "m.vbox",
             '@DIR@/m.vbox: machine "Hand" has no snapshot named or with UUID '
             '"Nothing"; its 1 snapshot: "Before" {%s}' % uuid(9),
             "registry=@DIR@/m.vbox", "snapshot=Nothing")
    d = c.case("settings-no-snapshots")
    write_lines(os.path.join(d, "m.vbox"), good_machine(d))
    c.expect("settings-no-snapshots", "nbdkit", "m.vbox",
             '@DIR@/m.vbox: machine "Hand" has no snapshots, so none is named '
             'or has the UUID "Before"',
             "registry=@DIR@/m.vbox", "snapshot=Before")
    d = c.case("settings-uuid-not-in-registry")
    write_lines(os.path.join(d, "m.vbox"), good_machine(d))
    c.expect("settings-uuid-not-in-registry", "nbdkit", "m.vbox",
             "medium %s is not in @DIR@/m.vbox" % uuid(404),
             "registry=@DIR@/m.vbox", "uuid=%s" % uuid(404))
    d = c.case("settings-machine-without-disks")
    write_lines(os.path.join(d, "m.vbox"), good_machine(d, attached=False))
    c.expect("settings-machine-without-disks", "nbdkit", "m.vbox",
             '@DIR@/m.vbox: machine "Hand" has 0 hard disks attached in its '
             "current state, so disk=0 does not exist",
             "registry=@DIR@/m.vbox")
    d = c.case("settings-disk-index")
    write_lines(os.path.join(d, "m.vbox"), good_machine(d))
    c.expect("settings-disk-index", "nbdkit", "m.vbox",
             '@DIR@/m.vbox: machine "Hand" has 1 hard disk attached in its '
             "current state, so disk=3 does not exist",
             "registry=@DIR@/m.vbox", "disk=3")
    d = c.case("settings-attached-not-registered")
    vdi(os.path.join(d, "base.vdi"), "--uuid-create", uuid(1))
    write_lines(os.path.join(d, "m.vbox"), vbox_lines(
        [harddisk(uuid(1), "base.vdi")], [uuid(3)]))
    c.expect("settings-attached-not-registered", "nbdkit", "m.vbox",
             '@DIR@/m.vbox: medium %s attached to machine "Hand" is not in '
             "@DIR@/m.vbox" % uuid(3), "registry=@DIR@/m.vbox")

    # A disk given as the settings file, small or larger than any
    # settings file (its slots are holes).
    for name, argv in (("settings-vdi-as-registry", []),
                       ("settings-large-vdi-as-registry",
                        ["--size", "96M", "--block-size", "1M",
                         "--blocks", "d" * 90])):
        d = c.case(name)
        img = vdi(os.path.join(d, "disk.vdi"), *argv)
        assert (img.file_size > 64 * MiB) == ("large" in name)
        c.expect(name, "nbdkit,snaplist", "disk.vdi",
                 "@DIR@/disk.vdi: not a VirtualBox settings file but a VDI "
                 "disk image", "registry=@DIR@/disk.vdi")

    # Too large to be a settings file (sparse: takes no space).
    d = c.case("settings-too-large")
    with open(os.path.join(d, "m.vbox"), "wb") as f:
        f.truncate(65 * MiB)
    c.expect("settings-too-large", "nbdkit,snaplist", "m.vbox",
             "@DIR@/m.vbox: the file is too large for a VirtualBox settings "
             "file (%d bytes, the limit is 64 MiB)" % (65 * MiB),
             "registry=@DIR@/m.vbox")


# --- file types -------------------------------------------------------------

def file_type_cases(c):
    not_reg = "not a regular file (%s): only files are VDI images"
    # The plugin resolves file= (nbdkit_realpath) before it opens
    # it: a name that leads nowhere is refused under its key.
    realpath = "%s=@DIR@/%s: No such file or directory"

    def image_case(name, make, phrase, named="disk.vdi", tools=IMAGE_TOOLS):
        """file=NAMED, made by make(folder); phrase follows the name."""
        d = c.case(name)
        if make:
            make(d)
        path = named if named.startswith("/") else "@DIR@/" + named
        c.expect(name, tools, named, path + ": " + phrase, "file=" + path)

    image_case("filetype-directory",
               lambda d: os.makedirs(os.path.join(d, "disk.vdi")),
               not_reg % "a folder")
    image_case("filetype-fifo",
               lambda d: os.mkfifo(os.path.join(d, "disk.vdi")),
               not_reg % "a FIFO")
    image_case("filetype-dev-null", None, not_reg % "a character device",
               named="/dev/null")
    # A socket fails the open itself (ENXIO): it is named all the same.
    image_case("filetype-socket",
               lambda d: socket.socket(socket.AF_UNIX).bind(
                   os.path.join(d, "disk.vdi")),
               not_reg % "a socket")

    # nbdkit names the folder the link leads to, vdi-img the link.
    d = c.case("filetype-symlink-to-directory")
    os.makedirs(os.path.join(d, "folder"))
    os.symlink("folder", os.path.join(d, "disk.vdi"))
    c.expect("filetype-symlink-to-directory", "nbdkit", "folder",
             "@DIR@/folder: " + not_reg % "a folder", "file=@DIR@/disk.vdi")
    c.expect("filetype-symlink-to-directory", "check,info", "disk.vdi",
             "@DIR@/disk.vdi: " + not_reg % "a folder", "file=@DIR@/disk.vdi")

    def missing(name, make):
        d = c.case(name)
        if make:
            make(d)
        c.expect(name, "nbdkit", "disk.vdi", realpath % ("file", "disk.vdi"),
                 "file=@DIR@/disk.vdi")
        c.expect(name, "check,info", "disk.vdi",
                 "@DIR@/disk.vdi: open: No such file or directory",
                 "file=@DIR@/disk.vdi")
    missing("filetype-dangling-symlink",
            lambda d: os.symlink("gone.vdi", os.path.join(d, "disk.vdi")))
    missing("filetype-missing", None)

    def unreadable(d):
        vdi(os.path.join(d, "disk.vdi"), "--seed", "unreadable")
        os.chmod(os.path.join(d, "disk.vdi"), 0)
    if os.geteuid() == 0:
        c.skip("filetype-unreadable",
               "running as root, which reads a file of mode 000")
    else:
        image_case("filetype-unreadable", unreadable,
                   "open: Permission denied")

    # The same as the registry.
    def registry_case(name, make, phrase, tools="nbdkit,snaplist"):
        d = c.case(name)
        make(os.path.join(d, "m.vbox"))
        c.expect(name, tools, "m.vbox", phrase, "registry=@DIR@/m.vbox")
    not_settings = "not a regular file (%s): only files are settings files"
    registry_case("filetype-registry-directory", os.makedirs,
                  "@DIR@/m.vbox: " + not_settings % "a folder")
    registry_case("filetype-registry-fifo", os.mkfifo,
                  "@DIR@/m.vbox: " + not_settings % "a FIFO")
    registry_case("filetype-registry-dangling-symlink",
                  lambda p: os.symlink("gone.vbox", p),
                  realpath % ("registry", "m.vbox"), tools="nbdkit")
    c.expect("filetype-registry-dangling-symlink", "snaplist", "m.vbox",
             "@DIR@/m.vbox: No such file or directory",
             "registry=@DIR@/m.vbox")

    # The differencing layer of the vdidiff filter.
    def layer_case(name, make, phrase):
        """make(folder, layer) may return the layout phrase needs."""
        d = c.case(name)
        vdi(os.path.join(d, "base.vdi"), "--uuid-create", uuid(1),
            "--seed", "base")
        made = make(d, os.path.join(d, "layer.vdi"))
        if callable(phrase):
            phrase = phrase(made)
        c.expect(name, "vdidiff", "layer.vdi", "@DIR@/layer.vdi: " + phrase,
                 "file=@DIR@/base.vdi", "vdidiff=@DIR@/layer.vdi")
    layer_case("filetype-layer-fifo", lambda d, p: os.mkfifo(p),
               not_reg % "a FIFO")
    # (The layer is opened for writing: open itself refuses a folder,
    # and it is named all the same.)
    layer_case("filetype-layer-directory", lambda d, p: os.makedirs(p),
               not_reg % "a folder")
    layer_case("filetype-layer-bad-signature",
               lambda d, p: vdi(p, "--corrupt", "bad-signature"),
               "not a VDI image: no VDI signature at offset 64")
    layer_case("filetype-layer-truncated-map",
               lambda d, p: vdi(p, "--corrupt", "truncated-map", "--type",
                                "diff", "--uuid-linkage", uuid(1)),
               lambda i: "truncated VDI image: the block map ends at %d but "
               "the file is %d bytes long"
               % (i.off_blocks + 4 * i.n_blocks, i.truncate_to))
    # Refused before nbdkit forks.  (A layer of another parent or
    # size needs the plugin below: it is refused to clients after the
    # fork, see test-vdidiff-start-errors.sh.)
    layer_case("filetype-layer-not-differencing",
               lambda d, p: vdi(p, "--seed", "layer"),
               "is a dynamic image, not a differencing image")
    layer_case("filetype-layer-fixed",
               lambda d, p: vdi(p, "--type", "fixed", "--seed", "layer"),
               "is a fixed image, not a differencing image")
    layer_case("filetype-layer-settings-file",
               lambda d, p: write_lines(p, vbox_lines([], [])),
               "not a VDI image but a VirtualBox settings file, which names "
               "the disks: give it as the registry")


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: bad-inputs.py OUTDIR")
    root = os.path.abspath(argv[0])
    os.makedirs(root, exist_ok=True)
    c = Corpus(root)
    header_cases(c)
    map_cases(c)
    chain_cases(c)
    settings_cases(c)
    file_type_cases(c)
    c.write()


if __name__ == "__main__":
    main(sys.argv[1:])
