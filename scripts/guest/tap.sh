# SPDX-License-Identifier: GPL-2.0
# TAP helpers for the guest plans (busybox ash).  Sourced by /init.

TAP_N=0
TAP_PASS=0
TAP_FAIL=0
TAP_SKIP=0

tap_ok() {
	TAP_N=$((TAP_N + 1)); TAP_PASS=$((TAP_PASS + 1))
	echo "ok $TAP_N $*"
}

tap_not_ok() {
	TAP_N=$((TAP_N + 1)); TAP_FAIL=$((TAP_FAIL + 1))
	echo "not ok $TAP_N $*"
}

tap_skip() {
	local name=$1; shift
	TAP_N=$((TAP_N + 1)); TAP_SKIP=$((TAP_SKIP + 1))
	echo "ok $TAP_N $name # SKIP $*"
}

# tap_check NAME CMD...: ok when CMD succeeds.
tap_check() {
	local name=$1; shift
	if "$@"; then tap_ok "$name"; else tap_not_ok "$name"; fi
}

# Print a command's captured output as TAP diagnostics.
tap_diag() {
	sed 's/^/# /' "$1"
}

# tap_run NAME TIMEOUT CMD...: run a kselftest-style binary with a hard
# timeout.  Exit 0 = pass, 4 = skip (KSFT_SKIP), anything else = fail.
# Sets TAP_RC to the exit status.
tap_run() {
	local name=$1 secs=$2; shift 2
	local log=/tmp/tap-run.log reason
	timeout -s KILL "$secs" "$@" >"$log" 2>&1
	TAP_RC=$?
	tap_diag "$log"
	case $TAP_RC in
	0) tap_ok "$name" ;;
	4)
		reason=$(sed -n 's/.*# SKIP //p' "$log" | tail -1)
		tap_skip "$name" "${reason:-skipped by the test}"
		;;
	137) tap_not_ok "$name # timed out after ${secs}s" ;;
	*) tap_not_ok "$name # exit=$TAP_RC" ;;
	esac
}

# tap_run_must_fail NAME TIMEOUT CMD...: the test must detect a known-broken
# configuration.  Prints the test's own verdict as a diagnostic, and returns
# 0 if it failed (the test bites), 1 if it passed.  Skips count as not biting.
tap_run_must_fail() {
	local name=$1 secs=$2; shift 2
	local log=/tmp/tap-run.log
	if [ ! -x "$1" ]; then
		tap_not_ok "$name # $1 is missing: nothing ran"
		return 1
	fi
	timeout -s KILL "$secs" "$@" >"$log" 2>&1
	TAP_RC=$?
	tap_diag "$log"
	case $TAP_RC in
	0 | 4) tap_not_ok "$name # passed (exit=$TAP_RC) where it must fail: the test does not bite"; return 1 ;;
	126 | 127) tap_not_ok "$name # could not run (exit=$TAP_RC)"; return 1 ;;
	137) tap_ok "$name # hung until killed after ${secs}s, as a broken host may"; return 0 ;;
	*) tap_ok "$name # failed as it must (exit=$TAP_RC)"; return 0 ;;
	esac
}

# Fail on anything the kernel log says went wrong since the last call.
DMESG_SEEN=0
tap_dmesg_clean() {
	local name=$1 log=/tmp/dmesg.log
	dmesg >"$log"
	local total
	total=$(wc -l <"$log")
	tail -n +"$((DMESG_SEEN + 1))" "$log" >/tmp/dmesg.new
	DMESG_SEEN=$total
	if grep -E 'WARNING:|BUG:|Oops|Call Trace:|possible recursive locking|circular locking|inconsistent lock state|sleeping function called|KVM: .*internal error|RCU stall|soft lockup|hung_task' \
		/tmp/dmesg.new >/tmp/dmesg.bad; then
		tap_diag /tmp/dmesg.new
		tap_not_ok "$name"
	else
		tap_ok "$name"
	fi
}

tap_done() {
	echo "1..$TAP_N"
	echo "# $TAP_PASS passed, $TAP_FAIL failed, $TAP_SKIP skipped"
	if [ "$TAP_FAIL" -eq 0 ] && [ "$TAP_N" -gt 0 ]; then
		echo "KAD-VERDICT: PASS"
	else
		echo "KAD-VERDICT: FAIL"
	fi
}

# tap_kunit LOG PATTERN LABEL: one TAP line per KUnit suite whose name matches
# PATTERN (an ERE) in a dmesg capture; not ok if none ran.
tap_kunit() {
	local log=$1 pat=$2 label=$3 found=0 line
	grep -E "^\[ *[0-9.]+\] (not )?ok [0-9]+ ($pat)\$" "$log" >/tmp/kunit.suites
	while read -r line; do
		found=1
		line=${line#*] }
		case "$line" in
		"not ok "*) tap_not_ok "$label: ${line#not ok [0-9]* }" ;;
		*) tap_ok "$label: ${line#ok [0-9]* }" ;;
		esac
	done </tmp/kunit.suites
	[ "$found" -eq 1 ] || tap_not_ok "$label: no KUnit suite matching '$pat' ran"
}
