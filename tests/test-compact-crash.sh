#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# A compaction killed at any point leaves an image that checks clean
# (leaked slots allowed) and reads what it read before, and running it
# again finishes it.
#
# A base image and a differencing image over a parent with data, each
# with zero slots spread through data slots, ZERO and FREE entries.
# kill-at.c counts the calls by which the compaction changes files;
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

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-compact-crash.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
seed="${TEST_SEED:-1}"
echo "$0: TEST_SEED=$seed"

# The pristine images: in their own folder, so that the diff finds
# its parent wherever the folder is copied.
m="$tmp/pristine"
mkdir "$m"
$MAKE_VDI --size 24M --block-size 1M --seed "$seed" \
          --blocks dDdDZFddDDdDFdDDdZdDDddD "$m/base.vdi"
$MAKE_VDI --size 24M --block-size 1M --seed "$seed" \
          --blocks DDDDDDDDDDDDDDDDDDDDDDDD "$m/parent.vdi"
$MAKE_VDI --type diff --parent "$m/parent.vdi" --size 24M \
          --block-size 1M --seed "$seed" \
          --blocks dFdDZDddFDdDdFdDdZdDdDFd "$m/diff.vdi"

disk_sum ()
{
    nbdkit -U - -r "$VDI_PLUGIN" "$1" \
           --run 'nbdcopy "$uri" - | sha256sum' | cut -d' ' -f1
}

# try IMAGE: kill the compaction of IMAGE at each chosen point.
try ()
{
    local name="$1" d="$tmp/$1" before after n k
    rm -rf "$d"; cp -a "$m" "$d"
    before="$(disk_sum "$d/$name.vdi")"
    KILL_AT_COUNT="$tmp/$name.count" LD_PRELOAD="$KILL_AT_LIB" \
        $VDI_IMG compact "$d/$name.vdi"
    n="$(cat "$tmp/$name.count")"
    test "$n" -gt 5
    test "$(disk_sum "$d/$name.vdi")" = "$before"
    after="$(sha256sum < "$d/$name.vdi")"

    for k in $(kill_points "$n" "$seed"); do
        rm -rf "$d"; cp -a "$m" "$d"
        killed_at "$k" $VDI_IMG compact "$d/$name.vdi"
        test "$(disk_sum "$d/$name.vdi")" = "$before"
        check_after_crash "$d/$name.vdi"

        # Run again, it finishes: the same file as an uninterrupted run.
        $VDI_IMG compact "$d/$name.vdi"
        test "$(disk_sum "$d/$name.vdi")" = "$before"
        $VDI_CHECK "$d/$name.vdi"
        test "$(sha256sum < "$d/$name.vdi")" = "$after"
    done
}

try base
try diff
