#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Chains that must not be served, each refused with exactly one error
# line naming the files and UUIDs concerned, nbdkit exiting non-zero
# (not by a signal) and no file changed: a missing parent (the error
# says where the plugin looked), cycles, a fixed image in the middle
# of a chain, a chain deeper than 300 images, two parents with the
# same UUID, a registry whose UUIDs disagree with the files, a broken
# parent, a differencing image without a parent UUID, a chain whose
# lookup table would outgrow its files (a top image with 128 MiB blocks
# over a parent with 128 KiB ones).  And the cases
# next to them that must work: a chain exactly 300 deep, the registry
# settling which of two files is the parent, a stale parent
# modification UUID (a warning only), links and junk in the folders.

source ./functions.sh
set -e
set -x

requires mkfifo --version

source "$abs_srcdir/test-chain-functions.sh"

# Fixed UUIDs, so that the messages can be written out: uuid 11 is
# c0c0c0c0-0000-4000-8000-000000000011.
uuid () { printf 'c0c0c0c0-0000-4000-8000-%012d\n' "$1"; }

# mk NAME ARGS...: an image and its model ($NAME.raw, $NAME.ext).
mk ()
{
    local f="$1"
    shift
    mkdir -p "$(dirname "$f")"
    $MAKE_VDI --seed "$(basename "$f")" "$@" \
              --expect "$f.raw" --print-extents "$f.ext" "$f"
}
# mkchild NAME PARENT ARGS...: a differencing child of PARENT.
mkchild ()
{
    local f="$1" p="$2"
    shift 2
    mk "$f" --parent "$p" --parent-expect "$p.raw" --parent-extents "$p.ext" \
       "$@"
}

#----------------------------------------------------------------------
# A missing parent: the error names the child, the parent's UUID and
# every folder searched (the child's, the one above, parent-dir=).
d="$tmp/missing"
mk "$tmp/unlisted/lost.vdi" --size 4M --blocks DZDD
mkchild "$d/Snapshots/orphan.vdi" "$tmp/unlisted/lost.vdi" --blocks FDFZ
lost="$(vdi_uuid "$tmp/unlisted/lost.vdi")"
expect_fail missing \
    "nbdkit: error: $d/Snapshots/orphan.vdi: parent $lost not found; looked in $d/Snapshots, $d (use parent-dir= or registry=)" \
    -- "$d/Snapshots/orphan.vdi"
mkdir "$tmp/elsewhere"
expect_fail missing-dirs \
    "nbdkit: error: $d/Snapshots/orphan.vdi: parent $lost not found; looked in $d/Snapshots, $d, $tmp/elsewhere (use parent-dir= or registry=)" \
    -- "$d/Snapshots/orphan.vdi" parent-dir="$tmp/elsewhere"
# A parent-dir= that does not exist is an error of its own.
expect_fail missing-dir-param "$tmp/nowhere" -- \
    "$d/Snapshots/orphan.vdi" parent-dir="$tmp/nowhere"
# Found with the right parent-dir=, the chain reads as the model says.
check_served found "$d/Snapshots/orphan.vdi.raw" "$d/Snapshots/orphan.vdi.ext" \
    "$d/Snapshots/orphan.vdi" parent-dir="$tmp/elsewhere" \
    parent-dir="$tmp/unlisted"

#----------------------------------------------------------------------
# Cycles: an image that is its own parent, two and three images that
# are each other's parents.
d="$tmp/cycle"
mk "$d/self.vdi" --type diff --uuid-create "$(uuid 1)" \
   --uuid-linkage "$(uuid 1)" --uuid-parent-modify "$(uuid 2)"
expect_fail cycle-self \
    "nbdkit: error: $d/self.vdi: the chain has a cycle: $d/self.vdi names c0c0c0c0-0000-4000-8000-000000000001 ($d/self.vdi) as its parent, which is already in the chain" \
    -- "$d/self.vdi"
rm "$d/self.vdi"*
mk "$d/Snapshots/a.vdi" --type diff --uuid-create "$(uuid 11)" \
   --uuid-linkage "$(uuid 12)" --uuid-parent-modify "$(uuid 99)"
mk "$d/b.vdi" --type diff --uuid-create "$(uuid 12)" \
   --uuid-linkage "$(uuid 11)" --uuid-parent-modify "$(uuid 99)"
