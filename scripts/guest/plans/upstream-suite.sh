# SPDX-License-Identifier: GPL-2.0
# kad-payload: x86-suite module
# The whole upstream x86 KVM selftest suite of the base (make check-full;
# scripts/build-selftests --x86-suite, in /x86-suite), each test run in
# configuration (a), the patched kernel without the module, then in (b),
# with kvm_apicv_defer.ko loaded for it, and judged against the
# expectations file (scripts/guest/upstream-suite.expect,
# /lib/kad/upstream-suite.expect): one result line per test, ok only if (a)
# and (b) agree, both did what the file expects, and the kernel reported
# no bug while they ran (or exactly the one the file names).  A test that
# skips or fails as expected (its own message quoted in the reason must be
# in its output) is reported as a SKIP with the file's reason; any other
# change, in either configuration, fails the test by name.  The
# suite.config kernel variant; the boot's command line carries the KVM
# parameters the suite needs (kvm.force_emulation_prefix=1, passed to
# insmod here, as busybox's insmod does not read /proc/cmdline).
# Sourced by /init.
. /lib/kad/kvm.sh
S=/x86-suite
EXPECT=/lib/kad/upstream-suite.expect
OUT=/tmp/suite
# A test without an entry still runs, with this timeout (and fails).
DEFAULT_SECS=120

# expectation NAME: "RESULT SECS ARGS..." and "REASON" (EXP_REASON) of
# NAME's line in the expectations file ("NAME RESULT SECS [ARGS] [| REASON]").
expectation() {
	EXP_LINE=$(grep -E "^$1[[:space:]]" "$EXPECT" | head -n 1)
	EXP_REASON=
	case $EXP_LINE in *'|'*) EXP_REASON=${EXP_LINE#*|} EXP_REASON=${EXP_REASON# } ;; esac
	set -- ${EXP_LINE%%|*}
	[ $# -ge 3 ] || { EXP_RESULT=none EXP_SECS=$DEFAULT_SECS EXP_ARGS= EXP_REPORT=0; return; }
	EXP_RESULT=$2 EXP_SECS=$3 EXP_REPORT=0 EXP_ARGS=
	shift 3
	for a in "$@"; do
		case $a in
		kernel-report) EXP_REPORT=1 ;;
		*) EXP_ARGS="$EXP_ARGS $a" ;;
		esac
	done
}

# kvm_intel_reload CFG PARAM=VALUE...: kvm_intel reloaded with these
# parameters (none: as loaded at the start); in (b) the module is unloaded
# around it and loaded again.
kvm_intel_reload() {
	local cfg=$1
	shift
	[ "$cfg" = a ] || count_deferrals
	[ "$cfg" = a ] || rmmod kvm_apicv_defer || echo "# $cfg: rmmod kvm_apicv_defer failed"
	rmmod kvm_intel || echo "# $cfg: rmmod kvm_intel failed"
	kvm_load $M/kvm-intel.ko "$@" || echo "# $cfg: insmod kvm-intel.ko $* failed"
	[ "$cfg" = a ] || insmod $M/kvm_apicv_defer.ko || echo "# $cfg: insmod kvm_apicv_defer.ko failed"
}

# count_deferrals: the loaded module's counters (LOAD_DEFERRED,
# LOAD_APPLIED, LOAD_PENDING), added to the totals (DEFERRED, APPLIED),
# before it is unloaded.
DEFERRED=0 APPLIED=0
count_deferrals() {
	LOAD_DEFERRED=$(cat /sys/kernel/debug/kvm_apicv_defer/deferred 2>/dev/null || echo 0)
	LOAD_APPLIED=$(cat /sys/kernel/debug/kvm_apicv_defer/applied 2>/dev/null || echo 0)
	LOAD_PENDING=$(cat /sys/kernel/debug/kvm_apicv_defer/pending 2>/dev/null || echo '?')
	DEFERRED=$((DEFERRED + LOAD_DEFERRED)) APPLIED=$((APPLIED + LOAD_APPLIED))
}

