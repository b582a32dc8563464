// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_blockirq_test
 *
 * KVM_GUESTDBG_BLOCKIRQ tells KVM not to inject interrupts into the vCPU, so
 * KVM inhibits APICv for the VM while it is set (virtual-interrupt delivery
 * would bypass KVM).  Userspace sets and clears it whenever it likes; here it
 * does so while L1 runs L2 (L2 exits to userspace with GUEST_SYNC), so KVM
 * services the APICv update with L2 active and the vmcs01 update is either
 * done through the vmcs01 guard (upstream) or deferred to the next nested
 * VM-Exit (kvm_apicv_defer.ko).
 *
 * L1 holds a self-IPI pending (sent with IRQs disabled) across each L2 run,
 * then opens an IRQ window and checks exactly what it receives:
 *
 *  A. BLOCKIRQ set while L2 runs, still set when L1 resumes: L1 must receive
 *     nothing.  If vmcs01 still has virtual-interrupt delivery on (the
 *     deferred deactivation was never applied), the CPU delivers the pending
 *     IRQ from RVI behind KVM's back.  Userspace then clears BLOCKIRQ while
 *     L1 runs, and the IRQ must arrive exactly once.
 *  B. BLOCKIRQ set and cleared during one L2 run (two updates, one VM-Exit):
 *     the IRQ must arrive exactly once.
 *  C. BLOCKIRQ set while L1 runs and cleared while L2 runs: the IRQ must
 *     arrive exactly once.  If vmcs01 still has virtual-interrupt delivery off
 *     (the deferred activation was never applied), KVM no longer injects it
 *     and the CPU cannot: it is lost.
 *
 * After each phase L1 sends itself more IPIs and EOIs them: every one must be
 * delivered once and leave no vector in service.  No phase may end with
 * KVM_EXIT_FAIL_ENTRY or an internal error (vcpu_run() asserts KVM_EXIT_IO).
 *
 * Must pass on upstream 7.2 and with kvm_apicv_defer.ko; phases A and C fail
 * with the module's request-only test build.
 *
 * Request-only build: must fail.
 */
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define IPI_VECTOR		0xe0
#define NR_IPI_ROUNDS		3
#define NR_L2_MSR_EXITS		200

enum {
	SYNC_L2_SET_BLOCKIRQ = 1,
	SYNC_L2_CLEAR_BLOCKIRQ,
	SYNC_L1_SET_BLOCKIRQ,
	SYNC_L1_CLEAR_BLOCKIRQ,
	SYNC_L1_PHASE_DONE,
};

#define EOI_CHECKS		(EOI_CHECK_IRR | EOI_CHECK_PPR)

/* L2's exits go to L0 only (L1's MSR bitmap is empty): VM-Entries to L2. */
static void l2_guest_code(void)
{
	/* Phase A */
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	vmcall();

	/* Phase B */
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	vmcall();

	/* Phase C */
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	vmcall();

	GUEST_FAIL("L2 should not get here");
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	l1_prepare_l2(vmx_pages, l2_guest_code);

	xapic_enable();
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, EOI_CHECKS);

	/* A: set while L2 runs; L1 resumes with BLOCKIRQ still set. */
	xapic_send_self_ipi(IPI_VECTOR);
	l1_run_l2(true);
	irq_window_expect(0);
	GUEST_ASSERT(xapic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
	irq_window_expect(1);
	xapic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, EOI_CHECKS);
	GUEST_SYNC(SYNC_L1_PHASE_DONE);

	/* B: set and cleared during one L2 run. */
	xapic_send_self_ipi(IPI_VECTOR);
	l1_run_l2(false);
	irq_window_expect(1);
	xapic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, EOI_CHECKS);
	GUEST_SYNC(SYNC_L1_PHASE_DONE);

	/* C: set while L1 runs, cleared while L2 runs. */
	GUEST_SYNC(SYNC_L1_SET_BLOCKIRQ);
	xapic_send_self_ipi(IPI_VECTOR);
	irq_window_expect(0);
	l1_run_l2(false);
	irq_window_expect(1);
	xapic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, EOI_CHECKS);
	GUEST_SYNC(SYNC_L1_PHASE_DONE);

	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	static const char * const phase_names[] = {
		"A: BLOCKIRQ set while L2 runs, cleared while L1 runs",
		"B: BLOCKIRQ set and cleared while L2 runs",
		"C: BLOCKIRQ set while L1 runs, cleared while L2 runs",
	};
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int phase = 0;

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(phase_names));

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	while (vcpu_run_to_sync(vcpu, &uc)) {
		switch (uc.args[1]) {
		case SYNC_L2_SET_BLOCKIRQ:
		case SYNC_L2_CLEAR_BLOCKIRQ:
			TEST_ASSERT(vcpu_in_l2(vcpu), "Stage %lu: L2 is not active",
				    uc.args[1]);
			vcpu_set_blockirq(vcpu, uc.args[1] == SYNC_L2_SET_BLOCKIRQ);
			break;
		case SYNC_L1_SET_BLOCKIRQ:
		case SYNC_L1_CLEAR_BLOCKIRQ:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "Stage %lu: L2 is active",
				    uc.args[1]);
			vcpu_set_blockirq(vcpu, uc.args[1] == SYNC_L1_SET_BLOCKIRQ);
			break;
		case SYNC_L1_PHASE_DONE:
			TEST_ASSERT(phase < ARRAY_SIZE(phase_names), "Too many phases");
			ksft_test_result_pass("%s\n", phase_names[phase++]);
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

	TEST_ASSERT_EQ(phase, ARRAY_SIZE(phase_names));
	kvm_vm_free(vm);
	ksft_finished();
}
