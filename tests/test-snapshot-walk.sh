#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# A seeded random walk of "vdi-img snapshot take", "restore" and
# "delete" and of guest writes, checked at every step against an
# independent model.
#
# Machines:
#
#   - "Walk", written by make-vdi.py --machine: two disks (4 MiB with
#     1 MiB blocks; "data disk.vdi", 5 MiB + 512 bytes with 512 KiB and
#     256 KiB blocks), each a base and two differencing images, two
#     snapshots.  40 steps; restores only once the tree is 9 levels
#     deep, so it ends deeper than 8 with siblings (asserted);
#   - copies of the real settings files in ../shared/testdata (skipped,
#     with a message, if absent): tidev_androidlib/linux-vm.vbox (one
#     base "Linux VM.vdi", no snapshot, settings 1.15) and
#     genymotion-google-pixel-8.0-api26.vbox (settings 1.12, two disks
#     each a base and a differencing image, snapshot "factory-backup",
#     StorageControllers directly in Machine and Snapshot).  Both are
#     given small images made by make-vdi.py with the UUIDs they
#     register.  The genymotion file registers VMDK media: its copy
#     says VDI and .vdi instead (sed), as VirtualBox would with VDI
#     disks; nothing else of it changes.  30 steps each.
#
# A step is one of: take a snapshot with a new name (some with
# characters XML escapes, some not ASCII); write random data and zeros
# through "nbdkit vdi registry=M.vbox disk=N" with nbdsh, and the same
# into the model; restore a random snapshot (possibly the current
# one), by name, by UUID, braced or upper case.  The model keeps, for
# each snapshot, the bytes each disk had when it was taken, and for
# the current state the bytes last written.  After each step:
#
#   - every disk of every snapshot ("nbdkit -r vdi registry=M.vbox
#     snapshot=NAME disk=N", read by libnbd: helpers.py same-disks)
#     and of the current state reads exactly the model's bytes;
#   - "vdi-img snapshot list" prints exactly the tree of the model
#     (names, nesting, order, the current mark, each snapshot's disks
#     and their files); the current state's disks are new
#     differencing images Snapshots/{UUID}.vdi over the model's
#     parents, their headers linked to the parents' create and modify
#     UUIDs (vdi-img info --output=json);
#   - the media registry (Python's XML parser: helpers.py
#     registry-tree) nests exactly the media in use, each under its
#     parent, and the machine folder holds exactly their files and the
#     settings file and its -prev (no -tmp, nothing discarded left);
#   - the settings file validates against VirtualBox-settings.xsd
#     wherever the input did (make-vdi.py's files; the real files, in
#     the old innotek namespace, do not even untouched: they must stay
#     well-formed, and "vdi-img snapshot list" and the plugin, the
#     project's own reader, must read them);
#   - M.vbox-prev is byte for byte the file before the step; the step
#     changed nothing else than it had to (helpers.py settings-step:
#     comments, ExtraData, attribute order, the other snapshots and
#     media as they were; a new snapshot holds exact copies of the
#     Hardware and StorageControllers); a write changes no settings.
#
# Everything random comes from TEST_SEED (default 1).

source ./functions.sh
set -e
set -x

requires xmllint --version
source "$abs_srcdir/test-chain-functions.sh"
source "$abs_srcdir/snapshot-functions.sh"

seed="${TEST_SEED:-1}"
echo "$0: TEST_SEED=$seed"
RANDOM="$seed"

xsd="$TESTDATA/vbox-settings/VirtualBox-settings.xsd"
if [ ! -f "$xsd" ]; then
    echo "$0: $xsd is absent: the settings files are checked to be" \
         "well-formed only, not against the schema"
fi

# --- The model of the machine under test --------------------------------

# sn_*[K]: snapshot K (in the order they were made): its name, UUID,
# parent snapshot (-1 for none) and disks (UUIDs, space separated).
# cur: the current snapshot (-1 for none); cur_disks: the current
# state's disks.  loc[U], par[U]: the file of medium U and its parent
# ("-" for a base); registered[U] is set while the registry holds U.
# The bytes: $model/sK.dD.raw and $model/cur.dD.raw.

# fail MESSAGE: the step went wrong.
fail ()
{
    echo "$0: $mname, step $step ($what): $*" >&2
    exit 1
}