expect_fail cycle-two \
    "nbdkit: error: $d/Snapshots/a.vdi: the chain has a cycle: $d/b.vdi names c0c0c0c0-0000-4000-8000-000000000011 ($d/Snapshots/a.vdi) as its parent, which is already in the chain" \
    -- "$d/Snapshots/a.vdi"
mk "$d/b.vdi" --type diff --uuid-create "$(uuid 12)" \
   --uuid-linkage "$(uuid 13)" --uuid-parent-modify "$(uuid 99)"
mk "$d/c.vdi" --type diff --uuid-create "$(uuid 13)" \
   --uuid-linkage "$(uuid 11)" --uuid-parent-modify "$(uuid 99)"
expect_fail cycle-three \
    "nbdkit: error: $d/Snapshots/a.vdi: the chain has a cycle: $d/c.vdi names c0c0c0c0-0000-4000-8000-000000000011 ($d/Snapshots/a.vdi) as its parent, which is already in the chain" \
    -- "$d/Snapshots/a.vdi"

#----------------------------------------------------------------------
# A top image of 2 TiB in 128 MiB blocks, every one ZERO (a 64 KiB
# map), over a parent in 128 KiB blocks: the lookup table, an entry
# per 128 KiB everywhere, would need 128 MiB for 2 MiB of files.
# Refused at once, saying why.
d="$tmp/table"
mk "$d/base.vdi" --size 1M --block-size 128K
mkdir "$d/Snapshots"
$MAKE_VDI --seed table-top --type diff --parent "$d/base.vdi" \
          --size 2T --block-size 128M --blocks "$(printf 'Z%.0s' $(seq 16384))" \
          "$d/Snapshots/top.vdi"
expect_fail table-too-large \
    "nbdkit: error: $d/Snapshots/top.vdi: the chain's lookup table would need 128 MiB (a 2 TiB disk in units of 128 KiB: block sizes 128 MiB in $d/Snapshots/top.vdi over 128 KiB in $d/base.vdi), more than the 18.1 MiB its images' block maps allow" \
    -- "$d/Snapshots/top.vdi"

# The same top holding no block is big but sparse: its table is a
# directory and a few pages, so it opens, and reads its parent.
$MAKE_VDI --seed table-sparse --type diff --parent "$d/base.vdi" \
          --size 2T --block-size 128M --blocks F "$d/Snapshots/sparse.vdi"
nbdkit -U - "$VDI_PLUGIN" "$d/Snapshots/sparse.vdi" \
       --run 'nbdinfo --size "$uri"
              nbdsh -u "$uri" -c "sys.stdout.buffer.write (h.pread (1 << 20, 0))"' \
       > "$tmp/sparse.out"
cmp "$tmp/sparse.out" <(echo 2199023255552; cat "$d/base.vdi.raw")

#----------------------------------------------------------------------
# A differencing image whose parent UUID is null has no parent to
# read its FREE blocks from.
mk "$tmp/noparent/diff.vdi" --type diff --blocks FDZF
expect_fail diff-without-parent \
    "nbdkit: error: $tmp/noparent/diff.vdi: bad VDI header: differencing image $(vdi_uuid "$tmp/noparent/diff.vdi") has no parent UUID" \
    -- "$tmp/noparent/diff.vdi"

#----------------------------------------------------------------------
# A parent that is found but broken (its block map is cut short): the
# error names it.
d="$tmp/broken"
mk "$d/good.vdi" --size 4M --uuid-create "$(uuid 21)" --uuid-modify "$(uuid 22)"
mkchild "$d/Snapshots/child.vdi" "$d/good.vdi" --blocks FDFF
$MAKE_VDI --corrupt truncated-map --uuid-create "$(uuid 21)" \
          --uuid-modify "$(uuid 22)" "$d/good.vdi"
expect_fail broken-parent \
    "nbdkit: error: $d/good.vdi: truncated VDI image: the block map ends at 1052672 but the file is 1050624 bytes long" \
    -- "$d/Snapshots/child.vdi"

#----------------------------------------------------------------------
# A fixed image in the middle of a chain (VirtualBox opens fixed
# images only as the base): in a folder, and through a registry.
make_machine "$tmp/Fixed" "$tmp/fixedmodel" <<'EOF'
{"name": "Fixed", "seed": "fixed", "snapshots": 0,
 "disks": [{"layers": [{"size": "4M", "blocks": "DZDF"},
                       {"args": ["--type", "fixed"]},
                       {"blocks": "FDFZ"}]}]}
