#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The real VirtualBox and QEMU images in the shared test data folder
# (../shared/testdata, see its MANIFEST.md): each must open, show the
# bytes qemu-img convert and 7-Zip show and the map qemu-img map shows,
# and must not be modified (sha256 before and after).

source ./functions.sh
set -e
set -x

requires_testdata
requires qemu-img --version
requires 7zz i
requires jq --version
requires nbdinfo --version
requires nbdcopy --version
requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-vdi-testdata.XXXXXX)"
cleanup_fn rm -rf "$tmp"

files=(
    JeremyAnsel_SharpSevenZip/vdi.vdi
    foliagecanine_tritium-os/test_704e979.vdi
    foliagecanine_tritium-os/test_ecfd517_qemu.vdi
    foliagecanine_tritium-os/test_f72321a_qemu_then_vbox.vdi
    davidepianca98_hoho-os/hdd.vdi
    davidepianca98_hoho-os/disc.vdi
)
# Every .vdi in the folder is in the list above.
test "$(cd "$TESTDATA" && find . -name '*.vdi' | wc -l)" -eq ${#files[@]}

n=0
for f in "${files[@]}"; do
    n=$((n + 1))
    path="$TESTDATA/$f"
    t="$tmp/$n"
    if [ ! -f "$path" ]; then
        echo "$0: $path is missing from the test data" >&2
        exit 1
    fi
    # The file is the one MANIFEST.md describes, and stays so.
    sum="$(sha256sum "$path" | cut -d' ' -f1)"
    manifest_sum="$(awk -v f="### $f" '
        $0 == f { found = 1; next }
        found && /sha256/ { sub(/.*sha256 `/, ""); sub(/`.*/, ""); print; exit }
        ' "$TESTDATA/MANIFEST.md")"
    if [ -n "$manifest_sum" ]; then
        test "$sum" = "$manifest_sum"
    fi

    qemu-img convert -f vdi -O raw "$path" "$t.qemu"
    qemu-img map --output=json -f vdi "$path" | normalise_qemu_map > "$t.qmap"

    # The plugin is given the shared file itself: it must only read it.
    # (Scratch files go to $t.plugin.*, through a symlink.)
    ln -s "$path" "$t.vdi"
    check_with_plugin "$t.vdi" "$t.qemu" "$t.qmap"

    cmp "$t.qemu" <(7zz x -tvdi -so "$path")

    test "$(sha256sum "$path" | cut -d' ' -f1)" = "$sum"
done
test $n -eq 6

# The images with data really show it (the FAT floppy and disk): the
# first MiB is not all zeros.
for f in foliagecanine_tritium-os/test_704e979.vdi davidepianca98_hoho-os/hdd.vdi
do
    nbdkit -U - -r "$VDI_PLUGIN" "$TESTDATA/$f" \
           --run 'nbdcopy "$uri" -' > "$tmp/first"
    if cmp -s -n 1048576 "$tmp/first" /dev/zero; then
        echo "$0: $f reads as zeros" >&2
        exit 1
    fi
done
