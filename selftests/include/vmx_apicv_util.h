/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for nested VMX tests of L1's APICv state: L1 runs L2 while
 * userspace (or L2) changes L1's APICv activation, then L1 checks what its
 * local APIC delivers; userspace checks where the vCPU is and, with
 * kvm_apicv_defer.ko loaded, what the module counted.
 */
#ifndef SELFTEST_KVM_VMX_APICV_UTIL_H
#define SELFTEST_KVM_VMX_APICV_UTIL_H

#include <stdbool.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"

/* --- Guest (L1 and L2) ---------------------------------------------------- */

/* IRQs taken by irq_count_handler(), for the vectors it is installed for. */
extern volatile int irqs_received;

void irq_count_handler(struct ex_regs *regs);

/* Open an IRQ window of one instruction (sti; nop; cli); IRQs taken in it. */
int irq_window(void);

/* Open an IRQ window of one instruction; assert exactly @nr IRQs arrive. */
void irq_window_expect(int nr);

/* The local APIC's mode, registers and EOI in either xAPIC or x2APIC mode. */
bool x2apic_mode(void);
u32 apic_read(unsigned int reg);
void apic_eoi(void);

/* Whether @vector is set in the ISR, IRR or TMR (@reg) of the xAPIC. */
bool xapic_vector_is_set(unsigned int reg, u8 vector);
/* The same in either mode. */
bool apic_vector_is_set(unsigned int reg, u8 vector);

void xapic_send_self_ipi(u8 vector);

enum self_ipi_kind {
	SELF_IPI_ICR,
	SELF_IPI_MSR,	/* x2APIC's SELF_IPI MSR; the ICR in xAPIC mode */
};

void apic_send_self_ipi(enum self_ipi_kind kind, u8 vector);

/*
 * EOI the IRQ in service, which must be @vector, and assert that it is no
 * longer in service afterwards; also that it was no longer pending in the
 * IRR before (EOI_CHECK_IRR) and that the PPR is 0 after (EOI_CHECK_PPR).
 * The xAPIC version, or either mode's.
 */
#define EOI_CHECK_IRR	BIT(0)
#define EOI_CHECK_PPR	BIT(1)

void xapic_eoi_and_check(u8 vector, unsigned int checks);
void apic_eoi_and_check(u8 vector, unsigned int checks);

/*
 * @rounds times: send a self-IPI through the xAPIC, assert that it arrives
 * once in a one-instruction IRQ window, EOI it (xapic_eoi_and_check()).
 */
void xapic_check_self_ipis(u8 vector, int rounds, unsigned int eoi_checks);

/*
 * Enter VMX operation, load the VMCS and set up L2 to run @l2_code on
 * @l2_rsp with an empty MSR bitmap, i.e. L2's MSR accesses exit to L0 only.
 */
void l1_prepare_l2(struct vmx_pages *vmx_pages, void *l2_code, void *l2_rsp);

/* Assert L2 exited with VMCALL and move L2 past it. */
void l1_skip_vmcall(void);

/* VMLAUNCH (@launch) or VMRESUME L2 and return after its next VMCALL. */
void l1_run_l2(bool launch);

/* In L2: take @nr exits to L0 that L1 does not intercept (RDMSR). */
void l2_exits_to_l0(int nr);

/* --- Userspace ------------------------------------------------------------ */

/*
 * A VM with one vCPU running @l1_code(vmx_pages) with L1's xAPIC mapped and
 * irq_count_handler() installed for @vector.
 */
struct kvm_vm *vm_create_l1_with_xapic(struct kvm_vcpu **vcpu, void *l1_code,
				       u8 vector);

/*
 * KVM_RUN to the next ucall: true at a GUEST_SYNC, false at GUEST_DONE; a
 * guest assertion is reported, any other exit fails the test.  The second
 * only decodes the exit KVM_RUN just made.
 */
bool vcpu_run_to_sync(struct kvm_vcpu *vcpu, struct ucall *uc);
bool vcpu_get_sync(struct kvm_vcpu *vcpu, struct ucall *uc);

/*
 * The vCPU's nested state (KVM_GET_NESTED_STATE) in a buffer that the next
 * call overwrites, and whether the vCPU is in guest mode (L2).
 */
struct kvm_nested_state *vcpu_nested_state(struct kvm_vcpu *vcpu);
bool vcpu_in_l2(struct kvm_vcpu *vcpu);

/* KVM_GUESTDBG_BLOCKIRQ on or off; while it is on, APICv is inhibited. */
void vcpu_set_blockirq(struct kvm_vcpu *vcpu, bool block);

/*
 * Set the vCPU's xAPIC ID through KVM_GET_LAPIC/KVM_SET_LAPIC, after
 * checking that it is @old_id (or without checking).
 */
void vcpu_change_xapic_id(struct kvm_vcpu *vcpu, u8 old_id, u8 new_id);
void vcpu_set_xapic_id(struct kvm_vcpu *vcpu, u8 id);

/* --- kvm_apicv_defer.ko and the rig's test instrumentation ---------------- */

/* Out of tree: upstream, this part stays with the module and the rig. */

#define APICV_DEFER_SYSFS		"/sys/module/kvm_apicv_defer"
#define APICV_DEFER_COUNTERS_DIR	"/sys/kernel/debug/kvm_apicv_defer"

/* The module's debugfs counters, in the order its directory lists them. */
enum apicv_defer_counter {
	APICV_DEFER_DEFERRED,
	APICV_DEFER_COALESCED,
	APICV_DEFER_APPLIED,
	APICV_DEFER_REQUESTS,
	APICV_DEFER_PENDING,
	NR_APICV_DEFER_COUNTERS,
};

extern const char * const apicv_defer_counter_names[NR_APICV_DEFER_COUNTERS];

static inline bool apicv_defer_loaded(void)
{
	return !access(APICV_DEFER_SYSFS, F_OK);
}

/*
 * Whether the module's counters can be read: mounts debugfs when the module
 * is loaded and its directory is missing.
 */
bool apicv_defer_have_counters(void);

/*
 * Read the module's counter @name into @value; false if its file cannot be
 * opened (errno set), the test fails if it cannot be read.
 */
bool apicv_defer_read_counter(const char *name, long long *value);

/*
 * VMPTRLDs kvm_intel has executed, all CPUs, from the test instrumentation
 * patches/test adds; -1 (errno set) on a kernel without it.
 */
#define VMPTRLD_COUNT	"/sys/module/kvm_intel/parameters/vmptrld_count"

long long read_vmptrld_count(void);

#endif /* SELFTEST_KVM_VMX_APICV_UTIL_H */
