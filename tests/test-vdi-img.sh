#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdi-img, the command-line tool on libvdi:
# - info, for people and as JSON, against what make-vdi.py was told to
#   write and against qemu-img info on images qemu-img made;
# - info --chain on a three-image chain whose base only --parent-dir
#   finds;
# - JSON strings: quotes, backslashes, control characters and bytes
#   that are not UTF-8, in a comment and in a file name;
# - check's exit status: 0 clean, 1 not checked (missing, not a VDI,
#   in use), 2 errors (a fixed image with holes, a file shorter than
#   its counted slots), 3 leaked slots only, and the worst status of
#   several images;
# - usage errors (merge's too; the merge itself is tested with its
#   engine): one line and a hint on stderr, exit status 1.

source ./functions.sh
set -e
set -x

requires jq --version
requires qemu-img --version
requires $PYTHON --version
requires_nbdsh

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdi-img.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
M=1048576

# expect_status STATUS CMD [ARGS...]
#
# CMD must exit with STATUS.  Its stdout and stderr are kept in
# $tmp/out and $tmp/err (and shown in the log).
expect_status ()
{
    local want="$1" status=0
    shift
    "$@" > "$tmp/out" 2> "$tmp/err" || status=$?
    cat "$tmp/out" "$tmp/err"
    if [ "$status" -ne "$want" ]; then
        echo "$0: $*: exit status $status, expected $want" >&2
        return 1
    fi
}

# valid_json FILE: strict JSON in UTF-8 (jq would let bytes that are
# not UTF-8 through, replaced).
valid_json ()
{
    $PYTHON -c '
import json, sys
with open(sys.argv[1], encoding="utf-8", errors="strict") as f:
    json.load(f)
' "$1"
}

# json_fields FILE KEY... : "KEY VALUE" lines of a JSON object.
json_fields ()
{
    local f="$1"
    shift
    jq -r --args '. as $o | $ARGS.positional[] | "\(.) \($o[.])"' "$@" < "$f"
}

#----------------------------------------------------------------------
# info on an image made by make-vdi.py: 7 MiB in 2 MiB blocks (the last
# one partial), data, ZERO, FREE, data; 4 KiB of extra bytes in front
# of each block; VirtualBox's 1 MiB alignment.

a="$tmp/a.vdi"
$MAKE_VDI --header 1.1+ --align 1M --size 7M --block-size 2M \
          --block-extra 4K --blocks DZFD --seed a \
          --uuid-create '{AABBCCDD-EEFF-1122-3344-556677889900}' \
          --uuid-modify 01020304-0506-0708-090a-0b0c0d0e0f10 \
          --comment 'made for vdi-img' "$a"

$VDI_IMG info --output=json "$a" > "$tmp/a.json"
cat "$tmp/a.json"
valid_json "$tmp/a.json"
json_fields "$tmp/a.json" filename format virtual-size cluster-size \
            vdi-version image-type block-extra map-offset data-offset \
            uuid modify-uuid parent-uuid parent-modify-uuid \
            blocks blocks-allocated blocks-data blocks-zero blocks-free \
            comment backing-filename > "$tmp/a.fields"
cat > "$tmp/a.expected" <<EOF
filename $a
format vdi
virtual-size $((7 * M))
cluster-size $((2 * M))
vdi-version 1.1
image-type dynamic
block-extra 4096
map-offset $M
data-offset $((2 * M))
uuid aabbccdd-eeff-1122-3344-556677889900
modify-uuid 01020304-0506-0708-090a-0b0c0d0e0f10
parent-uuid 00000000-0000-0000-0000-000000000000
parent-modify-uuid 00000000-0000-0000-0000-000000000000
blocks 4
blocks-allocated 2
blocks-data 2
blocks-zero 1
blocks-free 1
comment made for vdi-img
backing-filename null
EOF
diff -u "$tmp/a.expected" "$tmp/a.fields"
# The sizes of the file, as stat sees them.
test "$(jq '."file-size"' "$tmp/a.json")" = "$(stat -c %s "$a")"
test "$(jq '."actual-size"' "$tmp/a.json")" = \
     "$(( $(stat -c '%b * %B' "$a") ))"

# The same for people.
$VDI_IMG info "$a" > "$tmp/a.human"
cat "$tmp/a.human"
for line in \
    "image: $a" \
    "file format: vdi" \
    "virtual size: 7 MiB (7340032 bytes)" \
    "VDI version: 1.1" \
    "image type: dynamic" \
    "header size: 400" \
    "block size: 2 MiB (2097152 bytes)" \
    "block extra: 4096" \
    "blocks: 4" \
    "blocks allocated: 2" \
    "block map offset: 1048576" \
    "data offset: 2097152" \
    "comment: made for vdi-img" \
    "UUID: aabbccdd-eeff-1122-3344-556677889900" \
    "modify UUID: 01020304-0506-0708-090a-0b0c0d0e0f10" \
    "parent UUID: 00000000-0000-0000-0000-000000000000" \
    "blocks with data: 2" \
    "blocks zero: 1" \
    "blocks free: 1"
