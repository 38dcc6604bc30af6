#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The user scripts (../scripts/vdi-convert, vdi-inspect, vdi-serve):
# --help shows a manual (NAME, SYNOPSIS, ... in man page style) and
# exits 0; it lists the options the script takes, the same as its man
# page (../scripts/*.pod, which podchecker passes); every mistake on
# the command line, a missing file and a bad image each give one
# error line on stderr, nothing on stdout, and exit status 1, before
# anything is written; the scripts find the plugin built beside them
# (also through a symbolic link), and otherwise ask nbdkit for "vdi"
# by name.  No libguestfs appliance is started here.

source ./functions.sh
set -e
set -x

requires qemu-img --version

scripts="$abs_top_srcdir/scripts"
tmp="$(realpath "$(mktemp -d --suffix=.tmp test-scripts-help.XXXXXX)")"
cleanup_fn rm -rf "$tmp"

# Where the build is not beside the scripts (VPATH), say where it is.
if [ ! -f "$scripts/../plugin/.libs/nbdkit-vdi-plugin.so" ]; then
    export NBDKIT_VDI_PLUGIN="$VDI_PLUGIN"
    export NBDKIT_VDIDIFF_FILTER="$VDIDIFF_FILTER"
fi

# --- --help -----------------------------------------------------------

for s in vdi-convert vdi-fstrim vdi-inspect vdi-serve; do
    for opt in --help -h; do
        "$scripts/$s" $opt > "$tmp/help" 2> "$tmp/help.err"
        cat "$tmp/help"
        test ! -s "$tmp/help.err"
        test "$(head -n1 "$tmp/help")" = NAME
        grep -E "^    $s - " "$tmp/help"
        sections=(SYNOPSIS DESCRIPTION OPTIONS EXAMPLES "EXIT STATUS" "SEE ALSO")
        # The scripts that take any disk say what in SOURCE (vdi-fstrim
        # takes a VDI file).
        [ "$s" = vdi-fstrim ] || sections+=(SOURCE)
        for section in "${sections[@]}"; do
            grep -Fx "$section" "$tmp/help"
        done
        grep -E "^    $s \[" "$tmp/help"
        # Fits in 80 columns.
        test "$(awk '{ if (length($0) > m) m = length($0) } END { print m }' \
                    "$tmp/help")" -le 79
    done
done
# Options are read in order: --help after a bad option is too late.
"$scripts/vdi-convert" --bogus --help > /dev/null 2>&1 && false
"$scripts/vdi-convert" nosuch.vdi out.raw --help | grep -Fx NAME

# --- --help and the man page agree ------------------------------------

# The options the parser's case patterns take (-h|--help), the ones
# --help lists under OPTIONS, and the ones the man page's OPTIONS
# section has as "=item B<-x>" (or "=item B<-x>, B<--long>") must be
# the same sets.  The sections of
# --help must be sections of the man page, and NAME the same line.

parser_options ()
{
    sed -nE 's/^        (-[-a-zA-Z|]*)\).*/\1/p' "$1" | tr '|' '\n' |
        grep -vx -- '--' | sort -u
}

help_options ()
{
    awk '/^[A-Z]/ { in_options = ($0 == "OPTIONS"); next }
         in_options && /^    -/ {
             sub(/^    /, ""); sub(/  .*/, "");
             n = split($0, alt, /, /);
             for (i = 1; i <= n; ++i) { split(alt[i], w, " "); print w[1] }
         }' | sort -u
}

pod_options ()
{
    awk '/^=head1 / { in_options = ($0 == "=head1 OPTIONS"); next }
         in_options && /^=item B<-/ {
             while (match($0, /B<-[^>]*>/)) {
                 print substr($0, RSTART + 2, RLENGTH - 3)
                 $0 = substr($0, RSTART + RLENGTH)
             }
         }' "$1" | sort -u
}

for s in vdi-convert vdi-fstrim vdi-inspect vdi-serve; do
    pod="$scripts/$s.pod"
    test -f "$pod"
    "$scripts/$s" --help > "$tmp/help"

    parser_options "$scripts/$s" > "$tmp/parser-options"
    help_options < "$tmp/help" > "$tmp/help-options"
    pod_options "$pod" > "$tmp/pod-options"
    test -s "$tmp/parser-options"
    diff -u "$tmp/parser-options" "$tmp/help-options"
    diff -u "$tmp/help-options" "$tmp/pod-options"

    while read -r section; do
        grep -Fx "=head1 $section" "$pod"
    done < <(grep -E '^[A-Z]' "$tmp/help")
    for section in "ENVIRONMENT VARIABLES" AUTHORS COPYRIGHT; do
        grep -Fx "=head1 $section" "$pod"
    done
    test "$(sed -n 2p "$tmp/help" | sed 's/^    //')" = \
         "$(sed -n '/^=head1 NAME$/,/^=head1/{/^[a-z]/p}' "$pod")"
