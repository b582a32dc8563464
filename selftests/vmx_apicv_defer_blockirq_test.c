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
 */
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"

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

static volatile int ipis_received;

static void ipi_handler(struct ex_regs *regs)
{
	ipis_received++;
}

static bool apic_vector_is_set(unsigned int reg, u8 vector)
{
	return xapic_read_reg(reg + APIC_VECTOR_TO_REG_OFFSET(vector)) &
	       BIT(APIC_VECTOR_TO_BIT_NUMBER(vector));
}

static void l1_send_self_ipi(void)
{
	xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
}

/* Open an IRQ window of one instruction; expect exactly @nr IRQs. */
static void l1_expect_irqs(int nr)
{
	int before = ipis_received;

	sti_nop_cli();
	__GUEST_ASSERT(ipis_received == before + nr,
		       "Wanted %d IRQ(s) in the window, got %d", nr,
		       ipis_received - before);
}

static void l1_eoi_and_check(void)
{
	GUEST_ASSERT(!apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
	xapic_write_reg(APIC_EOI, 0);
	__GUEST_ASSERT(!apic_vector_is_set(APIC_ISR, IPI_VECTOR),
		       "Vector 0x%x still in service after EOI", IPI_VECTOR);
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_PROCPRI), 0);
}

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		l1_send_self_ipi();
		l1_expect_irqs(1);
		l1_eoi_and_check();
	}
}

static void l2_run_a_while(void)
{
	int i;

	/* Exits to L0 only (L1's MSR bitmap is empty): VM-Entries to L2. */
	for (i = 0; i < NR_L2_MSR_EXITS; i++)
		GUEST_ASSERT(rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_ENABLE);
}

static void l2_guest_code(void)
{
	/* Phase A */
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_run_a_while();
	vmcall();

	/* Phase B */
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_run_a_while();
	vmcall();

	/* Phase C */
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_run_a_while();
	vmcall();

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

	GUEST_ASSERT(prepare_for_vmx_operation(vmx_pages));
	GUEST_ASSERT(load_vmcs(vmx_pages));
	prepare_vmcs(vmx_pages, l2_guest_code, &l2_guest_stack[L2_GUEST_STACK_SIZE]);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL,
		vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_USE_MSR_BITMAPS);

	xapic_enable();
	l1_check_ipis();

	/* A: set while L2 runs; L1 resumes with BLOCKIRQ still set. */
	l1_send_self_ipi();
	l1_run_l2(true);
	l1_expect_irqs(0);
	GUEST_ASSERT(apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
	l1_expect_irqs(1);
	l1_eoi_and_check();
	l1_check_ipis();
	GUEST_SYNC(SYNC_L1_PHASE_DONE);

	/* B: set and cleared during one L2 run. */
	l1_send_self_ipi();
	l1_run_l2(false);
	l1_expect_irqs(1);
	l1_eoi_and_check();
	l1_check_ipis();
	GUEST_SYNC(SYNC_L1_PHASE_DONE);

	/* C: set while L1 runs, cleared while L2 runs. */
	GUEST_SYNC(SYNC_L1_SET_BLOCKIRQ);
	l1_send_self_ipi();
	l1_expect_irqs(0);
	l1_run_l2(false);
	l1_expect_irqs(1);
	l1_eoi_and_check();
	l1_check_ipis();
	GUEST_SYNC(SYNC_L1_PHASE_DONE);

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

int main(int argc, char *argv[])
{
	static const char * const phase_names[] = {
		"A: BLOCKIRQ set while L2 runs, cleared while L1 runs",
		"B: BLOCKIRQ set and cleared while L2 runs",
		"C: BLOCKIRQ set while L1 runs, cleared while L2 runs",
	};
	gva_t vmx_pages_gva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int phase = 0;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	__TEST_REQUIRE(get_kvm_intel_param_bool("enable_apicv"),
		       "APICv disabled (kvm_intel.enable_apicv=N): nothing to defer");

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(phase_names));

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
		case SYNC_L2_SET_BLOCKIRQ:
		case SYNC_L2_CLEAR_BLOCKIRQ:
			TEST_ASSERT(vcpu_in_l2(vcpu), "Stage %lu: L2 is not active",
				    uc.args[1]);
			set_blockirq(vcpu, uc.args[1] == SYNC_L2_SET_BLOCKIRQ);
			break;
		case SYNC_L1_SET_BLOCKIRQ:
		case SYNC_L1_CLEAR_BLOCKIRQ:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "Stage %lu: L2 is active",
				    uc.args[1]);
			set_blockirq(vcpu, uc.args[1] == SYNC_L1_SET_BLOCKIRQ);
			break;
		case SYNC_L1_PHASE_DONE:
			TEST_ASSERT(phase < ARRAY_SIZE(phase_names), "Too many phases");
			ksft_test_result_pass("%s\n", phase_names[phase++]);
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

done:
	TEST_ASSERT_EQ(phase, ARRAY_SIZE(phase_names));
	kvm_vm_free(vm);
	ksft_finished();
}