# machine_begin NAME VBOX NR-DISKS VALIDATES
machine_begin ()
{
    mname="$1" vbox="$2" ndisks="$3" validates="$4"
    dir="$(dirname "$vbox")"
    model="$tmp/$mname.model"
    mkdir -p "$model"
    sn_name=() sn_uuid=() sn_parent=() sn_disks=() sn_seq=()
    next_seq=0 next_k=0
    cur=-1
    cur_disks=()
    unset loc par registered
    declare -g -A loc par registered
    step=0 what=initial
    # Whether a step has saved the settings (and so made VBOX-prev).
    saved=no
}

# add_medium UUID FILE PARENT
add_medium ()
{
    loc[$1]="$2"
    par[$1]="$3"
    registered[$1]=1
}

# add_snapshot NAME UUID PARENT-INDEX DISK-UUIDS...: a snapshot that
# the machine has, number $next_k (numbers of deleted snapshots are not
# used again); its model is $model/sK.dD.raw, made by the caller.
add_snapshot ()
{
    local k=$(( next_k++ ))
    sn_name[k]="$1"
    sn_uuid[k]="$2"
    sn_parent[k]="$3"
    sn_seq[k]=$(( next_seq++ ))
    shift 3
    sn_disks[k]="$*"
}

# children K: the snapshots whose parent is K (-1: the top ones), in
# the order the file has them.
children ()
{
    local j
    for j in "${!sn_uuid[@]}"; do
        if [ "${sn_parent[j]}" -eq "$1" ]; then echo "${sn_seq[j]} $j"; fi
    done | sort -n | cut -d' ' -f2
}

# set_model FILE RAW: the model FILE holds RAW's bytes.
set_model ()
{
    cp "$2" "$1"
}

rel ()
{
    echo "${1#"$dir/"}"
}

# depth K: the level of snapshot K (1 for the first).
depth ()
{
    local k="$1" n=0
    while [ "$k" -ge 0 ]; do
        n=$((n + 1))
        k="${sn_parent[k]}"
    done
    echo "$n"
}

# print_snapshot K: snapshot K and its subtree as "vdi-img snapshot
# list" prints them.
print_snapshot ()
{
    local k="$1" j d ind mark=""
    local -a ds
    ind=$(( ($(depth "$k") - 1) * 2 ))
    if [ "$k" -eq "$cur" ]; then mark=" (current)"; fi
    printf '%*s%s {%s}%s\n' "$ind" '' "${sn_name[k]}" "${sn_uuid[k]}" "$mark"
    read -r -a ds <<< "${sn_disks[k]}"
    for d in "${!ds[@]}"; do
        printf '%*s  disk %d: {%s} %s\n' "$ind" '' "$d" "${ds[d]}" \
               "${loc[${ds[d]}]}"
    done
    for j in $(children "$k"); do print_snapshot "$j"; done
}

expected_list ()
{
    local k d
    echo "machine \"$mname\""
    for k in $(children -1); do print_snapshot "$k"; done
    echo "current state"
    for d in "${!cur_disks[@]}"; do
        printf '  disk %d: {%s} %s\n' "$d" "${cur_disks[d]}" \
               "${loc[${cur_disks[d]}]}"
    done
}

# --- The checks ---------------------------------------------------------

# check_contents: every disk of every snapshot and of the current state
# reads exactly what the model says.
check_contents ()
{
    local k d
    local -a files
    {
        for k in "${!sn_uuid[@]}"; do
            files=()
            for (( d = 0; d < ndisks; ++d )); do
                files+=("$model/s$k.d$d.raw")
            done
            disk_lines "$vbox" "${sn_name[k]}" "${files[@]}"
        done
        files=()
        for (( d = 0; d < ndisks; ++d )); do
            files+=("$model/cur.d$d.raw")
        done
        disk_lines "$vbox" - "${files[@]}"
    } | same_disks || fail "a disk reads wrong"
}

check_list ()
{
    expected_list > "$tmp/list.expected"
    $VDI_IMG snapshot list "$vbox" > "$tmp/list.got"
    diff -u "$tmp/list.expected" "$tmp/list.got" ||
        fail "vdi-img snapshot list does not show the model's tree"
}

check_registry ()
{
    local u
    for u in "${!registered[@]}"; do
        echo "$u ${par[$u]} VDI $(rel "${loc[$u]}")"
    done | LC_ALL=C sort > "$tmp/registry.expected"
    $HELPERS registry-tree "$vbox" | LC_ALL=C sort > "$tmp/registry.got"
    diff -u "$tmp/registry.expected" "$tmp/registry.got" ||
        fail "the registry does not nest the media in use"
}