# run_one CFG NAME: run NAME with its arguments and timeout; its output in
# $OUT/CFG/NAME, its result (pass, skip, fail, timeout) in $OUT/CFG/NAME.res.
# Three kinds of argument are not passed to the test but set up its run:
# kvm_intel:PARAM=VALUE reloads kvm_intel with PARAM=VALUE for this test,
# hugepages:N reserves N HugeTLB pages for it, tries:N runs it up to N times
# until it passes (a test known to be flaky under emulation; each try is
# reported).
run_one() {
	local a tries=1 try=1
	expectation "$2"
	RUN_ARGS= RUN_PARAMS= RUN_HUGEPAGES=
	for a in $EXP_ARGS; do
		case $a in
		kvm_intel:*) RUN_PARAMS="$RUN_PARAMS ${a#kvm_intel:}" ;;
		hugepages:*) RUN_HUGEPAGES=${a#hugepages:} ;;
		tries:*) tries=${a#tries:} ;;
		*) RUN_ARGS="$RUN_ARGS $a" ;;
		esac
	done
	while :; do
		run_once "$@"
		[ "$(cat "$OUT/$1/$2.res")" != pass ] && [ "$try" -lt "$tries" ] || break
		cp "$OUT/$1/$2" "$OUT/$1/$2.try$try"
		try=$((try + 1))
	done
}

run_once() {
	local t0 rc res secs pid args=$RUN_ARGS params=$RUN_PARAMS hugepages=$RUN_HUGEPAGES
	[ -z "$params" ] || kvm_intel_reload "$1" $params
	if [ -n "$hugepages" ]; then
		echo "$hugepages" >/proc/sys/vm/nr_hugepages
		[ "$(cat /proc/sys/vm/nr_hugepages)" -ge "$hugepages" ] ||
			echo "# $1: only $(cat /proc/sys/vm/nr_hugepages) of $hugepages HugeTLB pages"
	fi
	t0=$(date +%s)
	# In a session of its own, so that what it forked is killed with it
	# (a killed hardware_disable_test left its VMs running).
	case $2 in
	*.sh) (cd $S && exec timeout -s KILL "$EXP_SECS" setsid sh "./$2" $args) >"$OUT/$1/$2" 2>&1 & ;;
	*) timeout -s KILL "$EXP_SECS" setsid "$S/$2" $args >"$OUT/$1/$2" 2>&1 & ;;
	esac
	pid=$!
	wait $pid 2>/dev/null
	rc=$?
	kill -KILL -$pid 2>/dev/null
	secs=$(($(date +%s) - t0))
	[ -z "$params" ] || kvm_intel_reload "$1"
	[ -z "$hugepages" ] || echo $HUGEPAGES >/proc/sys/vm/nr_hugepages
	case $rc in
	0) res=pass ;;
	4) res=skip ;;
	137) res=timeout ;;
	*) res=fail ;;
	esac
	echo "$res" >"$OUT/$1/$2.res"
	echo "# $1: $2 $res (exit $rc, ${secs}s${EXP_ARGS:+, $EXP_ARGS})"
}

# show CFG NAME: the end of NAME's output in CFG, as diagnostics.
show() {
	echo "# --- $2 in ($1):"
	tail -n 15 "$OUT/$1/$2" | sed 's/^/#   /'
}

# outcome CFG NAME: NAME's result in CFG; with the expectation "bounded", a
# run the timeout ended without an assertion failure is "bounded".
outcome() {
	local r
	r=$(cat "$OUT/$1/$2.res" 2>/dev/null || echo missing)
	if [ "$EXP_RESULT" = bounded ] && [ "$r" = timeout ] &&
		! grep -q 'Test Assertion Failure' "$OUT/$1/$2"; then
		r=bounded
	fi
	echo "$r"
}

