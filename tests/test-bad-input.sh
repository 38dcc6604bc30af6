#!/usr/bin/env bash
# nbdkit-vdi
# Copyright the nbdkit-vdi authors
# SPDX-License-Identifier: BSD-3-Clause

# The bad-input corpus: bad-inputs.py writes well over 60 cases
# (broken VDI headers and block maps, broken chains, broken or hostile
# settings files, files that are not regular files), each in a folder
# of its own with a line of manifest.tsv saying how to serve it and
# the exact phrase of the error it must give.  For every case, each
# tool it names (nbdkit with the vdi plugin, alone or under
# --filter=vdidiff; vdi-img check, info, info --chain, snapshot list)
# must:
#
#  - fail normally: nbdkit and vdi-img exit with status 1 (vdi-img
#    check with 2 for an image that opens but is not sound), never by
#    a signal, never after the 30 s timeout (124), never served;
#  - print no crash or sanitizer report (AddressSanitizer,
#    LeakSanitizer, "runtime error:", Segmentation fault, ...);
#  - print exactly one error line on stderr, which contains the
#    case's phrase and the path of the file it is about.  The only
#    other lines allowed are warnings ("nbdkit: vdi: warning: ...",
#    "vdi-img: warning: ...": a warning about something else may
#    come before the error) and valgrind's own ("==PID== ...");
#    anything else (a second error, a message on two lines, debug
#    output) fails the case;
#  - change nothing: every entry of the corpus (type, mode, size,
#    mtime and, for files, the SHA-256; FIFOs are never opened) is
#    the same after all the runs, and nothing was added or removed.
#
# A failure names the case and the tool (its stderr is in the log);
# the last line counts the cases and the runs.

source ./functions.sh
set -e
set -x

requires_python_nbd
requires timeout --version

tmp="$(realpath "$(mktemp -d --suffix=.tmp test-bad-input.XXXXXX)")"
cleanup_fn rm -rf "$tmp"
corpus="$tmp/corpus"
out="$tmp/out"
mkdir "$out"

$PYTHON "$abs_srcdir/bad-inputs.py" "$corpus"
manifest="$corpus/manifest.tsv"
nr_cases="$(cut -f1 "$manifest" | sort -u | wc -l)"
test "$nr_cases" -ge 60
$HELPERS tree-state "$corpus" > "$tmp/before"

# arg_value KEY ARGS...: the value of the first KEY= of the plugin
# ARGS (vdi-img takes the image and the registry from them).
arg_value ()
{
    local key="$1" a
    shift
    for a in "$@"; do
        if [[ $a == "$key="* ]]; then echo "${a#"$key="}"; return; fi
    done
}

# run TOOL ERR OUT ARGS...: run one tool on a case's plugin ARGS
# (stdin from /dev/null, stderr to ERR, stdout to OUT); returns its
# exit status.
run ()
{
    local tool="$1" err="$2" stdout="$3" a image registry dirs=()
    shift 3
    image="$(arg_value file "$@")"
    registry="$(arg_value registry "$@")"
    for a in "$@"; do
        case "$a" in
            parent-dir=*) dirs+=(--parent-dir "${a#parent-dir=}") ;;
        esac
    done
    # Under valgrind, nbdkit is the shell function of functions.sh.
    local t="timeout 30"
    if [ "x$NBDKIT_VALGRIND" = "x1" ]; then t=""; fi
    case "$tool" in
        nbdkit)
            $t nbdkit -U - "$VDI_PLUGIN" "$@" --run true ;;
        vdidiff)
            $t nbdkit -U - --filter="$VDIDIFF_FILTER" "$VDI_PLUGIN" "$@" \
               --run true ;;
        check|check2)
            timeout 30 $VDI_IMG check "$image" ;;
        info)
            timeout 30 $VDI_IMG info "$image" ;;
        chain)
            timeout 30 $VDI_IMG info --chain "${dirs[@]}" "$image" ;;
        snaplist)
            timeout 30 $VDI_IMG snapshot list "$registry" ;;
        *)
            echo "$0: unknown tool $tool" >&2
            return 99 ;;
    esac </dev/null 2>"$err" >"$stdout"
}

# verdict TOOL WANT STATUS ERR NAMED PHRASE: why the run failed the
# case (nothing if it passed).
crash_re='AddressSanitizer|LeakSanitizer|runtime error:|Segmentation fault'
crash_re+='|core dumped|Aborted|Assertion|assertion'
verdict ()
{
    local tool="$1" want="$2" status="$3" err="$4" named="$5" phrase="$6"
    local line errors=0 errline="" error_re warning_re

    if [ "$status" -eq 124 ]; then
        echo "timed out after 30 s"; return
    fi
    if [ "x$NBDKIT_VALGRIND" = "x1" ] && [ "$status" -eq 119 ]; then
        echo "valgrind found errors"; return
    fi
    if grep -qE "$crash_re" "$err"; then
        echo "crash or sanitizer report on stderr"; return
    fi
    if [ "$status" -ne "$want" ]; then
        echo "exit status $status, expected $want"; return
    fi
    case "$tool" in
        nbdkit|vdidiff)
            error_re='^nbdkit: ([a-z]+(\[[0-9]+\])?: )?error: '
            warning_re='^nbdkit: [a-z]+(\[[0-9]+\])?: warning: ' ;;
        *)
            error_re='^vdi-img: '
            warning_re='^vdi-img: warning: ' ;;
    esac
    while IFS= read -r line; do
        if [[ $line =~ ^==[0-9]+== ]] || [[ $line =~ $warning_re ]]; then
            continue
        elif [[ $line =~ $error_re ]]; then
            errors=$((errors + 1))
            errline="$line"
        else
            echo "unexpected line on stderr: $line"; return
        fi
    done < "$err"
    if [ "$errors" -ne 1 ]; then
        echo "$errors error lines, expected exactly one"; return
    fi
    if [[ $errline != *"$named"* ]]; then
        echo "the error does not name $named"; return
    fi
    if [[ $errline != *"$phrase"* ]]; then
        echo "the error does not contain: $phrase"; return
    fi
}