EOF
fm="$tmp/fixedmodel"
msg="nbdkit: error: $(media_path "$fm" 0 1): a fixed image can only be the base of a chain, but this one has the parent $(media_uuid "$fm" 0 0) ($(media_path "$fm" 0 0))"
expect_fail fixed-middle "$msg" -- "$(media_path "$fm" 0 2)"
expect_fail fixed-middle-registry "$msg" -- registry="$tmp/Fixed/Fixed.vbox"
# Its parent gone, the fixed image is a base with a leftover parent
# UUID, which VirtualBox ignores: served, and read as the model says
# (a fixed image has every block, so the layer alone is the model).
mv "$(media_path "$fm" 0 0)" "$tmp/fixed-base-away.vdi"
check_served fixed-as-base "$fm/d0.l2.raw" "$fm/d0.l2.extents" \
    "$(media_path "$fm" 0 2)"
mv "$tmp/fixed-base-away.vdi" "$(media_path "$fm" 0 0)"

#----------------------------------------------------------------------
# Depth: 300 images (VirtualBox's limit) work, 301 do not.  One small
# disk, 301 layers; the registry lists the first 300 only (301 nested
# HardDisks are refused on their own, see test-registry-errors.sh).
{
    echo '{"name": "Tall", "seed": "tall", "snapshots": 0, "disks": [{"layers": ['
    echo '  {"size": "256K", "block_size": "128K", "blocks": "DZ"},'
    for i in $(seq 299); do
        echo '  {"block_size": "128K", "weights": "1,0,1,12"},'
    done
    echo '  {"block_size": "128K", "weights": "1,0,1,12", "in_registry": false}'
    echo ']}]}'
} > "$tmp/tall.json"
make_machine "$tmp/Tall" "$tmp/tallmodel" < "$tmp/tall.json"
tm="$tmp/tallmodel"
test "$(ls "$tmp/Tall/Snapshots" | wc -l)" -eq 300
t_block=131072 check_served depth300 "$tm/d0.l299.raw" "$tm/d0.l299.extents" \
    "$(media_path "$tm" 0 299)"
nbdkit -U - "$VDI_PLUGIN" "$(media_path "$tm" 0 299)" \
       --run 'nbdinfo "$uri"' | grep 'chain depth 300$'
msg="nbdkit: error: $(media_path "$tm" 0 300): the chain is more than 300 images deep"
expect_fail depth301 "$msg" -- "$(media_path "$tm" 0 300)"
t_block=131072 check_served depth300-registry "$tm/d0.l299.raw" \
    "$tm/d0.l299.extents" registry="$tmp/Tall/Tall.vbox" \
    uuid="$(media_uuid "$tm" 0 299)"
expect_fail depth301-registry "$msg" -- \
    registry="$tmp/Tall/Tall.vbox" file="$(media_path "$tm" 0 300)"
rm -rf "$tmp/Tall" "$tm"

#----------------------------------------------------------------------
# Two files with the parent's UUID (a copy that was changed since):
# ambiguous when scanning folders; a registry says which one it is.
d="$tmp/twins"
mk "$d/base.vdi" --size 4M --blocks DDZD --uuid-create "$(uuid 31)" \
   --uuid-modify "$(uuid 32)"
mk "$d/impostor.vdi" --size 4M --blocks DZDD --uuid-create "$(uuid 31)" \
   --uuid-modify "$(uuid 32)" --seed other
mkchild "$d/Snapshots/child.vdi" "$d/base.vdi" --blocks FFFFZ --size 5M
# The same child over the impostor: the same file, another model.
mkchild "$tmp/child-over-impostor.vdi" "$d/impostor.vdi" --blocks FFFFZ \
        --size 5M --seed child.vdi
cmp "$d/Snapshots/child.vdi" "$tmp/child-over-impostor.vdi"
must_fail cmp -s "$d/Snapshots/child.vdi.raw" "$tmp/child-over-impostor.vdi.raw"
# (The two files are named in the order the folder lists them.)  No
# registry is there to choose, so it does not suggest one.
ambiguous="nbdkit: error: $d/Snapshots/child.vdi: parent c0c0c0c0-0000-4000-8000-000000000031 is ambiguous: "
expect_fail ambiguous "$ambiguous" \
    " both have this UUID; no settings file beside them registers either, so move the one that is not the parent out of the folders searched" \
    "$d/base.vdi" "$d/impostor.vdi" -- "$d/Snapshots/child.vdi"
