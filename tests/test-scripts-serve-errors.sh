#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# ../scripts/vdi-serve says it serves only once a client gets the disk:
#   - --diff with a differencing image that nbdkit refuses, before it
#     forks (not a differencing image, a missing folder) or after
#     (another parent, another size): in the background and in the
#     foreground vdi-serve exits 1 within 60 seconds with nbdkit's
#     error as the only line on stderr, and leaves no pid file, log,
#     socket or nbdkit behind; nothing is created or changed;
#   - a server that runs but whose client fails is stopped, and
#     vdi-serve says why;
#   - when it serves in the background, nbdkit outlives vdi-serve and
#     its messages go to PIDFILE.log.

source ./functions.sh
set -e
set -x

requires_nbdsh
requires nbdinfo --version
requires timeout --version
requires setsid --version

scripts="$abs_top_srcdir/scripts"
export NBDKIT_VDI_PLUGIN="$VDI_PLUGIN"
export NBDKIT_VDIDIFF_FILTER="$VDIDIFF_FILTER"
serve="$scripts/vdi-serve"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-scripts-serve-errors.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
export TMPDIR="$tmp/tmpdir"
mkdir "$TMPDIR"
sock="$tmp/run/s.sock"
d="$tmp/disks"
mkdir "$tmp/run" "$d"

$MAKE_VDI --size 4M --seed ss-base \
          --uuid-create 55000000-0000-4000-8000-0000000000b0 "$d/base.vdi"
$MAKE_VDI --size 4M --seed ss-other \
          --uuid-create 55000000-0000-4000-8000-0000000000e1 "$d/other.vdi"
mkdir "$d/sized"
$MAKE_VDI --size 5M --seed ss-sized \
          --uuid-create 55000000-0000-4000-8000-0000000000b0 "$d/sized/base.vdi"
$MAKE_VDI --size 4M --seed ss-dyn "$d/dyn.vdi"
"$serve" --background --socket "$sock" --diff "$d/diff.vdi" \
         "$d/base.vdi" > "$tmp/out"
cat "$tmp/out"
kill_nbdkit "$(cat "$sock.pid")"
rm -f "$sock" "$sock.pid" "$sock.log" "$tmp/out"

# state: the disks and the layer, every file and folder with its size,
# modification time and checksum; and what is in the folders of the
# socket and of temporary files, which must be empty.
state ()
{
    find "$d" -printf '%p %y %s %T@\n' | sort
    find "$d" -type f -exec sha256sum {} + | sort
    ls -A "$tmp/run" "$TMPDIR"
}
before="$(state)"

# refused MESSAGE vdi-serve-args...: vdi-serve exits 1, nbdkit's error
# MESSAGE is the only line on stderr, nothing on stdout, no file left
# and no nbdkit listening; nothing changed.
refused ()
{
    local message="$1" status=0
    shift
    timeout 60 "$serve" --socket "$sock" "$@" \
        > "$tmp/out" 2> "$tmp/err" < /dev/null || status=$?
    cat "$tmp/out" "$tmp/err"
    test $status -eq 1
    test ! -s "$tmp/out"
    test "$(wc -l < "$tmp/err")" -eq 1
    grep -Fx -- "$message" "$tmp/err"
    if nbdinfo --size "nbd+unix:///?socket=$sock"; then false; fi
    rm -f "$tmp/out" "$tmp/err"
    if [ "$(state)" != "$before" ]; then
        diff -u <(echo "$before") <(state) || :
        echo "$0: files changed or left" >&2
        return 1
    fi
}

for mode in background foreground; do
    args=()
    if [ $mode = background ]; then args=(--background); fi
    refused \
        "nbdkit: error: $d/dyn.vdi: is a dynamic image, not a differencing image" \
        ${args[@]+"${args[@]}"} --diff "$d/dyn.vdi" "$d/base.vdi"
    refused \
        "nbdkit: error: $d/nodir/d.vdi: cannot create the differencing image: $d/nodir: No such file or directory" \
        ${args[@]+"${args[@]}"} --diff "$d/nodir/d.vdi" "$d/base.vdi"
    refused \
        "nbdkit: error: $d/diff.vdi: differencing image of parent 55000000-0000-4000-8000-0000000000b0, but the disk below is 55000000-0000-4000-8000-0000000000e1" \
        ${args[@]+"${args[@]}"} --diff "$d/diff.vdi" "$d/other.vdi"
    refused \
        "nbdkit: error: $d/diff.vdi: its size 4194304 differs from the size 5242880 of the disk below" \
        ${args[@]+"${args[@]}"} --diff "$d/diff.vdi" "$d/sized/base.vdi"
done

# A server that runs but whose client fails (here an nbdinfo that
# always fails): vdi-serve stops it, says why, and leaves nothing.
mkdir "$tmp/fake"
printf '#!/bin/sh\necho "nbdinfo: no disk for you" >&2\nexit 1\n' \
       > "$tmp/fake/nbdinfo"
chmod +x "$tmp/fake/nbdinfo"
for args in --background --readonly; do
    status=0
    PATH="$tmp/fake:$PATH" timeout 60 "$serve" $args --socket "$sock" \
        "$d/base.vdi" > "$tmp/out" 2> "$tmp/err" || status=$?
    cat "$tmp/out" "$tmp/err"
    test $status -eq 1
    test ! -s "$tmp/out"
    grep -Fx "vdi-serve: nbdkit does not serve the disk: nbdinfo: no disk for you" \
         "$tmp/err"
    test ! -e "$sock"
    test ! -e "$sock.pid"
    test ! -e "$sock.log"
    if pgrep -f "nbdkit.*$sock"; then false; fi
done
rm -r "$tmp/fake" "$tmp/out" "$tmp/err"
test "$(state)" = "$before"

# Serving in the background: nbdkit outlives vdi-serve, and its
# messages go to the log.
"$serve" --background --socket "$sock" "$d/base.vdi" > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$sock.pid")"
cat "$tmp/out"
grep -Fx "  its messages go to $sock.log;" "$tmp/out"
sleep 1
test "$(nbdinfo --size "nbd+unix:///?socket=$sock")" -eq $((4 * 1024 * 1024))
nbdsh -u "nbd+unix:///?socket=$sock" -c 'h.set_strict_mode(0)' -c '
try:
    h.pwrite(b"x", 5 * 1024 * 1024)
    assert False
except nbd.Error:
    pass
'
grep "error: invalid request" "$sock.log"
kill_nbdkit "$(cat "$sock.pid")"
