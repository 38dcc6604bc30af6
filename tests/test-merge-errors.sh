#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# What "vdi-img merge" refuses.  Each refusal must exit with status 1,
# print nothing on stdout and exactly one line on stderr, which names
# the file and says the problem (the literal message of libvdi), and
# write nothing: every file of the folder keeps its sha256 and no
# journal (IMAGE.merge) is left.
#
#   - the parent has two children, in both directions;
#   - an image in use: nbdkit with the plugin serving, read-write
#     (which locks the image it serves at start) and read-only (-r),
#     the parent, the image or the image's child; a server that has
#     written to the parent; in both directions; and a
#     child of IMAGE locked alone by another process (into the parent,
#     which would relink it);
#   - a base image (nothing to merge), a missing parent, a child larger
#     than its parent (into the parent), a version 0 image that would
#     receive the data (its child into it, or its parent into it);
#   - with --registry, the image that would be removed is registered;
#   - usage errors: both directions, no IMAGE, two IMAGEs (a second
#     line then says to try --help).
#
# Then: a child whose parent nbdkit serves read-only cannot be merged
# into it, and once the server has stopped the same merge succeeds and
# the disk reads as before.  Last, a version 0 image that is only read
# and removed (a parent merged into its child, a child into its
# parent) does not stop the merge, as vdi-img(1) says.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/test-chain-functions.sh"
source "$abs_srcdir/write-functions.sh"

requires jq --version

# expect_merge_refused DIR LINE [vdi-img merge args...]
#
# "vdi-img merge ARGS" must exit with status 1, print nothing on
# stdout and exactly LINE on stderr, and leave every file under DIR
# as it was, with no journal.
expect_merge_refused ()
{
    local dir="$1" line="$2" status=0
    shift 2
    folder_sums "$dir" > "$tmp/refused.before"
    $VDI_IMG merge "$@" > "$tmp/refused.out" 2> "$tmp/refused.err" ||
        status=$?
    cat "$tmp/refused.out" "$tmp/refused.err"
    test "$status" -eq 1
    test ! -s "$tmp/refused.out"
    printf '%s\n' "$line" | diff -u - "$tmp/refused.err"
    folder_sums "$dir" | diff -u "$tmp/refused.before" -
    test -z "$(find "$dir" -name '*.merge*')"
}

# expect_usage_error LINE [vdi-img merge args...]: the same for a
# usage error, which says LINE and then where to find help (the chain
# in $vm must not change).
expect_usage_error ()
{
    local line="$1"
    shift
    expect_merge_refused "$vm" \
        "$(printf '%s\n%s' "$line" \
                  "Try 'vdi-img merge --help' for more information.")" "$@"
}

# A chain of three, as VirtualBox lays it out: base.vdi, then
# Snapshots/mid.vdi and Snapshots/top.vdi.
vm="$tmp/vm"
mkdir -p "$vm/Snapshots"
base="$vm/base.vdi" mid="$vm/Snapshots/mid.vdi" top="$vm/Snapshots/top.vdi"
$MAKE_VDI --size 4M --blocks DZFD --seed base "$base"
$MAKE_VDI --type diff --parent "$base" --blocks FDZD --seed mid "$mid"
$MAKE_VDI --type diff --parent "$mid" --blocks DFFZ --seed top "$top"
top_sha="$(served_sha256 "$top")"

# --- Two children -----------------------------------------------------

two="$tmp/two"
mkdir -p "$two/Snapshots"
$MAKE_VDI --size 4M --blocks DZFD --seed base "$two/base.vdi"
$MAKE_VDI --type diff --parent "$two/base.vdi" --blocks FDZD --seed a \
          "$two/Snapshots/a.vdi"
$MAKE_VDI --type diff --parent "$two/base.vdi" --blocks DFFZ --seed b \
          "$two/Snapshots/b.vdi"
expect_merge_refused "$two" \
    "vdi-img: $two/Snapshots/a.vdi: the parent $two/base.vdi has another child, $two/Snapshots/b.vdi, which would see its content change" \
    "$two/Snapshots/a.vdi"
expect_merge_refused "$two" \
    "vdi-img: $two/Snapshots/a.vdi: the parent $two/base.vdi has another child, $two/Snapshots/b.vdi, which would lose its parent" \
    --into-child "$two/Snapshots/a.vdi"

# --- In use -----------------------------------------------------------

