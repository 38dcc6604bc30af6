#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# ../scripts/vdi-serve as documented:
#   - --background with a socket: the URIs it prints work (nbdinfo),
#     the pid file (default SOCKET.pid) names nbdkit, kill stops it;
#     the socket that nbdkit leaves behind is reused by the next run,
#     and a socket a server listens on is refused;
#   - in the foreground: serves until SIGTERM or SIGINT (Ctrl-C), then
#     stops nbdkit, removes the socket and exits 0;
#   - writes go to the image itself without --diff, are refused with
#     --readonly and for a snapshot state, and with --diff go to the
#     differencing image only (the base does not change), which
#     "nbdkit vdi DIFF" reads back later; --autoreset empties it;
#   - TCP: --ip 127.0.0.1 --port N prints nbd://127.0.0.1:N.

source ./functions.sh
set -e
set -x

requires_python_nbd
requires qemu-img --version
requires qemu-io --version
requires nbdinfo --version
requires nbdcopy --version
requires env --default-signal=INT true

scripts="$abs_top_srcdir/scripts"
export NBDKIT_VDI_PLUGIN="$VDI_PLUGIN"
export NBDKIT_VDIDIFF_FILTER="$VDIDIFF_FILTER"
serve="$scripts/vdi-serve"

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-scripts-serve.XXXXXX)")"
export tmp
cleanup_fn rm -rf "$tmp"
M=$((1024 * 1024))

# serves URI MODEL: the disk at URI reads as MODEL.
serves ()
{
    nbdcopy "$1" "$tmp/served.raw"
    cmp "$2" "$tmp/served.raw"
    rm -f "$tmp/served.raw"
}

# stop_bg PIDFILE: stop a background vdi-serve (its nbdkit).
stop_bg ()
{
    local pid
    pid="$(cat "$1")"
    kill_nbdkit "$pid"
    if kill -0 "$pid" 2>/dev/null; then false; fi
}

qemu-img create -q -f raw "$tmp/model.raw" 32M
qemu-io -f raw -c "write -P 0x51 0 2M" -c "write -P 0x52 17M 1M" \
        "$tmp/model.raw" > /dev/null
qemu-img convert -f raw -O vdi "$tmp/model.raw" "$tmp/disk.vdi"
sock="$tmp/d.sock"
uri="nbd+unix:///?socket=$sock"

# --- background, socket --------------------------------------------------

"$serve" --background --readonly --socket "$sock" "$tmp/disk.vdi" > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$sock.pid")"
cat "$tmp/out"
grep -Fx "    $uri" "$tmp/out"
grep -Fx "  guestfish: guestfish --ro --format=raw -a 'nbd://?socket=$sock' -i" "$tmp/out"
grep -F "pid $(cat "$sock.pid") (in $sock.pid)" "$tmp/out"
test -S "$sock"
test "$(nbdinfo --size "$uri")" -eq $((32 * M))
nbdinfo --is read-only "$uri"
serves "$uri" "$tmp/model.raw"
# A second server on the same socket is refused.
status=0
"$serve" --background --socket "$sock" "$tmp/disk.vdi" 2> "$tmp/err" || status=$?
cat "$tmp/err"
test $status -eq 1
grep -Fx "vdi-serve: $sock is in use by another server" "$tmp/err"
stop_bg "$sock.pid"
# nbdkit leaves its socket (and pid file) behind; the next run takes
# the socket over.
test -S "$sock"
rm "$sock.pid"

# Without --readonly clients may write, to the image itself.
"$serve" -b -s "$sock" --pidfile "$tmp/my.pid" "$tmp/disk.vdi" > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$tmp/my.pid")"
grep -F "  guestfish: guestfish --format=raw -a 'nbd://?socket=$sock' -i" "$tmp/out"
test ! -e "$sock.pid"
if nbdinfo --is read-only "$uri"; then false; fi
qemu-io -f raw -c "write -P 0x53 5M 64k" "$uri" > /dev/null
qemu-io -f raw -c "write -P 0x53 5M 64k" "$tmp/model.raw" > /dev/null
stop_bg "$tmp/my.pid"
nbdkit -U - "$VDI_PLUGIN" "$tmp/disk.vdi" readonly=true \
       --run 'nbdcopy "$uri" "$tmp/disk.raw"'
