#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# nbdkit loads the plugin by path: --dump-plugin names it "vdi" and
# prints its own vdi_* lines, and --help lists the file= parameter and
# every debug flag (each exported *_debug_* variable) of the plugin and
# of the vdidiff filter.

source ./functions.sh
set -e
set -x

requires nm --version

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

# help_names_debug_flags SO HELP-ARGS...
help_names_debug_flags ()
{
    local so="$1" flags flag
    shift
    nbdkit "$@" --help > "$tmp/help"
    flags="$(nm -D --defined-only "$so" |
             sed -n 's/^.* \([a-z]*\)_debug_\([a-z_]*\)$/\1.\2/p')"
    test -n "$flags"
    for flag in $flags; do
        grep -F -- "-D $flag=1 " "$tmp/help"
    done
}
help_names_debug_flags "$VDI_PLUGIN" "$VDI_PLUGIN"
help_names_debug_flags "$VDIDIFF_FILTER" --filter="$VDIDIFF_FILTER" null

nbdkit --version
nbdkit "$VDI_PLUGIN" --version | grep '^vdi '