do
    grep -Fx "$line" "$tmp/a.human"
done
if grep -F "backing file" "$tmp/a.human"; then exit 1; fi

# A version 0 image and an odd size (VirtualBox rounds it down).
$MAKE_VDI --header v0 --size 1000001 --block-size 128K --blocks DZ \
          --seed v0 "$tmp/v0.vdi"
$VDI_IMG info --output=json "$tmp/v0.vdi" > "$tmp/v0.json"
json_fields "$tmp/v0.json" vdi-version virtual-size cluster-size blocks \
            blocks-data blocks-zero blocks-free > "$tmp/v0.fields"
printf '%s\n' "vdi-version 0.2" "virtual-size 999936" \
       "cluster-size 131072" "blocks 8" "blocks-data 1" "blocks-zero 1" \
       "blocks-free 6" | diff -u - "$tmp/v0.fields"
$VDI_IMG info "$tmp/v0.vdi" |
    grep -Fx "disk size in the header: 1000001 bytes (rounded down to a sector)"

#----------------------------------------------------------------------
# info on images qemu-img made: the sizes agree with qemu-img info.

for opts in "" "-o static=on"; do
    q="$tmp/q.vdi"
    rm -f "$q"
    qemu-img create -f vdi $opts "$q" 10M
    $VDI_IMG info --output=json "$q" > "$tmp/q.json"
    qemu-img info --output=json "$q" > "$tmp/q.qemu.json"
    for key in virtual-size cluster-size format filename actual-size; do
        test "$(jq ".\"$key\"" "$tmp/q.json")" = \
             "$(jq ".\"$key\"" "$tmp/q.qemu.json")"
    done
    if [ -z "$opts" ]; then
        expected="dynamic 0 0 10"
    else
        expected="fixed 10 10 0"
    fi
    test "$(jq -r '"\(."image-type") \(."blocks-allocated") \(."blocks-data") \(."blocks-free")"' \
            "$tmp/q.json")" = "$expected"
done

#----------------------------------------------------------------------
# info --chain: vm/Snapshots/c2.vdi -> vm/Snapshots/c1.vdi -> disks/c0.vdi.
# The base is in neither the child's folder nor the one above it.

mkdir -p "$tmp/vm/Snapshots" "$tmp/disks"
c0="$tmp/disks/c0.vdi"
c1="$tmp/vm/Snapshots/c1.vdi"
c2="$tmp/vm/Snapshots/c2.vdi"
$MAKE_VDI --size 4M --blocks DDFF --seed c0 \
          --uuid-create c0000000-0000-4000-8000-000000000000 "$c0"
$MAKE_VDI --type diff --parent "$c0" --blocks FZDF --seed c1 \
          --uuid-create c1000000-0000-4000-8000-000000000000 "$c1"
$MAKE_VDI --type diff --parent "$c1" --blocks DFFZ --seed c2 \
          --uuid-create c2000000-0000-4000-8000-000000000000 "$c2"

# Without --parent-dir the base is not found.
expect_status 1 $VDI_IMG info --chain "$c2"
grep -F "c0000000-0000-4000-8000-000000000000 not found" "$tmp/err"

$VDI_IMG info --chain --parent-dir "$tmp/disks" --output=json "$c2" \
    > "$tmp/chain.json"
cat "$tmp/chain.json"
valid_json "$tmp/chain.json"
jq -r '.[] | "\(.filename) \(.uuid) \(."image-type") \(."parent-uuid") \(."backing-filename")"' \
   "$tmp/chain.json" > "$tmp/chain.fields"
cat > "$tmp/chain.expected" <<EOF
$c2 c2000000-0000-4000-8000-000000000000 differencing c1000000-0000-4000-8000-000000000000 $c1
$c1 c1000000-0000-4000-8000-000000000000 differencing c0000000-0000-4000-8000-000000000000 $c0
$c0 c0000000-0000-4000-8000-000000000000 dynamic 00000000-0000-0000-0000-000000000000 null
EOF
diff -u "$tmp/chain.expected" "$tmp/chain.fields"
# Each image's own counts, and the parent-modify UUID is the parent's
# modify UUID.
test "$(jq -r '[.[] | "\(."blocks-data")/\(."blocks-zero")/\(."blocks-free")"] | join(" ")' \
        "$tmp/chain.json")" = "1/1/2 1/1/2 2/0/2"
