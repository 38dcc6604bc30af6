#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Registries (registry=) that must be refused, and choices (uuid=,
# snapshot=, disk=) that name nothing or something of another kind,
# and paths (file=, registry=, parent-dir=) that are missing, empty or
# not a folder: each gives exactly one error line naming the file,
# UUID, key or choice concerned (saying what it is), nbdkit exits
# non-zero (not by a signal), quickly, and no file changes.  Hostile
# XML: external entities, entity expansion bombs, 100000-deep
# nesting, missing and malformed attributes, duplicate UUIDs, files
# that are not XML, too large, FIFOs.  Media whose format is not VDI,
# locations that name no file.  And next to them what must work:
# format "vdi" in lower case, Windows locations copied from another
# host.

source ./functions.sh
set -e
set -x

requires mkfifo --version

source "$abs_srcdir/test-chain-functions.sh"

# A machine with two disks of three images, two snapshots with the
# same name.
make_machine "$tmp/Err" "$tmp/m" <<'EOF'
{"name": "Err", "seed": "errors", "snapshot_names": ["Same", "Same"],
 "disks": [{"layers": [{"size": "4M", "blocks": "DZDF"},
                       {"block_size": "512K", "blocks": "FDFZFFFD"},
                       {"blocks": "FFDZ"}]},
           {"layers": [{"size": "3M", "blocks": "DDZ"},
                       {"blocks": "ZFD"}, {"blocks": "FDF"}]}]}
EOF
m="$tmp/m"
vbox="$tmp/Err/Err.vbox"
top="$(media_uuid "$m" 0 2)"
mid="$(media_uuid "$m" 0 1)"
base="$(media_uuid "$m" 0 0)"
s0="$(snapshot_uuid "$m" 0)"
s1="$(snapshot_uuid "$m" 1)"

# It works as it is.
check_served good "$m/d0.l2.raw" "$m/d0.l2.extents" registry="$vbox"

# edit NAME SED-SCRIPT: a changed copy of the .vbox, in the machine
# folder (so that relative locations still work); prints its name.
edit ()
{
    sed "$2" "$vbox" > "$tmp/Err/$1.vbox"
    if cmp -s "$vbox" "$tmp/Err/$1.vbox"; then
        echo "$0: edit $1 changed nothing" >&2
        return 1
    fi
    echo "$tmp/Err/$1.vbox"
}

# timed NAME ARGS...: expect_fail, and it must be quick (a bomb or a
# deep file must not take long).
timed ()
{
    local start end
    start=$(date +%s%N)
    expect_fail "$@"
    end=$(date +%s%N)
    if [ "x$NBDKIT_VALGRIND" != "x1" ] &&
       [ $(( (end - start) / 1000000 )) -gt 5000 ]; then
        echo "$0: $1: took $(( (end - start) / 1000000 )) ms" >&2
        return 1
    fi
}

#----------------------------------------------------------------------
# Choices that name nothing.
expect_fail uuid-unknown c0ffee00-0000-4000-8000-000000000000 Err.vbox -- \
    registry="$vbox" uuid=c0ffee00-0000-4000-8000-000000000000
expect_fail uuid-malformed "not-a-uuid" "not a UUID" -- \
    registry="$vbox" uuid=not-a-uuid
expect_fail snapshot-unknown Err.vbox "Nothing" "Same" "$s0" "$s1" -- \
    registry="$vbox" snapshot=Nothing
expect_fail snapshot-ambiguous Err.vbox "Same" "$s0" "$s1" "UUID" -- \
    registry="$vbox" snapshot=Same
expect_fail disk-too-big Err.vbox "disk=2" "2 hard disks" -- \
    registry="$vbox" disk=2
expect_fail disk-too-big-snapshot Err.vbox "disk=7" -- \
    registry="$vbox" disk=7 snapshot="$s0"
expect_fail disk-not-number "disk" "1x" -- registry="$vbox" disk=1x
for d in abc "" -1; do
    expect_fail "disk-value-${d:-empty}" \
        "nbdkit: error: disk: '$d' is not a disk number: the machine's hard disks are numbered from 0" \
        -- registry="$vbox" disk="$d"
done
# A UUID of the wrong kind says what it is the UUID of.
expect_fail uuid-of-snapshot \
    "nbdkit: error: $vbox: $s0 is the UUID of snapshot \"Same\" of machine \"Err\", not of a medium: choose a snapshot with snapshot=" \
    -- registry="$vbox" uuid="$s0"
