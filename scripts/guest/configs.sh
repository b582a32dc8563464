# SPDX-License-Identifier: GPL-2.0
# The configurations the emulated Intel host runs, one function each: the
# host's VMX checks, (a) no module, (b) module, (r) load cycles under nested
# load, the refusals, the sample hook, (u) upstream 7.2, (c) request-only.
# Sourced by the plans that pick configurations (emulated, hardening,
# kcsan, test, mutant).
. /lib/kad/kvm.sh
. /lib/kad/suite.sh
. /lib/kad/refusals.sh
. /lib/kad/reliability.sh
# vmx_apicv_defer_unload_test reloads the module after unloading it.
export KVM_APICV_DEFER_KO=$M/kvm_apicv_defer.ko

# Tests that must fail against the request-only build (stale vmcs01): those
# whose top comment says "Request-only build: must fail.", listed by
# scripts/build-selftests.  The stress test races, so it may or may not catch
# it: not marked, not judged there.
MUST_FAIL=$T/must-fail-request-only
# Project tests that need no module, run on upstream 7.2's kvm-intel too.
OWN_IN_U="vmx_apicv_defer_exit_paths_test vmx_apicv_defer_nested_pi_test"
# Upstream's vmx_apicv_updates_test cannot: its two APICv toggles while L2
# runs cancel out (vmcs01 is stale-off, then wanted off again) before L1
# needs virtual-interrupt delivery.  Its result in (c) is shown, not judged.
INFO_IN_C="vmx_apicv_updates_test"

# --- The emulated host ---------------------------------------------------
host_checks() {
	tap_check "insmod kvm-intel.ko" kvm_load
	kvm_report_host
	kvm_checks_host
	tap_dmesg_clean "boot: no kernel warnings"
}

# --- (a) no module ---------------------------------------------------------
config_a() {
	tap_clock a
	run_suite "a:no-module"
	tap_dmesg_clean "a:no-module: no kernel warnings"
}

# --- (b) module loaded -----------------------------------------------------
config_b() {
	local mark c npi0
	tap_clock b
	mark=$(dmesg | wc -l)
	tap_check "b:module: insmod kvm_apicv_defer_kunit.ko" insmod $M/kvm_apicv_defer_kunit.ko
	dmesg | tail -n +"$((mark + 1))" >/tmp/kunit.log
	tap_kunit /tmp/kunit.log 'kvm_apicv_defer[a-z0-9_]*' "b:module: kunit"
	rmmod kvm_apicv_defer_kunit
	if tap_check "b:module: insmod kvm_apicv_defer.ko" insmod $M/kvm_apicv_defer.ko; then
		dmesg | grep 'kvm_apicv_defer:' | tail -1 | sed 's/^/# /'
		npi0=$(irq_total NPI)
		run_suite "b:module"
		# vmx_apicv_defer_nested_pi_test posts to an L2 from another
		# CPU while APICv updates are deferred: KVM's nested
		# posted-interrupt path must have run.
		if picked vmx_apicv_defer_nested_pi_test; then
			posted_interrupts "b:module" NPI "$npi0" "nested posted-interrupt notifications"
		fi
		module_counters_checked "b:module"
		tap_check "b:module: rmmod kvm_apicv_defer" rmmod kvm_apicv_defer
	fi
	tap_dmesg_clean "b:module: no kernel warnings"
}

# --- (r) reliability: load/unload while guests nest -----------------------
# config_r [N [FORCED]]: N load/unload cycles (100), forced as load_cycles
# says (alternate).
config_r() {
	tap_clock r
	load_cycles "${1:-100}" "${2:-alternate}"
	tap_dmesg_clean "r: no kernel warnings"
}

# --- Refusals (bad setups) -------------------------------------------------
refusals() {
	tap_clock refusals
	run_refusals
	tap_dmesg_clean "refusals: no kernel warnings"
}

# --- The hook API with the sample: a hook that takes no refresh -------------
# KVM offers the sample every refresh made while L2 runs and writes vmcs01
# itself when it declines; SVI and the TPR threshold are still recorded (a
# hook is registered) and drained by KVM alone.  A test that updates APICv
# in L2 must pass, and KVM must never call nested_vmexit, which hands back
# only a refresh the hook took.
config_sample() {
	local d=/sys/kernel/debug/apicv_hook_counter refreshes exits
	tap_clock sample
	if tap_check "sample: insmod apicv_hook_counter.ko" insmod $M/apicv_hook_counter.ko; then
		tap_run "sample: vmx_apicv_defer_uninhibit_test" "$SUITE_TIMEOUT" "$T/vmx_apicv_defer_uninhibit_test"
		refreshes=$(cat $d/refreshes 2>/dev/null) exits=$(cat $d/nested_vmexits 2>/dev/null)
		echo "# sample: refreshes=$refreshes nested_vmexits=$exits"
		tap_check "sample: refreshes offered, nested_vmexit never called" \
			[ "${refreshes:-0}" -gt 0 -a "$exits" = 0 ]
		tap_check "sample: rmmod apicv_hook_counter" rmmod apicv_hook_counter
	fi
	tap_dmesg_clean "sample: no kernel warnings"
}

