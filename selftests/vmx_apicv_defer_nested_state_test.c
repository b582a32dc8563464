// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_nested_state_test
 *
 * A vCPU is born with APICv active and KVM_REQ_APICV_UPDATE pending
 * (423ecfea77dd: it is not yet visible to kvm_make_all_cpus_request()).  When
 * userspace restores a VM whose vCPU was running L2, the first KVM_RUN
 * services that request with L2 already active, i.e. the APICv update of
 * vmcs01 happens, or is deferred, in guest mode before the vCPU has ever run.
 *
 * Here L1 runs L2 with APICv active and one IRQ in service; L2 exits to
 * userspace, which saves the vCPU (including KVM_GET_NESTED_STATE and
 * KVM_GET_LAPIC) and restores it into a new VM.  Before loading the state
 * it sets an inhibit: the restored xAPIC ID differs from the vCPU ID.  The
 * first KVM_RUN must then deactivate APICv with L2 active.  L2 keeps running
 * (more VM-Entries, trips to userspace) and exits to L1, where L1 must see
 * KVM's emulated APIC behave exactly: its in-service IRQ is EOIed, and new
 * self-IPIs arrive once and leave nothing in service.
 *
 * If the deferred deactivation is never applied (the request-only form of
 * the deferral), vmcs01 keeps virtual-interrupt delivery on while KVM
 * injects L1's IRQs itself: KVM sets the ISR bit without updating SVI, L1's
 * EOI is virtualized by the CPU and clears the ISR bit named by SVI instead,
 * and the IPI vector stays in service after EOI.
 *
 * The migration is repeated with the opposite direction too (L1 enters L2
 * inhibited, the restored APIC ID is the vCPU ID again), and each cycle runs
 * both.  The source VM is dropped before the destination runs.
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
#define NR_IPI_ROUNDS		3
#define NR_L2_MSR_EXITS		200
#define NR_L2_USER_EXITS	4

enum {
	SYNC_L2_MIGRATE_INHIBITED = 1,	/* restore with a modified APIC ID */
	SYNC_L2_MIGRATE_UNINHIBITED,	/* restore with the vCPU's APIC ID */
	SYNC_L2_RUNNING,
	SYNC_L1_CHECKED,
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

/* Take one self-IPI in a one-instruction IRQ window; leave it in service. */
static void l1_take_self_ipi(void)
{
	int before = ipis_received;

	xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
	sti_nop_cli();
	__GUEST_ASSERT(ipis_received == before + 1,
		       "Self-IPI not delivered to L1: received %d, wanted %d",
		       ipis_received, before + 1);
	GUEST_ASSERT(!apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
}

static void l1_eoi_and_check(void)
{
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
		l1_take_self_ipi();
		l1_eoi_and_check();
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
		GUEST_SYNC(SYNC_L2_MIGRATE_INHIBITED);
		l2_run_a_while();
		vmcall();

		GUEST_SYNC(SYNC_L2_MIGRATE_UNINHIBITED);
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
		/* APICv active; restored into a VM where it is inhibited. */
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
		l1_take_self_ipi();
		l1_run_l2(i == 0);
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), MODIFIED_APIC_ID << 24);
		l1_eoi_and_check();
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);

		/* APICv inhibited; restored into a VM where it is not. */
		l1_take_self_ipi();
		l1_run_l2(false);
		GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
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

/*
 * Save the vCPU (running L2), drop the VM, create a new one, set the xAPIC ID
 * to @new_id (an inhibit unless it is the vCPU ID) and only then load the
 * rest of the state, nested state last.
 */
static struct kvm_vcpu *migrate(struct kvm_vm *vm, struct kvm_vcpu *vcpu,
				u8 old_id, u8 new_id)
{
	struct kvm_x86_state *state;
	struct kvm_lapic_state lapic;
	u32 *id = (u32 *)&lapic.regs[APIC_ID];

	TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active at save time");
	state = vcpu_save_state(vcpu);
	TEST_ASSERT(state->nested.flags & KVM_STATE_NESTED_GUEST_MODE,
		    "Saved nested state is not in guest mode");
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
	TEST_ASSERT(*id == (u32)old_id << 24, "xAPIC ID is 0x%x, wanted 0x%x",
		    *id, (u32)old_id << 24);

	kvm_vm_release(vm);

	vcpu = vm_recreate_with_one_vcpu(vm);
	*id = (u32)new_id << 24;
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
	vcpu_load_state(vcpu, state);
	kvm_x86_state_cleanup(state);

	TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active after restore");
	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
	TEST_ASSERT(*id == (u32)new_id << 24, "Restored xAPIC ID is 0x%x, wanted 0x%x",
		    *id, (u32)new_id << 24);
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
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
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
		case SYNC_L2_MIGRATE_INHIBITED:
			vcpu = migrate(vm, vcpu, 0, MODIFIED_APIC_ID);
			break;
		case SYNC_L2_MIGRATE_UNINHIBITED:
			vcpu = migrate(vm, vcpu, MODIFIED_APIC_ID, 0);
			break;
		case SYNC_L2_RUNNING:
			l2_user_exits++;
			break;
		case SYNC_L1_CHECKED:
			ksft_test_result_pass("restore with APICv %s while L2 is active, cycle %d\n",
					      checked % 2 ? "uninhibited" : "inhibited",
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