check_files ()
{
    local u
    {
        for u in "${!registered[@]}"; do rel "${loc[$u]}"; done
        basename "$vbox"
        if [ "$saved" = yes ]; then basename "$vbox-prev"; fi
    } | LC_ALL=C sort > "$tmp/files.expected"
    (cd "$dir" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) \
        > "$tmp/files.got"
    diff -u "$tmp/files.expected" "$tmp/files.got" ||
        fail "the machine folder does not hold exactly the media in use"
}

check_schema ()
{
    if [ "$validates" = yes ] && [ -f "$xsd" ]; then
        xmllint --noout --schema "$xsd" "$vbox" ||
            fail "the settings no longer validate"
    else
        xmllint --noout "$vbox" || fail "the settings are not well-formed"
    fi
}

# check_new_disk U: the current state's new disk U is an empty
# differencing image Snapshots/{U}.vdi made for its parent.
check_new_disk ()
{
    local u="$1"
    [ "${loc[$u]}" = "$dir/Snapshots/{$u}.vdi" ] || fail "$u: ${loc[$u]}"
    empty_diff_of "${loc[$u]}" "${loc[${par[$u]}]}" "$u" ||
        fail "${loc[$u]} is not an empty image made for its parent"
}

# check_all: after a step.  A write has checked that the settings file
# and its -prev did not change: only the disks then.
check_all ()
{
    check_contents
    check_files
    if [ "$1" != write ]; then
        check_list
        check_registry
        check_schema
    fi
}

# --- The steps ------------------------------------------------------

save_before ()
{
    cp "$vbox" "$tmp/before.vbox"
    rm -f "$tmp/before.vbox-prev"
    if [ -f "$vbox-prev" ]; then cp "$vbox-prev" "$tmp/before.vbox-prev"; fi
}

# saved_settings STEP UUID: the settings file was replaced by one that
# made this step (helpers.py settings-step), keeping the old as -prev.
saved_settings ()
{
    saved=yes
    cmp "$vbox-prev" "$tmp/before.vbox" ||
        fail "M.vbox-prev is not the file before the step"
    $HELPERS settings-step "$tmp/before.vbox" "$vbox" "$1" "$2" ||
        fail "the step changed what it should not have"
}

# new_current PARENT-UUIDS...: the current state has new disks, over
# these parents.
new_current ()
{
    local d u
    mapfile -t cur_disks < <(current_disks "$vbox")
    [ "${#cur_disks[@]}" -eq "$ndisks" ] || fail "${#cur_disks[@]} disks"
    for (( d = 0; d < ndisks; ++d )); do
        u="${cur_disks[d]}"
        [ -z "${loc[$u]+x}" ] || fail "disk $d {$u} is not new"
        add_medium "$u" "$dir/Snapshots/{$u}.vdi" "$1"
        shift
        check_new_disk "$u"
    done
}

op_take ()
{
    local name="$1" k=$next_k u d
    local -a old=("${cur_disks[@]}")
    what="take \"$name\""
    save_before
    $VDI_IMG snapshot take "$vbox" "$name" || fail "failed"
    u="$(snapshot_uuids "$vbox" |
         grep -vxF -f <(printf '%s\n' "${sn_uuid[@]}"))" || true
    [[ "$u" =~ ^[0-9a-f-]{36}$ ]] || fail "new snapshots: $u"
    add_snapshot "$name" "$u" "$cur" "${old[@]}"
    for (( d = 0; d < ndisks; ++d )); do
        set_model "$model/s$k.d$d.raw" "$model/cur.d$d.raw"
    done
    cur=$k
    new_current "${old[@]}"
    saved_settings take "$u"
}

# op_restore K HOW: restore snapshot K, naming it by HOW (name, uuid,
# braced, upper).
op_restore ()
{
    local k="$1" which u d
    local -a ds
    case "$2" in
        name) which="${sn_name[k]}" ;;
        uuid) which="${sn_uuid[k]}" ;;
        braced) which="{${sn_uuid[k]}}" ;;
        upper) which="$(upper_braced "${sn_uuid[k]}")" ;;
    esac
    what="restore \"${sn_name[k]}\" as $which"
    save_before
    $VDI_IMG snapshot restore "$vbox" "$which" || fail "failed"
    # The current state's differencing images are gone.
    for u in "${cur_disks[@]}"; do
        if [ "${par[$u]}" != - ]; then unset "registered[$u]"; fi
    done
    read -r -a ds <<< "${sn_disks[k]}"
    for (( d = 0; d < ndisks; ++d )); do
        set_model "$model/cur.d$d.raw" "$model/s$k.d$d.raw"
    done
    cur=$k
    new_current "${ds[@]}"
    saved_settings restore "${sn_uuid[k]}"
}

