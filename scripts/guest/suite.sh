# SPDX-License-Identifier: GPL-2.0
# The suite every configuration runs, and the module's counter checks: one
# list for every plan that runs tests (through configs.sh, or packages.sh
# directly), sourced after kvm.sh; the host's scripts/test and scripts/check
# source it too, for picked().
T=/tests

# Upstream peer tests, in the order of their cost.
PEER="vmx_apicv_updates_test vmx_apic_access_test nested_set_state_test
	xapic_state_test xapic_tpr_test debug_regs state_test hyperv_features
	smm_test vmx_msrs_test nested_exceptions_test nested_tsc_adjust_test
	vmx_preemption_timer_test recalc_apic_map_test xapic_ipi_test"
# The project's own scenarios (selftests/).
OWN=$(cd $T 2>/dev/null && ls vmx_apicv_defer_*_test 2>/dev/null)

# Each test's time limit, in seconds; a plan on a slower kernel raises it.
SUITE_TIMEOUT=${SUITE_TIMEOUT:-300}

# picked TEST: kad.only=GLOB[,GLOB...] (make test T=) picks the tests
# whose names match a GLOB; without it every test is picked.
picked() {
	local rest="${KAD_ONLY:-}," g
	[ -n "${KAD_ONLY:-}" ] || return 0
	while [ -n "$rest" ]; do
		g=${rest%%,*} rest=${rest#*,}
		# shellcheck disable=SC2254 # $g is the pattern
		case "$1" in $g) return 0 ;; esac
	done
	return 1
}

# run_suite LABEL: every picked peer and own test, TAP line each.
run_suite() {
	local t n=0
	for t in $PEER $OWN; do
		picked "$t" || continue
		n=$((n + 1))
		if [ -x "$T/$t" ]; then
			tap_run "$1: $t" "$SUITE_TIMEOUT" "$T/$t"
		else
			tap_not_ok "$1: $t # binary missing from the initramfs"
		fi
	done
	[ "$n" -gt 0 ] || tap_not_ok "$1: kad.only=$KAD_ONLY picks no test"
}

# module_counters_checked LABEL: after run_suite with the module loaded.
# The suite toggles APICv while L2 runs: the module must have deferred and
# applied those updates, and left none pending.
module_counters_checked() {
	local c
	for c in deferred coalesced applied requests pending; do
		echo "# $1: debugfs $c=$(debugfs_counter $c)"
	done
	if [ -n "${KAD_ONLY:-}" ]; then
		tap_skip "$1: deferred > 0" "kad.only= picked the tests: they may update no APICv in L2"
	else
		tap_check "$1: deferred > 0" [ "$(debugfs_counter deferred)" -gt 0 ]
	fi
	tap_check "$1: applied == deferred" \
		[ "$(debugfs_counter applied)" -eq "$(debugfs_counter deferred)" ]
	tap_check "$1: pending == 0" [ "$(debugfs_counter pending)" -eq 0 ]
}
