#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# "vdi-img snapshot take" and "restore" killed (SIGKILL) at any point
# leave the machine as it was or as the command makes it, and running
# the command again succeeds.
#
# The machine (make-vdi.py --machine): two disks, each a base and two
# differencing images, snapshots "Snapshot 1" and "Snapshot 2", the
# current state on the top images.  Beside it, a layer written over
# the current state's disk 0 with the vdidiff filter.  Three commands:
#
#   take:    vdi-img snapshot take M.vbox New
#   restore: vdi-img snapshot restore M.vbox "Snapshot 1"
#   adopt:   vdi-img snapshot take M.vbox New --adopt layer.vdi
#
# kill-at.c counts the calls by which each changes files (a complete
# run, KILL_AT_COUNT); then, in a fresh copy of the machine each
# time, the command is killed just before each of them (KILL_AT=1 to
# the count).  Afterwards:
#
#   - the settings file is byte for byte the old one, or it is the
#     new one: the same as the old but for what the command changes
#     (helpers.py settings-step), with the new current snapshot in
#     "vdi-img snapshot list" (UUIDs and time stamps differ from run
#     to run, so a complete run's file is no reference);
#   - every disk of every snapshot and of the current state reads
#     what it read before, or, in the new state, what the command
#     makes it read (the model's bytes, read through the plugin);
#   - every image the settings register is there and checks clean
#     (vdi-img check); files nothing names may be left (design note
#     of lib/vbox-snapshot.c);
#   - with the old settings, the layer to adopt is still there,
#     unchanged;
#   - the same command run again succeeds, and leaves the new state
#     (over the state the crash left); only an adoption that the
#     settings already name is not run again: its layer has become
#     the current state's disk.

source ./functions.sh
set -e
set -x

source "$abs_srcdir/test-chain-functions.sh"
source "$abs_srcdir/write-functions.sh"
source "$abs_srcdir/snapshot-functions.sh"

requires test -f "$KILL_AT_LIB"

seed="${TEST_SEED:-1}"
echo "$0: TEST_SEED=$seed"

# The pristine machine, and the bytes of its disks.
p="$tmp/pristine"
make_machine "$p" "$tmp/model" <<EOF
{"name": "Crash", "seed": "crash $seed",
 "disks": [{"layers": [{"size": "4M", "blocks": "DZFD"},
                       {"blocks": "FDZF"}, {"blocks": "ZFDF"}]},
           {"file": "data.vdi",
            "layers": [{"size": "3M+512", "block_size": "512K"},
                       {"block_size": "256K"}, {}]}]}
EOF
s1="$(snapshot_uuid "$tmp/model" 0)" s2="$(snapshot_uuid "$tmp/model" 1)"
m="$tmp/model"
cp "$m/d0.l2.raw" "$tmp/layer.raw"
write_disk "$tmp/layer.raw" "crash $seed" --filter="$VDIDIFF_FILTER" \
           "$VDI_PLUGIN" registry="$p/Crash.vbox" vdidiff="$p/layer.vdi"
layer_sha="$(sha256sum < "$p/layer.vdi")"
lu="$(vdi_uuid "$p/layer.vdi")"

# The disks of the snapshots, which nothing may change.
snapshots_lines ()
{
    disk_lines "$1" "$s1" "$m/d0.l0.raw" "$m/d1.l0.raw"
    disk_lines "$1" "$s2" "$m/d0.l1.raw" "$m/d1.l1.raw"
}

# old_state DIR: the machine in DIR is as it was.
old_state ()
{
    local d="$1"
    cmp "$d/Crash.vbox" "$p/Crash.vbox"
    { snapshots_lines "$d/Crash.vbox"
      disk_lines "$d/Crash.vbox" - "$m/d0.l2.raw" "$m/d1.l2.raw"
    } | same_disks
    test "$(sha256sum < "$d/layer.vdi")" = "$layer_sha"
}

