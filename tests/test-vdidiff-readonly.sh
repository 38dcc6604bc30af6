#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The vdidiff filter under nbdkit -r creates and changes nothing, in
# vdidiff= or in vdidiff-dir= (checksums, sizes and modification times
# of every file and folder):
#   - a missing layer is not created: the disk below is served as it
#     is, also with vdidiff-autoreset=true;
#   - an existing layer is served as it is, read-only; with
#     vdidiff-autoreset=true it reads as the disk below, as once reset,
#     but the file is not reset;
#   - -r is seen wherever it is on nbdkit's command line;
#   - the layer is locked shared: two servers with -r and a reader
#     share it, a writer is refused while they run;
#   - a layer of another parent is still refused.
# Clients: nbdinfo, nbdcopy, qemu-img, nbdsh.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires timeout --version
requires qemu-img --version

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-readonly.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export tmp
T=60
f="$VDIDIFF_FILTER"

# A base, and layers with data over it: diff.vdi, clones/alice.vdi.
$MAKE_VDI --size 6M+512 --seed ro-base --expect "$tmp/base.raw" "$tmp/base.vdi"
mkdir "$tmp/layers" "$tmp/clones"
nbdkit -U - --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/layers/diff.vdi" --run '
    nbdsh -u "$uri" -c "h.pwrite(b\"D\" * 300000, 2000000); h.flush()" &&
    nbdcopy "$uri" "$tmp/diff.raw"
'
nbdkit -U - --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff-dir="$tmp/clones" --run '
    nbdsh -u "nbd+unix:///alice?socket=$unixsocket" \
          -c "h.pwrite(b\"A\" * 5000, 512); h.flush()" &&
    nbdcopy "nbd+unix:///alice?socket=$unixsocket" "$tmp/alice.raw"
'
must_fail cmp -s "$tmp/base.raw" "$tmp/diff.raw"
must_fail cmp -s "$tmp/base.raw" "$tmp/alice.raw"

# Nothing under $tmp but out/ may change.
mkdir "$tmp/out"
before="$(tree_state "$tmp" --skip out)"
unchanged ()
{
    tree_unchanged "$before" "$tmp" --skip out
}

# serves_ro EXPECTED nbdkit-args...: nbdkit -r with these serves
# exactly EXPECTED, read-only (nbdinfo, nbdcopy, qemu-img), within
# $T seconds, and nothing changes.
serves_ro ()
{
    local expected="$1"
    shift
    rm -f "$tmp/out/"*
    t_expected="$expected" timeout $T nbdkit -U - "$@" --run '
        nbdinfo --is read-only "$uri" &&
        test "$(nbdinfo --size "$uri")" -eq "$(stat -c %s "$t_expected")" &&
        nbdcopy "$uri" "$tmp/out/served.raw" &&
        qemu-img compare -f raw -F raw "$t_expected" "$uri"
    '
    cmp "$expected" "$tmp/out/served.raw"
    unchanged
}

# No layer: the disk below, nothing created.
serves_ro "$tmp/base.raw" -r --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/layers/new.vdi"
serves_ro "$tmp/base.raw" -r --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/layers/new.vdi" vdidiff-autoreset=true
# Not even in a folder that does not exist.
serves_ro "$tmp/base.raw" -r --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/nodir/new.vdi"

# -r after the plugin's parameters, and --readonly, count too.
serves_ro "$tmp/base.raw" --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/layers/new.vdi" -r
serves_ro "$tmp/base.raw" --readonly --filter="$f" "$VDI_PLUGIN" \
    "$tmp/base.vdi" vdidiff="$tmp/layers/new.vdi"

# An existing layer: served as it is.
serves_ro "$tmp/diff.raw" -r --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/layers/diff.vdi"
# With autoreset: as once reset, the disk below; the file stays.
serves_ro "$tmp/base.raw" -r --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
    vdidiff="$tmp/layers/diff.vdi" vdidiff-autoreset=true

# vdidiff-dir=: alice as she is, bob (no layer) the disk below.
serves_ro "$tmp/alice.raw" -r -e alice --filter="$f" "$VDI_PLUGIN" \
    "$tmp/base.vdi" vdidiff-dir="$tmp/clones"
serves_ro "$tmp/base.raw" -r -e bob --filter="$f" "$VDI_PLUGIN" \
    "$tmp/base.vdi" vdidiff-dir="$tmp/clones"
serves_ro "$tmp/base.raw" -r -e alice --filter="$f" "$VDI_PLUGIN" \
    "$tmp/base.vdi" vdidiff-dir="$tmp/clones" vdidiff-autoreset=true
test ! -e "$tmp/clones/bob.vdi"

# Extents (nbdinfo --map) agree with the data.
nbdkit -U - -r --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/layers/new.vdi" --run 'nbdinfo --map "$uri"' \
       > "$tmp/out/map-new"
nbdkit -U - "$VDI_PLUGIN" "$tmp/base.vdi" -r \
       --run 'nbdinfo --map "$uri"' > "$tmp/out/map-base"
diff -u "$tmp/out/map-base" "$tmp/out/map-new"

# Shared lock: two servers with -r at once, and the plugin alone
# reading the layer; a writer is refused meanwhile.
start_server "$tmp/out/a.pid" "$tmp/out/a.sock" "$tmp/out/a.log" -r \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/layers/diff.vdi"
start_server "$tmp/out/b.pid" "$tmp/out/b.sock" "$tmp/out/b.log" -r \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/layers/diff.vdi"
for s in a b; do
    nbdcopy "$(uri_of "$tmp/out/$s.sock")" "$tmp/out/$s.raw"
    cmp "$tmp/diff.raw" "$tmp/out/$s.raw"
done
nbdkit -U - "$VDI_PLUGIN" "$tmp/layers/diff.vdi" readonly=true \
       --run 'nbdcopy "$uri" "$tmp/out/plugin.raw"'
cmp "$tmp/diff.raw" "$tmp/out/plugin.raw"
expect_start_failure "$tmp/out/err" \
    "nbdkit: error: $tmp/layers/diff.vdi: image is in use: another process has opened it" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/layers/diff.vdi"
stop_server "$tmp/out/a.pid"
stop_server "$tmp/out/b.pid"
unchanged

# A layer of another parent is refused under -r as well.
$MAKE_VDI --size 6M+512 --seed ro-other "$tmp/out/other.vdi"
status=0
timeout $T nbdkit -U - -r --filter="$f" "$VDI_PLUGIN" "$tmp/out/other.vdi" \
    vdidiff="$tmp/layers/diff.vdi" --run 'nbdinfo --size "$uri"' \
    2> "$tmp/out/err" || status=$?
cat "$tmp/out/err"
test $status -ne 0
test $status -lt 124
grep "error: $tmp/layers/diff.vdi: differencing image of parent" "$tmp/out/err"
unchanged