done

# podchecker (perl): no error, no warning.
if command -v podchecker > /dev/null; then
    for s in vdi-convert vdi-fstrim vdi-inspect vdi-serve; do
        podchecker -warnings -warnings "$scripts/$s.pod" > "$tmp/podchecker" 2>&1
        cat "$tmp/podchecker"
        if grep -E '^\*\*\* (ERROR|WARNING)' "$tmp/podchecker"; then false; fi
    done
fi

# --- errors: one line, status 1, nothing on stdout ---------------------

# expect_error PATTERN COMMAND...
expect_error ()
{
    local pattern="$1" status=0
    shift
    "$@" > "$tmp/out" 2> "$tmp/err" < /dev/null || status=$?
    cat "$tmp/out" "$tmp/err"
    test "$status" -eq 1
    test ! -s "$tmp/out"
    test "$(wc -l < "$tmp/err")" -eq 1
    grep -E -- "$pattern" "$tmp/err"
}

qemu-img create -q -f vdi "$tmp/disk.vdi" 16M
echo "not a disk" > "$tmp/notvdi.vdi"
touch "$tmp/exists.qcow2"
uuid=0b1e3e1c-6f5e-4a1e-9a4e-3c1e2d3f4a5b

c="$scripts/vdi-convert"
expect_error '^vdi-convert: usage: vdi-convert \[OPTIONS\] SOURCE OUTPUT' "$c"
expect_error '^vdi-convert: usage: ' "$c" "$tmp/disk.vdi"
expect_error '^vdi-convert: usage: ' "$c" a b c
expect_error '^vdi-convert: unknown option --bogus' "$c" --bogus a b
expect_error '^vdi-convert: option -O needs an argument' "$c" a b -O
expect_error '^vdi-convert: -O qed: the output format must be qcow2, raw, vmdk or vdi$' \
             "$c" -O qed "$tmp/disk.vdi" "$tmp/out.qed"
expect_error "^vdi-convert: $tmp/nosuch.vdi: no such file\$" \
             "$c" "$tmp/nosuch.vdi" "$tmp/out.raw"
expect_error "^vdi-convert: $tmp/nosuch.vbox: no such file\$" \
             "$c" "$tmp/nosuch.vbox@Snapshot 1" "$tmp/out.raw"
expect_error "^vdi-convert: $uuid: a medium UUID needs --registry FILE" \
             "$c" "$uuid" "$tmp/out.raw"
expect_error "^vdi-convert: \\{$uuid\\}: a medium UUID needs --registry" \
             "$c" "{$uuid}" "$tmp/out.raw"
expect_error "^vdi-convert: $tmp/nosuch.xml: no such registry file\$" \
             "$c" --registry "$tmp/nosuch.xml" "$uuid" "$tmp/out.raw"
expect_error "^vdi-convert: $tmp/exists.qcow2 exists \\(use --force to overwrite it\\)\$" \
             "$c" "$tmp/disk.vdi" "$tmp/exists.qcow2"
test ! -s "$tmp/exists.qcow2"
expect_error "^vdi-convert: $tmp/nodir: no such directory\$" \
             "$c" "$tmp/disk.vdi" "$tmp/nodir/out.raw"
expect_error '^vdi-convert: --disk x: not a number$' \
             "$c" --disk x "$tmp/disk.vdi" "$tmp/out.raw"
# The plugin's own error, as it is.
expect_error "^nbdkit: .*error: .*notvdi\\.vdi: not a VDI image" \
             "$c" "$tmp/notvdi.vdi" "$tmp/out.raw"
test ! -e "$tmp/out.raw"

i="$scripts/vdi-inspect"
expect_error '^vdi-inspect: usage: vdi-inspect \[OPTIONS\] SOURCE \[SNAPSHOT\]' "$i"
expect_error '^vdi-inspect: usage: ' "$i" a b c
expect_error '^vdi-inspect: unknown option -x' "$i" -x "$tmp/disk.vdi"
expect_error '^vdi-inspect: --no-inspect goes with --shell$' \
             "$i" --no-inspect "$tmp/disk.vdi"