cu="$(vdi_uuid "$d/Snapshots/child.vdi")"
write_vbox "$d/base.vbox" "$cu" <<EOF
        <HardDisk uuid="{$(uuid 31)}" location="base.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$cu}" location="Snapshots/child.vdi" format="VDI"/>
        </HardDisk>
EOF
sed 's/"base.vdi"/"impostor.vdi"/' "$d/base.vbox" > "$d/impostor.vbox"
# Now there are: the error names them.
expect_fail ambiguous-registries "$ambiguous" \
    " both have this UUID (use registry=$d/base.vbox or registry=$d/impostor.vbox to choose)" \
    "$d/base.vdi" "$d/impostor.vdi" -- "$d/Snapshots/child.vdi"
check_served twins-base "$d/Snapshots/child.vdi.raw" \
    "$d/Snapshots/child.vdi.ext" registry="$d/base.vbox"
check_served twins-impostor "$tmp/child-over-impostor.vdi.raw" \
    "$tmp/child-over-impostor.vdi.ext" registry="$d/impostor.vbox"
check_served twins-file "$d/Snapshots/child.vdi.raw" \
    "$d/Snapshots/child.vdi.ext" registry="$d/base.vbox" \
    file="$d/Snapshots/child.vdi"

# Another name for the same file (a symbolic link, a hard link) is not
# a second parent.
rm "$d/impostor.vdi"
ln -s base.vdi "$d/symlink.vdi"
ln "$d/base.vdi" "$d/Snapshots/hardlink.vdi"
check_served twins-links "$d/Snapshots/child.vdi.raw" \
    "$d/Snapshots/child.vdi.ext" "$d/Snapshots/child.vdi"

#----------------------------------------------------------------------
# Junk next to the images is skipped: files named .vdi that are not
# VDI images, empty, a directory, a FIFO (opening it must not hang),
# an unreadable file.
d="$tmp/junk"
mk "$d/base.vdi" --size 3M --blocks DZD
mkchild "$d/Snapshots/top.vdi" "$d/base.vdi" --blocks FDF
head -c 100000 /dev/urandom > "$d/random.vdi"
: > "$d/empty.vdi"
mkdir "$d/Snapshots/dir.vdi"
mkfifo "$d/fifo.vdi"
$MAKE_VDI --corrupt bad-signature "$d/Snapshots/badsig.VDI"
cp "$d/base.vdi" "$d/noaccess.vdi"
chmod 000 "$d/noaccess.vdi"
if [ "$(id -u)" -ne 0 ]; then
    # (root reads it anyway: then it is a second copy of the parent.)
    check_served junk "$d/Snapshots/top.vdi.raw" "$d/Snapshots/top.vdi.ext" \
        "$d/Snapshots/top.vdi"
fi
rm -f "$d/noaccess.vdi"
check_served junk2 "$d/Snapshots/top.vdi.raw" "$d/Snapshots/top.vdi.ext" \
    "$d/Snapshots/top.vdi"

#----------------------------------------------------------------------
# A stale parent modification UUID (VDMerge leaves it so) is only a
# warning, one line naming both images and both UUIDs.
d="$tmp/stale"
mk "$d/base.vdi" --size 4M --blocks DZDF --uuid-create "$(uuid 41)" \
   --uuid-modify "$(uuid 42)"
mkchild "$d/Snapshots/child.vdi" "$d/base.vdi" --blocks FDFZ \
        --uuid-parent-modify "$(uuid 43)"
check_served stale "$d/Snapshots/child.vdi.raw" "$d/Snapshots/child.vdi.ext" \
    "$d/Snapshots/child.vdi"
nbdkit -U - "$VDI_PLUGIN" "$d/Snapshots/child.vdi" \
       --run 'nbdinfo --size "$uri"' 2> "$tmp/stale.err"
