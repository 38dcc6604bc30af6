#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Differencing images (type 4) are not supported yet: the plugin must
# refuse one, before serving, with one error line that names the file
# and says "differencing images are not supported yet".  Its parent
# still opens.

source ./functions.sh
set -e
set -x

requires nbdinfo --version

tmp="$(mktemp -d --suffix=.tmp test-vdi-differencing.XXXXXX)"
cleanup_fn rm -rf "$tmp"

$MAKE_VDI --size 4M --blocks DDZF --seed parent "$tmp/parent.vdi"
nbdkit -U - "$VDI_PLUGIN" "$tmp/parent.vdi" --run 'nbdinfo "$uri"'

# A 1.1+ diff and a v0 diff (no parent-modify UUID in v0), next to
# their parent.
$MAKE_VDI --parent "$tmp/parent.vdi" --blocks FZDF --seed child \
          "$tmp/child.vdi"
$MAKE_VDI --header v0 --parent "$tmp/parent.vdi" --blocks DFFZ \
          --seed child0 "$tmp/child0.vdi"
for f in child child0; do
    expect_refused "$tmp/$f.vdi" \
                   'differencing images are not supported yet'
done