# judge NAME: one result line, from NAME's results in (a) and (b) and what
# the kernel reported while they ran (REPORTED: 1 if it reported a bug).
judge() {
	local a b q
	a=$(outcome a "$1")
	b=$(outcome b "$1")
	# The quoted part of the reason: the test's own message, which a skip
	# or known failure must print in both configurations (a pass's reason
	# may quote what its arguments avoid); with kernel-report, the
	# kernel's report, which must be in its log.
	q=$(printf '%s' "$EXP_REASON" | sed -n 's/^[^"]*"\([^"]*\)".*/\1/p')
	if [ "$EXP_RESULT" = none ]; then
		show a "$1"; show b "$1"
		tap_not_ok "suite: $1 # no line in the expectations file ((a) $a, (b) $b)"
	elif [ "$REPORTED" = 1 ] && ! { [ "$EXP_REPORT" = 1 ] && grep -qF -- "$q" /tmp/dmesg.new; }; then
		show a "$1"; show b "$1"
		tap_not_ok "suite: $1 # the kernel reported a bug while it ran ((a) $a, (b) $b; the report above)"
	elif [ "$EXP_REPORT" = 1 ] && [ "$REPORTED" = 0 ] && [ "$KERNEL_REPORTED" = 0 ]; then
		tap_not_ok "suite: $1 # expected the kernel to report \"$q\" while it ran, and it did not"
	elif [ "$a" != "$b" ]; then
		show a "$1"; show b "$1"
		tap_not_ok "suite: $1 # (a) $a but (b) $b: the module changes the result (expected $EXP_RESULT)"
	elif [ "$a" != "$EXP_RESULT" ]; then
		show a "$1"; show b "$1"
		tap_not_ok "suite: $1 # $a in (a) and (b), expected $EXP_RESULT${EXP_REASON:+ ($EXP_REASON)}"
	elif [ "$a" != pass ] && [ "$a" != bounded ] && [ -n "$q" ] &&
		! { grep -qF -- "$q" "$OUT/a/$1" && grep -qF -- "$q" "$OUT/b/$1"; }; then
		show a "$1"; show b "$1"
		tap_not_ok "suite: $1 # $a in (a) and (b) as expected, but without \"$q\""
	else
		case $a in
		pass) tap_ok "suite: $1" ;;
		bounded)
			echo "# $1: ran ${EXP_SECS}s in (a) and (b) without an assertion failure: $EXP_REASON"
			tap_ok "suite: $1"
			;;
		skip) tap_skip "suite: $1" "(a) and (b): $EXP_REASON" ;;
		*) tap_skip "suite: $1" "known failure ($a) in (a) and (b): $EXP_REASON" ;;
		esac
	fi
}

# suite_test NAME: NAME in (a), then in (b) with the module loaded for it
# (and unloaded after: nothing may be left pending), then its verdict.
# Each test's two runs back to back, not the whole suite twice: lockdep
# stops at its first report, and a test that makes 7.2 report a bug
# (kernel-report) runs last, so that every other test runs under lockdep
# in both configurations.
suite_test() {
	run_one a "$1"
	if insmod $M/kvm_apicv_defer.ko; then
		run_one b "$1"
		count_deferrals
		[ "$LOAD_DEFERRED" = 0 ] ||
			echo "# b: $1: deferred=$LOAD_DEFERRED applied=$LOAD_APPLIED pending=$LOAD_PENDING"
		[ "$LOAD_PENDING" = 0 ] || tap_not_ok "b:module: $1 left $LOAD_PENDING deferral(s) pending"
		rmmod kvm_apicv_defer || tap_not_ok "b:module: rmmod kvm_apicv_defer after $1"
	else
		tap_not_ok "b:module: insmod kvm_apicv_defer.ko for $1"
		echo fail >"$OUT/b/$1.res"
	fi
	REPORTED=0
	! tap_dmesg_new || REPORTED=1
	judge "$1"
	[ "$REPORTED" = 0 ] || KERNEL_REPORTED=1
}

