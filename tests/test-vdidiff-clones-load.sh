#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# vdidiff-dir= carries thousands of clones on one server with the
# usual limit of 1024 file descriptors: clones-load.py starts nbdkit
# under that limit over a 64 MiB base, and 2,000 clients, 64 at a
# time, each with its own export name, connect, write, flush, read
# back and disconnect.  Afterwards the server's descriptors are back
# to their number at the start and its RSS near it, every export
# reads back what its client wrote (its layer reopened), every layer
# passes vdi-img check, and a sample reads right through the vdi
# plugin alone.  Before layers were closed with their last
# connection, names past about the 850th were refused (EMFILE).
# About 20 s here; bounded by timeout.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires timeout --version
skip_if_valgrind "2,000 connections"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-clones-load.XXXXXX)")"
cleanup_fn rm -rf "$tmp"

$MAKE_VDI --size 64M --seed clones-base --expect "$tmp/base.raw" "$tmp/base.vdi"
base_sum="$(sha256_of "$tmp/base.vdi")"

# Under a sanitizer the server's RSS is the sanitizer's.
rss_tolerance=16
if [ -n "$SANITIZER_RUNTIME" ]; then rss_tolerance=0; fi

status=0
timeout 300 $PYTHON "$abs_srcdir/clones-load.py" \
    --plugin "$VDI_PLUGIN" --filter "$VDIDIFF_FILTER" \
    --base "$tmp/base.vdi" --raw "$tmp/base.raw" --dir "$tmp/clones" \
    --count 2000 --concurrency 64 --nofile 1024 \
    --vdi-img "$VDI_IMG" --timeout 240 --rss-tolerance $rss_tolerance \
    || status=$?
if [ $status -ne 0 ]; then
    tail -20 "$tmp/clones.log"
    echo "$0: clones-load.py failed with status $status" >&2
    exit 1
fi
test "$(sha256_of "$tmp/base.vdi")" = "$base_sum"