test "$(jq -r '.[0]."parent-modify-uuid"' "$tmp/chain.json")" = \
     "$(jq -r '.[1]."modify-uuid"' "$tmp/chain.json")"

# For people: each image, top to base, with its backing file.
$VDI_IMG info --chain --parent-dir "$tmp/disks" "$c2" > "$tmp/chain.human"
cat "$tmp/chain.human"
grep '^image: ' "$tmp/chain.human" | diff -u - <(printf 'image: %s\n' "$c2" "$c1" "$c0")
grep '^backing file: ' "$tmp/chain.human" |
    diff -u - <(printf 'backing file: %s\n' "$c1" "$c0")
grep '^image type: ' "$tmp/chain.human" |
    diff -u - <(printf 'image type: %s\n' differencing differencing dynamic)

# Without --chain a differencing image is described alone.
$VDI_IMG info --output=json "$c2" > "$tmp/c2.json"
test "$(jq -r '"\(."parent-uuid") \(."backing-filename")"' "$tmp/c2.json")" = \
     "c1000000-0000-4000-8000-000000000000 null"
# A base is a chain of one: an array of one object.
test "$($VDI_IMG info --chain --output=json "$c0" | jq -r 'length, .[0].filename')" = \
     "$(printf '1\n%s' "$c0")"

#----------------------------------------------------------------------
# JSON strings.

comment=$'say "hi" \\ back\\slash\ttab\nnewline \x01\x1f end é'
$MAKE_VDI --size 1M --blocks F --seed esc --comment "$comment" "$tmp/esc.vdi"
weird="$tmp/we\"ird\\name"$'\t'".vdi"
cp "$tmp/esc.vdi" "$weird"
$VDI_IMG info --output=json "$weird" > "$tmp/esc.json"
cat "$tmp/esc.json"
valid_json "$tmp/esc.json"
test "$(jq -j .comment "$tmp/esc.json")" = "$comment"
test "$(jq -j .filename "$tmp/esc.json")" = "$weird"
# The control characters are escapes, not raw bytes.
grep -F '\t' "$tmp/esc.json"
grep -F '\u0001' "$tmp/esc.json"
if grep -q $'\x01' "$tmp/esc.json"; then exit 1; fi
# For people, the comment stays on its line.
$VDI_IMG info "$tmp/esc.vdi" |
    grep -Fx 'comment: say "hi" \\ back\\slash\ttab\nnewline \x01\x1f end é'

# Bytes that are not UTF-8 (a lone lead byte, a stray continuation
# byte) become U+FFFD; the comment is at offset 84.
printf 'ok\xc3"\x80!\0' | dd of="$tmp/esc.vdi" bs=1 seek=84 conv=notrunc
$VDI_IMG info --output=json "$tmp/esc.vdi" > "$tmp/esc2.json"
cat "$tmp/esc2.json"
valid_json "$tmp/esc2.json"
grep -F '"comment": "ok\ufffd\"\ufffd!"' "$tmp/esc2.json"

#----------------------------------------------------------------------
# check.

# 0: clean images.
expect_status 0 $VDI_CHECK "$a" "$c0" "$c1" "$c2" "$tmp/v0.vdi"
grep -Fx "$a: no errors were found on the image." "$tmp/out"
grep -Fx "$tmp/v0.vdi: no errors were found on the image." "$tmp/out"
test "$(wc -l < "$tmp/out")" -eq 5
test ! -s "$tmp/err"

# 1: missing, not a VDI, in use.
expect_status 1 $VDI_CHECK "$tmp/missing.vdi"
grep -Fx "$tmp/missing.vdi: the image could not be checked." "$tmp/out"
grep -Fx "vdi-img: $tmp/missing.vdi: open: No such file or directory" \
     "$tmp/err"
head -c 4096 /dev/urandom > "$tmp/random.vdi"
expect_status 1 $VDI_CHECK "$tmp/random.vdi"
grep -F "vdi-img: $tmp/random.vdi: not a VDI image" "$tmp/err"
# In use: the plugin holds the image's exclusive lock once it has
# written to it.
cp "$a" "$tmp/inuse.vdi"
t_cmd="$VDI_CHECK $tmp/inuse.vdi 2> $tmp/inuse.err; echo \$? > $tmp/inuse.status"
export t_cmd
nbdkit -U - "$VDI_PLUGIN" file="$tmp/inuse.vdi" --run '
    nbdsh -u "$uri" -c "h.pwrite(bytes(512), 0)" \
          -c "import os; os.system(os.environ[\"t_cmd\"])"
'
cat "$tmp/inuse.err"
test "$(cat "$tmp/inuse.status")" = 1
grep -F "image is in use" "$tmp/inuse.err"
$VDI_CHECK "$tmp/inuse.vdi"

