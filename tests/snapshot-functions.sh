# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the "vdi-img snapshot" tests (test-snapshot-*.sh),
# sourced after test-chain-functions.sh:
#
#   source ./functions.sh
#   set -e
#   set -x
#   source "$abs_srcdir/test-chain-functions.sh"
#   source "$abs_srcdir/snapshot-functions.sh"
#
# What a machine's disks hold is always read through the plugin, as a
# client would read it: "nbdkit -r vdi registry=M.vbox" with disk= and
# snapshot=, and nbdcopy.

requires test -x "$VDI_IMG"
requires sha256sum --version
requires jq --version

# disk_bytes VBOX DISK [SNAPSHOT]
#
# Every byte of the machine's hard disk number DISK, in the current
# state or as it was at SNAPSHOT (a name or a UUID), on stdout.  The
# status is nbdkit's (that of nbdcopy, under --run).
disk_bytes ()
{
    local args=(registry="$1" disk="$2")
    if [ $# -ge 3 ]; then args+=(snapshot="$3"); fi
    nbdkit -U - -r "$VDI_PLUGIN" "${args[@]}" --run 'nbdcopy "$uri" -'
}

# disk_sha VBOX DISK [SNAPSHOT]: their SHA-256.
disk_sha ()
{
    local sum
    sum="$(disk_bytes "$@" | sha256sum; exit "${PIPESTATUS[0]}")" ||
        return 1
    echo "${sum%% *}"
}

# disk_lines VBOX WHEN FILE...
#
# Lines for "$HELPERS same-disks $VDI_PLUGIN": the machine's disks 0,
# 1, ... read the bytes of these files in the current state (WHEN
# "-") or at snapshot WHEN (a name or a UUID).
disk_lines ()
{
    local vbox="$1" when="$2" d=0 f
    shift 2
    for f in "$@"; do
        if [ "x$when" = x- ]; then
            printf '%s\tregistry=%s\tdisk=%d\n' "$f" "$vbox" "$d"
        else
            printf '%s\tregistry=%s\tdisk=%d\tsnapshot=%s\n' \
                   "$f" "$vbox" "$d" "$when"
        fi
        d=$((d + 1))
    done
}

# same_disks < LINES: every disk of LINES (disk_lines) reads right.
# The plugin's note that a snapshot is served read-only goes to the
# log only if one does not.
same_disks ()
{
    $HELPERS same-disks "$VDI_PLUGIN" 2> "$tmp/same_disks.err" || {
        cat "$tmp/same_disks.err"
        return 1
    }
}

# current_disks VBOX
#
# The UUIDs (without braces) of the hard disks of the machine's
# current state, one a line, from "vdi-img snapshot list".
current_disks ()
{
    $VDI_IMG snapshot list "$1" > "$tmp/current_disks.out" || return 1
    sed -n '/^current state$/,$ s/^  disk [0-9]*: {\([0-9a-f-]*\)}.*/\1/p' \
        "$tmp/current_disks.out"
}

# snapshot_uuids VBOX
#
# The UUIDs of the machine's snapshots, in the order "vdi-img snapshot
# list" prints them (the tree, depth first), one a line.
snapshot_uuids ()
{
    $VDI_IMG snapshot list "$1" > "$tmp/snapshot_uuids.out" || return 1
    sed -n '/^current state$/q; /^ *disk [0-9]*: /d; /^machine /d;
            s/.* {\([0-9a-f-]*\)}\( (current)\)\{0,1\}$/\1/p' \
        "$tmp/snapshot_uuids.out"
}

# empty_diff_of DIFF PARENT [UUID]
#
# DIFF is a new, empty differencing image made for PARENT (and its
# create UUID is UUID), as "vdi-img info --output=json" shows the two:
# linked to PARENT's create UUID and its modify UUID as it is now, of
# its size, no block allocated.
empty_diff_of ()
{
    local j="$tmp/empty_diff.json" pj="$tmp/empty_diff.parent.json"
    $VDI_IMG info --output=json "$1" > "$j" || return 1
    $VDI_IMG info --output=json "$2" > "$pj" || return 1
    jq -e -n --slurpfile c "$j" --slurpfile p "$pj" --arg u "${3:-}" \
       '$c[0] as $c | $p[0] as $p |
        ($u == "" or $c.uuid == $u) and $c."parent-uuid" == $p.uuid and
        $c."parent-modify-uuid" == $p."modify-uuid" and
        $c."virtual-size" == $p."virtual-size" and
        $c."image-type" == "differencing" and $c."blocks-allocated" == 0' ||
        { cat "$j" "$pj"; return 1; }
}

# write_disk MODEL SEED nbdkit-args...
#
# Write as a guest would through "nbdkit ARGS" with nbdsh: one to four
# writes of random data (some of whole 4 KiB sectors, some of any
# length at any offset) and zero requests, then a flush; and the same
# bytes into the file MODEL, the disk's model (of the disk's size).
# Everything random comes from SEED.
write_disk ()
{
    local model="$1" seed="$2"
    shift 2
    t_model="$model" t_seed="$seed" \
    nbdkit -U - "$@" --run 'nbdsh -u "$uri" -c -' <<'EOF'
import os, random
rng = random.Random(os.environ["t_seed"])
size = h.get_size()
fd = os.open(os.environ["t_model"], os.O_RDWR)
assert os.fstat(fd).st_size == size
for i in range(rng.randint(1, 4)):
    if rng.random() < 0.5 and size >= 4096:
        n = 4096 * rng.randint(1, min(size // 4096, 384))
        off = 4096 * rng.randrange((size - n) // 4096 + 1)
    else:
        n = rng.randint(1, min(size, 1536 * 1024))
        off = rng.randrange(size - n + 1)
    if rng.random() < 0.25:
        h.zero(n, off)
        data = bytes(n)
    else:
        data = rng.randbytes(n)
        h.pwrite(data, off)
    os.pwrite(fd, data, off)
os.close(fd)
h.flush()
EOF
}