# media_children U: the registered media whose parent is U.
media_children ()
{
    local u
    for u in "${!registered[@]}"; do
        if [ "${par[$u]}" = "$1" ]; then echo "$u"; fi
    done
}

# deletable K: can snapshot K be deleted (at most one child snapshot,
# none if current; no disk with two children)?
deletable ()
{
    local k="$1" m n
    local -a ds
    n="$(children "$k" | wc -l)"
    [ "$n" -le 1 ] || return 1
    [ "$k" -ne "$cur" ] || [ "$n" -eq 0 ] || return 1
    read -r -a ds <<< "${sn_disks[k]}"
    for m in "${ds[@]}"; do
        [ "$(media_children "$m" | wc -l)" -le 1 ] || return 1
    done
}

# replace_disk OLD NEW: every attachment of OLD names NEW.
replace_disk ()
{
    local j d
    for j in "${!sn_disks[@]}"; do
        sn_disks[j]="$(sed "s/$1/$2/g" <<< "${sn_disks[j]}")"
    done
    for d in "${!cur_disks[@]}"; do
        if [ "${cur_disks[d]}" = "$1" ]; then cur_disks[d]="$2"; fi
    done
}

# op_delete K: delete snapshot K.  The model plans each disk as
# VirtualBox does (vbox-lifecycle.md 5.2): no child, a differencing
# image goes; one child, merged into a base, else into the larger file.
op_delete ()
{
    local k="$1" p m c x a j
    local -a ds plan=()
    what="delete \"${sn_name[k]}\""
    save_before
    read -r -a ds <<< "${sn_disks[k]}"
    for m in "${ds[@]}"; do
        c="$(media_children "$m")"
        if [ -z "$c" ]; then
            if [ "${par[$m]}" != - ]; then plan+=("remove $m"); fi
        elif [ "${par[$m]}" = - ] ||
             [ "$(stat -c %s "${loc[$m]}")" -ge "$(stat -c %s "${loc[$c]}")" ]; then
            plan+=("into-parent $m $c")
        else
            plan+=("into-child $m $c")
        fi
    done
    $VDI_IMG snapshot delete "$vbox" "${sn_uuid[k]}" || fail "failed"
    for a in "${plan[@]}"; do
        set -- $a
        case "$1" in
            remove) unset "registered[$2]" ;;
            into-parent)
                for x in $(media_children "$3"); do par[$x]="$2"; done
                unset "registered[$3]"
                replace_disk "$3" "$2" ;;
            into-child)
                par[$3]="${par[$2]}"
                unset "registered[$2]" ;;
        esac
    done
    # Its child snapshot goes to its parent, last (or, at the top, to
    # its place).
    p="${sn_parent[k]}"
    for j in $(children "$k"); do
        sn_parent[j]="$p"
        if [ "$p" -eq -1 ]; then sn_seq[j]="${sn_seq[k]}"
        else sn_seq[j]=$(( next_seq++ )); fi
    done
    if [ "$cur" -eq "$k" ]; then cur="$p"; fi
    unset "sn_name[k]" "sn_uuid[k]" "sn_parent[k]" "sn_disks[k]" "sn_seq[k]"
    rm -f "$model/s$k".d*.raw
    saved=yes
    cmp "$vbox-prev" "$tmp/before.vbox" ||
        fail "M.vbox-prev is not the file before the step"
}

# op_write D: random writes and zeros on disk D of the current state.
op_write ()
{
    local d="$1"
    what="write disk $d"
    save_before
    write_disk "$model/cur.d$d.raw" "$seed $mname $step" \
               "$VDI_PLUGIN" registry="$vbox" disk="$d" || fail "failed"
    cmp "$vbox" "$tmp/before.vbox" || fail "the settings changed"
    if [ -f "$tmp/before.vbox-prev" ]; then
        cmp "$vbox-prev" "$tmp/before.vbox-prev" || fail "-prev changed"
    fi
}

