// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_nested_state_test
 *
 * A vCPU is born with APICv active and KVM_REQ_APICV_UPDATE pending
 * (423ecfea77dd: it is not yet visible to kvm_make_all_cpus_request()).  When
 * userspace restores a VM whose vCPU was running L2, the first KVM_RUN
 * services that request with L2 already active: the APICv update of vmcs01
 * happens, or is deferred, in guest mode before the vCPU has ever run.
 *
 * L1 runs L2 with APICv active; L2 exits to userspace, which saves the vCPU
 * (KVM_GET_NESTED_STATE included, plus KVM_GET_LAPIC), drops the VM, creates
 * a new one and sets an APICv inhibit on it BEFORE loading the state, so the
 * first KVM_RUN deactivates APICv with L2 active.  L2 keeps running (more
 * VM-Entries, trips to userspace) and exits to L1, which checks what it gets:
 *
 *  - x2APIC, restored with KVM_GUESTDBG_BLOCKIRQ set: L1 sends itself IPIs
 *    through the SELF_IPI and ICR MSRs and opens an IRQ window: nothing may
 *    arrive.  A vmcs01 still set up for APICv (the deferred deactivation
 *    never applied, as with the request-only form of the deferral) passes
 *    SELF_IPI writes through its MSR bitmap to the CPU, which virtualizes the
 *    self-IPI and delivers it despite BLOCKIRQ.  Userspace then clears
 *    BLOCKIRQ (L1 active) and the IPI arrives, once.
 *  - xAPIC with an IRQ in service, restored with a modified APIC ID: L1's EOI,
 *    new self-IPIs (once each) and their EOIs must all behave.  (This one
 *    checks KVM, not the deferral: while the VM is inhibited L1's xAPIC
 *    accesses are all emulated, and a fresh vmcs01 has no stale RVI.)
 *
 * Both restores run NR_CYCLES times.  The source VM is gone before the
 * destination runs.
 *
 * Must pass on upstream 7.2 and with kvm_apicv_defer.ko; must fail with the
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

#define NR_CYCLES		2
#define NR_IPI_ROUNDS		2
#define NR_L2_MSR_EXITS		200
#define NR_L2_USER_EXITS	4

enum {
	SYNC_L2_MIGRATE_BLOCKIRQ = 1,	/* restore with BLOCKIRQ set */
	SYNC_L2_MIGRATE_ID,		/* restore with a modified xAPIC ID */
	SYNC_L2_RUNNING,
	SYNC_L1_CLEAR_BLOCKIRQ,
	SYNC_L1_CHECKED,
};

/* Open an IRQ window of one instruction; expect exactly @nr IRQs. */
static void l1_expect_irqs(int nr)
{
	int got = irq_window();

	__GUEST_ASSERT(got == nr,
		       "Wanted %d IRQ(s) in the window (%s mode), got %d", nr,
		       x2apic_mode() ? "x2APIC" : "xAPIC", got);
}

#define EOI_CHECKS		(EOI_CHECK_IRR | EOI_CHECK_PPR)

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		apic_send_self_ipi(SELF_IPI_ICR, IPI_VECTOR);
		l1_expect_irqs(1);
		apic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
		if (x2apic_mode()) {
			apic_send_self_ipi(SELF_IPI_MSR, IPI_VECTOR);
			l1_expect_irqs(1);
			apic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
		}
	}
}

static void l2_run_a_while(void)
{
	int i;

	l2_exits_to_l0(NR_L2_MSR_EXITS);
	for (i = 0; i < NR_L2_USER_EXITS; i++)
		GUEST_SYNC(SYNC_L2_RUNNING);
}

