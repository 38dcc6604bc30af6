#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# A merge killed at any point leaves every disk reading what it read
# before, and running it again finishes it.
#
# A machine folder holds base.vdi and, in Snapshots, c1.vdi over it
# and c2.vdi over c1, written through the vdidiff filter: data in half
# of c1's blocks, zeroed ranges over the base's data, partial blocks,
# and a few writes in c2.  Three merges are tried: c1 into the base
# (c2 is relinked), the base into c1 (c1 becomes a base), and c2 into
# c1 (the leaf itself is merged away).  kill-at.c counts the calls by
# which the merge changes files; the merge is then killed (SIGKILL)
# just before each of them in turn, or before a fixed random sample of
# them and the last ten when there are many.  After each kill: the
# disk (c2, or c1 once c2 is gone) reads the same sha256 as before,
# every image left checks clean (leaked slots allowed), and the same
# merge run again (unless it had finished) succeeds, leaves the same
# disk, and removes the image it merged away and its journal.
#
# The sample depends only on TEST_SEED (default 1), so a failure
# reproduces.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/write-functions.sh"

requires nbdcopy --version
requires_nbdsh
requires sha256sum --version
requires test -f "$KILL_AT_LIB"
requires test -x "$VDI_IMG"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-merge-crash.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
seed="${TEST_SEED:-1}"
echo "$0: TEST_SEED=$seed"

# The pristine machine folder.
m="$tmp/pristine"
mkdir -p "$m/Snapshots"
$MAKE_VDI --size 32M --block-size 1M --blocks DDDDDDDDDDDDDDDDZZFFDDDDDDDDDDDD \
    --seed "$seed" "$m/base.vdi"
nbdkit -U - "$VDI_PLUGIN" "$m/base.vdi" \
       --filter="$VDIDIFF_FILTER" vdidiff="$m/Snapshots/c1.vdi" \
       --run 'nbdsh -u "$uri" -c -' <<EOF
import random
random.seed($seed)
mib = 1 << 20
for b in random.sample(range(32), 16):
    h.pwrite(random.randbytes(mib), b * mib)
h.zero(3 * mib, 2 * mib)
h.pwrite(random.randbytes(5000), 7 * mib + 1234)
h.pwrite(random.randbytes(mib), 20 * mib + mib // 2)
h.flush()
EOF
nbdkit -U - "$VDI_PLUGIN" "$m/Snapshots/c1.vdi" \
       --filter="$VDIDIFF_FILTER" vdidiff="$m/Snapshots/c2.vdi" \
       --run 'nbdsh -u "$uri" -c -' <<EOF
import random
random.seed($seed + 1)
h.pwrite(random.randbytes(300000), 9 << 20)
h.zero(1 << 20, 100000)
h.flush()
EOF

# disk_sum FOLDER: the sha256 of the disk the machine's leaf shows.
disk_sum ()
{
    local leaf="$1/Snapshots/c2.vdi"
    [ -f "$leaf" ] || leaf="$1/Snapshots/c1.vdi"
    nbdkit -U - -r "$VDI_PLUGIN" "$leaf" \
           --run 'nbdcopy "$uri" - | sha256sum' | cut -d' ' -f1
}
before="$(disk_sum "$m")"

# try NAME REMOVED IMAGE [MERGE-OPTIONS...]
#
# Count the kill points of the merge of IMAGE, then kill it at each
# chosen one.  REMOVED is the file the merge removes.
try ()
{
    local name="$1" removed="$2" image="$3" d="$tmp/$1" n k
    shift 3

    rm -rf "$d"; cp -a "$m" "$d"
    KILL_AT_COUNT="$tmp/$name.count" LD_PRELOAD="$KILL_AT_LIB" \
        $VDI_IMG merge -p "$@" "$d/$image"
    n="$(cat "$tmp/$name.count")"
    test "$n" -gt 5
    test "$(disk_sum "$d")" = "$before"

    for k in $(kill_points "$n" "$seed"); do
        rm -rf "$d"; cp -a "$m" "$d"
        killed_at "$k" $VDI_IMG merge -p "$@" "$d/$image"
        test "$(disk_sum "$d")" = "$before"
        check_after_crash $(find "$d" -name '*.vdi')

        # Killed after its last removal, the merge had finished: there
        # is nothing to run again.
        if [ -e "$d/$removed" ] || [ -n "$(find "$d" -name '*.merge*')" ]; then
            $VDI_IMG merge "$@" "$d/$image"
        fi
        test "$(disk_sum "$d")" = "$before"
        test ! -e "$d/$removed"
        test -z "$(find "$d" -name '*.merge*')"
        check_after_crash $(find "$d" -name '*.vdi')
    done
}

# c1 into the base: c2 is relinked to the base.
try into-base Snapshots/c1.vdi Snapshots/c1.vdi
# The base into c1: c1 becomes a base.
try into-c1 base.vdi Snapshots/c1.vdi --into-child
# c2, the leaf, into c1.
try leaf-into-c1 Snapshots/c2.vdi Snapshots/c2.vdi