# new_name I: the name of the Ith snapshot taken: some with characters
# that XML escapes, some not ASCII, the others plain.
new_name ()
{
    case $(( $1 % 4 )) in
        1) echo "step $1 <a&b> \"q\" 'x'" ;;
        2) echo "Schnappschuß $1 — ünïcode" ;;
        *) echo "walk $1" ;;
    esac
}

# walk STEPS DEPTH: STEPS random steps; no restore until the tree is
# DEPTH levels deep.
walk ()
{
    local steps="$1" want="$2" deepest=0 r k n d
    local -a ks can
    check_all
    deletes=0 most_siblings=0
    for (( step = 1; step <= steps; ++step )); do
        ks=("${!sn_uuid[@]}")
        n=${#ks[@]}
        can=()
        for k in "${ks[@]}"; do
            if deletable "$k"; then can+=("$k"); fi
        done
        r=$(( RANDOM % 100 ))
        if [ "$n" -gt 0 ] && [ "$deepest" -ge "$want" ] && [ $r -lt 25 ]; then
            k="${ks[RANDOM % n]}"
            op_restore "$k" "$(echo name uuid braced upper |
                               cut -d' ' -f$(( RANDOM % 4 + 1 )))"
        elif [ "${#can[@]}" -gt 0 ] && [ "$deepest" -ge "$want" ] &&
             [ $r -lt 40 ]; then
            op_delete "${can[RANDOM % ${#can[@]}]}"
            deletes=$(( deletes + 1 ))
        elif [ $r -lt 65 ]; then
            op_take "$(new_name "$step")"
        else
            op_write $(( RANDOM % ndisks ))
        fi
        check_all "${what%% *}"
        for k in "${!sn_uuid[@]}"; do
            d="$(depth "$k")"
            if [ "$d" -gt "$deepest" ]; then deepest="$d"; fi
        done
        d="$(siblings)"
        if [ "$d" -gt "$most_siblings" ]; then most_siblings="$d"; fi
    done
    echo "$0: $mname: ${#sn_uuid[@]} snapshots, $deepest levels," \
         "$deletes deleted"
    walk_depth="$deepest"
}

# siblings: the number of snapshots that have more than one child.
siblings ()
{
    printf '%s\n' "${sn_parent[@]}" | sort | uniq -d | grep -vcx -- -1 || true
}

# --- Walk: a machine written by make-vdi.py -------------------------------

mkdir "$tmp/walk"
vm="$tmp/walk/vm"
make_machine "$vm" "$tmp/walk/model" <<'EOF'
{"name": "Walk", "seed": "walk",
 "disks": [{"layers": [{"size": "4M", "blocks": "DZFD"},
                       {"blocks": "FDZF"}, {"blocks": "ZFDF"}]},
           {"file": "data disk.vdi",
            "layers": [{"size": "5M+512", "block_size": "512K"},
                       {"block_size": "256K"}, {}]}]}
EOF
xmllint --noout --schema "$xsd" "$vm/Walk.vbox" || test ! -f "$xsd"
machine_begin Walk "$vm/Walk.vbox" 2 yes
for d in 0 1; do
    for l in 0 1 2; do
        u="$(media_uuid "$tmp/walk/model" $d $l)"
        p=-
        if [ $l -gt 0 ]; then p="$(media_uuid "$tmp/walk/model" $d $((l - 1)))"; fi
        add_medium "$u" "$(media_path "$tmp/walk/model" $d $l)" "$p"
    done
done
for k in 0 1; do
    add_snapshot "$(snapshot_name "$tmp/walk/model" $k)" \
                 "$(snapshot_uuid "$tmp/walk/model" $k)" $((k - 1)) \
                 "$(media_uuid "$tmp/walk/model" 0 $k)" \
                 "$(media_uuid "$tmp/walk/model" 1 $k)"
    for d in 0 1; do
        set_model "$model/s$k.d$d.raw" "$tmp/walk/model/d$d.l$k.raw"
    done
done
cur=1
cur_disks=("$(media_uuid "$tmp/walk/model" 0 2)"
           "$(media_uuid "$tmp/walk/model" 1 2)")
for d in 0 1; do
    set_model "$model/cur.d$d.raw" "$tmp/walk/model/d$d.l2.raw"
done
walk 40 9
test "$walk_depth" -ge 9
test "$most_siblings" -ge 1
test "$deletes" -ge 1