expect_error '^vdi-inspect: give the snapshot either as an argument or with --snapshot' \
             "$i" --snapshot a "$tmp/disk.vdi" b
expect_error "^vdi-inspect: $tmp/nosuch.vdi: no such file\$" \
             "$i" "$tmp/nosuch.vdi"

s="$scripts/vdi-serve"
expect_error '^vdi-serve: usage: vdi-serve \[OPTIONS\] SOURCE' "$s"
expect_error '^vdi-serve: usage: ' "$s" a b
expect_error '^vdi-serve: unknown option --tls' "$s" --tls "$tmp/disk.vdi"
expect_error '^vdi-serve: --socket cannot be combined with --port or --ip$' \
             "$s" --socket "$tmp/s" --port 1234 "$tmp/disk.vdi"
expect_error '^vdi-serve: --port 0: not a port number' \
             "$s" --port 0 "$tmp/disk.vdi"
expect_error '^vdi-serve: --port 65536: not a port number' \
             "$s" --port 65536 "$tmp/disk.vdi"
expect_error '^vdi-serve: --port http: not a port number' \
             "$s" --port http "$tmp/disk.vdi"
expect_error '^vdi-serve: --autoreset goes with --diff FILE.vdi$' \
             "$s" --autoreset "$tmp/disk.vdi"
expect_error '^vdi-serve: --readonly and --diff cannot be combined' \
             "$s" --readonly --diff "$tmp/d.vdi" "$tmp/disk.vdi"
expect_error "^vdi-serve: $tmp/nodir: no such directory\$" \
             "$s" --socket "$tmp/nodir/s" "$tmp/disk.vdi"
expect_error "^vdi-serve: $tmp/exists.qcow2 exists and is not a socket\$" \
             "$s" --socket "$tmp/exists.qcow2" "$tmp/disk.vdi"
expect_error "^nbdkit: .*error: .*notvdi\\.vdi: not a VDI image" \
             "$s" --socket "$tmp/s" "$tmp/notvdi.vdi"
expect_error "^nbdkit: .*error: .*notvdi\\.vdi: not a VDI image" \
             "$s" --background --socket "$tmp/s" "$tmp/notvdi.vdi"
test ! -e "$tmp/s"
test ! -e "$tmp/s.pid"
test ! -e "$tmp/d.vdi"

# --- finding the plugin ------------------------------------------------

# A copy of the scripts with a build beside them ($tmp/tree), reached
# through a symbolic link too; and a copy with nothing beside it,
# which asks nbdkit for "vdi" by name.
if [ -f "$scripts/../plugin/.libs/nbdkit-vdi-plugin.so" ]; then
    (
        unset NBDKIT_VDI_PLUGIN NBDKIT_VDIDIFF_FILTER
        mkdir -p "$tmp/tree/scripts" "$tmp/tree/plugin/.libs" \
                 "$tmp/tree/filter/.libs" "$tmp/bin" "$tmp/alone"
        cp "$scripts/vdi-convert" "$scripts/vdi-serve" "$tmp/tree/scripts/"
        ln -s "$VDI_PLUGIN" "$tmp/tree/plugin/.libs/"
        ln -s "$VDIDIFF_FILTER" "$tmp/tree/filter/.libs/"
        ln -s "$tmp/tree/scripts/vdi-convert" "$tmp/bin/vdi-convert"
        cp "$scripts/vdi-convert" "$tmp/alone/"

        "$tmp/bin/vdi-convert" -q "$tmp/disk.vdi" "$tmp/via-link.raw"
        cmp "$tmp/via-link.raw" <(head -c 16M /dev/zero)
        "$tmp/tree/scripts/vdi-serve" --background --socket "$tmp/t.sock" \
            --diff "$tmp/t-diff.vdi" "$tmp/disk.vdi"
        kill_nbdkit "$(cat "$tmp/t.sock.pid")"
        test -s "$tmp/t-diff.vdi"

        if nbdkit vdi --dump-plugin > /dev/null 2>&1; then
            "$tmp/alone/vdi-convert" -q "$tmp/disk.vdi" "$tmp/installed.raw"
        else
            expect_error "^vdi-convert: nbdkit cannot load the vdi plugin 'vdi'" \
                         "$tmp/alone/vdi-convert" "$tmp/disk.vdi" "$tmp/installed.raw"
        fi
    )
fi
