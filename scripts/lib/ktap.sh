# SPDX-License-Identifier: GPL-2.0
# KTAP for the whole rig: `make check` on the host and the plans in the
# emulated host's /init (as /lib/kad/tap.sh) both source this file, so it is
# POSIX sh (the guest has busybox ash).
#
# A run prints "KTAP version 1", one result line per test ("ok N name",
# "not ok N name", "ok N name # SKIP reason"), diagnostics as "# ...", and
# ends with tap_done: the plan "1..N" and "N passed, N failed, N skipped"
# (prefixed "# " in a guest, whose lines the host nests).  A guest's run
# becomes one subtest of `make check` (tap_subtest): its lines, indented by
# four spaces as KTAP nests them, then one result line for the guest.  The
# totals count every leaf test once: the guest counts its own and the host
# adds the guest's "N passed" line instead of counting again.

TAP_N=0
TAP_PASS=0
TAP_FAIL=0
TAP_SKIP=0
# Set to a file to record "RESULT<TAB>GROUP<TAB>NAME<TAB>SECONDS" per test
# (out/check/summary): GROUP is "host" for the host's own tests and the
# guest's name for a guest's tests; SECONDS is "-" where nothing timed it.
TAP_SUMMARY=${TAP_SUMMARY:-}
# Wall seconds of the test being reported, for the summary.
TAP_SECS=-

tap_header() {
	echo "KTAP version 1"
}

# _tap_record RESULT NAME: one line of the summary file, if there is one.
_tap_record() {
	[ -z "$TAP_SUMMARY" ] ||
		printf '%s\thost\t%s\t%s\n' "$1" "${2%% # *}" "$TAP_SECS" >>"$TAP_SUMMARY"
	TAP_SECS=-
}

tap_ok() {
	TAP_N=$((TAP_N + 1)); TAP_PASS=$((TAP_PASS + 1))
	echo "ok $TAP_N $*"
	_tap_record pass "$*"
}

tap_not_ok() {
	TAP_N=$((TAP_N + 1)); TAP_FAIL=$((TAP_FAIL + 1))
	echo "not ok $TAP_N $*"
	_tap_record fail "$*"
}

tap_skip() {
	_tap_name=$1; shift
	TAP_N=$((TAP_N + 1)); TAP_SKIP=$((TAP_SKIP + 1))
	echo "ok $TAP_N $_tap_name # SKIP $*"
	_tap_record skip "$_tap_name"
}

# tap_check NAME CMD...: ok when CMD succeeds.
tap_check() {
	_tap_name=$1; shift
	if "$@"; then tap_ok "$_tap_name"; else tap_not_ok "$_tap_name"; fi
}

# tap_diag FILE: a command's captured output as diagnostics.
tap_diag() {
	sed 's/^/# /' "$1"
}

# tap_step NAME CMD...: one result line for a host-side step.  Its output
# goes to $LOGDIR/<NAME>.log and, on failure, the last 40 lines are shown as
# diagnostics.  TAP_OUT is the step's last line of stdout (build scripts
# print their product there; everything else goes to stderr).
tap_step() {
	_tap_name=$1; shift
	_tap_log="$LOGDIR/$(printf '%s' "$_tap_name" | tr -c 'A-Za-z0-9_.-' _).log"
	TAP_OUT=
	_tap_t0=$(date +%s)
	if "$@" >"$_tap_log.out" 2>"$_tap_log"; then
		TAP_SECS=$(($(date +%s) - _tap_t0))
		TAP_OUT=$(tail -n 1 "$_tap_log.out")
		cat "$_tap_log.out" >>"$_tap_log"
		rm -f "$_tap_log.out"
		tap_ok "$_tap_name"
	else
		TAP_SECS=$(($(date +%s) - _tap_t0))
		cat "$_tap_log.out" >>"$_tap_log"
		rm -f "$_tap_log.out"
		tail -n 40 "$_tap_log" | sed 's/^/# /'
		tap_not_ok "$_tap_name # see $_tap_log"
		return 1
	fi
}