# --- Setup -------------------------------------------------------------------
# What a distribution's root has and the tests expect: POSIX shared memory
# in /dev/shm, a passwd entry for root (nx_huge_pages_test.sh asks whoami),
# HugeTLB pages reserved (the anonymous_hugetlb backings; 128 MiB).
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /etc && echo 'root:x:0:0:root:/:/bin/sh' >/etc/passwd && echo 'root:x:0:' >/etc/group
HUGEPAGES=64
echo $HUGEPAGES >/proc/sys/vm/nr_hugepages
echo "# HugeTLB: $(grep -E 'HugePages_(Total|Free)' /proc/meminfo | tr -s ' \n' ' ')"
# KVM's parameters from the kernel command line (kvm.NAME=VALUE).
KVM_ARGS=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^kvm\.\([a-z_]*=\)/\1/p' | tr '\n' ' ')
echo "# kvm.ko parameters from the command line: ${KVM_ARGS:-none}"
insmod $M/irqbypass.ko
tap_check "insmod kvm.ko $KVM_ARGS" insmod $M/kvm.ko $KVM_ARGS
tap_check "insmod kvm-intel.ko" kvm_load
kvm_report_host
tap_check "the x86 suite is in the initramfs ($(wc -l <$S/tests 2>/dev/null) tests)" [ -s $S/tests ]
TESTS=$(cat $S/tests 2>/dev/null)
# kad.suite=NAME,NAME... on the command line runs only those (to iterate).
# kad.suite_share=FROM-TO runs only the tests that start between FROM% and
# TO% of the suite's length (the sum of their timeouts), so that two boots,
# one per host core, can share the suite.
SHARE=
for arg in $(cat /proc/cmdline); do
	case $arg in
	kad.suite=*) TESTS=$(echo "${arg#kad.suite=}" | tr ',' ' ') ;;
	kad.suite_share=*) SHARE=${arg#kad.suite_share=} ;;
	esac
done
if [ -n "$SHARE" ]; then
	TESTS=$(for t in $TESTS; do expectation "$t" && echo "$t $EXP_SECS"; done |
		awk -v from="${SHARE%-*}" -v to="${SHARE#*-}" '{ n[NR] = $1; s[NR] = $2; total += $2 }
			END { for (i = 1; i <= NR; i++) { p = 100 * cum / total; cum += s[i]
				if (p >= from && p < to) print n[i] } }')
	echo "# kad.suite_share=$SHARE: $(echo $TESTS | wc -w) tests, $(echo $TESTS | cut -d' ' -f1) to $(echo $TESTS | awk '{ print $NF }')"
fi
# An entry for a test that was not built is stale (said by the share that
# starts the suite, not by each).
case $SHARE in
"" | 0-*)
	for t in $(grep -vE '^(#|[[:space:]]*$)' "$EXPECT" | awk '{ print $1 }'); do
		grep -qx "$t" $S/tests || tap_not_ok "suite: $t # in the expectations file, not built"
	done
	;;
esac
tap_dmesg_clean "boot: no kernel warnings"

# --- Each test in (a), no module, and (b), module -------------------------
# The tests that make the kernel report a bug last (see suite_test).
last=$(grep -E '^[^#].*[[:space:]]kernel-report([[:space:]]|$)' "$EXPECT" | awk '{ print $1 }')
first=
for t in $TESTS; do
	echo "$last" | grep -qx "$t" || first="$first $t"
done
KERNEL_REPORTED=0
mkdir -p "$OUT/a" "$OUT/b"
for t in $first $last; do
	echo "$TESTS" | tr ' ' '\n' | grep -qx "$t" && suite_test "$t"
done
# (The suite barely reaches the module's path: the project's own scenarios
# do.  What it did reach is counted here.)
echo "# b:module: over the suite: deferred=$DEFERRED applied=$APPLIED"