# The verdict can fail a run: a good image (served: status 0), and
# made-up stderr of each kind it must refuse.
$MAKE_VDI --seed good "$tmp/good.vdi"
status=0
run nbdkit "$tmp/good.err" "$tmp/good.out" file="$tmp/good.vdi" || status=$?
test "$status" -eq 0
test -n "$(verdict nbdkit 1 0 "$tmp/good.err" good.vdi '')"
e="nbdkit: error: /c/a.vdi: the phrase"
printf '%s\n' "$e" > "$tmp/v.err"
test -z "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"
test -n "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'another phrase')"
test -n "$(verdict nbdkit 1 1 "$tmp/v.err" /c/b.vdi 'the phrase')"
test -n "$(verdict nbdkit 1 124 "$tmp/v.err" /c/a.vdi 'the phrase')"
test -n "$(verdict nbdkit 1 139 "$tmp/v.err" /c/a.vdi 'the phrase')"
test -n "$(verdict check 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"
printf '%s\n' "$e" "$e" > "$tmp/v.err"
test -n "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"
printf '%s\n' "$e" "and its second line" > "$tmp/v.err"
test -n "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"
printf '%s\n' "$e" "==1==ERROR: AddressSanitizer: heap-buffer-overflow" \
       > "$tmp/v.err"
test -n "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"
printf '%s\n' "lib/vdi-image.c:99:3: runtime error: shift exponent" "$e" \
       > "$tmp/v.err"
test -n "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"
printf '%s\n' "nbdkit: vdi: warning: something else" "$e" > "$tmp/v.err"
test -z "$(verdict nbdkit 1 1 "$tmp/v.err" /c/a.vdi 'the phrase')"

set +x                          # the loop reports each run itself
failed=()
nr_runs=0
while IFS=$'\t' read -r -u 3 -a fields; do
    name="${fields[0]}"
    dir="$corpus/$name"
    # @DIR@ is the case's folder.
    tools="${fields[1]}"
    named="${fields[2]//@DIR@/$dir}"
    case "$named" in /*) ;; *) named="$dir/$named" ;; esac
    phrase="${fields[3]//@DIR@/$dir}"
    args=()
    for a in "${fields[@]:4}"; do args+=("${a//@DIR@/$dir}"); done

    for tool in ${tools//,/ }; do
        err="$out/$name.$tool.err"
        status=0
        run "$tool" "$err" "$out/$name.$tool.out" "${args[@]}" || status=$?
        want=1
        if [ "$tool" = check2 ]; then want=2; fi
        nr_runs=$((nr_runs + 1))
        why="$(verdict "$tool" "$want" "$status" "$err" "$named" "$phrase")"
        # vdi-img check also sums up on stdout.
        image="$(arg_value file "${args[@]}")"
        case "$tool" in
            check) summary="$image: the image could not be checked." ;;
            check2) summary="$image: 1 error was found on the image" ;;
            *) summary="" ;;
        esac
        if [ -z "$why" ] && [ -n "$summary" ] &&
           [[ $(cat "$out/$name.$tool.out") != "$summary"* ]]; then
            why="stdout does not start with: $summary"
        fi
        if [ -n "$why" ]; then
            echo "FAIL: $name ($tool): $why"
            echo "    run: $tool ${args[*]}"
            sed 's/^/    stderr: /' "$err"
            failed+=("$name ($tool): $why")
        else
            echo "ok: $name ($tool):" \
                 "$(grep -vE '^==[0-9]+==|warning: ' "$err")"
        fi
    done
done 3< "$manifest"

# Nothing in the corpus changed: name the cases where something did.
$HELPERS tree-state "$corpus" > "$tmp/after"
if ! cmp -s "$tmp/before" "$tmp/after"; then
    diff -u "$tmp/before" "$tmp/after" || true
    for name in $(diff "$tmp/before" "$tmp/after" |
                      awk '/^[<>] \.\// { split($2, p, "/"); print p[2] }' |
                      sort -u); do
        echo "FAIL: $name: a file in its folder changed, appeared or went"
        failed+=("$name: a file in its folder changed, appeared or went")
    done
fi
set -x

if [ ${#failed[@]} -gt 0 ]; then
    echo "$0: ${#failed[@]} FAILED ($nr_runs runs over $nr_cases cases):" >&2
    printf '    %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "$0: all $nr_runs runs over $nr_cases cases passed"