# new_state NAME DIR PREV: the machine in DIR is as command NAME makes
# it from the settings file PREV.
new_state ()
{
    local name="$1" d="$2" prev="$3" vbox="$2/Crash.vbox" new
    $VDI_IMG snapshot list "$vbox" > "$tmp/list"
    case "$name" in
    take|adopt)
        new="$(snapshot_uuids "$vbox" | tail -1)"
        $HELPERS settings-step "$prev" "$vbox" take "$new"
        grep -x " *New {$new} (current)" "$tmp/list"
        { snapshots_lines "$vbox"
          disk_lines "$vbox" "$new" "$m/d0.l2.raw" "$m/d1.l2.raw"
          if [ "$name" = take ]; then
              disk_lines "$vbox" - "$m/d0.l2.raw" "$m/d1.l2.raw"
          else
              disk_lines "$vbox" - "$tmp/layer.raw" "$m/d1.l2.raw"
          fi
        } | same_disks
        if [ "$name" = adopt ]; then
            test "$(current_disks "$vbox" | head -1)" = "$lu"
            test "$(sha256sum < "$d/Snapshots/{$lu}.vdi")" = "$layer_sha"
        fi
        ;;
    restore)
        $HELPERS settings-step "$prev" "$vbox" restore "$s1"
        grep -x "Snapshot 1 {$s1} (current)" "$tmp/list"
        { snapshots_lines "$vbox"
          disk_lines "$vbox" - "$m/d0.l0.raw" "$m/d1.l0.raw"
        } | same_disks
        ;;
    esac
    registered_clean "$d"
}

# registered_clean DIR: every image the settings in DIR register is
# there and checks clean.
registered_clean ()
{
    local -a files
    mapfile -t files < <($HELPERS registry-tree "$1/Crash.vbox" |
                         cut -d' ' -f4- | sed "s|^|$1/|")
    test "${#files[@]}" -ge 6
    $VDI_CHECK "${files[@]}"
}

# try NAME ARGS...: "vdi-img snapshot ARGS" killed at every point.
# ARGS name the machine's folder as @D@.
try ()
{
    local name="$1" n k d="$tmp/$1"
    shift
    args ()
    {
        local a
        for a in "$@"; do printf '%s\0' "${a//@D@/$d}"; done
    }

    # The complete run.
    rm -rf "$d"; cp -a "$p" "$d"
    mapfile -d '' -t cmd < <(args "$@")
    KILL_AT_COUNT="$tmp/$name.count" LD_PRELOAD="$KILL_AT_LIB" \
        $VDI_IMG snapshot "${cmd[@]}"
    n="$(cat "$tmp/$name.count")"
    test "$n" -gt 5
    new_state "$name" "$d" "$p/Crash.vbox"

    for (( k = 1; k <= n; ++k )); do
        rm -rf "$d"; cp -a "$p" "$d"
        killed_at "$k" $VDI_IMG snapshot "${cmd[@]}"
        cp "$d/Crash.vbox" "$tmp/crashed.vbox"
        if cmp -s "$d/Crash.vbox" "$p/Crash.vbox"; then
            echo "$0: $name: killed at call $k of $n: the old settings"
            old_state "$d"
            registered_clean "$d"
        else
            echo "$0: $name: killed at call $k of $n: the new settings"
            new_state "$name" "$d" "$p/Crash.vbox"
            # The layer is the current state's disk now.
            if [ "$name" = adopt ]; then continue; fi
        fi
        # Run again: it succeeds, over what the crash left.
        $VDI_IMG snapshot "${cmd[@]}"
        cmp "$d/Crash.vbox-prev" "$tmp/crashed.vbox"
        new_state "$name" "$d" "$tmp/crashed.vbox"
    done
}

try take take @D@/Crash.vbox New
try restore restore @D@/Crash.vbox "Snapshot 1"
try adopt take @D@/Crash.vbox New --adopt @D@/layer.vdi
