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
 */
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"

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

static volatile int ipis_received;

static void ipi_handler(struct ex_regs *regs)
{
	ipis_received++;
}

static bool x2apic_mode(void)
{
	return rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_EXTD;
}

static u32 apic_read(unsigned int reg)
{
	return x2apic_mode() ? x2apic_read_reg(reg) : xapic_read_reg(reg);
}

static bool apic_vector_is_set(unsigned int reg, u8 vector)
{
	return apic_read(reg + APIC_VECTOR_TO_REG_OFFSET(vector)) &
	       BIT(APIC_VECTOR_TO_BIT_NUMBER(vector));
}

enum ipi_kind { IPI_ICR, IPI_SELF_IPI_MSR };

static void send_self_ipi(enum ipi_kind kind)
{
	if (!x2apic_mode())
		xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
	else if (kind == IPI_ICR)
		x2apic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
	else
		x2apic_write_reg(APIC_SELF_IPI, IPI_VECTOR);
}

/* Open an IRQ window of one instruction; expect exactly @nr IRQs. */
static void l1_expect_irqs(int nr)
{
	int before = ipis_received;

	sti_nop_cli();
	__GUEST_ASSERT(ipis_received == before + nr,
		       "Wanted %d IRQ(s) in the window (%s mode), got %d", nr,
		       x2apic_mode() ? "x2APIC" : "xAPIC", ipis_received - before);
}

static void l1_eoi_and_check(void)
{
	GUEST_ASSERT(!apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
	if (x2apic_mode())
		x2apic_write_reg(APIC_EOI, 0);
	else
		xapic_write_reg(APIC_EOI, 0);
	__GUEST_ASSERT(!apic_vector_is_set(APIC_ISR, IPI_VECTOR),
		       "Vector 0x%x still in service after EOI", IPI_VECTOR);
	GUEST_ASSERT_EQ(apic_read(APIC_PROCPRI), 0);
}

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		send_self_ipi(IPI_ICR);
		l1_expect_irqs(1);
		l1_eoi_and_check();
		if (x2apic_mode()) {
			send_self_ipi(IPI_SELF_IPI_MSR);
			l1_expect_irqs(1);
			l1_eoi_and_check();
		}
	}
}

static void l2_run_a_while(void)
{
	int i;

	for (i = 0; i < NR_L2_MSR_EXITS; i++)
		GUEST_ASSERT(rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_ENABLE);
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

static void l1_run_l2(bool launch)
{
	GUEST_ASSERT(launch ? !vmlaunch() : !vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
#define L2_GUEST_STACK_SIZE 512
	unsigned long l2_guest_stack[L2_GUEST_STACK_SIZE];
	int i;

	GUEST_ASSERT(prepare_for_vmx_operation(vmx_pages));
	GUEST_ASSERT(load_vmcs(vmx_pages));
	prepare_vmcs(vmx_pages, l2_guest_code, &l2_guest_stack[L2_GUEST_STACK_SIZE]);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL,
		vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_USE_MSR_BITMAPS);

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
		send_self_ipi(IPI_SELF_IPI_MSR);
		l1_expect_irqs(0);
		send_self_ipi(IPI_ICR);
		l1_expect_irqs(0);
		GUEST_ASSERT(apic_vector_is_set(APIC_IRR, IPI_VECTOR));
		GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
		l1_expect_irqs(1);
		l1_eoi_and_check();
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);

		/* xAPIC, APICv active, one IRQ in service. */
		xapic_enable();
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
		l1_check_ipis();
		send_self_ipi(IPI_ICR);
		l1_expect_irqs(1);
		l1_run_l2(false);

		/* Restored into a VM where the APIC ID is modified. */
		GUEST_ASSERT(!x2apic_mode());
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), MODIFIED_APIC_ID << 24);
		l1_eoi_and_check();
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);
	}
	GUEST_DONE();
}

static bool vcpu_in_l2(struct kvm_vcpu *vcpu)
{
	static struct {
		struct kvm_nested_state state;
		u8 data[16384];
	} nested;

	nested.state.size = sizeof(nested);
	vcpu_nested_state_get(vcpu, &nested.state);
	return nested.state.flags & KVM_STATE_NESTED_GUEST_MODE;
}

static void set_blockirq(struct kvm_vcpu *vcpu, bool block)
{
	struct kvm_guest_debug debug = {
		.control = block ? KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ : 0,
	};

	vcpu_guest_debug_set(vcpu, &debug);
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
		set_blockirq(vcpu, true);
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
	gva_t vmx_pages_gva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_X2APIC));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	__TEST_REQUIRE(get_kvm_intel_param_bool("enable_apicv"),
		       "APICv disabled (kvm_intel.enable_apicv=N): nothing to defer");

	ksft_print_header();
	ksft_set_plan(2 * NR_CYCLES);

	vm = vm_create_with_one_vcpu(&vcpu, l1_guest_code);
	vcpu_alloc_vmx(vm, &vmx_pages_gva);
	vcpu_args_set(vcpu, 1, vmx_pages_gva);
	virt_pg_map(vm, APIC_DEFAULT_GPA, APIC_DEFAULT_GPA);
	vm_install_exception_handler(vm, IPI_VECTOR, ipi_handler);

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			/* NOT REACHED */
		case UCALL_SYNC:
			break;
		case UCALL_DONE:
			goto done;
		default:
			TEST_FAIL("Unexpected ucall %lu", uc.cmd);
		}

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
			set_blockirq(vcpu, false);
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

done:
	TEST_ASSERT_EQ(checked, 2 * NR_CYCLES);
	TEST_ASSERT_EQ(l2_user_exits, 2 * NR_CYCLES * NR_L2_USER_EXITS);
	kvm_vm_free(vm);
	ksft_finished();
}