# Reports in a kernel log that are bugs (tap_dmesg_clean, tap_subtest).
TAP_REPORTS='WARNING:|BUG:|Oops|Call Trace:|possible recursive locking|circular locking|inconsistent lock state|sleeping function called|KVM: .*internal error|RCU stall|soft lockup|hung_task|KASAN|KCSAN:|UBSAN'

# tap_subtest NAME LOG STATUS [SECONDS]: nest a guest's run (or a host-side
# KTAP run's).  LOG is its console; its KTAP lines (results, diagnostics,
# plan) are printed indented, its own "# N passed, N failed, N skipped" line
# (a host-side run's has no "# ") is added to the totals, and
# NAME gets one result line: ok if STATUS (the emulator's exit status) is 0
# and the guest failed nothing.  A guest that died before its totals (panic,
# timeout) counts as one failure, on top of what it had reported - unless
# it had declared that panic (tap_expect_panic): then its results are
# counted from its lines, and NAME is ok if it failed nothing, the emulator
# saw a panic (STATUS 4), and the kernel's messages after the declaration
# have a line matching the declared ERE and no other report (TAP_REPORTS;
# the oops and call trace of the expected failure aside).
tap_subtest() {
	_tap_name=$1 _tap_log=$2 _tap_status=$3 _tap_secs=${4:--} _tap_why=
	echo "# Subtest: $_tap_name"
	echo "    KTAP version 1"
	# (A host-side run, e.g. check-packages, nests subtests of its own.)
	grep -aE '^((not )?ok [0-9]+ |# |1\.\.| +((not )?ok [0-9]+ |# |1\.\.|KTAP version ))' "$_tap_log" |
		sed 's/^/    /'
	if [ -n "$TAP_SUMMARY" ]; then
		grep -aE '^(not )?ok [0-9]+ ' "$_tap_log" | awk -v p="$_tap_name" '
			{ r = ($1 == "not") ? "fail" : (/ # SKIP/ ? "skip" : "pass")
			  sub(/^(not )?ok [0-9]+ /, ""); sub(/ # .*/, "")
			  printf "%s\t%s\t%s\t-\n", r, p, $0 }' >>"$TAP_SUMMARY"
	fi
	_tap_expect=$(sed -n 's/^# KAD-EXPECT-PANIC: //p' "$_tap_log" | tail -n 1)
	# The guest's own count: "# P passed, F failed, S skipped", or, after
	# a declared panic, its result lines counted.
	if [ -n "$_tap_expect" ]; then
		set -- $(grep -aE '^(not )?ok [0-9]+ ' "$_tap_log" | awk '
			/^not / { f++; next } / # SKIP/ { s++; next } { p++ }
			END { print p + 0, f + 0, s + 0 }')
		_tap_why=$(_tap_panic_why "$_tap_log" "$_tap_status" "$_tap_expect" "$2")
	else
		set -- $(grep -aE '^(# )?[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$_tap_log" |
			tail -n 1 | tr -dc '0-9 \n')
	fi
	if [ $# -eq 3 ]; then
		TAP_PASS=$((TAP_PASS + $1)); TAP_FAIL=$((TAP_FAIL + $2))
		TAP_SKIP=$((TAP_SKIP + $3))
	fi
	TAP_N=$((TAP_N + 1))
	TAP_SECS=$_tap_secs
	if [ -n "$_tap_expect" ]; then
		# The expected panic is one more leaf.
		if [ -z "$_tap_why" ]; then
			TAP_PASS=$((TAP_PASS + 1))
			echo "ok $TAP_N $_tap_name"
			_tap_record guest-pass "$_tap_name"
		else
			TAP_FAIL=$((TAP_FAIL + 1))
			echo "not ok $TAP_N $_tap_name # $_tap_why; see $_tap_log"
			_tap_record guest-fail "$_tap_name"
		fi
	elif [ "$_tap_status" -eq 0 ] && [ $# -eq 3 ] && [ "$2" -eq 0 ]; then
		echo "ok $TAP_N $_tap_name"
		_tap_record guest-pass "$_tap_name"
	else
		# A guest that died before its totals is one more failure.
		if [ $# -ne 3 ] || [ "$2" -eq 0 ]; then
			TAP_FAIL=$((TAP_FAIL + 1))
		fi
		echo "not ok $TAP_N $_tap_name # see $_tap_log"
		_tap_record guest-fail "$_tap_name"
	fi
}

# _tap_panic_why LOG STATUS ERE FAILED: why a declared panic does not count
# (nothing if it does).  The kernel log after the declaration is the
# console from the declaration up to the panic's replay of the whole log
# (panic_print=0x20: its first line is stamped 0.000000), which holds the
# earlier, expected reports too and may be cut short by the emulator's end.
_tap_panic_why() {
	awk '/^# KAD-EXPECT-PANIC: / { on = 1; next } on && /^\[ *0\.000000\] / { exit } on' "$1" \
		>"$1.after-panic"
	grep -aE "CFI failure at|$TAP_REPORTS" "$1.after-panic" |
		grep -avE "$3|Oops|Call Trace:" >"$1.other-reports"
	if [ "$2" -ne 4 ]; then
		echo "no panic (emulator status $2)"
	elif ! grep -aqE "$3" "$1.after-panic"; then
		echo "no line matching '$3' after the declaration"
	elif [ -s "$1.other-reports" ]; then
		echo "another report after the declaration: $(head -n 1 "$1.other-reports")"
	elif [ "$4" -ne 0 ]; then
		echo "the guest failed a test"
	fi
}

# tap_expect_panic ERE: (guest) declare that the kernel must now panic with
# a line matching ERE in its log: the host's tap_subtest judges it.  The
# console shows the kernel's messages from here on (the guest keeps them
# off it otherwise, for TAP's sake), as the panic's replay of the log may
# not reach them before the emulator stops.
tap_expect_panic() {
	echo "# KAD-EXPECT-PANIC: $1"
	dmesg -n 7
}

# tap_totals_so_far: record the totals up to here in the summary (for a
# step that reads it, e.g. make series, before tap_done records the last).
tap_totals_so_far() {
	_tap_record totals "$TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
}

# tap_done: the plan and the totals; status 0 iff something ran and nothing
# failed.  In a guest (TAP_GUEST=1) the totals are a diagnostic for the host
# to add up, followed by the verdict line the emulator runners wait for.
tap_done() {
	echo "1..$TAP_N"
	_tap_record totals "$TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
	if [ "${TAP_GUEST:-0}" = 1 ]; then
		echo "# $TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
		if [ "$TAP_FAIL" -eq 0 ] && [ "$TAP_N" -gt 0 ]; then
			echo "KAD-VERDICT: PASS"
		else
			echo "KAD-VERDICT: FAIL"
		fi
	else
		echo "$TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
	fi
	[ "$TAP_FAIL" -eq 0 ] && [ "$TAP_N" -gt 0 ]
}

# --- Guest side --------------------------------------------------------------

# tap_clock NAME: a diagnostic with the guest's clock, where a phase NAME
# starts (what balances the boots across the host's cores).
tap_clock() {
	echo "# $1: from $(cut -d. -f1 /proc/uptime) s of the guest's clock"
}

# tap_run NAME TIMEOUT CMD...: run a kselftest-style binary with a hard
# timeout.  Exit 0 = pass, 4 = skip (KSFT_SKIP), anything else = fail.
# Sets TAP_RC to the exit status.
tap_run() {
	_tap_name=$1 _tap_secs=$2; shift 2
	_tap_out=/tmp/tap-run.log
	_tap_t0=$(cut -d. -f1 /proc/uptime)
	timeout -s KILL "$_tap_secs" "$@" >"$_tap_out" 2>&1
	TAP_RC=$?
	tap_diag "$_tap_out"
	echo "# took $(($(cut -d. -f1 /proc/uptime) - _tap_t0)) s of the guest's clock"
	case $TAP_RC in
	0) tap_ok "$_tap_name" ;;
	4)
		_tap_why=$(sed -n 's/.*# SKIP //p' "$_tap_out" | tail -1)
		tap_skip "$_tap_name" "${_tap_why:-skipped by the test}"
		;;
	137) tap_not_ok "$_tap_name # timed out after ${_tap_secs}s" ;;
	*) tap_not_ok "$_tap_name # exit=$TAP_RC" ;;
	esac
}

# tap_run_must_fail NAME TIMEOUT CMD...: the test must detect a known-broken
# configuration.  Prints the test's own verdict as a diagnostic, and returns
# 0 if it failed (the test bites), 1 if it passed.  Skips count as not biting.
tap_run_must_fail() {
	_tap_name=$1 _tap_secs=$2; shift 2
	_tap_out=/tmp/tap-run.log
	if [ ! -x "$1" ]; then
		tap_not_ok "$_tap_name # $1 is missing: nothing ran"
		return 1
	fi
	timeout -s KILL "$_tap_secs" "$@" >"$_tap_out" 2>&1
	TAP_RC=$?
	tap_diag "$_tap_out"
	case $TAP_RC in
	0 | 4) tap_not_ok "$_tap_name # passed (exit=$TAP_RC) where it must fail: the test does not bite"; return 1 ;;
	126 | 127) tap_not_ok "$_tap_name # could not run (exit=$TAP_RC)"; return 1 ;;
	137) tap_ok "$_tap_name # hung until killed after ${_tap_secs}s, as a broken host may"; return 0 ;;
	*) tap_ok "$_tap_name # failed as it must (exit=$TAP_RC)"; return 0 ;;
	esac
}

