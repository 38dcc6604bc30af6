# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by the libguestfs tests (test-e2e-guestfs.sh,
# test-merge-guestfs.sh, test-snapshot-guestfs.sh), sourced after
# ./functions.sh.  Sourcing it sets libguestfs up for this machine:
# the direct backend, and software emulation (force_tcg) unless the
# caller says otherwise, since nested KVM often does not work.

: "${LIBGUESTFS_BACKEND:=direct}"
: "${LIBGUESTFS_BACKEND_SETTINGS=force_tcg}"
export LIBGUESTFS_BACKEND LIBGUESTFS_BACKEND_SETTINGS

# guestfish_session ARGS... < COMMANDS
#
# Run guestfish.  If it fails and the appliance cannot start at all
# (a session with no disk of ours fails too), skip the test: that is
# the machine, not the code under test.
guestfish_session ()
{
    local status=0
    guestfish "$@" || status=$?
    if [ $status -ne 0 ]; then
        if ! guestfish -a /dev/null run < /dev/null; then
            echo "$0: test skipped: the libguestfs appliance does not start" >&2
            exit 77
        fi
        return $status
    fi
}

# tree_list DIR: every path under DIR, sorted, with lost+found (which
# mkfs adds).
tree_list ()
{
    { echo lost+found; cd "$1" && find . -mindepth 1 | sed 's|^\./||'; } |
        LC_ALL=C sort
}

# tree_sums DIR: "SHA256 PATH" of every file under DIR, sorted by path
# (the format guestfish checksums-out gives, once normalised).
tree_sums ()
{
    (cd "$1" && find . -type f -print0 | xargs -0 sha256sum) |
        sed 's|  \./| |' | LC_ALL=C sort -k2
}

# make_state1 S0 S1 HOSTNAME: the files of state 1 in S1 on the host:
# those of state 0 with one file changed, two added, one deleted and
# the host name set.
make_state1 ()
{
    local s0="$1" s1="$2"
    cp -a "$s0" "$s1"
    echo "version 1" > "$s1/data/modify.txt"
    echo "added in state 1" > "$s1/data/new1.txt"
    head -c 1M /dev/urandom > "$s1/data/new1.bin"
    rm "$s1/data/delete1.txt"
    echo "$3" > "$s1/etc/hostname"
}

# write_state1 S1 DEVICE GUESTFISH [ARGS...]: make the same changes in
# the guest's filesystem on DEVICE with one session of GUESTFISH (the
# command, or a function that runs it) and its ARGS.
write_state1 ()
{
    local s1="$1" device="$2"
    shift 2
    "$@" <<EOF_STATE1
run
mount $device /
upload $s1/data/modify.txt /data/modify.txt
upload $s1/data/new1.txt /data/new1.txt
upload $s1/data/new1.bin /data/new1.bin
rm /data/delete1.txt
upload $s1/etc/hostname /etc/hostname
umount-all
EOF_STATE1
}

# state1_layer S1 DEVICE PARENT GUESTFISH: write state 1 (S1, see
# make_state1) with GUESTFISH (guestfish, or a function that runs it)
# through the vdidiff filter over the image PARENT, into a new
# differencing image in the Snapshots folder beside PARENT, named
# {UUID}.vdi as VirtualBox names them.  Sets layer1_uuid.
state1_layer ()
{
    local s1="$1" device="$2" parent="$3" guestfish="$4" dir
    dir="$(dirname "$parent")/Snapshots"
    start_nbdkit -P "$tmp/w1.pid" -U "$tmp/w1.sock" \
                 --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$parent" \
                 vdidiff="$dir/new.vdi"
    write_state1 "$s1" "$device" \
                 "$guestfish" --format=raw -a "nbd://?socket=$tmp/w1.sock"
    kill_nbdkit "$(cat "$tmp/w1.pid")"
    layer1_uuid="$(vdi_uuid "$dir/new.vdi")"
    mv "$dir/new.vdi" "$dir/{$layer1_uuid}.vdi"
}