cmp "$tmp/model.raw" "$tmp/disk.raw"
base_sum="$(sha256_of "$tmp/disk.vdi")"

# --- --diff, in the foreground ---------------------------------------------

# wait_for FILE PATTERN: until FILE has a line matching PATTERN (30 s).
wait_for ()
{
    local i
    for (( i = 0; i < 300; ++i )); do
        if grep -qF -- "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    cat "$1"
    return 1
}

# The script runs with SIGINT at its default, as from a terminal
# (bash starts background jobs of a script with SIGINT ignored).
env --default-signal=INT \
    "$serve" --socket "$sock" --diff "$tmp/diff.vdi" "$tmp/disk.vdi" \
    > "$tmp/fg.out" 2> "$tmp/fg.err" &
fg=$!
cleanup_fn kill "$fg"
wait_for "$tmp/fg.out" "press Ctrl-C to stop"
cat "$tmp/fg.out"
grep -F "vdi-serve: serving the disk, writes kept in $tmp/diff.vdi, at:" "$tmp/fg.out"
grep -Fx "    $uri" "$tmp/fg.out"
test -s "$tmp/diff.vdi"
qemu-io -f raw -c "write -P 0x61 1M 1536k" -c "write -z 17M 512k" "$uri" > /dev/null
cp "$tmp/model.raw" "$tmp/model-diff.raw"
qemu-io -f raw -c "write -P 0x61 1M 1536k" -c "write -z 17M 512k" \
        "$tmp/model-diff.raw" > /dev/null
serves "$uri" "$tmp/model-diff.raw"
kill -INT "$fg"
status=0
wait "$fg" || status=$?
cat "$tmp/fg.err"
test $status -eq 0
grep -Fx "vdi-serve: stopped" "$tmp/fg.err"
test ! -e "$sock"
# The base did not change; the differencing image is its child.
test "$(sha256_of "$tmp/disk.vdi")" = "$base_sum"
test "$(od -An -tu4 -j76 -N4 "$tmp/diff.vdi" | tr -d ' ')" -eq 4
test "$(vdi_uuid "$tmp/diff.vdi")" != "$(vdi_uuid "$tmp/disk.vdi")"
nbdkit -U - "$VDI_PLUGIN" "$tmp/diff.vdi" readonly=true \
       --run 'nbdcopy "$uri" "$tmp/diff.raw"'
cmp "$tmp/model-diff.raw" "$tmp/diff.raw"

# Again, stopped with SIGTERM: the layer persists.
"$serve" --socket "$sock" --diff "$tmp/diff.vdi" "$tmp/disk.vdi" \
    > "$tmp/fg.out" 2> "$tmp/fg.err" &
fg=$!
cleanup_fn kill "$fg"
wait_for "$tmp/fg.out" "press Ctrl-C to stop"
serves "$uri" "$tmp/model-diff.raw"
kill -TERM "$fg"
wait "$fg"
test ! -e "$sock"
cp "$tmp/diff.vdi" "$tmp/diff-kept.vdi"

# --autoreset empties it.
"$serve" -b -s "$sock" --diff "$tmp/diff.vdi" --autoreset "$tmp/disk.vdi" > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$sock.pid")"
serves "$uri" "$tmp/model.raw"
stop_bg "$sock.pid"

# --- snapshots are read-only without --diff --------------------------------