# tap_dmesg_new: the kernel log since the last call, in /tmp/dmesg.new;
# status 0 if it has a report (TAP_REPORTS), which it then prints as a
# diagnostic.  FILTER (an awk program, optional) drops lines first.
DMESG_SEEN=0
tap_dmesg_new() {
	dmesg >/tmp/dmesg.log
	tail -n +"$((DMESG_SEEN + 1))" /tmp/dmesg.log | awk "${1:-1}" >/tmp/dmesg.new
	DMESG_SEEN=$(wc -l </tmp/dmesg.log)
	grep -qE "$TAP_REPORTS" /tmp/dmesg.new || return 1
	tap_diag /tmp/dmesg.new
}

# tap_dmesg_clean NAME [FILTER]: fail on anything the kernel log says went
# wrong since the last call (tap_dmesg_new).
tap_dmesg_clean() {
	if tap_dmesg_new "${2:-}"; then
		tap_not_ok "$1"
	else
		tap_ok "$1"
	fi
}

# tap_kunit LOG PATTERN LABEL: one result line per KUnit suite whose name
# matches PATTERN (an ERE) in a dmesg capture; not ok if none ran.
tap_kunit() {
	_tap_found=0
	grep -E "^\[ *[0-9.]+\] (not )?ok [0-9]+ ($2)\$" "$1" >/tmp/kunit.suites
	while read -r _tap_line; do
		_tap_found=1
		_tap_line=${_tap_line#*] }
		case "$_tap_line" in
		"not ok "*) tap_not_ok "$3: ${_tap_line#not ok [0-9]* }" ;;
		*) tap_ok "$3: ${_tap_line#ok [0-9]* }" ;;
		esac
	done </tmp/kunit.suites
	[ "$_tap_found" -eq 1 ] || tap_not_ok "$3: no KUnit suite matching '$2' ran"
}