# 3: slots the header counts and no entry uses, as a crash between an
# allocation and the next flush leaves them (the file holds them).
leak="$tmp/leak.vdi"
$MAKE_VDI --size 4M --blocks DFZD --seed leak --set cBlocksAllocated=4 "$leak"
truncate -s $(( 2 * M + 4 * M )) "$leak"
expect_status 3 $VDI_CHECK "$leak"
grep -Fx "$leak: 2 leaked slots were found on the image; this wastes space but does no harm to data." \
     "$tmp/out"
test ! -s "$tmp/err"
test "$(jq '."blocks-allocated", ."blocks-data"' <($VDI_IMG info --output=json "$leak") |
        tr '\n' ' ')" = "4 2 "

# 2: the file is shorter than its counted slots (by one byte).
short="$tmp/short.vdi"
cp "$leak" "$short"
truncate -s -1 "$short"
expect_status 2 $VDI_CHECK "$short"
grep -Fx "$short: 1 error was found on the image, and 2 leaked slots." \
     "$tmp/out"
grep -Fx "vdi-img: $short: the file ($(( 6 * M - 1 )) bytes) is shorter than its 4 allocated blocks" \
     "$tmp/err"

# 2: a fixed image with blocks that are not allocated.
holes="$tmp/holes.vdi"
$MAKE_VDI --size 4M --blocks DFDZ --seed holes --set type=2 "$holes"
expect_status 2 $VDI_CHECK "$holes"
grep -F "fixed image with 2 of 4 blocks allocated" "$tmp/err"
# Both problems at once: two errors, each said on stderr.
$MAKE_VDI --size 4M --blocks DFDZ --seed holes --set type=2 \
          --set cBlocksAllocated=4 "$tmp/holes2.vdi"
expect_status 2 $VDI_CHECK "$tmp/holes2.vdi"
grep -Fx "$tmp/holes2.vdi: 2 errors were found on the image, and 2 leaked slots." \
     "$tmp/out"
test "$(grep -c "^vdi-img: $tmp/holes2.vdi: " "$tmp/err")" -eq 2

# Several images: the worst status, the image that could not be
# checked first, then errors, then leaks; a line for each image.
expect_status 3 $VDI_CHECK "$a" "$leak" "$c0"
expect_status 2 $VDI_CHECK "$leak" "$short" "$a"
expect_status 1 $VDI_CHECK "$short" "$tmp/missing.vdi" "$leak"
expect_status 1 $VDI_CHECK "$tmp/missing.vdi" "$a"
test "$(wc -l < "$tmp/out")" -eq 2

#----------------------------------------------------------------------
# Usage.

$VDI_IMG --help > "$tmp/help"
grep '^Usage:' "$tmp/help"
grep -E '^  info +' "$tmp/help"
grep -E '^  check +' "$tmp/help"
grep -E '^  merge +' "$tmp/help"
$VDI_IMG info --help | grep -F 'Usage: vdi-img info [--chain]'
$VDI_IMG check --help | grep -F 'Usage: vdi-img check IMAGE...'
$VDI_IMG merge --help | grep -F 'Usage: vdi-img merge [--into-parent | --into-child]'
$VDI_IMG --version | grep -E '^vdi-img [0-9]+\.[0-9]+\.[0-9]+$'

# usage_error ARGS...: vdi-img ARGS must exit 1 with nothing on
# stdout, and on stderr one line that says what is wrong and a hint.
usage_error ()
{
    expect_status 1 $VDI_IMG "$@"
    test ! -s "$tmp/out"
    test "$(wc -l < "$tmp/err")" -eq 2
    grep -E "^vdi-img( [a-z]+)?: " "$tmp/err"
    grep -E "^Try 'vdi-img( [a-z]+)? --help' for more information\.$" \
         "$tmp/err"
}
usage_error
usage_error nosuch
grep -F "unknown command 'nosuch'" "$tmp/err"
usage_error --nosuch
usage_error info
usage_error info "$a" "$a"
usage_error info --bogus "$a"
grep -F "vdi-img info: unrecognized option '--bogus'" "$tmp/err"
usage_error info --output=xml "$a"
grep -F "unknown output format 'xml'" "$tmp/err"
usage_error info --output
usage_error info --parent-dir "$tmp" "$a"
usage_error check
usage_error check -x "$a"
sums="$(sha256_of "$c1") $(sha256_of "$c2")"
usage_error merge
usage_error merge "$c2" "$c1"
usage_error merge --into-parent --into-child "$c2"
grep -F "vdi-img merge: --into-parent and --into-child cannot be used together" \
     "$tmp/err"
usage_error merge --bogus "$c2"
usage_error merge --parent-dir
# None of them touched the images.
test "$(sha256_of "$c1") $(sha256_of "$c2")" = "$sums"