# served_refusal SERVED NAMED HOW [nbdkit options]: with nbdkit
# serving SERVED, merging mid in both directions is refused because
# NAMED is in use: "another process HOW it".
served_refusal ()
{
    local served="$1" named="$2" how="$3" direction
    shift 3
    start_server "$tmp/srv.pid" "$tmp/srv.sock" "$tmp/srv.log" \
                 "$@" "$VDI_PLUGIN" file="$served"
    for direction in --into-parent --into-child; do
        expect_merge_refused "$vm" \
            "vdi-img: $named: image is in use: another process $how" \
            $direction "$mid"
    done
    stop_server "$tmp/srv.pid"
}
# A writable server holds its top image's exclusive lock from the
# start, a read-only one (-r) a shared lock; both hold the parents
# with a shared lock.  The merge reads the parent (shared lock) before
# it locks it, and locks mid at once.
served_refusal "$base" "$base" "has it open for writing"
served_refusal "$mid" "$mid" "has opened it"
served_refusal "$base" "$base" "has opened it" -r
served_refusal "$mid" "$mid" "has opened it" -r
# Serving top holds its parents too: mid is the first the merge wants
# for itself.
served_refusal "$top" "$mid" "has opened it"
served_refusal "$top" "$mid" "has opened it" -r

# A server that has written to the parent holds its exclusive lock:
# the merge cannot even read it.
vmw="$tmp/vmw"
cp -a "$vm" "$vmw"
start_server "$tmp/srv.pid" "$tmp/srv.sock" "$tmp/srv.log" \
             "$VDI_PLUGIN" file="$vmw/base.vdi"
nbdsh -u "$(uri_of "$tmp/srv.sock")" \
      -c 'h.pwrite(b"x" * 512, 0)' -c 'h.flush()'
for direction in --into-parent --into-child; do
    expect_merge_refused "$vmw" \
        "vdi-img: $vmw/base.vdi: image is in use: another process has it open for writing" \
        $direction "$vmw/Snapshots/mid.vdi"
done
stop_server "$tmp/srv.pid"

# A child of IMAGE that another process has open, alone (nbdkit would
# hold the whole chain): into the parent it would be relinked.
$PYTHON -c '
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))
open(sys.argv[2], "w").close()
time.sleep(60)
' "$top" "$tmp/locked" &
locker=$!
cleanup_fn stop_pid "$locker"
for (( i = 0; i < 200; ++i )); do
    test -e "$tmp/locked" && break
    sleep 0.05
done
test -e "$tmp/locked"
expect_merge_refused "$vm" \
    "vdi-img: $top: image is in use: another process has opened it" \
    "$mid"
stop_pid "$locker"

# --- The images themselves ------------------------------------------

# A base: nothing to merge.
for direction in --into-parent --into-child; do
    expect_merge_refused "$vm" \
        "vdi-img: $base: not a differencing image: there is nothing to merge" \
        $direction "$base"
done

# A missing parent, where it was looked for.
lost="$tmp/lost"
mkdir -p "$lost/Snapshots"
$MAKE_VDI --size 4M --blocks DZFD --seed base \
          --uuid-create 10570000-0000-4000-8000-000000000000 "$lost/base.vdi"
$MAKE_VDI --type diff --parent "$lost/base.vdi" --blocks FDZD --seed c \
          "$lost/Snapshots/c.vdi"
rm "$lost/base.vdi"
for direction in --into-parent --into-child; do
    expect_merge_refused "$lost" \
        "vdi-img: $lost/Snapshots/c.vdi: parent 10570000-0000-4000-8000-000000000000 not found; looked in $lost/Snapshots, $lost (use --parent-dir or --registry)" \
        $direction "$lost/Snapshots/c.vdi"
done

# A child larger than its parent, into the parent.
big="$tmp/big"
mkdir -p "$big/Snapshots"
$MAKE_VDI --size 4M --blocks DZFD --seed base "$big/base.vdi"
$MAKE_VDI --type diff --parent "$big/base.vdi" --size 5M --blocks FDZDD \
          --seed c "$big/Snapshots/c.vdi"
expect_merge_refused "$big" \
    "vdi-img: $big/Snapshots/c.vdi: its size (5242880 bytes) is larger than the size of its parent $big/base.vdi (4194304 bytes): resize the parent first" \
    "$big/Snapshots/c.vdi"

# A version 0 image cannot receive data: a version 0 parent into the
# parent, a version 0 differencing image into the child.
v0="$tmp/v0"
mkdir -p "$v0/Snapshots"
$MAKE_VDI --header v0 --size 4M --blocks DZFD --seed base "$v0/base.vdi"
$MAKE_VDI --type diff --parent "$v0/base.vdi" --blocks FDZD --seed c \
          "$v0/Snapshots/c.vdi"