# --- The real settings files --------------------------------------------

linux_src="$TESTDATA/tidev_androidlib/linux-vm.vbox"
geny_src="$TESTDATA/tidev_androidlib/genymotion-google-pixel-8.0-api26.vbox"
if [ ! -f "$linux_src" ] || [ ! -f "$geny_src" ]; then
    echo "$0: the real settings files $linux_src and $geny_src are" \
         "absent: only the machine of make-vdi.py was walked"
    exit 0
fi

# The innotek namespace: the schema does not apply, even untouched.
if [ -f "$xsd" ]; then
    must_fail xmllint --noout --schema "$xsd" "$linux_src"
    must_fail xmllint --noout --schema "$xsd" "$geny_src"
fi

# mk FILE MODEL ARGS...: a VDI image and the bytes it shows (MODEL).
mk ()
{
    local f="$1" raw="$2"
    shift 2
    mkdir -p "$(dirname "$f")"
    $MAKE_VDI --seed "$(basename "$f")" "$@" --expect "$raw" "$f"
}

# Linux VM: one base, no snapshot.
lv="$tmp/linux"
raw="$tmp/linux.raw"
mkdir -p "$lv" "$raw"
cp "$linux_src" "$lv/"
base=b48fd6c3-7041-4aa2-8b0f-b98d43fb739d
grep -qF "<HardDisk uuid=\"{$base}\" location=\"Linux VM.vdi\" format=\"VDI\" type=\"Normal\"/>" "$lv/linux-vm.vbox"
mk "$lv/Linux VM.vdi" "$raw/base" --size 3M --block-size 1M \
   --blocks DZD --uuid-create "$base"
machine_begin "Linux VM" "$lv/linux-vm.vbox" 1 no
add_medium "$base" "$lv/Linux VM.vdi" -
cur_disks=("$base")
set_model "$model/cur.d0.raw" "$raw/base"
walk 30 3

# Genymotion: two disks, as VDI.
g="$tmp/geny"
raw="$tmp/geny.raw"
mkdir -p "$g" "$raw"
vbox="$g/$(basename "$geny_src")"
sed 's/format="VMDK"/format="VDI"/g; s/\.vmdk"/.vdi"/g' "$geny_src" > "$vbox"
must_fail grep -qi vmdk "$vbox"
sys_base=72f9660a-2e75-4576-bb09-5480cc0e0462
sys_child=bf3e15cd-2a62-4561-91ba-78f9ca9b2d40
data_base=5b9870b6-b99d-4eff-a723-c149071c550b
data_child=96fb3733-225f-4780-929b-d723216b9b9a
factory=c760517a-3c69-4b8e-8941-b8e4a0eea992
mk "$g/android_system_disk.vdi" "$raw/sys0" --size 4M \
   --uuid-create "$sys_base" --blocks DZDF
mk "$g/Snapshots/{$sys_child}.vdi" "$raw/sys1" --uuid-create "$sys_child" \
   --parent "$g/android_system_disk.vdi" --parent-expect "$raw/sys0" \
   --block-size 512K --blocks FDFZFFDD
mk "$g/android_data_disk.vdi" "$raw/data0" --size 5M+512 \
   --uuid-create "$data_base" --block-size 2M --blocks DZD
mk "$g/Snapshots/{$data_child}.vdi" "$raw/data1" \
   --uuid-create "$data_child" \
   --parent "$g/android_data_disk.vdi" --parent-expect "$raw/data0" \
   --block-size 128K --weights 1,0,1,6
machine_begin "PREVIEW - Google Pixel - 8.0 - API 26 - 1080x1920" "$vbox" 2 no
add_medium "$sys_base" "$g/android_system_disk.vdi" -
add_medium "$sys_child" "$g/Snapshots/{$sys_child}.vdi" "$sys_base"
add_medium "$data_base" "$g/android_data_disk.vdi" -
add_medium "$data_child" "$g/Snapshots/{$data_child}.vdi" "$data_base"
add_snapshot factory-backup "$factory" -1 "$sys_base" "$data_base"
set_model "$model/s0.d0.raw" "$raw/sys0"
set_model "$model/s0.d1.raw" "$raw/data0"
cur=0
cur_disks=("$sys_child" "$data_child")
set_model "$model/cur.d0.raw" "$raw/sys1"
set_model "$model/cur.d1.raw" "$raw/data1"
walk 30 2
