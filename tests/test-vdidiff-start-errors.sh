#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The vdidiff filter's errors at start, and what the user sees of
# them, with nothing created or changed in any case:
#   - What needs no plugin (an existing layer that is not a
#     differencing image; a missing or read-only folder for a new
#     layer; vdidiff-dir= that is not a folder, or read-only) stops
#     nbdkit before it forks: one error line naming the user's file,
#     status 1, a --run command never started, a server meant for the
#     background leaves no pid file or socket.
#   - What needs the plugin below (a layer of another parent, or of
#     another size; a new layer over a disk whose size VDI cannot
#     have) is found after nbdkit forked.  Under --run every client is
#     refused and --run fails at once instead of hanging; in the
#     foreground nbdkit exits with status 1; in the background it
#     exits and removes its pid file and socket.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires_nbdsh
requires timeout --version
requires nbdkit file --version
# Folders are never read-only for root: those cases run nbdkit as
# nobody (run_as=("${as_user[@]}")), or are skipped if nobody cannot
# load the plugin.
as_user=()
ro_cases=1
if [ "$(id -u)" -eq 0 ]; then
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    if ! "${as_user[@]}" nbdkit "$VDI_PLUGIN" --dump-plugin >/dev/null 2>&1
    then
        echo "$0: nobody cannot run the plugin: read-only folders skipped"
        ro_cases=
    fi
fi
run_as=()

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-start-errors.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
chmod 755 "$tmp"
# Seconds a case may take; a hang fails the test.
T=60
f="$VDIDIFF_FILTER"

# A base, a differencing layer of it, a disk of another parent and one
# with the base's UUID but another size.
$MAKE_VDI --size 4M --seed se-base \
          --uuid-create 5e000000-0000-4000-8000-0000000000b0 "$tmp/base.vdi"
$MAKE_VDI --size 4M --seed se-other \
          --uuid-create 5e000000-0000-4000-8000-0000000000e1 "$tmp/other.vdi"
mkdir "$tmp/sized"
$MAKE_VDI --size 5M --seed se-resized \
          --uuid-create 5e000000-0000-4000-8000-0000000000b0 "$tmp/sized/base.vdi"
$MAKE_VDI --size 4M --seed se-dyn "$tmp/dyn.vdi"
mkdir "$tmp/layers"
nbdkit -U - --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/layers/diff.vdi" --run '
    nbdsh -u "$uri" -c "h.pwrite(b\"L\" * 70000, 1000); h.flush()"
'
truncate -s 1000001 "$tmp/odd.raw"
mkdir -m 555 "$tmp/ro"
echo "not a folder" > "$tmp/notdir"
# Where a server run as nobody may put its pid file and socket.
mkdir -m 1777 "$tmp/run"

# Nothing under $tmp but run/ may be created or changed.
before="$(tree_state "$tmp" --skip run)"
unchanged ()
{
    tree_unchanged "$before" "$tmp" --skip run
}

# no_temporary_name ERR: the error names the user's file, not the
# temporary one beside it (FILE.vdi.tmpXXXXXX).
no_temporary_name ()
{
    if grep -E '\.vdi\.tmp' "$1"; then
        echo "$0: an error names a temporary file" >&2
        return 1
    fi
}

# --- Found before nbdkit forks ----------------------------------------

# refused_before_fork MESSAGE nbdkit-args...
#
# Under --run: status 1 within $T seconds, the command never started,
# exactly the error line MESSAGE.  In the background (-P, -U): status 1,
# no pid file, no socket.  nbdkit runs as ${run_as[@]}.
refused_before_fork ()
{
    local message="$1" status
    shift
    rm -f "$tmp/run/started" "$tmp/run/err"
    status=0
    t_run="$tmp/run" timeout $T "${run_as[@]}" nbdkit -U - "$@" \
        --run 'touch "$t_run/started"; nbdinfo "$uri"' \
        2> "$tmp/run/err" || status=$?
    cat "$tmp/run/err"
    test $status -eq 1
    test ! -e "$tmp/run/started"
    test "$(grep -c error "$tmp/run/err")" -eq 1
    grep -Fx -- "$message" "$tmp/run/err"
    no_temporary_name "$tmp/run/err"

    rm -f "$tmp/run/pid" "$tmp/run/sock"
    status=0
    timeout $T "${run_as[@]}" nbdkit -P "$tmp/run/pid" -U "$tmp/run/sock" \
        "$@" 2> "$tmp/run/err" || status=$?
    cat "$tmp/run/err"
    test $status -eq 1
    grep -Fx -- "$message" "$tmp/run/err"
    test ! -e "$tmp/run/pid"
    test ! -e "$tmp/run/sock"
    unchanged
}

# An existing layer that is not a differencing image.
refused_before_fork \
    "nbdkit: error: $tmp/dyn.vdi: is a dynamic image, not a differencing image" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/dyn.vdi"