expect_merge_refused "$v0" \
    "vdi-img: $v0/base.vdi: writing to version 0 images is not supported" \
    "$v0/Snapshots/c.vdi"
v0c="$tmp/v0c"
mkdir -p "$v0c/Snapshots"
$MAKE_VDI --size 4M --blocks DZFD --seed base "$v0c/base.vdi"
$MAKE_VDI --header v0 --type diff --parent "$v0c/base.vdi" --blocks FDZD \
          --seed c "$v0c/Snapshots/c.vdi"
expect_merge_refused "$v0c" \
    "vdi-img: $v0c/Snapshots/c.vdi: writing to version 0 images is not supported" \
    --into-child "$v0c/Snapshots/c.vdi"

# --- A registered image is never removed ------------------------------

reg="$tmp/reg"
mkdir -p "$reg/Snapshots"
$MAKE_VDI --size 4M --blocks DZFD --seed base \
          --uuid-create 4e600000-0000-4000-8000-000000000000 "$reg/base.vdi"
$MAKE_VDI --type diff --parent "$reg/base.vdi" --blocks FDZD --seed c \
          --uuid-create 4e600000-0000-4000-8000-00000000000c \
          "$reg/Snapshots/c.vdi"
write_vbox "$reg/Reg.vbox" 4e600000-0000-4000-8000-00000000000c <<'EOF'
        <HardDisk uuid="{4e600000-0000-4000-8000-000000000000}" location="base.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{4e600000-0000-4000-8000-00000000000c}" location="Snapshots/c.vdi" format="VDI"/>
        </HardDisk>
EOF
expect_merge_refused "$reg" \
    "vdi-img: $reg/Snapshots/c.vdi: medium 4e600000-0000-4000-8000-00000000000c is registered in $reg/Reg.vbox, which would name it after the merge removed it" \
    --registry "$reg/Reg.vbox" "$reg/Snapshots/c.vdi"
expect_merge_refused "$reg" \
    "vdi-img: $reg/base.vdi: medium 4e600000-0000-4000-8000-000000000000 is registered in $reg/Reg.vbox, which would name it after the merge removed it" \
    --registry "$reg/Reg.vbox" --into-child "$reg/Snapshots/c.vdi"

# --- Usage ------------------------------------------------------------

expect_usage_error \
    "vdi-img merge: --into-parent and --into-child cannot be used together" \
    --into-parent --into-child "$mid"
expect_usage_error "vdi-img merge: expected one IMAGE, got 0"
expect_usage_error "vdi-img merge: expected one IMAGE, got 0" --into-child
expect_usage_error "vdi-img merge: expected one IMAGE, got 2" "$mid" "$top"

# Nothing above touched the chain: it serves what it served.
test "$(served_sha256 "$top")" = "$top_sha"

# --- Served read-only, then stopped -----------------------------------

start_server "$tmp/srv.pid" "$tmp/srv.sock" "$tmp/srv.log" \
             -r "$VDI_PLUGIN" file="$base"
expect_merge_refused "$vm" \
    "vdi-img: $base: image is in use: another process has opened it" \
    "$mid"
stop_server "$tmp/srv.pid"
$VDI_IMG merge "$mid"
test ! -e "$mid"
test ! -e "$mid.merge"
$VDI_CHECK "$base" "$top"
test "$(served_sha256 "$top")" = "$top_sha"
test "$($VDI_IMG info --output=json "$top" | jq -r '."parent-uuid"')" = \
     "$(vdi_uuid "$base")"

# --- Version 0 images that are only read -----------------------------

# vdi-img(1) refuses a version 0 image only where it would receive
# data.  Into the child, a version 0 parent gives its blocks and is
# removed, and the child, a version 1.1 image, becomes the base; into
# the parent, a version 0 differencing image gives its blocks to a
# version 1.1 parent and is removed.  Nothing is written to the
# version 0 image either way.
v0_sha="$(served_sha256 "$v0/Snapshots/c.vdi")"
$VDI_IMG merge --into-child "$v0/Snapshots/c.vdi"
test ! -e "$v0/base.vdi"
$VDI_CHECK "$v0/Snapshots/c.vdi"
test "$(served_sha256 "$v0/Snapshots/c.vdi")" = "$v0_sha"

v0c_sha="$(served_sha256 "$v0c/Snapshots/c.vdi")"
$VDI_IMG merge "$v0c/Snapshots/c.vdi"
test ! -e "$v0c/Snapshots/c.vdi"
$VDI_CHECK "$v0c/base.vdi"
test "$(served_sha256 "$v0c/base.vdi")" = "$v0c_sha"
