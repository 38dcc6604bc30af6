#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Bases on another server: one read-only "nbdkit vdi" serves the base,
# over TLS with a pre-shared key, and two front-end servers stack the
# vdidiff filter over nbdkit's nbd plugin connected to it, each with
# clones of its own (vdidiff-dir=), as the README describes.
#   - every clone reads and writes its own data (random-io.py, with
#     several connections at once) and never sees another clone's;
#   - each layer names the base image as its parent: the base's UUID
#     reaches the filter through the export description, and the
#     layer reads back through the vdi plugin as a chain over the
#     base file;
#   - no errors on the front ends; vdidiff=FILE over the nbd plugin
#     starts with only the nbd plugin's known line;
#   - the base file never changes;
#   - a client without the key is refused by the base server, and a
#     clone whose base server is gone fails at once instead of hanging.
# Clients: nbdsh (random-io.py), nbdcopy, nbdinfo, qemu-img.

source ./functions.sh
source "$abs_srcdir/write-functions.sh"
set -e
set -x

requires timeout --version
requires qemu-img --version
requires_nbdsh
if ! nbdkit --dump-config | grep -qx 'tls=yes'; then
    echo "$0: SKIP: nbdkit was built without TLS"
    exit 77
fi

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-vdidiff-remote-base.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
T=120

$MAKE_VDI --size 12M+4096 --seed remote-base --expect "$tmp/base.raw" \
          "$tmp/base.vdi"
base_uuid="$(vdi_uuid "$tmp/base.vdi")"
mkdir "$tmp/front1" "$tmp/front2"
# The key file: USERNAME:HEXKEY, as psktool writes it.
echo "clones:$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" > "$tmp/keys.psk"
chmod 600 "$tmp/keys.psk"

before="$(tree_state "$tmp" --skip front1 --skip front2)"

# The base server: read-only, TLS required.
start_server "$tmp/base.pid" "$tmp/base.sock" "$tmp/base.log" \
    -r --tls=require --tls-psk="$tmp/keys.psk" \
    "$VDI_PLUGIN" file="$tmp/base.vdi"

# A client without the key is refused.
must_fail timeout $T nbdinfo "nbd+unix:///?socket=$tmp/base.sock"

# nbd plugin arguments reaching the base server (export= names its
# default export).
base=(nbd socket="$tmp/base.sock" export=
      tls=require tls-psk="$tmp/keys.psk" tls-username=clones)

# The front-end servers, each with its own clones.
for n in 1 2; do
    start_server "$tmp/front$n.pid" "$tmp/front$n.sock" "$tmp/front$n.log" \
        --filter="$VDIDIFF_FILTER" "${base[@]}" vdidiff-dir="$tmp/front$n"
done

# Clones alice and bob on the first front end, carol on the second,
# written at the same time, each through four connections.
clone_uri ()
{
    echo "nbd+unix:///$2?socket=$tmp/front$1.sock"
}
pids=()
for c in 1:alice:1 1:bob:2 2:carol:3; do
    IFS=: read -r n name seed <<< "$c"
    cp "$tmp/base.raw" "$tmp/$name.model"
    timeout $T $RANDOM_IO run "$(clone_uri "$n" "$name")" "$tmp/$name.model" \
            --seed "$seed" --ops 300 --writers 4 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

# Each clone reads back its own model through every client; the
# models differ, so no clone shows another's writes.
must_fail cmp -s "$tmp/alice.model" "$tmp/bob.model"
must_fail cmp -s "$tmp/alice.model" "$tmp/carol.model"
for c in 1:alice 1:bob 2:carol; do
    IFS=: read -r n name <<< "$c"
    uri="$(clone_uri "$n" "$name")"
    timeout $T $RANDOM_IO verify "$uri" "$tmp/$name.model"
    rm -f "$tmp/$name.raw"
    timeout $T nbdcopy "$uri" "$tmp/$name.raw"
    cmp "$tmp/$name.model" "$tmp/$name.raw"
    timeout $T qemu-img compare -f raw -F raw "$tmp/$name.model" "$uri"
    test "$(timeout $T nbdinfo --size "$uri")" -eq "$(stat -c %s "$tmp/base.raw")"
done

# Stop the front ends: every layer is closed and can be checked.
for n in 1 2; do
    stop_pid "$(cat "$tmp/front$n.pid")"
done
for c in 1:alice 1:bob 2:carol; do
    IFS=: read -r n name <<< "$c"
    layer="$tmp/front$n/$name.vdi"
    $VDI_IMG check "$layer"
    test "$($HELPERS vdi-uuid "$layer" uuidLinkage)" = "$base_uuid"
    # The layer is a VirtualBox differencing image of base.vdi: the vdi
    # plugin finds its parent by UUID and serves the clone's content.
    test "$(served_sha256 "$layer" parent-dir="$tmp")" = \
         "$(sha256sum < "$tmp/$name.model" | cut -d' ' -f1)"
done

# No error on the front ends (each opened the nbd plugin for a
# client).
must_fail grep '^nbdkit:.*error' "$tmp/front1.log" "$tmp/front2.log"

# vdidiff=FILE over the nbd plugin opens the base once at start,
# outside any client connection.  nbdkit 1.32's nbd plugin then asks
# for the client's TLS state, and prints "no connection in this
# thread": nothing else may go wrong.
timeout $T nbdkit -U - --filter="$VDIDIFF_FILTER" "${base[@]}" \
        vdidiff="$tmp/front1/single.vdi" \
        --run 'nbdsh -u "$uri" -c "h.pwrite(b\"S\" * 70000, 1048000); h.flush()"' \
        2> "$tmp/single.err"
cat "$tmp/single.err"
must_fail grep -v 'error: no connection in this thread' \
    <(grep '^nbdkit:.*error' "$tmp/single.err")
cp "$tmp/base.raw" "$tmp/single.model"
printf 'S%.0s' $(seq 70000) |
    dd of="$tmp/single.model" bs=1 seek=1048000 conv=notrunc status=none
test "$(served_sha256 "$tmp/front1/single.vdi" parent-dir="$tmp")" = \
     "$(sha256sum < "$tmp/single.model" | cut -d' ' -f1)"

# Nothing in the base's folder changed (the layers are in front1/,
# front2/; the sockets, logs and models come and go).
stop_pid "$(cat "$tmp/base.pid")"
rm -f "$tmp"/*.sock "$tmp"/*.pid "$tmp"/*.log "$tmp"/*.model "$tmp"/*.raw.* \
      "$tmp"/*.err "$tmp"/{alice,bob,carol}.raw
tree_unchanged "$before" "$tmp" --skip front1 --skip front2

# With the base server gone, a clone fails at once with the cause.
status=0
timeout $T nbdkit -U - --filter="$VDIDIFF_FILTER" "${base[@]}" \
        vdidiff-dir="$tmp/front1" \
        --run 'nbdinfo "nbd+unix:///alice?socket=$unixsocket"' \
        2> "$tmp/gone.err" || status=$?
cat "$tmp/gone.err"
test "$status" -ne 0 && test "$status" -ne 124
grep -E 'base.sock|connect' "$tmp/gone.err"
