// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_uninhibit_test
 *
 * The bug that started it all.  L1 changes its xAPIC ID, which inhibits
 * APICv for the VM (APIC_ID_MODIFIED), and launches L2.  While L2 runs, the
 * ID is restored, so KVM re-activates APICv for the vCPU.  vmcs01 is not the
 * current VMCS at that point: KVM must either write vmcs01 through the
 * vmcs01 guard (Linux 7.0+) or remember the update and apply it on the next
 * nested VM-Exit (7c69661e225c; kvm_apicv_defer.ko).  The 2022 form of the
 * deferral only raised KVM_REQ_APICV_UPDATE on VM-Exit, which is a no-op
 * because apic->apicv_active already has the new value (fixed upstream by
 * 29763138830916f): vmcs01 kept posted interrupts, APIC-register
 * virtualization and virtual-interrupt delivery (VID) disabled while KVM
 * believed APICv was active.
 *
 * What L1 then sees is exact: with APICv active KVM stops injecting L1's
 * interrupts itself (kvm_cpu_has_injectable_intr() is false for L1) and only
 * sets RVI, counting on VID to deliver them; with VID off in vmcs01 nothing
 * delivers them.  A self-IPI sent by L1 after the VM-Exit is never received.
 *
 * The opposite direction is checked too: L1 enters L2 with APICv active and
 * a self-IPI pending (sent with IRQs disabled, so vmcs01's RVI holds it), and
 * the ID is modified again while L2 runs, so APICv is deactivated while L2 is
 * active.  KVM now injects the IPI itself when L1 opens an IRQ window.  A
 * vmcs01 left with virtual-interrupt delivery on also delivers it from the
 * stale RVI as soon as the injected one's handler returns: L1 takes the IPI
 * twice.  (L1's xAPIC MMIO accesses cannot show a stale vmcs01 here: while
 * APICv is inhibited for the VM, KVM unmaps the APIC-access page and emulates
 * every access.)
 *
 * Each direction runs NR_CYCLES times; L2 keeps running across many
 * VM-Entries (exits to L0 and to userspace) with the update pending before
 * it exits to L1.  Userspace checks the vCPU is in guest mode whenever it
 * changes the APIC ID.  L1 also enters L2 with one IRQ in service when L2 is
 * to uninhibit APICv, and EOIs it afterwards, which checks that SVI follows
 * the ISR when APICv is activated while L2 is active (b2849bec936b).
 *
 * Must pass on upstream 7.2 (guard) and with kvm_apicv_defer.ko loaded; must
 * fail with the module's request-only test build.
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
#define MODIFIED_APIC_ID	0x2a

#define NR_CYCLES		3
#define NR_IPI_ROUNDS		3
#define NR_L2_MSR_EXITS		200
#define NR_L2_USER_EXITS	4

enum {
	SYNC_L2_RESTORE_ID = 1,	/* L2 asks userspace to restore the APIC ID */
	SYNC_L2_MODIFY_ID,	/* L2 asks userspace to modify the APIC ID */
	SYNC_L2_RUNNING,	/* L2 exits to userspace, nothing to do */
	SYNC_L1_CHECKED,	/* L1 finished the checks of one L2 run */
};

/*
 * With IRQs disabled and one self-IPI pending, open an IRQ window for one
 * instruction: the IPI must be taken exactly once, right there, and stay in
 * service (no EOI here).
 */
static void l1_take_pending_ipi(void)
{
	int got;

	GUEST_ASSERT(xapic_vector_is_set(APIC_IRR, IPI_VECTOR));
	got = irq_window();
	__GUEST_ASSERT(got == 1, "Self-IPI delivered %d times to L1, wanted once",
		       got);
	GUEST_ASSERT(!xapic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_ASSERT(xapic_vector_is_set(APIC_ISR, IPI_VECTOR));
}

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		xapic_send_self_ipi(IPI_VECTOR);
		l1_take_pending_ipi();
		xapic_eoi_and_check(IPI_VECTOR, EOI_CHECK_PPR);
	}
}

static void l2_run_a_while(void)
{
	int i;

	/*
	 * MSR reads that L1's (empty) MSR bitmap passes through, i.e. exits
	 * handled by L0 without a nested VM-Exit, and a few trips to userspace:
	 * each resumes L2 with a new VM-Entry while the update is pending.
	 */
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	for (i = 0; i < NR_L2_USER_EXITS; i++)
		GUEST_SYNC(SYNC_L2_RUNNING);
}

static void l2_guest_code(void)
{
	int i;

	for (i = 0; i < NR_CYCLES; i++) {
		GUEST_SYNC(SYNC_L2_RESTORE_ID);
		l2_run_a_while();
		vmcall();

		GUEST_SYNC(SYNC_L2_MODIFY_ID);
		l2_run_a_while();
		vmcall();
	}
	GUEST_FAIL("L2 should not get here");
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	int i;

	l1_prepare_l2(vmx_pages, l2_guest_code);

	xapic_enable();

	/* Baseline: APICv active, nothing nested yet. */
	l1_check_ipis();

	/* Inhibit APICv: KVM refreshes vmcs01 right away, L1 is active. */
	xapic_write_reg(APIC_ID, MODIFIED_APIC_ID << 24);
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), MODIFIED_APIC_ID << 24);
	l1_check_ipis();

	for (i = 0; i < NR_CYCLES; i++) {
		/* Enter L2 inhibited, with an IRQ in service; L2 uninhibits. */
		xapic_send_self_ipi(IPI_VECTOR);
		l1_take_pending_ipi();
		l1_run_l2(i == 0);
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
		xapic_eoi_and_check(IPI_VECTOR, EOI_CHECK_PPR);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);

		/* Enter L2 with APICv active and an IPI pending; L2 inhibits. */
		xapic_send_self_ipi(IPI_VECTOR);
		l1_run_l2(false);
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), MODIFIED_APIC_ID << 24);
		l1_take_pending_ipi();
		xapic_eoi_and_check(IPI_VECTOR, EOI_CHECK_PPR);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);
	}
	GUEST_DONE();
}

static void assert_l2_active(struct kvm_vcpu *vcpu)
{
	TEST_ASSERT(vcpu_in_l2(vcpu),
		    "vCPU is not in guest mode (L2) at an L2 GUEST_SYNC");
}

int main(int argc, char *argv[])
{
	int l2_user_exits = 0, checked = 0;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));

	ksft_print_header();
	ksft_set_plan(2 * NR_CYCLES);

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	while (vcpu_run_to_sync(vcpu, &uc)) {
		switch (uc.args[1]) {
		case SYNC_L2_RESTORE_ID:
			assert_l2_active(vcpu);
			vcpu_change_xapic_id(vcpu, MODIFIED_APIC_ID, 0);
			break;
		case SYNC_L2_MODIFY_ID:
			assert_l2_active(vcpu);
			vcpu_change_xapic_id(vcpu, 0, MODIFIED_APIC_ID);
			break;
		case SYNC_L2_RUNNING:
			l2_user_exits++;
			break;
		case SYNC_L1_CHECKED:
			ksft_test_result_pass("%s while L2 was active, cycle %d\n",
					      checked % 2 ? "inhibit" : "uninhibit",
					      checked / 2 + 1);
			checked++;
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

	TEST_ASSERT_EQ(checked, 2 * NR_CYCLES);
	TEST_ASSERT_EQ(l2_user_exits, 2 * NR_CYCLES * NR_L2_USER_EXITS);
	kvm_vm_free(vm);
	ksft_finished();
}