u0="$(vdi_uuid "$tmp/disk.vdi")"
snap="$(cat /proc/sys/kernel/random/uuid)"
mkdir "$tmp/vm"
mv "$tmp/diff-kept.vdi" "$tmp/vm/diff.vdi"
cp "$tmp/disk.vdi" "$tmp/vm/disk.vdi"
u1="$(vdi_uuid "$tmp/vm/diff.vdi")"
cat > "$tmp/vm/vm.vbox" <<EOF
<?xml version="1.0"?>
<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">
  <Machine uuid="{$(cat /proc/sys/kernel/random/uuid)}" name="vm" OSType="Other" currentSnapshot="{$snap}">
    <MediaRegistry>
      <HardDisks>
        <HardDisk uuid="{$u0}" location="disk.vdi" format="VDI" type="Normal">
          <HardDisk uuid="{$u1}" location="diff.vdi" format="VDI"/>
        </HardDisk>
      </HardDisks>
    </MediaRegistry>
    <Snapshot uuid="{$snap}" name="Before" timeStamp="2024-05-01T09:00:00Z">
      <Hardware>
        <StorageControllers>
          <StorageController name="SATA" type="AHCI" PortCount="1">
            <AttachedDevice type="HardDisk" port="0" device="0">
              <Image uuid="{$u0}"/>
            </AttachedDevice>
          </StorageController>
        </StorageControllers>
      </Hardware>
    </Snapshot>
    <Hardware>
      <StorageControllers>
        <StorageController name="SATA" type="AHCI" PortCount="1">
          <AttachedDevice type="HardDisk" port="0" device="0">
            <Image uuid="{$u1}"/>
          </AttachedDevice>
        </StorageController>
      </StorageControllers>
    </Hardware>
  </Machine>
</VirtualBox>
EOF
"$serve" -b -s "$sock" --snapshot Before "$tmp/vm/vm.vbox" > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$sock.pid")"
cat "$tmp/out"
grep -F "guestfish --ro --format=raw" "$tmp/out"
serves "$uri" "$tmp/model.raw"
if qemu-io -f raw -c "write 0 4k" "$uri"; then false; fi
stop_bg "$sock.pid"
# The current state, FILE.vbox@SNAPSHOT with --diff.
"$serve" -b -s "$sock" "$tmp/vm/vm.vbox" -r > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$sock.pid")"
serves "$uri" "$tmp/model-diff.raw"
stop_bg "$sock.pid"
"$serve" -b -s "$sock" -d "$tmp/try.vdi" "$tmp/vm/vm.vbox@Before" > "$tmp/out"
cleanup_fn kill_nbdkit "$(cat "$sock.pid")"
qemu-io -f raw -c "write -P 0x71 0 4k" "$uri" > /dev/null
stop_bg "$sock.pid"
test "$(sha256_of "$tmp/vm/disk.vdi")" = "$base_sum"
cp "$tmp/model.raw" "$tmp/model-try.raw"
qemu-io -f raw -c "write -P 0x71 0 4k" "$tmp/model-try.raw" > /dev/null
nbdkit -U - "$VDI_PLUGIN" registry="$tmp/vm/vm.vbox" file="$tmp/try.vdi" \
       readonly=true --run 'nbdcopy "$uri" "$tmp/try.raw"'
cmp "$tmp/model-try.raw" "$tmp/try.raw"

# --- TCP ----------------------------------------------------------------------

# A free port above 20000 (try a few).
ok=
for (( i = 0; i < 10; ++i )); do
    port=$(( 20000 + RANDOM % 30000 ))
    rm -f "$tmp/tcp.pid"
    if "$serve" --background --ip 127.0.0.1 --port "$port" \
                --pidfile "$tmp/tcp.pid" "$tmp/disk.vdi" -r > "$tmp/out" \
                2> "$tmp/err"; then
        ok=1
        break
    fi
    cat "$tmp/err"
    grep -q 'in use' "$tmp/err"
done
test -n "$ok"
cleanup_fn kill_nbdkit "$(cat "$tmp/tcp.pid")"
cat "$tmp/out"
grep -Fx "    nbd://127.0.0.1:$port" "$tmp/out"
test "$(nbdinfo --size "nbd://127.0.0.1:$port")" -eq $((32 * M))
stop_bg "$tmp/tcp.pid"
