# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers for the write tests (test-write-*.sh, test-vdidiff-*.sh),
# sourced after ./functions.sh:
#
#   source ./functions.sh
#   source $abs_srcdir/write-functions.sh
#
# It skips the test unless configure found a python3 with the nbd
# module: $RANDOM_IO and the helpers below need it.

requires_python_nbd

# start_server PIDFILE SOCKET LOG nbdkit-args...
#
# (A server in the background writes its errors to LOG only with -v.)
#
# Start nbdkit in the background on a Unix socket, its stderr in LOG,
# and return as soon as it serves (start_nbdkit waits in steps of a
# second, too slow for the crash rounds).  Registers a cleanup that
# stops it.  Fails if nbdkit exits instead.
start_server ()
{
    local pidfile="$1" sock="$2" log="$3" i pid
    shift 3
    rm -f "$pidfile" "$sock"
    nbdkit --log=stderr -P "$pidfile" -U "$sock" "$@" 2>> "$log" || {
        cat "$log"
        echo "$0: start_server: nbdkit failed to start" >&2
        return 1
    }
    for (( i = 0; i < 1200; ++i )); do
        test -s "$pidfile" && test -S "$sock" && break
        sleep 0.05
    done
    if ! test -s "$pidfile" || ! test -S "$sock"; then
        cat "$log"
        echo "$0: start_server: nbdkit did not start" >&2
        return 1
    fi
    pid="$(cat "$pidfile")"
    # Under valgrind, the log of a server in the background is checked
    # after it has stopped (hooks run last registered first).
    if [ "x$NBDKIT_VALGRIND" = "x1" ]; then
        cleanup_fn valgrind_log_clean "$log"
    fi
    cleanup_fn stop_pid "$pid"
}

# valgrind_log_clean LOG: fail the test if valgrind reported errors or
# definite leaks in LOG.
valgrind_log_clean ()
{
    if grep -E 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$1"; then
        echo "$0: valgrind found errors, see $1" >&2
        _cleanup_status=1
    fi
}

# stop_server PIDFILE
#
# SIGTERM and wait until the process has gone (so its locks are
# released); fail if it needs more than 10 seconds.
stop_server ()
{
    stop_pid "$(cat "$1")"
}

# stop_pid PID: the same for a process id, and as a cleanup hook: like
# kill_nbdkit, needing SIGKILL fails the test.
stop_pid ()
{
    kill "$1" 2>/dev/null || return 0
    wait_gone "$1" && return 0
    kill -9 "$1"
    _cleanup_status=1
    return 1
}

# wait_gone PID: wait until the process has exited (10 s at most).  A
# zombie counts as gone: it has closed its files (and so dropped its
# locks), and the daemon's parent (init) may reap it late.
wait_gone ()
{
    local i state
    for (( i = 0; i < 200; ++i )); do
        state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)"
        if [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]; then
            return 0
        fi
        sleep 0.05
    done
    echo "$0: process $1 did not exit" >&2
    return 1
}

# check_after_crash IMAGE...
#
# $VDI_CHECK after a kill -9.  A crash between an allocation and the
# next flush leaves slots that the header counts and no map entry uses
# yet: they waste space but do no harm (the write engine hands them out
# again), and vdi-img check says so with exit status 3.  So 0 and 3
# pass; errors (2) and an image that does not open (1) fail, as they do
# everywhere else.
check_after_crash ()
{
    local status=0
    $VDI_CHECK "$@" || status=$?
    if [ $status -ne 0 ] && [ $status -ne 3 ]; then
        echo "$0: $VDI_CHECK $*: exit status $status" >&2
        return 1
    fi
}

# uri_of SOCKET [EXPORT]
uri_of ()
{
    echo "nbd+unix:///$2?socket=$1"
}

# vdi_field FILE FIELD
#
# Print a header field of a version 1.1 image as a number, or a UUID
# field as the 32 hex digits of its 16 bytes as stored.
vdi_field ()
{
    $HELPERS vdi-field "$1" "$2"
}

# vdi_map FILE: print the block map, one "INDEX ENTRY" line per block
# with ENTRY as FREE, ZERO or the slot number.
vdi_map ()
{
    $HELPERS vdi-map "$1"
}

# uuid_text HEX32: the text form of a UUID given as its 16 bytes as
# stored in a VDI header (GUID byte order), without braces.
uuid_text ()
{
    $HELPERS uuid-text "$1"
}

# zeros FILE SIZE: a sparse file of SIZE zero bytes.
zeros ()
{
    rm -f "$1"
    truncate -s "$2" "$1"
}

# expect_start_failure ERR MESSAGE nbdkit-args...
#
# nbdkit must refuse to start: run it in the foreground on a Unix
# socket (not captive: under --run, a server that fails after it
# forked keeps refusing clients until the command ends, see
# test-vdidiff-start-errors.sh), and it must exit non-zero, not by a
# signal, within 60 seconds, and ERR must have the line MESSAGE, as it
# is.
expect_start_failure ()
{
    local err="$1" message="$2" status=0 sock
    shift 2
    sock="$err.sock"
    rm -f "$sock"
    timeout 60 nbdkit -f -U "$sock" "$@" 2> "$err" || status=$?
    cat "$err"
    rm -f "$sock"
    if [ $status -eq 0 ] || [ $status -ge 124 ]; then
        echo "$0: nbdkit $*: exit status $status, expected a failure" >&2
        return 1
    fi
    if grep -E 'Segmentation|AddressSanitizer|core dumped|Assertion' "$err"; then
        echo "$0: nbdkit $*: crashed" >&2
        return 1
    fi
    grep -Fx -- "$message" "$err" || {
        echo "$0: nbdkit $*: no line '$message'" >&2
        return 1
    }
}
