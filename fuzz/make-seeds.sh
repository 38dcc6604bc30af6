#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# make-seeds.sh SRCDIR OUTDIR: write the seed corpora of the libFuzzer
# harnesses into OUTDIR/fuzz-image, OUTDIR/fuzz-write and
# OUTDIR/fuzz-registry (see the top of each harness for its input).
#
#   fuzz-image     images written by tests/make-vdi.py, in the
#                  harness's short form
#   fuzz-write     a few request sequences on each kind of image
#   fuzz-registry  the settings files of registry-seeds/, and those of
#                  $TESTDATA if it is there (they are not ours to
#                  commit)

set -euo pipefail

srcdir="$1"
out="$2"
python="${PYTHON:-python3}"
[ "$python" != no ] || python=python3
# The parent UUID of fuzz-common.h's base.vdi (FUZZ_BASE_UUID).
base_uuid=b45eb45e-0000-4000-8000-0000b45eb45e

mkdir -p "$out/fuzz-image" "$out/fuzz-write" "$out/fuzz-registry"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# bytes N...: write each number as a byte.
bytes ()
{
    local n
    for n; do printf "\\$(printf %03o "$n")"; done
}

# image NAME make-vdi.py-args...: the first 4 KiB of the image, then
# the number of 128 KiB units the harness adds to cover the rest.
image ()
{
    local name="$1" size units
    shift
    "$python" "$srcdir/tests/make-vdi.py" "$@" "$tmp/$name.vdi" >/dev/null
    size="$(stat -c %s "$tmp/$name.vdi")"
    units=$(( size > 4096 ? (size - 4096 + 131071) / 131072 : 0 ))
    { head -c 4096 "$tmp/$name.vdi"; bytes "$units"; } \
        > "$out/fuzz-image/$name"
}

small="--size 1M --block-size 128K"
image dynamic $small --align 512 --blocks DZFDdF --seed 1
image shuffled $small --align none --blocks DDZD --shuffle --block-extra 512 \
      --header 1.1 --seed 2
image v0 --header v0 --size 512K+1000 --block-size 128K --blocks DFZD --seed 3
image fixed --type fixed --size 384K --block-size 128K --align 512 --seed 4
image undo --type undo $small --align 512 --blocks FD --seed 5
image diff --type diff $small --align 512 --blocks FDZF --seed 6 \
      --uuid-linkage "$base_uuid"
image diff-orphan --type diff $small --align 512 --blocks DF --seed 7

# request OP OFFSET LENGTH-1 FILL: one request of fuzz-write (the
# flags are in the high bits of OP).
request ()
{
    bytes "$1" $(( $2 & 255 )) $(( $2 >> 8 & 255 )) $(( $2 >> 16 & 255 )) \
          $(( $3 & 255 )) $(( $3 >> 8 & 255 )) $(( $3 >> 16 & 255 )) "$4"
}

# Operations (fuzz-write.c enum op) and flags.
write=0 zero=1 fast_zero=2 trim=3 flush=4 read=5 extents=6 reopen=7 crash=8
fua=32 blocks=64 aligned=128

for kind in 0 1 2 3; do
    for layout in "$kind" $(( kind | 4 | 16 )) $(( kind | 8 | 32 )); do
        {
            # 2048 sectors: 1 MiB, or 2500 sectors: a partial block.
            if [ $(( layout & 4 )) -eq 0 ]; then
                bytes "$layout" 0xff 0x07
            else
                bytes "$layout" 0xc3 0x09
            fi
            request $(( write | aligned | blocks )) 0 0 17
            request $write 200000 70000 35
            request $(( write | fua )) 131000 2000 0
            request $(( zero | aligned | blocks )) 262144 1 0
            request $fast_zero 5000 100000 0
            request $(( trim | fua )) 300000 9000 0
            request $crash 0 0 0
            request $flush 0 0 0
            request $(( write | aligned | blocks )) 393216 0 0
            request $extents 0 1000000 0
            request $reopen 0 0 0
            request $read 100 300000 0
        } > "$out/fuzz-write/layout-$layout"
    done
done

cp "$srcdir"/fuzz/registry-seeds/* "$out/fuzz-registry/"
if [ -d "${TESTDATA:-}" ]; then
    for f in "$TESTDATA"/*/*.vbox "$TESTDATA"/*/*.xml; do
        [ -f "$f" ] || continue
        d="$(basename "$(dirname "$f")")"
        cp "$f" "$out/fuzz-registry/testdata-$d-$(basename "$f")"
    done
fi
