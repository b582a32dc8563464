# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module request-only series-selftests
# The emulated Intel host's suite (Bochs, Skylake-X): KVM's VMX setup, then
# the upstream peer tests and the project's nested APICv tests in each
# configuration:
#   (a) patched kernel, module not loaded (7.2's in-tree guard path)
#   (b) patched kernel, kvm_apicv_defer.ko loaded
#   (c) TEST-ONLY request-only build: the tests that guard against it must
#       fail there, else they do not bite.
#   (r) 100 load/unload cycles under nested load
#   (u) the unpatched base's kvm-intel.ko, i.e. upstream 7.2
# plus the refusals of bad setups.  kad.part=1 or 2 runs half of it, so two
# emulated hosts (one per host core) share the work; no kad.part runs all.
# kad.part=sanitizer runs the module's configurations (b) and (r, 40
# cycles) on a sanitizer kernel variant (scripts/kernel-variants/kasan.config), where any
# report in the kernel log fails the "no kernel warnings" checks.
# kad.part=hardening and kad.part=cfi-mismatch are for the hardening kernel
# variant (kCFI, KCSAN, fault injection, kmemleak) and its test-only module
# builds; plans/hardening.sh boots them (it declares their payload).
# Sourced by /init.
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
	run_suite "a:no-module"
	tap_dmesg_clean "a:no-module: no kernel warnings"
}

# --- (b) module loaded -----------------------------------------------------
config_b() {
	local mark c npi0
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
		posted_interrupts "b:module" NPI "$npi0" "nested posted-interrupt notifications"
		module_counters_checked "b:module"
		tap_check "b:module: rmmod kvm_apicv_defer" rmmod kvm_apicv_defer
	fi
	tap_dmesg_clean "b:module: no kernel warnings"
}

# --- (r) reliability: load/unload while guests nest -----------------------
# config_r [N]: N load/unload cycles (100).
config_r() {
	load_cycles "${1:-100}"
	tap_dmesg_clean "r: no kernel warnings"
}

# --- Refusals (bad setups) -------------------------------------------------
refusals() {
	run_refusals
	tap_dmesg_clean "refusals: no kernel warnings"
}

# --- (u) upstream 7.2 ------------------------------------------------------
# The unpatched base's kvm-intel.ko on the same vmlinux and kvm.ko is
# upstream 7.2 (plus patches/test's VMPTRLD counter): the peers and the
# project tests that need no module must do there what they do in (a), and
# the selftests series' tests, built in its tree (/series-tests), pass.
config_u() {
	local t
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
config_c() {
	local t
	if tap_check "c:request-only: insmod (TEST-ONLY build)" insmod $M/request-only/kvm_apicv_defer.ko; then
		export KVM_APICV_DEFER_KO=$M/request-only/kvm_apicv_defer.ko
		[ -s "$MUST_FAIL" ] || tap_not_ok "c:request-only: $MUST_FAIL is missing or empty"
		for t in $(cat "$MUST_FAIL" 2>/dev/null); do
			tap_run_must_fail "c:request-only: $t detects the stale vmcs01" 300 "$T/$t"
		done
		for t in $INFO_IN_C; do
			timeout -s KILL 300 "$T/$t" >/dev/null 2>&1
			echo "# c:request-only: $t exit=$? (informational, see MUST_FAIL above)"
		done
		tap_check "c:request-only: rmmod" rmmod kvm_apicv_defer
		export KVM_APICV_DEFER_KO=$M/kvm_apicv_defer.ko
	fi
	# A stale vmcs01 may make KVM complain: show it, don't judge it.
	dmesg | tail -n +"$((DMESG_SEEN + 1))" | grep -E 'WARNING:|BUG:|internal error' | sed 's/^/# c: /'
	DMESG_SEEN=$(dmesg | wc -l)
}

# --- Hardening kernel: KCSAN and kCFI under (b) and (r), fault injection ---
# config_hardening CYCLES RANDOM-LOADS NTH-MAX: the fault injection of
# faults.sh and the deliberate data race of the test-only build, which KCSAN
# must report (panic_on_warn is off for it: KCSAN reports count as
# warnings), first, as they are the quickest; then (b) and CYCLES load
# cycles (r) under KCSAN and kCFI (any report fails "no kernel warnings").
# RACE=1 also runs the data-race check (make check-full only: on Bochs the
# two threads were not seen to overlap yet, see testing.rst).
config_hardening() {
	. /lib/kad/faults.sh
	run_faults "$2" "$3"
	faults_dmesg_clean "faults: no kernel warnings (but the allocation-failure reports)"
	[ "${4:-0}" -eq 1 ] && kcsan_catches_race
	config_b
	config_r "$1"
}

kcsan_catches_race() {
	local mark pow
	pow=$(cat /proc/sys/kernel/panic_on_warn)
	echo 0 >/proc/sys/kernel/panic_on_warn
	mark=$(dmesg | wc -l)
	if tap_check "kcsan: insmod the data-race build (TEST-ONLY)" insmod $M/data-race/kvm_apicv_defer.ko; then
		rmmod kvm_apicv_defer
	fi
	dmesg | tail -n +"$((mark + 1))" >/tmp/race.log
	grep -E 'TEST-ONLY|KCSAN' -A 12 /tmp/race.log | sed 's/^/# /'
	tap_check "kcsan: the deliberate data race is reported (BUG: KCSAN: data-race in kad_race_thread)" \
		grep -q 'BUG: KCSAN: data-race in kad_race_thread' /tmp/race.log
	DMESG_SEEN=$(dmesg | wc -l)
	echo "$pow" >/proc/sys/kernel/panic_on_warn
}

# config_cfi_mismatch: the test-only build whose refresh callback takes a
# void * where KVM's ops pass a struct kvm_vcpu *.  The first refresh KVM offers it (the
# uninhibit scenario's first APICv update in L2) must trap: "CFI failure at
# ... (target: kad_refresh_apicv_exec_ctrl...)", an oops, which oops=panic
# on the command line makes the panic that scripts/check expects.  Getting
# past the test is the failure.
config_cfi_mismatch() {
	tap_check "cfi: insmod the kCFI-mismatch build (TEST-ONLY)" \
		insmod $M/cfi-mismatch/kvm_apicv_defer.ko || return
	echo "# cfi: the uninhibit scenario must now end in a CFI failure and a panic"
	tap_run "cfi: vmx_apicv_defer_uninhibit_test" 300 $T/vmx_apicv_defer_uninhibit_test
	tap_not_ok "cfi: the mismatched callback was called without a CFI trap"
}

host_checks
case "${KAD_PART:-all}" in
1) config_a; refusals; config_u ;;
2) config_b; config_r; config_c ;;
sanitizer) config_b; config_r 40 ;;
hardening) config_hardening 40 100 400 1 ;;
hardening-quick) config_hardening 20 20 0 ;;
cfi-mismatch) config_cfi_mismatch ;;
*) config_a; config_b; config_r; refusals; config_u; config_c ;;
esac
