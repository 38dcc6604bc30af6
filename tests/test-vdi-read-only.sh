#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The plugin is read-only for now: writes, zeroes and trims through
# nbdsh must fail, the data must read back unchanged, and the image
# file must not change.  This uses a long-lived nbdkit (start_nbdkit)
# on a Unix socket with a unique name.

source ./functions.sh
set -e
set -x

requires_nbdsh

tmp="$(mktemp -d --suffix=.tmp test-vdi-read-only.XXXXXX)"
sock="$(mktemp -u /tmp/nbdkit-test-sock.XXXXXX)"
pid="$tmp/nbdkit.pid"
cleanup_fn rm -rf "$tmp"
cleanup_fn rm -f "$sock"

$MAKE_VDI --size 4M --blocks DZFD --seed ro --expect "$tmp/expect" \
          "$tmp/disk.vdi"
sum="$(sha256_of "$tmp/disk.vdi")"

start_nbdkit -P "$pid" -U "$sock" "$VDI_PLUGIN" file="$tmp/disk.vdi"

export t_expect="$tmp/expect"
nbdsh -u "nbd+unix:///?socket=$sock" -c '
import os
expect = open(os.environ["t_expect"], "rb").read()
print("read-only flag:", h.is_read_only())
for off in (0, 1048576, 2097152 + 512, 3 * 1048576 + 100):
    try:
        h.pwrite(b"\xaa" * 4096, off)
    except nbd.Error as e:
        print("pwrite at %d failed as it should: %s" % (off, e))
    else:
        assert False, "pwrite at %d succeeded" % off
for name, fn in (("zero", lambda: h.zero(65536, 0)),
                 ("trim", lambda: h.trim(65536, 1048576))):
    try:
        fn()
    except nbd.Error as e:
        print("%s failed as it should: %s" % (name, e))
    else:
        assert False, "%s succeeded" % name
assert h.pread(len(expect), 0) == expect
'

# With -r too (the server then refuses writes itself).
nbdkit -r -U - "$VDI_PLUGIN" "$tmp/disk.vdi" --run '
    nbdsh -u "$uri" -c "assert h.is_read_only()"
'

# The image is untouched.
kill_nbdkit "$(cat "$pid")"
test "$(sha256_of "$tmp/disk.vdi")" = "$sum"