cat "$tmp/stale.err"
grep -v '^==[0-9]*==' "$tmp/stale.err" | grep -i warning > "$tmp/stale.lines"
cat > "$tmp/stale.expected" <<EOF
nbdkit: vdi: warning: $d/Snapshots/child.vdi: parent modification UUID c0c0c0c0-0000-4000-8000-000000000043 differs from the modification UUID c0c0c0c0-0000-4000-8000-000000000042 of $d/base.vdi: the parent has changed since this image was created (VirtualBox ignores this)
EOF
diff -u "$tmp/stale.expected" "$tmp/stale.lines"
must_fail grep '^nbdkit:.* error: ' "$tmp/stale.err"
# With the right parent modification UUID, no warning.
mkchild "$d/Snapshots/child.vdi" "$d/base.vdi" --blocks FDFZ
nbdkit -U - "$VDI_PLUGIN" "$d/Snapshots/child.vdi" \
       --run 'nbdinfo --size "$uri"' 2> "$tmp/fresh.err"
must_fail grep -i warning "$tmp/fresh.err"

#----------------------------------------------------------------------
# Registries whose UUIDs disagree with the files.
d="$tmp/mismatch"
mk "$d/p.vdi" --size 4M --blocks DDDD --uuid-create "$(uuid 51)"
mk "$d/q.vdi" --size 4M --blocks ZZZZ --uuid-create "$(uuid 52)"
mkchild "$d/Snapshots/c.vdi" "$d/q.vdi" --uuid-create "$(uuid 53)"
# The registry nests c under p, but c's parent UUID is q's.
write_vbox "$d/a.vbox" "$(uuid 53)" <<EOF
        <HardDisk uuid="{$(uuid 51)}" location="p.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$(uuid 53)}" location="Snapshots/c.vdi" format="VDI"/>
        </HardDisk>
        <HardDisk uuid="{$(uuid 52)}" location="q.vdi" format="VDI" type="Normal"/>
EOF
expect_fail registry-parent \
    "nbdkit: error: $d/Snapshots/c.vdi: parent UUID c0c0c0c0-0000-4000-8000-000000000052 does not match the parent c0c0c0c0-0000-4000-8000-000000000051 of medium c0c0c0c0-0000-4000-8000-000000000053 in the media registry $d/a.vbox" \
    -- registry="$d/a.vbox"
# The registry puts c's parent (uuid 52) in p.vdi, whose UUID is 51.
write_vbox "$d/b.vbox" "$(uuid 53)" <<EOF
        <HardDisk uuid="{$(uuid 52)}" location="p.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$(uuid 53)}" location="Snapshots/c.vdi" format="VDI"/>
        </HardDisk>
EOF
expect_fail registry-parent-file \
    "nbdkit: error: $d/Snapshots/c.vdi: parent c0c0c0c0-0000-4000-8000-000000000052 was expected in $d/p.vdi, which has UUID c0c0c0c0-0000-4000-8000-000000000051" \
    -- registry="$d/b.vbox"
# The registry gives the top image another UUID (54) than its file's.
write_vbox "$d/c.vbox" "$(uuid 54)" <<EOF
        <HardDisk uuid="{$(uuid 52)}" location="q.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$(uuid 54)}" location="Snapshots/c.vdi" format="VDI"/>
        </HardDisk>
EOF
expect_fail registry-top \
    "nbdkit: error: $d/Snapshots/c.vdi: UUID c0c0c0c0-0000-4000-8000-000000000053 of the image does not match the UUID c0c0c0c0-0000-4000-8000-000000000054 of the medium in $d/c.vbox" \
    -- registry="$d/c.vbox"
# Set right, the same files work.
sed "s/$(uuid 54)/$(uuid 53)/" "$d/c.vbox" > "$d/d.vbox"
check_served registry-right "$d/Snapshots/c.vdi.raw" \
    "$d/Snapshots/c.vdi.ext" registry="$d/d.vbox"
# With a registry, parents are looked up in it only: q.vdi next to
# the child does not count when the registry does not list it.
write_vbox "$d/e.vbox" "$(uuid 53)" <<EOF
        <HardDisk uuid="{$(uuid 53)}" location="Snapshots/c.vdi" format="VDI"/>
EOF
expect_fail registry-only \
    "nbdkit: error: $d/Snapshots/c.vdi: parent c0c0c0c0-0000-4000-8000-000000000052 is not in the media registry $d/e.vbox" \
    -- registry="$d/e.vbox"
