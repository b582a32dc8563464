# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module fault-points oob-write cfi-mismatch
# The hardening kernel's boot (scripts/kernel-variants/hardening.config:
# KASAN, kCFI, failslab, kmemleak): the fault injection of faults.sh, a
# planted out-of-bounds write KASAN must report, the module's configurations
# (b) and (r) of configs.sh, where any report in the kernel log fails a "no
# kernel warnings" check, then the kCFI-mismatch build, whose trap ends the
# boot in a panic.
#   kad.part=hardening       (make check) 20 random loads, (b) without the
#                            upstream peers but vmx_apicv_updates_test,
#                            (r) 20 cycles
#   kad.part=hardening-full  (make check-full) the fail-nth walk, 100 random
#                            loads, (b) with every peer, (r) 100 cycles
# Sourced by /init.
. /lib/kad/configs.sh
. /lib/kad/faults.sh

# cfi_mismatch_traps: the test-only build whose refresh callback takes a
# void * where KVM's ops pass a struct kvm_vcpu *.  The first refresh KVM
# offers it (the uninhibit scenario's first APICv update in L2) must trap:
# "CFI failure at ... (target: kad_refresh_apicv_exec_ctrl...)", an oops,
# which oops=panic on the command line makes a panic.  The guest declares
# that panic (KAD-EXPECT-PANIC, see scripts/lib/ktap.sh) and the host
# judges it; getting past the test is the failure.  Last: it ends the boot.
cfi_mismatch_traps() {
	tap_check "cfi: insmod the kCFI-mismatch build (TEST-ONLY)" \
		insmod $M/cfi-mismatch/kvm_apicv_defer.ko || return
	tap_expect_panic "CFI failure at .*target: kad_refresh_apicv_exec_ctrl"
	tap_run "cfi: vmx_apicv_defer_uninhibit_test" 300 $T/vmx_apicv_defer_uninhibit_test
	tap_not_ok "cfi: the mismatched callback was called without a CFI trap"
}

host_checks
case "${KAD_PART:-}" in
hardening)
	random=20 walk=0 cycles=20
	# (b) with the project's scenarios and the one upstream peer that
	# reaches the module's path (the others deferred nothing: 2 updates
	# in the whole upstream suite, all vmx_apicv_updates_test's).  The
	# other peers cost three quarters of (b) under KASAN (xapic_state_test
	# 216 s of the guest's clock, hyperv_features 199 s,
	# recalc_apic_map_test 176 s); they run with the module in bochs2's
	# (b), and under KASAN in hardening-full.
	PEER=vmx_apicv_updates_test
	;;
hardening-full) random=100 walk=400 cycles=100 ;;
*) tap_not_ok "kad.part=${KAD_PART:-}: the hardening plan has parts hardening and hardening-full" ;;
esac
if [ -n "${random:-}" ]; then
	tap_clock faults
	run_faults "$random" "$walk"
	faults_dmesg_clean "faults: no kernel warnings (but the allocation-failure reports)"
	tap_clock oob-write
	planted_bug_reported oob-write 'BUG: KASAN: slab-out-of-bounds in kad_test_planted_bug'
	config_b
	config_r "$cycles" alternate
	tap_clock cfi
	cfi_mismatch_traps
fi
