// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_tpr_threshold_test
 *
 * L1's TPR threshold computed while L2 runs must reach vmcs01 by the time
 * L1 runs.
 *
 * With APICv inactive for L1 (here inhibited by a modified xAPIC ID), KVM
 * gives L1 a TPR shadow and sets vmcs01's TPR threshold to the priority
 * class of L1's highest pending IRQ that L1's TPR masks, so that L1
 * lowering its TPR with MOV to CR8, which the CPU virtualizes without a
 * VM-Exit, exits to KVM ("TPR below threshold") once the IRQ becomes
 * deliverable.  KVM recomputes the threshold on every event check, also
 * while L2 runs when L1 gave L2 no TPR shadow: Linux 7.0+ writes vmcs01
 * through the vmcs01 guard; a deferral must record the value and write it
 * to vmcs01 at the nested VM-Exit.  The VM-Exit itself does not recompute
 * it, as no IRQ is injectable behind the TPR.
 *
 * L1 raises its TPR to 0xe (CR8) and enters L2.  L2 sends L1 a self-IPI of
 * a lower class through L1's xAPIC (its accesses are emulated on L1's
 * APIC), so the IPI is pending for L1 and masked; KVM checks events on
 * the next entry, into L2, and computes the threshold there.  L2 runs on
 * (exits to L0) and VMCALLs to L1.  L1 checks the IPI is pending and masked (an IRQ window
 * takes nothing), lowers CR8 to 0 and opens a one-instruction IRQ window:
 * with the threshold written the MOV to CR8 exits, KVM sees the IPI
 * deliverable and delivers it in the window; with the threshold left at 0
 * the CPU lowers the TPR silently and the window takes nothing.  Each
 * round resumes L2 again.
 *
 * The test relies on a modified xAPIC ID inhibiting APICv
 * (APICV_INHIBIT_REASON_APIC_ID_MODIFIED): with APICv active L1 would take
 * the IPI through virtual-interrupt delivery and the threshold would not
 * matter.
 *
 * Request-only build: passes, not judged (the threshold is not the
 * refresh it defers).
 */
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define IPI_VECTOR		0xd0
#define HIGH_TPR		0xe
#define MODIFIED_APIC_ID	0x2a

#define NR_ROUNDS		3
#define NR_L2_MSR_EXITS		20

static void l2_guest_code(void)
{
	int i;

	for (i = 0; i < NR_ROUNDS; i++) {
		/* L1's APIC, emulated by KVM: pending for L1, masked by its TPR. */
		xapic_send_self_ipi(IPI_VECTOR);
		/* KVM checked events on the first of these entries, in L2. */
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		vmcall();
	}
	GUEST_FAIL("L2 resumed after its last VMCALL");
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	int i;

	l1_prepare_l2(vmx_pages, l2_guest_code);
	xapic_enable();

	for (i = 0; i < NR_ROUNDS; i++) {
		set_cr8(HIGH_TPR);
		GUEST_ASSERT(!(i ? vmresume() : vmlaunch()));
		l1_skip_vmcall();

		GUEST_ASSERT(xapic_vector_is_set(APIC_IRR, IPI_VECTOR));
		__GUEST_ASSERT(irq_window() == 0,
			       "IPI 0x%x delivered through TPR 0x%x", IPI_VECTOR,
			       HIGH_TPR);

		set_cr8(0);
		__GUEST_ASSERT(irq_window() == 1,
			       "IPI not delivered after MOV to CR8 lowered the TPR (TPR threshold stale?)");
		xapic_eoi_and_check(IPI_VECTOR, EOI_CHECK_IRR | EOI_CHECK_PPR);
		GUEST_SYNC(i);
	}
	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int i;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);
	/* APIC_ID_MODIFIED inhibits APICv: L1 gets a TPR shadow, no APICv. */
	vcpu_set_xapic_id(vcpu, MODIFIED_APIC_ID);

	ksft_print_header();
	ksft_set_plan(NR_ROUNDS);
	for (i = 0; i < NR_ROUNDS; i++) {
		TEST_ASSERT(vcpu_run_to_sync(vcpu, &uc) && uc.args[1] == i,
			    "L1 did not finish round %d", i);
		ksft_test_result_pass("round %d: IPI delivered once MOV to CR8 lowered the TPR\n",
				      i + 1);
	}
	TEST_ASSERT(!vcpu_run_to_sync(vcpu, &uc), "Unexpected GUEST_SYNC");
	kvm_vm_free(vm);
	ksft_finished();
}
