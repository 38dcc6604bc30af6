#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# nbdkit loads the plugin by path: --dump-plugin names it "vdi" and
# prints its own vdi_* lines, and --help lists the file= parameter.

source ./functions.sh
set -e
set -x

tmp="$(mktemp -d --suffix=.tmp test-vdi-dump-plugin.XXXXXX)"
cleanup_fn rm -rf "$tmp"

nbdkit "$VDI_PLUGIN" --dump-plugin > "$tmp/dump"
cat "$tmp/dump"
grep '^name=vdi$' "$tmp/dump"
grep '^magic_config_key=file$' "$tmp/dump"
grep '^vdi_[a-z_]*=' "$tmp/dump"
# The plugin answers extents.
grep '^has_extents=1$' "$tmp/dump"

nbdkit "$VDI_PLUGIN" --help > "$tmp/help"
cat "$tmp/help"
grep 'file=' "$tmp/help"

nbdkit --version
nbdkit "$VDI_PLUGIN" --version | grep '^vdi '