# A new layer in a missing folder, in a file, in a read-only folder.
refused_before_fork \
    "nbdkit: error: $tmp/nodir/x.vdi: cannot create the differencing image: $tmp/nodir: No such file or directory" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/nodir/x.vdi"
refused_before_fork \
    "nbdkit: error: $tmp/notdir/x.vdi: cannot create the differencing image: $tmp/notdir: Not a directory" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/notdir/x.vdi"
if [ -n "$ro_cases" ]; then
    run_as=("${as_user[@]}")
    refused_before_fork \
        "nbdkit: error: $tmp/ro/x.vdi: cannot create the differencing image: $tmp/ro: Permission denied" \
        --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff="$tmp/ro/x.vdi"
    run_as=()
fi
# vdidiff-dir= that is not a folder, or is read-only.
refused_before_fork \
    "nbdkit: error: $tmp/notdir: cannot keep differencing images in this folder: Not a directory" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff-dir="$tmp/notdir"
if [ -n "$ro_cases" ]; then
    run_as=("${as_user[@]}")
    refused_before_fork \
        "nbdkit: error: $tmp/ro: cannot keep differencing images in this folder: Permission denied" \
        --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" vdidiff-dir="$tmp/ro"
    run_as=()
fi

# --- Found after nbdkit forked ----------------------------------------

# refused_after_fork MESSAGE nbdkit-args...
#
#   - Under --run: two clients in turn are both refused (the command
#     fails), within $T seconds, and the log has MESSAGE and names
#     the file for each client.
#   - In the foreground without --run: status 1, MESSAGE, and nbdkit
#     removed its pid file and socket.
#   - In the background: nbdkit exits (a client is refused meanwhile,
#     or finds no socket) and removes its pid file and socket.
refused_after_fork ()
{
    local message="$1" status file i
    shift
    file="$(echo "$message" | sed 's/^nbdkit: error: \([^:]*\):.*/\1/')"

    status=0
    timeout $T nbdkit -U - "$@" --run '
        nbdinfo --size "$uri" || nbdinfo --size "$uri"
    ' 2> "$tmp/run/err" || status=$?
    cat "$tmp/run/err"
    test $status -ne 0
    test $status -lt 124
    grep -Fx -- "$message" "$tmp/run/err"
    test "$(grep -Fc "error: $file: nothing is served" "$tmp/run/err")" -ge 2
    no_temporary_name "$tmp/run/err"

    rm -f "$tmp/run/pid" "$tmp/run/sock"
    status=0
    timeout $T nbdkit -f -P "$tmp/run/pid" -U "$tmp/run/sock" "$@" \
        2> "$tmp/run/err" || status=$?
    cat "$tmp/run/err"
    test $status -eq 1
    grep -Fx -- "$message" "$tmp/run/err"
    test ! -e "$tmp/run/pid"
    test ! -e "$tmp/run/sock"

    # (With -v a server in the background keeps its stderr.)
    nbdkit -v --log=stderr -P "$tmp/run/pid" -U "$tmp/run/sock" "$@" 2> "$tmp/run/err"
    if nbdinfo --size "nbd+unix:///?socket=$tmp/run/sock"; then
        echo "$0: the background server served" >&2
        return 1
    fi
    for (( i = 0; i < T * 10; ++i )); do
        test -e "$tmp/run/pid" || test -e "$tmp/run/sock" || break
        sleep 0.1
    done
    grep -Fx -- "$message" "$tmp/run/err"
    test ! -e "$tmp/run/pid"
    test ! -e "$tmp/run/sock"
    unchanged
}

# A layer of another parent, of another size.
refused_after_fork \
    "nbdkit: error: $tmp/layers/diff.vdi: differencing image of parent 5e000000-0000-4000-8000-0000000000b0, but the disk below is 5e000000-0000-4000-8000-0000000000e1" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/other.vdi" \
    vdidiff="$tmp/layers/diff.vdi"
refused_after_fork \
    "nbdkit: error: $tmp/layers/diff.vdi: its size 4194304 differs from the size 5242880 of the disk below" \
    --filter="$f" "$VDI_PLUGIN" "$tmp/sized/base.vdi" \
    vdidiff="$tmp/layers/diff.vdi"
# A new layer over a disk that no VDI image can match.
refused_after_fork \
    "nbdkit: error: $tmp/layers/odd.vdi: cannot create a differencing image for a disk of 1000001 bytes: VDI sizes are multiples of 512" \
    --filter="$f" file "$tmp/odd.raw" vdidiff="$tmp/layers/odd.vdi"

# The layer still works over its own base.
nbdkit -U - --filter="$f" "$VDI_PLUGIN" "$tmp/base.vdi" \
       vdidiff="$tmp/layers/diff.vdi" -r --run '
    nbdsh -u "$uri" -c "assert h.pread(70000, 1000) == b\"L\" * 70000"
'
unchanged