# --- (u) upstream 7.2 ------------------------------------------------------
# The unpatched base's kvm-intel.ko on the same vmlinux and kvm.ko is
# upstream 7.2 (plus patches/test's VMPTRLD counter): the peers and the
# project tests that need no module must do there what they do in (a), and
# the selftests series' tests, built in its tree (/series-tests), pass.
config_u() {
	local t
	tap_clock u
	kvm_unload
	if tap_check "u:upstream-7.2: insmod unpatched kvm-intel.ko" kvm_load $M/unpatched/kvm-intel.ko; then
		for t in $PEER $OWN_IN_U; do
			tap_run "u:upstream-7.2: $t" 300 "$T/$t"
		done
		[ -n "$(ls /series-tests 2>/dev/null)" ] ||
			tap_not_ok "u:upstream-7.2: series: no tests in /series-tests"
		for t in $(ls /series-tests 2>/dev/null); do
			tap_run "u:upstream-7.2: series: $t" 300 "/series-tests/$t"
		done
		kvm_unload
	fi
	tap_dmesg_clean "u:upstream-7.2: no kernel warnings"
	kvm_load
}

# --- (c) request-only: the tests must bite ---------------------------------
# request_only_counters: since the module's last load (the unload test
# reloads it), the build did what it is named for: it deferred, applied
# nothing to vmcs01 and raised one request per deferral.
request_only_counters() {
	[ "$(debugfs_counter deferred)" -gt 0 ] && [ "$(debugfs_counter applied)" -eq 0 ] &&
		[ "$(debugfs_counter requests)" -eq "$(debugfs_counter deferred)" ]
}

config_c() {
	local t n=0
	tap_clock c
	if tap_check "c:request-only: insmod (TEST-ONLY build)" insmod $M/request-only/kvm_apicv_defer.ko; then
		export KVM_APICV_DEFER_KO=$M/request-only/kvm_apicv_defer.ko
		[ -s "$MUST_FAIL" ] || tap_not_ok "c:request-only: $MUST_FAIL is missing or empty"
		for t in $(cat "$MUST_FAIL" 2>/dev/null); do
			picked "$t" || continue
			n=$((n + 1))
			tap_run_must_fail "c:request-only: $t detects the stale vmcs01" 300 "$T/$t"
		done
		for t in $INFO_IN_C; do
			picked "$t" || continue
			timeout -s KILL 300 "$T/$t" >/dev/null 2>&1
			echo "# c:request-only: $t exit=$? (informational, see MUST_FAIL above)"
		done
		for t in deferred applied requests pending; do
			echo "# c:request-only: debugfs $t=$(debugfs_counter $t)"
		done
		if [ "$n" -gt 0 ]; then
			tap_check "c:request-only: counters: every deferral ended in a request, none in a refresh" \
				request_only_counters
		else
			tap_skip "c:request-only: counters" "kad.only=$KAD_ONLY picks no test that must fail here"
		fi
		tap_check "c:request-only: rmmod" rmmod kvm_apicv_defer
		export KVM_APICV_DEFER_KO=$M/kvm_apicv_defer.ko
	fi
	# A stale vmcs01 may make KVM complain: show it, don't judge it.
	dmesg | tail -n +"$((DMESG_SEEN + 1))" | grep -E 'WARNING:|BUG:|internal error' | sed 's/^/# c: /'
	DMESG_SEEN=$(dmesg | wc -l)
}

# --- Planted bugs (sanitizer kernels) --------------------------------------
# planted_bug_reported BUILD REPORT: load the test-only BUILD, whose init
# runs its planted bug, and check that the kernel log has REPORT (an ERE)
# (plans hardening.sh and kcsan.sh).
# The report is a warning to panic_on_warn, which is off meanwhile; the
# report is then forgotten by the next "no kernel warnings" check.
planted_bug_reported() {
	local mark pow
	pow=$(cat /proc/sys/kernel/panic_on_warn)
	echo 0 >/proc/sys/kernel/panic_on_warn
	mark=$(dmesg | wc -l)
	if tap_check "$1: insmod the planted-bug build (TEST-ONLY)" insmod "$M/$1/kvm_apicv_defer.ko"; then
		rmmod kvm_apicv_defer
	fi
	dmesg | tail -n +"$((mark + 1))" >/tmp/planted.log
	grep -E 'TEST-ONLY|KASAN|KCSAN' -A 12 /tmp/planted.log | sed 's/^/# /'
	tap_check "$1: the planted bug is reported ($2)" grep -qE "$2" /tmp/planted.log
	DMESG_SEEN=$(dmesg | wc -l)
	echo "$pow" >/proc/sys/kernel/panic_on_warn
}
