#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# A resize killed at any point leaves an image that checks clean
# (leaked slots allowed) and reads what it read before, or the grown
# disk (the old bytes, then zeros); running it again finishes it.
#
# A base image and a differencing image over a parent with data, both
# grown so far that the map runs into the data and the first slots
# move.  kill-at.c counts the calls by which the resize changes files;
# it is then killed (SIGKILL) just before each of them in turn, or
# before a fixed random sample of them and the last ten when there are
# many.  The sample depends only on TEST_SEED (default 1).

source ./functions.sh
set -e
set -x

source "$abs_srcdir/write-functions.sh"

requires nbdcopy --version
requires sha256sum --version
requires test -f "$KILL_AT_LIB"
requires test -x "$VDI_IMG"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-resize-crash.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
seed="${TEST_SEED:-1}"
echo "$0: TEST_SEED=$seed"

# 512 entries of 128 KiB blocks after 16, the data right after the
# map: the first slot moves.
new_size=$(( 64 * 1024 * 1024 ))

# The pristine images: in their own folder, so that the diff finds
# its parent wherever the folder is copied.
m="$tmp/pristine"
mkdir "$m"
$MAKE_VDI --size 2M --block-size 128K --block-extra 512 --align none \
          --seed "$seed" --shuffle --blocks DdDZFdDDdFDdDDZd "$m/base.vdi"
$MAKE_VDI --size 64M --block-size 128K --seed "${seed}p" --align none \
          --weights 1,0,0,0 "$m/parent.vdi"
$MAKE_VDI --type diff --parent "$m/parent.vdi" --size 2M \
          --block-size 128K --align none --seed "$seed" \
          --blocks DFdDZDddFDdDdFdD "$m/diff.vdi"

disk_sum ()
{
    nbdkit -U - -r "$VDI_PLUGIN" "$1" \
           --run 'nbdcopy "$uri" - | sha256sum' | cut -d' ' -f1
}

# try IMAGE: kill the resize of IMAGE at each chosen point.
try ()
{
    local name="$1" d="$tmp/$1" before grown n k sum
    rm -rf "$d"; cp -a "$m" "$d"
    before="$(disk_sum "$d/$name.vdi")"
    rm -f "$tmp/grown"
    nbdkit -U - -r "$VDI_PLUGIN" "$d/$name.vdi" \
           --run "nbdcopy \"\$uri\" \"$tmp/grown\""
    truncate -s "$new_size" "$tmp/grown"
    grown="$(sha256sum < "$tmp/grown" | cut -d' ' -f1)"
    KILL_AT_COUNT="$tmp/$name.count" LD_PRELOAD="$KILL_AT_LIB" \
        $VDI_IMG resize "$d/$name.vdi" "$new_size"
    n="$(cat "$tmp/$name.count")"
    test "$n" -gt 5
    test "$(disk_sum "$d/$name.vdi")" = "$grown"

    for k in $(kill_points "$n" "$seed"); do
        rm -rf "$d"; cp -a "$m" "$d"
        killed_at "$k" $VDI_IMG resize "$d/$name.vdi" "$new_size"
        sum="$(disk_sum "$d/$name.vdi")"
        test "$sum" = "$before" || test "$sum" = "$grown"
        check_after_crash "$d/$name.vdi"

        # Run again, it finishes.
        $VDI_IMG resize "$d/$name.vdi" "$new_size"
        test "$(disk_sum "$d/$name.vdi")" = "$grown"
        check_after_crash "$d/$name.vdi"
    done
}

try base
try diff