machine_uuid="$(grep -o '<Machine uuid="{[^}]*' "$vbox" | cut -d'{' -f2)"
expect_fail uuid-of-machine \
    "nbdkit: error: $vbox: $machine_uuid is the UUID of machine \"Err\", not of a medium: choose its disk with disk=" \
    -- registry="$vbox" uuid="$machine_uuid"
expect_fail snapshot-of-medium \
    "nbdkit: error: $vbox: $top is the UUID of medium $(media_path "$m" 0 2), not of a snapshot of machine \"Err\": choose a medium with uuid=" \
    -- registry="$vbox" snapshot="$(upper_braced "$top")"
# Files and folders that are not there, or not given, name their key.
expect_fail file-missing "nbdkit: error: file=$tmp/nope.vdi: No such file or directory" \
    -- file="$tmp/nope.vdi"
expect_fail file-missing-magic \
    "nbdkit: error: file=$tmp/nope.vdi: No such file or directory" \
    -- "$tmp/nope.vdi"
expect_fail file-empty "nbdkit: error: file= needs a file name" -- file=
expect_fail registry-empty "nbdkit: error: registry= needs a file name" \
    -- registry=
expect_fail parent-dir-empty "nbdkit: error: parent-dir= needs a folder name" \
    -- parent-dir= "$(media_path "$m" 0 2)"
expect_fail parent-dir-missing \
    "nbdkit: error: parent-dir=$tmp/nope: No such file or directory" \
    -- parent-dir="$tmp/nope" "$(media_path "$m" 0 2)"
expect_fail parent-dir-file "nbdkit: error: parent-dir=$vbox: not a folder" \
    -- parent-dir="$vbox" "$(media_path "$m" 0 2)"
# Keys that do not go together.
expect_fail uuid-no-registry "registry=" -- \
    "$(media_path "$m" 0 2)" uuid="$top"
expect_fail uuid-and-snapshot "uuid=" "snapshot=" -- \
    registry="$vbox" uuid="$top" snapshot="$s0"
expect_fail file-and-uuid "file=" "uuid=" -- \
    registry="$vbox" file="$(media_path "$m" 0 2)" uuid="$top"
expect_fail parent-dir-and-registry "parent-dir=" "registry=" -- \
    registry="$vbox" parent-dir="$tmp"
expect_fail two-machines "only one" Err.vbox -- \
    registry="$vbox" registry="$(edit copy 's/name="Err"/name="Copy"/')"
# Snapshots that share a name are chosen by UUID.
check_served snapshot-by-uuid "$m/d0.l1.raw" "$m/d0.l1.extents" \
    registry="$vbox" snapshot="$s1"

#----------------------------------------------------------------------
# Formats and locations.
f="$(edit vhd "s|format=\"VDI\">\$|format=\"VHD\">|")"
grep -q 'format="VHD"' "$f"
expect_fail format-top VHD "not supported" vhd.vbox -- registry="$f"
f="$(edit vmdk-parent "s|\(location=\"Snapshots/{$mid}.vdi\" format=\)\"VDI\"|\1\"VMDK\"|")"
expect_fail format-parent VMDK "not supported" "$mid" "{$top}.vdi" -- \
    registry="$f"
f="$(edit lower "s/format=\"VDI\"/format=\"vdi\"/g")"
check_served format-lower "$m/d0.l2.raw" "$m/d0.l2.extents" registry="$f"

f="$(edit gone-top "s|Snapshots/{$top}.vdi|Snapshots/gone.vdi|")"
expect_fail location-top-missing "Snapshots/gone.vdi" -- registry="$f"
f="$(edit gone-parent "s|Snapshots/{$mid}.vdi|Snapshots/gone.vdi|")"
expect_fail location-parent-missing "Snapshots/gone.vdi" "$mid" \
    "{$top}.vdi" gone-parent.vbox -- registry="$f"
f="$(edit dir-parent "s|Snapshots/{$mid}.vdi|Snapshots|")"
expect_fail location-directory "$tmp/Err/Snapshots" -- registry="$f"
f="$(edit empty-location "s|location=\"Snapshots/{$mid}.vdi\"|location=\"\"|")"
expect_fail location-empty "empty location" empty-location.vbox -- \
    registry="$f"
# Windows locations (a machine folder copied from a Windows host) are
# found by their file names in the machine folder and Snapshots.
f="$(edit windows "s|location=\"Err-disk0.vdi\"|location=\"C:\\\\Users\\\\me\\\\VirtualBox VMs\\\\Err\\\\Err-disk0.vdi\"|; s|location=\"Snapshots/{$mid}.vdi\"|location=\"D:\\\\old\\\\Snapshots\\\\{$mid}.vdi\"|; s|location=\"Snapshots/{$top}.vdi\"|location=\"Snapshots\\\\{$top}.vdi\"|")"
grep -qF 'location="C:\Users\me\VirtualBox VMs\Err\Err-disk0.vdi"' "$f"
check_served windows "$m/d0.l2.raw" "$m/d0.l2.extents" registry="$f"

