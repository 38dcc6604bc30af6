# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# Helpers shared by test-chain-*.sh, test-registry-*.sh,
# test-merge-*.sh and test-snapshot-*.sh (not a test itself).  Source
# it after ./functions.sh:
#
#   source ./functions.sh
#   set -e
#   set -x
#   source "$abs_srcdir/test-chain-functions.sh"
#
# It skips the test unless the clients these tests use are there, and
# sets $tmp, the test's scratch folder, removed at exit.  $tmp is an
# absolute path: the plugin's messages name files by their absolute
# paths.
#
# Every expected byte and extent comes from make-vdi.py's model (its
# --machine mode writes a VirtualBox machine folder and the model of
# every image in it), never from the plugin.

requires nbdinfo --version
requires nbdcopy --version
requires qemu-img --version
requires_python_nbd
requires_nbdsh

tmp="$(realpath "$(mktemp -d --suffix=.tmp "$(basename "$0" .sh).XXXXXX")")"
cleanup_fn rm -rf "$tmp"

# make_machine FOLDER MODEL [--models top] < SPEC.json
#
# Write a machine folder (see make-vdi.py --machine --help).
make_machine ()
{
    local folder="$1" model="$2"
    shift 2
    $MAKE_VDI --machine "$folder" --spec - --model "$model" "$@"
}

# media_uuid MODEL D L, media_path MODEL D L, media_modify MODEL D L
#
# The UUID, file and modification UUID of layer L of disk D, from the
# model's "D L UUID MODIFY PATH" lines (PATH may hold spaces).
media_uuid ()
{
    awk -v d="$2" -v l="$3" '$1 == d && $2 == l { print $3 }' "$1/media"
}
media_modify ()
{
    awk -v d="$2" -v l="$3" '$1 == d && $2 == l { print $4 }' "$1/media"
}
media_path ()
{
    awk -v d="$2" -v l="$3" '$1 == d && $2 == l {
        sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, ""); print }' "$1/media"
}
# snapshot_uuid MODEL K, snapshot_name MODEL K
snapshot_uuid ()
{
    awk -v k="$2" '$1 == k { print $2 }' "$1/snapshots"
}
snapshot_name ()
{
    awk -v k="$2" '$1 == k { sub(/^[^ ]+ [^ ]+ /, ""); print }' \
        "$1/snapshots"
}

# The UUID as the user may type it: braces, upper case.
upper_braced ()
{
    echo "{$1}" | tr 'a-f' 'A-F'
}

# check_served NAME EXPECTED EXTENTS nbdkit-plugin-args...
#
# Serve with the plugin and these arguments, then check that clients
# see exactly EXPECTED: the size (nbdinfo --size), every byte through
# nbdcopy and through qemu-img convert over NBD, and $t_reads (300 by
# default) random unaligned reads (helpers.py random-reads), many
# across block edges ($t_block: the smallest block size of the chain).
# If EXTENTS is not "-", nbdinfo --map must give exactly those
# data/zero runs; with t_map=covers it must only report as data every
# run EXTENTS calls data (the plugin may call zeros "data" inside one
# lookup unit).  The server is read-only (-r): it takes only a shared
# lock, as the shared test data needs.
# Scratch files are $tmp/NAME.*.
check_served ()
{
    local name="$1" expect="$2" extents="$3" p="$tmp/$1"
    shift 3

    rm -f "$p".*
    t_prefix="$p" t_expect="$expect" t_block="${t_block:-1048576}" \
    t_reads="${t_reads:-300}" t_seed="$name" t_helpers="$HELPERS" \
    nbdkit -U - -r "$VDI_PLUGIN" "$@" --run '
        nbdinfo --size "$uri" > "$t_prefix.size" &&
        nbdcopy "$uri" "$t_prefix.raw" &&
        qemu-img convert -f raw -O raw "$uri" "$t_prefix.qemu" &&
        nbdinfo --map "$uri" > "$t_prefix.nbdmap" &&
        $t_helpers random-reads "$uri" "$t_expect" --block "$t_block" \
            --reads "$t_reads" --seed "$t_seed"
    ' || return 1
    test "$(cat "$p.size")" -eq "$(stat -c %s "$expect")" || return 1
    cmp_sparse "$expect" "$p.raw" || return 1
    cmp_sparse "$expect" "$p.qemu" || return 1
    if [ "x$extents" != "x-" ]; then
        normalise_nbdinfo_map < "$p.nbdmap" > "$p.map" || return 1
        if [ "x$t_map" = "xcovers" ]; then
            map_covers "$extents" "$p.map" || return 1
        else
            diff -u "$extents" "$p.map" || return 1
        fi
    fi
    rm -f "$p.raw" "$p.qemu"
}

