// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_x2apic_test
 *
 * L1 lets L2 write its APIC_BASE MSR and APIC registers (the MSR bitmap is
 * empty and L1's APIC page is mapped for L2, as in vmx_apicv_updates_test),
 * so L2 switches L1's local APIC between xAPIC and x2APIC mode, repeatedly.
 * Every switch changes L1's APICv state while L2 is active:
 *
 *  - xAPIC (ID modified, APICv inhibited) -> x2APIC: KVM forces the x2APIC ID
 *    back to the vCPU ID, which clears the inhibit and activates APICv;
 *  - x2APIC -> disabled -> xAPIC with a modified ID: APICv is deactivated
 *    (APIC disabled), re-activated (xAPIC, default ID), then inhibited.
 *
 * So the switch of the APIC mode itself (vmx_set_virtual_apic_mode(), which
 * always writes vmcs01 through the vmcs01 guard, and rebuilds the x2APIC MSR
 * intercepts from the current APICv state) lands while an APICv refresh of
 * vmcs01 is deferred, and several refreshes pile up before one VM-Exit.
 *
 * After each L2 run L1 checks the mode and ID L2 left it in and exercises
 * that mode's APIC exactly: self-IPIs (x2APIC ICR and SELF_IPI MSRs, or the
 * xAPIC ICR), one delivery each, in service until EOI and not after, PPR 0.
 * A vmcs01 left with APICv off while KVM has it on (the activation on the
 * switch to x2APIC never applied) loses the IPIs: KVM no longer injects them
 * and virtual-interrupt delivery is off.  The xAPIC phase checks KVM's own
 * handling of the switches: with APICv inhibited for the VM, KVM unmaps the
 * APIC-access page and emulates L1's xAPIC accesses whatever vmcs01 says.
 *
 * Must pass on upstream 7.2 and with kvm_apicv_defer.ko; fails with the
 * module's request-only test build.
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

#define NR_CYCLES		4
#define NR_IPI_ROUNDS		2
#define NR_L2_MSR_EXITS		100

enum {
	SYNC_L1_X2APIC_CHECKED = 1,
	SYNC_L1_XAPIC_CHECKED,
};

static void l1_check_ipi(enum self_ipi_kind kind)
{
	int before = irqs_received;

	apic_send_self_ipi(kind, IPI_VECTOR);
	sti_nop_cli();
	__GUEST_ASSERT(irqs_received == before + 1,
		       "Self-IPI (%s mode, %s) not delivered: received %d, wanted %d",
		       x2apic_mode() ? "x2APIC" : "xAPIC",
		       kind == SELF_IPI_ICR ? "ICR" : "SELF_IPI",
		       irqs_received, before + 1);
	GUEST_ASSERT(!apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
	apic_eoi();
	__GUEST_ASSERT(!apic_vector_is_set(APIC_ISR, IPI_VECTOR),
		       "Vector 0x%x still in service after EOI (%s mode)",
		       IPI_VECTOR, x2apic_mode() ? "x2APIC" : "xAPIC");
	GUEST_ASSERT_EQ(apic_read(APIC_PROCPRI), 0);
}

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		l1_check_ipi(SELF_IPI_ICR);
		if (x2apic_mode())
			l1_check_ipi(SELF_IPI_MSR);
	}
}

/* Runs on L1's local APIC: all of L2's APIC accesses reach L1's APIC. */
static void l2_guest_code(void)
{
	for (;;) {
		x2apic_enable();
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		vmcall();

		xapic_enable();
		xapic_write_reg(APIC_ID, MODIFIED_APIC_ID << 24);
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		vmcall();
	}
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	int i;

	l1_prepare_l2(vmx_pages, l2_guest_code);

	/* Start in xAPIC mode with APICv inhibited by a modified ID. */
	xapic_enable();
	l1_check_ipis();
	xapic_write_reg(APIC_ID, MODIFIED_APIC_ID << 24);
	l1_check_ipis();

	for (i = 0; i < NR_CYCLES; i++) {
		l1_run_l2(i == 0);
		GUEST_ASSERT(x2apic_mode());
		GUEST_ASSERT_EQ(x2apic_read_reg(APIC_ID), 0);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_X2APIC_CHECKED);

		l1_run_l2(false);
		GUEST_ASSERT(!x2apic_mode());
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), MODIFIED_APIC_ID << 24);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_XAPIC_CHECKED);
	}
	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int checked = 0;

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));

	ksft_print_header();
	ksft_set_plan(2 * NR_CYCLES);

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	while (vcpu_run_to_sync(vcpu, &uc)) {
		switch (uc.args[1]) {
		case SYNC_L1_X2APIC_CHECKED:
		case SYNC_L1_XAPIC_CHECKED:
			TEST_ASSERT_EQ(uc.args[1], SYNC_L1_X2APIC_CHECKED + checked % 2);
			ksft_test_result_pass("L2 switched L1 to %s, cycle %d\n",
					      uc.args[1] == SYNC_L1_X2APIC_CHECKED ?
					      "x2APIC (uninhibited)" :
					      "xAPIC (ID modified, inhibited)",
					      checked / 2 + 1);
			checked++;
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

	TEST_ASSERT_EQ(checked, 2 * NR_CYCLES);
	kvm_vm_free(vm);
	ksft_finished();
}