#----------------------------------------------------------------------
# Malformed settings.
x="$tmp/xml"
mkdir "$x"

f="$(edit no-uuid "s|<HardDisk uuid=\"{$mid}\"|<HardDisk|")"
expect_fail missing-uuid no-uuid.vbox "uuid" -- registry="$f"
f="$(edit no-location "s|location=\"Snapshots/{$mid}.vdi\" ||")"
expect_fail missing-location no-location.vbox "location" "$mid" -- registry="$f"
f="$(edit no-format "s|\(location=\"Snapshots/{$mid}.vdi\"\) format=\"VDI\"|\1|")"
expect_fail missing-format no-format.vbox "format" "$mid" -- registry="$f"
f="$(edit no-image-uuid "0,/<Image uuid=\"{$top}\"\/>/s//<Image\/>/")"
expect_fail missing-image-uuid no-image-uuid.vbox "uuid" -- registry="$f"
f="$(edit no-machine-uuid 's|<Machine uuid="{[^}]*}"|<Machine|')"
expect_fail missing-machine-uuid no-machine-uuid.vbox "uuid" -- registry="$f"
f="$(edit no-snapshot-name "s|name=\"Same\"||")"
expect_fail missing-snapshot-name no-snapshot-name.vbox "name" -- \
    registry="$f"
f="$(edit bad-uuid "s|uuid=\"{$mid}\"|uuid=\"{$mid}x\"|")"
expect_fail malformed-uuid bad-uuid.vbox "malformed UUID" -- registry="$f"
f="$(edit null-uuid "s|uuid=\"{$mid}\"|uuid=\"{00000000-0000-0000-0000-000000000000}\"|")"
expect_fail null-uuid null-uuid.vbox "null UUID" -- registry="$f"
f="$(edit bad-type 's|type="Normal"|type="Sometimes"|')"
expect_fail bad-type bad-type.vbox "Sometimes" -- registry="$f"
# The same UUID for two media: the top's UUID given to disk 1's base.
f="$(edit dup-uuid "s|uuid=\"{$(media_uuid "$m" 1 0)}\"|uuid=\"{$top}\"|")"
expect_fail duplicate-uuid dup-uuid.vbox "duplicate UUID" "$top" -- \
    registry="$f"
# The same snapshot UUID twice.
f="$(edit dup-snapshot "s|$s1|$s0|")"
expect_fail duplicate-snapshot dup-snapshot.vbox "duplicate snapshot" \
    "$s0" -- registry="$f"
f="$(edit bad-current "s|currentSnapshot=\"{$s1}\"|currentSnapshot=\"{$mid}\"|")"
expect_fail current-snapshot-unknown bad-current.vbox "$mid" -- \
    registry="$f"

# Not a settings file at all.
printf 'not xml at all \x00\x01\x02' > "$x/binary.vbox"
expect_fail not-xml binary.vbox "XML" -- registry="$x/binary.vbox"
: > "$x/empty.vbox"
expect_fail empty empty.vbox "empty" -- registry="$x/empty.vbox"
echo '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"/>' \
    > "$x/html.vbox"
expect_fail not-virtualbox html.vbox "VirtualBox" -- registry="$x/html.vbox"
echo '<?xml version="1.0"?><VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux"/>' \
    > "$x/nothing.vbox"
expect_fail no-machine-no-global nothing.vbox "Machine" -- \
    registry="$x/nothing.vbox"
sed 's|</Machine>|</Machine><Global/>|' "$vbox" > "$x/both.vbox"
expect_fail machine-and-global both.vbox "Global" -- registry="$x/both.vbox"
head -c -20 "$vbox" > "$x/cut.vbox"
expect_fail truncated cut.vbox "well-formed" -- registry="$x/cut.vbox"
truncate -s 65M "$x/huge.vbox"
timed too-large huge.vbox "too large" -- registry="$x/huge.vbox"
mkfifo "$x/fifo.vbox"
timed fifo fifo.vbox "regular file" -- registry="$x/fifo.vbox"
expect_fail directory "$x" "regular file" -- registry="$x"
expect_fail registry-missing "$x/nonexistent.vbox" -- \
    registry="$x/nonexistent.vbox"

