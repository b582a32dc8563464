// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_teardown_test
 *
 * A VM may be destroyed at any moment, including while its vCPU runs L2 with
 * an APICv update still waiting for the next nested VM-Exit.  Destroying the
 * vCPU leaves L2 through vmx_leave_nested(), i.e. __nested_vmx_vmexit(), so
 * with kvm_apicv_defer.ko KVM must hand the deferral back to the module right
 * there (the vCPU-free path runs in whichever task drops the last reference
 * to the VM), not leak it with the vCPU.
 *
 * Each round: L1 enters L2, L2 exits to userspace (GUEST_SYNC, L2 stays
 * active), userspace toggles KVM_GUESTDBG_BLOCKIRQ and runs the vCPU to L2's
 * next GUEST_SYNC, so KVM services the APICv update with L2 active, and then
 * frees the whole VM without running the vCPU again.  With the module
 * loaded, its debugfs counters must show the update deferred and then
 * applied by the teardown: pending back to where it was, applied ==
 * deferred for the round.  Without the module the rounds
 * only exercise 7.2's guard path; either way the run must leave no warning in
 * the kernel log (checked by the harness) and nothing pending behind (the
 * harness checks pending == 0 and rmmods after the suite).
 *
 * Rounds alternate between BLOCKIRQ set (APICv deactivated) and set-then-
 * cleared (deactivated and reactivated, coalesced into one deferral).  In
 * the second half of the rounds the VM has two vCPUs and L2 runs on vCPU 1:
 * KVM destroys vCPU 0 first, so what the teardown of vCPU 1 does must not
 * depend on any vCPU but its own.
 *
 * Request-only build: must fail.
 */
#include <stdio.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "vmx_apicv_util.h"

#define NR_ROUNDS	8

static void l2_guest_code(void)
{
	/* Exit to userspace and stay in L2, for as long as the VM lives. */
	for (;;)
		GUEST_SYNC(0);
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	__l1_prepare_l2(vmx_pages, l2_guest_code);
	GUEST_ASSERT(!vmlaunch());
	GUEST_FAIL("L2 exited to L1: %lu", vmreadz(VM_EXIT_REASON));
}

static void run_to_l2_sync(struct kvm_vcpu *vcpu, int round)
{
	struct ucall uc;

	if (!vcpu_run_to_sync(vcpu, &uc))
		TEST_FAIL("Unexpected ucall %lu", uc.cmd);
	TEST_ASSERT(vcpu_in_l2(vcpu), "Round %d: L2 is not active", round);
}

static void run_round(int round)
{
	long long pending0 = 0, applied0 = 0, deferred0 = 0;
	long long pending, applied, deferred;
	bool module = apicv_defer_read_counter("pending", &pending0);
	bool reactivate = round & 1;
	bool on_vcpu1 = round >= NR_ROUNDS / 2;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;

	if (module) {
		apicv_defer_read_counter("applied", &applied0);
		apicv_defer_read_counter("deferred", &deferred0);
	}

	vm = on_vcpu1 ? vm_create_l1_on_vcpu1(&vcpu, l1_guest_code) :
			vm_create_l1(&vcpu, l1_guest_code);

	run_to_l2_sync(vcpu, round);

	/*
	 * KVM services the inhibit change (KVM_REQ_APICV_UPDATE) on the next
	 * KVM_RUN, i.e. with L2 active.
	 */
	vcpu_set_blockirq(vcpu, true);
	run_to_l2_sync(vcpu, round);
	if (reactivate) {
		vcpu_set_blockirq(vcpu, false);
		run_to_l2_sync(vcpu, round);
	}

	if (module) {
		apicv_defer_read_counter("pending", &pending);
		TEST_ASSERT(pending == pending0 + 1,
			    "Round %d: pending %lld before the teardown, wanted %lld",
			    round, pending, pending0 + 1);
	}

	/* Destroy the VM with L2 active and the update still deferred. */
	kvm_vm_free(vm);

	if (module) {
		apicv_defer_read_counter("pending", &pending);
		apicv_defer_read_counter("applied", &applied);
		apicv_defer_read_counter("deferred", &deferred);
		TEST_ASSERT(pending == pending0,
			    "Round %d: pending %lld after the teardown, wanted %lld: the deferral leaked",
			    round, pending, pending0);
		TEST_ASSERT(deferred - deferred0 == 1 && applied - applied0 == 1,
			    "Round %d: deferred +%lld, applied +%lld, wanted +1 each",
			    round, deferred - deferred0, applied - applied0);
	}

	ksft_test_result_pass("round %d: VM destroyed, L2 active on vCPU %d, BLOCKIRQ %s%s\n",
			      round, on_vcpu1, reactivate ? "set and cleared" : "set",
			      module ? ", deferral applied at teardown" : "");
}

int main(int argc, char *argv[])
{
	int round;

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));

	ksft_print_header();
	ksft_set_plan(NR_ROUNDS);
	for (round = 0; round < NR_ROUNDS; round++)
		run_round(round);
	ksft_finished();
}