static void l2_guest_code(void)
{
	int i;

	for (i = 0; i < NR_CYCLES; i++) {
		GUEST_SYNC(SYNC_L2_MIGRATE_BLOCKIRQ);
		l2_run_a_while();
		vmcall();

		GUEST_SYNC(SYNC_L2_MIGRATE_ID);
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
	l1_check_ipis();

	for (i = 0; i < NR_CYCLES; i++) {
		/* x2APIC (also clears a modified xAPIC ID), APICv active. */
		x2apic_enable();
		GUEST_ASSERT_EQ(x2apic_read_reg(APIC_ID), 0);
		l1_check_ipis();
		l1_run_l2(i == 0);

		/* Restored into a VM with BLOCKIRQ set. */
		GUEST_ASSERT(x2apic_mode());
		apic_send_self_ipi(SELF_IPI_MSR, IPI_VECTOR);
		l1_expect_irqs(0);
		apic_send_self_ipi(SELF_IPI_ICR, IPI_VECTOR);
		l1_expect_irqs(0);
		GUEST_ASSERT(apic_vector_is_set(APIC_IRR, IPI_VECTOR));
		GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
		l1_expect_irqs(1);
		apic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);

		/* xAPIC, APICv active, one IRQ in service. */
		xapic_enable();
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
		l1_check_ipis();
		apic_send_self_ipi(SELF_IPI_ICR, IPI_VECTOR);
		l1_expect_irqs(1);
		l1_run_l2(false);

		/* Restored into a VM where the APIC ID is modified. */
		GUEST_ASSERT(!x2apic_mode());
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), MODIFIED_APIC_ID << 24);
		apic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);
	}
	GUEST_DONE();
}

/*
 * Save the vCPU (running L2), drop the VM, create a new one, set an APICv
 * inhibit on it and only then load the saved state, nested state last:
 * BLOCKIRQ (x2APIC; LAPIC state loaded after the APIC mode), or the saved
 * LAPIC with its xAPIC ID changed to @new_id (xAPIC).
 */
static struct kvm_vcpu *migrate(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
				bool blockirq, u8 new_id)
{
	struct kvm_x86_state *state;
	struct kvm_lapic_state lapic;
	u32 *id = (u32 *)&lapic.regs[APIC_ID];

	TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active at save time");
	state = vcpu_save_state(vcpu);
	TEST_ASSERT(state->nested.flags & KVM_STATE_NESTED_GUEST_MODE,
		    "Saved nested state is not in guest mode");
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);

	kvm_vm_release(vm);
	vcpu = vm_recreate_with_one_vcpu(vm);

	if (blockirq) {
		vcpu_set_blockirq(vcpu, true);
		vcpu_load_state(vcpu, state);
		vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
	} else {
		*id = (u32)new_id << 24;
		vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
		vcpu_load_state(vcpu, state);
		vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
		TEST_ASSERT(*id == (u32)new_id << 24,
			    "Restored xAPIC ID is 0x%x, wanted 0x%x", *id,
			    (u32)new_id << 24);
	}
	kvm_x86_state_cleanup(state);

	TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active after restore");
	return vcpu;
}

int main(int argc, char *argv[])
{
	int l2_user_exits = 0, checked = 0;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));

	ksft_print_header();
	ksft_set_plan(2 * NR_CYCLES);

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	while (vcpu_run_to_sync(vcpu, &uc)) {
		switch (uc.args[1]) {
		case SYNC_L2_MIGRATE_BLOCKIRQ:
			vcpu = migrate(vm, vcpu, true, 0);
			break;
		case SYNC_L2_MIGRATE_ID:
			vcpu = migrate(vm, vcpu, false, MODIFIED_APIC_ID);
			break;
		case SYNC_L2_RUNNING:
			l2_user_exits++;
			break;
		case SYNC_L1_CLEAR_BLOCKIRQ:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			vcpu_set_blockirq(vcpu, false);
			break;
		case SYNC_L1_CHECKED:
			ksft_test_result_pass("%s, cycle %d\n",
					      checked % 2 ?
					      "xAPIC, restored with a modified APIC ID" :
					      "x2APIC, restored with BLOCKIRQ set",
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