# Hostile XML: DTDs (external entities, parameter entities, an
# external DTD, entity bombs) are refused before anything is read or
# fetched; deep nesting is refused at a fixed depth.
hdr='<?xml version="1.0"?>'
machine='<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux"><Machine uuid="{0d4b1711-5f22-4c69-84d1-42446309aa56}" name="&e;"/></VirtualBox>'
cat > "$x/xxe.vbox" <<EOF
$hdr
<!DOCTYPE VirtualBox [ <!ENTITY e SYSTEM "file:///etc/passwd"> ]>
$machine
EOF
timed xxe xxe.vbox "DTD" -- registry="$x/xxe.vbox"
cat > "$x/xxe-net.vbox" <<EOF
$hdr
<!DOCTYPE VirtualBox SYSTEM "http://127.0.0.1:9/evil.dtd">
$machine
EOF
timed xxe-net xxe-net.vbox "DTD" -- registry="$x/xxe-net.vbox"
cat > "$x/param.vbox" <<EOF
$hdr
<!DOCTYPE VirtualBox [ <!ENTITY % p SYSTEM "file:///etc/passwd"> %p; <!ENTITY e "x"> ]>
$machine
EOF
timed parameter-entity param.vbox "DTD" -- registry="$x/param.vbox"
{
    echo "$hdr"
    echo '<!DOCTYPE VirtualBox ['
    echo ' <!ENTITY l0 "lol">'
    for i in 1 2 3 4 5 6 7 8 9; do
        printf ' <!ENTITY l%d "' $i
        for j in 1 2 3 4 5 6 7 8 9 10; do printf '&l%d;' $((i - 1)); done
        echo '">'
    done
    echo ' <!ENTITY e "&l9;">'
    echo ']>'
    echo "$machine"
} > "$x/laughs.vbox"
timed billion-laughs laughs.vbox "DTD" -- registry="$x/laughs.vbox"
# repeat N STRING: STRING N times, on one line.
repeat ()
{
    yes "$2" | head -n "$1" | tr -d '\n'
}
vbox_open='<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">'
machine_open='<Machine uuid="{0d4b1711-5f22-4c69-84d1-42446309aa56}" name="x">'
# Quadratic blowup without a DTD is impossible; a huge attribute is
# only a big string: refused or accepted, but quickly and cleanly.
{
    echo "$hdr"
    echo -n "$vbox_open$machine_open<MediaRegistry><HardDisks>"
    repeat 100000 '<HardDisk>'
    repeat 100000 '</HardDisk>'
    echo '</HardDisks></MediaRegistry></Machine></VirtualBox>'
} > "$x/deep.vbox"
timed deep-100000 deep.vbox "nested" -- registry="$x/deep.vbox"
{
    echo "$hdr"
    echo -n "$vbox_open"
    repeat 100000 '<x>'
    repeat 100000 '</x>'
    echo '</VirtualBox>'
} > "$x/deep-other.vbox"
timed deep-other deep-other.vbox "nested" -- registry="$x/deep-other.vbox"
# 301 nested HardDisks (VirtualBox's limit is 300), each valid.
{
    echo "$hdr"
    echo "$vbox_open$machine_open<MediaRegistry><HardDisks>"
    for (( i = 0; i < 301; ++i )); do
        printf '<HardDisk uuid="{00000000-0000-0000-0000-%012x}" location="%d.vdi" format="VDI">\n' $((i + 1)) $i
    done
    repeat 301 '</HardDisk>'
    echo '</HardDisks></MediaRegistry></Machine></VirtualBox>'
} > "$x/tall.vbox"
timed harddisk-301 tall.vbox "300" -- registry="$x/tall.vbox"
# 251 nested snapshots (VirtualBox's limit is 250).
{
    echo "$hdr"
    echo "$vbox_open$machine_open"
    for (( i = 0; i < 251; ++i )); do
        printf '<Snapshot uuid="{00000000-0000-0000-0000-%012x}" name="s%d"><Snapshots>\n' $((i + 1)) $i
    done
    repeat 251 '</Snapshots></Snapshot>'
    echo '</Machine></VirtualBox>'
} > "$x/snapshots.vbox"
timed snapshots-251 snapshots.vbox "250" -- registry="$x/snapshots.vbox"
# A HardDisk nested in itself.
f="$(edit self-nested "s|\(<HardDisk uuid=\"{$top}\"[^>]*\)>|\1><HardDisk uuid=\"{$top}\" location=\"x.vdi\" format=\"VDI\"/>|")"
expect_fail self-nested self-nested.vbox "$top" -- registry="$f"
# An XInclude is not processed (the file it names is never read): the
# machine is served as if it were not there.
f="$(edit xinclude "s|<MediaRegistry>|<MediaRegistry><xi:include xmlns:xi=\"http://www.w3.org/2001/XInclude\" href=\"file:///etc/passwd\" parse=\"text\"/>|")"
grep -q XInclude "$f"
check_served xinclude "$m/d0.l2.raw" "$m/d0.l2.extents" registry="$f"
