// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_entry_fail_test
 *
 * A nested VM-Entry that fails after KVM entered guest mode must leave
 * vmcs01's SVI (guest interrupt status) matching L1's ISR.
 *
 * KVM loads vmcs12's VM-entry MSR-load list with L2 already active (after
 * enter_guest_mode(), vmcs02 loaded).  A write to Hyper-V's synthetic EOI
 * MSR in that list EOIs L1's local APIC there and then, so KVM updates SVI
 * for L1 while L2 is active: Linux 7.0+ writes vmcs01 through the vmcs01
 * guard, while a deferral (the update_vmcs01_hwapic_isr flag before 7.0)
 * records the write for vmcs01.  If a later entry of the list fails, the
 * VM-Entry fails ("VM-entry failure due to MSR loading") and L1 resumes at
 * its host RIP without a nested VM-Exit, so a record that only
 * __nested_vmx_vmexit() applies is left behind: vmcs01 keeps SVI at the
 * EOIed vector until L1's next VM-Exit from an L2 that did run.
 *
 * What L1 then sees is exact.  It takes a self-IPI through virtual-interrupt
 * delivery and keeps it in service, so SVI holds the vector; the failed
 * VM-Entry's EOI clears the ISR.  With SVI written, L1 reads a PPR of 0,
 * takes a fresh self-IPI of the same vector once, EOIs it and sends itself
 * more, each once.  With SVI stale, PPR virtualization at the VM-Entry to
 * L1 computes the PPR from it: L1 reads the EOIed vector's class as its
 * PPR, and (where the PPR read does not show it) the fresh IPI stays
 * pending in RVI, so an IRQ window of one instruction takes nothing.
 * Last, L1 clears the MSR-load list and L2 runs to a VMCALL.
 *
 * The list's second entry is IA32_FS_BASE, which the SDM does not allow in
 * a VM-entry MSR-load list: it fails whatever kvm.ignore_msrs says.
 *
 * Request-only build: passes, not judged (SVI is not the refresh it
 * defers).
 */
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "hyperv.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define IPI_VECTOR		0xe0
#define NR_IPI_ROUNDS		3

#define NR_MSR_LOAD		2

/* vmcs12's VM-entry MSR-load list (L1's GPA), set by userspace. */
static u64 msr_load_gpa;

static void l2_guest_code(void)
{
	vmcall();
	GUEST_FAIL("L2 resumed after its VMCALL");
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	u32 ppr;

	l1_prepare_l2(vmx_pages, l2_guest_code);
	xapic_enable();

	/* Loads HV_X64_MSR_EOI, then fails on MSR_FS_BASE (entry 2). */
	GUEST_ASSERT(!vmwrite(VM_ENTRY_MSR_LOAD_ADDR, msr_load_gpa));
	GUEST_ASSERT(!vmwrite(VM_ENTRY_MSR_LOAD_COUNT, NR_MSR_LOAD));

	/* An IPI in service: delivered by the CPU, so SVI holds it. */
	xapic_send_self_ipi(IPI_VECTOR);
	irq_window_expect(1);
	GUEST_ASSERT(xapic_vector_is_set(APIC_ISR, IPI_VECTOR));
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_PROCPRI), IPI_VECTOR & 0xf0);

	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON),
			EXIT_REASON_FAILED_VMENTRY | EXIT_REASON_MSR_LOAD_FAIL);
	GUEST_ASSERT_EQ(vmreadz(EXIT_QUALIFICATION), NR_MSR_LOAD);

	/* The list's EOI ended the IPI's service: nothing in service left. */
	GUEST_ASSERT(!xapic_vector_is_set(APIC_ISR, IPI_VECTOR));
	ppr = xapic_read_reg(APIC_PROCPRI);
	__GUEST_ASSERT(!ppr, "PPR 0x%x after the failed VM-Entry's EOI (SVI stale?)", ppr);
	xapic_send_self_ipi(IPI_VECTOR);
	__GUEST_ASSERT(irq_window() == 1,
		       "Self-IPI not delivered after the failed VM-Entry's EOI (SVI stale?)");
	xapic_eoi_and_check(IPI_VECTOR, EOI_CHECK_IRR | EOI_CHECK_PPR);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS,
			      EOI_CHECK_IRR | EOI_CHECK_PPR);

	GUEST_SYNC(0);

	/* Without the list, L2 runs. */
	GUEST_ASSERT(!vmwrite(VM_ENTRY_MSR_LOAD_COUNT, 0));
	GUEST_ASSERT(!vmlaunch());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	GUEST_DONE();
}

int main(int argc, char *argv[])
{
	struct vmx_msr_entry *list;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	gva_t list_gva;

	require_vmx_apicv("no SVI to keep");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_HYPERV_CPUID));

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);
	/* Hyper-V's CPUID leaves enable its synthetic MSRs (HV_X64_MSR_EOI). */
	vcpu_set_hv_cpuid(vcpu);

	list_gva = vm_alloc_page(vm);
	list = addr_gva2hva(vm, list_gva);
	list[0] = (struct vmx_msr_entry){ .index = HV_X64_MSR_EOI };
	list[1] = (struct vmx_msr_entry){ .index = MSR_FS_BASE };
	msr_load_gpa = addr_gva2gpa(vm, list_gva);
	sync_global_to_guest(vm, msr_load_gpa);

	ksft_print_header();
	ksft_set_plan(2);
	TEST_ASSERT(vcpu_run_to_sync(vcpu, &uc), "L1 finished early");
	ksft_test_result_pass("failed VM-Entry: its EOI reached SVI, self-IPIs delivered once\n");
	TEST_ASSERT(!vcpu_run_to_sync(vcpu, &uc), "Unexpected GUEST_SYNC");
	ksft_test_result_pass("L2 runs without the MSR-load list\n");
	kvm_vm_free(vm);
	ksft_finished();
}