# map_covers MODEL GOT
#
# Both are "OFFSET LENGTH data|zero" runs over the same size; every
# byte MODEL calls data must be data in GOT.
map_covers ()
{
    $HELPERS map-covers "$1" "$2"
}

# sums
#
# Checksums of every image and settings file under $tmp, to prove that
# a failed (or read-only) start changed nothing.
sums ()
{
    $HELPERS sums "$tmp"
}

# folder_sums DIR: "SHA256 PATH" of every file under DIR (all of
# them: also what sums leaves out, such as M.vbox-prev and M.vbox-tmp).
folder_sums ()
{
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z |
         xargs -0 sha256sum)
}

# expect_fail NAME STRING... -- nbdkit-plugin-args...
#
# The plugin must refuse to start: nbdkit exits non-zero (and not by a
# signal or a valgrind error), serves nothing, prints no crash report
# and exactly one line containing "error", which contains every STRING
# (fixed strings: the whole line, or parts of it); and no file under
# $tmp changes.  stderr is kept in $tmp/NAME.err.
expect_fail ()
{
    local name="$1" status s err="$tmp/$1.err" marker="$tmp/$1.served"
    local strings=()
    shift
    while [ "$1" != "--" ]; do
        strings+=("$1")
        shift
    done
    shift

    rm -f "$marker"
    sums > "$tmp/$name.sums"
    status=0
    t_marker="$marker" \
    nbdkit -U - "$VDI_PLUGIN" "$@" --run 'touch "$t_marker"' 2> "$err" ||
        status=$?
    cat "$err"

    if [ "$status" -eq 0 ]; then
        echo "$0: $name: nbdkit exited with status 0" >&2; return 1
    fi
    if [ "$status" -ge 126 ]; then
        echo "$0: $name: nbdkit exited with status $status (signal?)" >&2
        return 1
    fi
    if [ "x$NBDKIT_VALGRIND" = "x1" ] && [ "$status" -eq 119 ]; then
        echo "$0: $name: valgrind found errors" >&2; return 1
    fi
    if [ -e "$marker" ]; then
        echo "$0: $name: nbdkit served before failing" >&2; return 1
    fi
    if grep -E 'Segmentation|AddressSanitizer|LeakSanitizer|core dumped|Aborted|Assertion|assertion|runtime error' "$err"; then
        echo "$0: $name: crash report in stderr" >&2; return 1
    fi
    grep -v -e '^==[0-9]*==' -e '^+' "$err" | grep 'error' > "$err.lines" ||
        true
    if [ "$(wc -l < "$err.lines")" -ne 1 ]; then
        echo "$0: $name: expected exactly one error line" >&2; return 1
    fi
    for s in "${strings[@]}"; do
        if ! grep -qF -- "$s" "$err.lines"; then
            echo "$0: $name: the error does not contain '$s'" >&2
            return 1
        fi
    done
    if ! sums | cmp -s "$tmp/$name.sums" -; then
        echo "$0: $name: a file changed" >&2
        sums | diff -u "$tmp/$name.sums" - >&2
        return 1
    fi
}

# expect_must_fail CMD...
#
# A negative control: the check CMD must fail (so it can fail).
expect_must_fail ()
{
    if ( "$@" ) > "$tmp/negative.log" 2>&1; then
        echo "$0: negative control '$*' succeeded" >&2
        return 1
    fi
    # How it failed, for the log.
    grep -v '^+' "$tmp/negative.log" | tail -5
}

# write_vbox FILE ATTACHED-UUID < HARDDISK-ELEMENTS
#
# A minimal machine settings file written by hand: the HardDisk
# elements read from stdin go into its media registry, and the machine
# has one hard disk attached, ATTACHED-UUID.
write_vbox ()
{
    {
        echo '<?xml version="1.0"?>'
        echo '<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux">'
        echo '  <Machine uuid="{5eed0000-0000-4000-8000-00000000abcd}" name="Hand" snapshotFolder="Snapshots">'
        echo '    <MediaRegistry>'
        echo '      <HardDisks>'
        cat
        echo '      </HardDisks>'
        echo '    </MediaRegistry>'
        echo '    <StorageControllers>'
        echo '      <StorageController name="SATA" type="AHCI" PortCount="1">'
        echo '        <AttachedDevice type="HardDisk" port="0" device="0">'
        echo "          <Image uuid=\"{$2}\"/>"
        echo '        </AttachedDevice>'
        echo '      </StorageController>'
        echo '    </StorageControllers>'
        echo '  </Machine>'
        echo '</VirtualBox>'
    } > "$1"
}

# vdi_modify FILE: the modification UUID.
vdi_modify ()
{
    $HELPERS vdi-uuid "$1" uuidModify
}
