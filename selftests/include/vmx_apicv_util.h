/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers for nested VMX tests of L1's APICv state: L1 runs L2 while
 * userspace (or L2) changes L1's APICv activation, then L1 checks what its
 * local APIC delivers; userspace checks where the vCPU is and, with
 * kvm_apicv_defer.ko loaded, what the module counted.
 */
#ifndef SELFTEST_KVM_VMX_APICV_UTIL_H
#define SELFTEST_KVM_VMX_APICV_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>
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
 * Enter VMX operation, load the VMCS and set up L2 to run @l2_code on a
 * stack of L2_STACK_SIZE bytes that the library keeps, one per VM: only one
 * vCPU of a VM may run L2.  __l1_prepare_l2() leaves the VMCS as
 * prepare_vmcs() makes it (every MSR access of L2 exits to L1);
 * l1_prepare_l2() adds an empty MSR bitmap, i.e. L2's MSR accesses exit to
 * L0 only.
 */
#define L2_STACK_SIZE	4096

void __l1_prepare_l2(struct vmx_pages *vmx_pages, void *l2_code);
void l1_prepare_l2(struct vmx_pages *vmx_pages, void *l2_code);

/* Assert L2 exited with VMCALL and move L2 past it. */
void l1_skip_vmcall(void);

/* VMLAUNCH (@launch) or VMRESUME L2 and return after its next VMCALL. */
void l1_run_l2(bool launch);

/* In L2: take @nr exits to L0 that L1 does not intercept (RDMSR). */
void l2_exits_to_l0(int nr);

/*
 * L2's general-purpose registers, kept by L1 across VM-Exits (RSP and RIP
 * are in vmcs12).  The selftests' vmlaunch()/vmresume() (vmx.h) enter L2
 * with whatever L1 has in its registers and lose L2's at the VM-Exit: fine
 * when L2 only exits at a VMCALL (vmcall() declares every GPR clobbered),
 * not when L1 asks for VM-Exits that come at any instruction of L2
 * (external-interrupt exiting): L2 then resumes with L1's registers.
 */
struct l2_gprs {
	u64 rax, rbx, rcx, rdx, rsi, rdi, rbp;
	u64 r8, r9, r10, r11, r12, r13, r14, r15;
};

/*
 * VMLAUNCH (@launch) or VMRESUME with L2's GPRs loaded from @gprs, stored
 * back there at the VM-Exit, as a hypervisor does.  0 after a VM-Exit,
 * non-zero if the instruction failed (VMfail).
 */
int l1_enter_l2_keeping_gprs(struct l2_gprs *gprs, bool launch);

/* --- Userspace ------------------------------------------------------------ */

/*
 * Skip the test unless the host has VMX and kvm_intel runs with APICv
 * (enable_apicv); @why says what the test is left with otherwise.
 */
void require_vmx_apicv(const char *why);

/*
 * A VM with one vCPU running @l1_code(vmx_pages) with L1's xAPIC mapped; the
 * second also installs irq_count_handler() for @vector.
 */
struct kvm_vm *vm_create_l1(struct kvm_vcpu **vcpu, void *l1_code);
/*
 * As vm_create_l1(), with L1 on vCPU 1 of two: vCPU 0 is created first
 * (and destroyed first) and never runs.
 */
struct kvm_vm *vm_create_l1_on_vcpu1(struct kvm_vcpu **vcpu, void *l1_code);
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

/* A guest variable @guest_var, read while the vCPUs may still run. */
u64 read_guest_u64(struct kvm_vm *vm, volatile u64 *guest_var);

/* KVM_GUESTDBG_BLOCKIRQ on or off; while it is on, APICv is inhibited. */
void vcpu_set_blockirq(struct kvm_vcpu *vcpu, bool block);

/*
 * Set the vCPU's xAPIC ID through KVM_GET_LAPIC/KVM_SET_LAPIC, after
 * checking that it is @old_id (or without checking).
 */
void vcpu_change_xapic_id(struct kvm_vcpu *vcpu, u8 old_id, u8 new_id);
void vcpu_set_xapic_id(struct kvm_vcpu *vcpu, u8 id);

/* --- Posted interrupts that L1 gives L2 ---------------------------------- */

/*
 * The posted-interrupt descriptor (SDM "Posted-Interrupt Processing"): 256
 * PIR bits, then the outstanding-notification bit ON.  The notification
 * vector and destination fields after ON are for whoever posts (an IOMMU or
 * the hypervisor's sender); a CPU processing posted interrupts reads only
 * PIR and ON, so the tests leave them zero.  64-byte aligned.
 */
struct posted_intr_desc {
	u32 pir[8];
	u64 control;
	u32 rsvd[6];
} __aligned(64);

#define PI_DESC_ON		BIT_ULL(0)

#ifndef INTR_INFO_VALID_MASK
#define INTR_INFO_VECTOR_MASK	0xffu
#define INTR_INFO_VALID_MASK	BIT(31)
#endif

/*
 * What L1 needs to give L2 posted interrupts: the descriptor and L2's
 * virtual-APIC page, each with its guest-physical address for vmcs12.
 * Allocated by vcpu_alloc_l2_posted_intr(), one per L2.
 */
struct l2_posted_intr_pages {
	struct posted_intr_desc *desc;
	u64 desc_gpa;
	void *virtual_apic;
	u64 virtual_apic_gpa;
};

struct l2_posted_intr_pages *vcpu_alloc_l2_posted_intr(struct kvm_vm *vm,
						       gva_t *p_gva);

/*
 * In L1, with L2's VMCS current (after l1_prepare_l2()): give L2 posted
 * interrupts with notification vector @notification_vector, i.e. external-
 * interrupt exiting with acknowledge-on-exit, a TPR shadow on the
 * virtual-APIC page, virtual-interrupt delivery and, so that L2 can EOI by
 * WRMSR without an APIC-access page, virtualized x2APIC mode (L2 EOIs with
 * l2_x2apic_eoi()).  Asserts that the CPU (KVM) offers these controls.
 */
void l1_enable_l2_posted_intr(struct l2_posted_intr_pages *pi,
			      u8 notification_vector);

/*
 * In L1, as a sender: post @vector in @desc (PIR bit, then ON).  Returns
 * true if ON was clear, i.e. a notification must be sent.
 */
bool pi_desc_post(struct posted_intr_desc *desc, u8 vector);

/* Whether @vector is set in a virtual-APIC page's ISR, IRR or TMR (@reg). */
bool vapic_vector_is_set(void *virtual_apic, unsigned int reg, u8 vector);

/* In L2 given virtualized x2APIC mode: a virtualized EOI (WRMSR 0x80b). */
static inline void l2_x2apic_eoi(void)
{
	x2apic_write_reg(APIC_EOI, 0);
}

/* A fixed, physical-destination xAPIC IPI. */
void xapic_send_ipi(u8 dest_apic_id, u8 vector);

/* --- Host CPUs ------------------------------------------------------------ */

/*
 * Per-CPU counts of one line of the host's /proc/interrupts, e.g. "PIN"
 * (posted-interrupt notifications for L1 taken outside guest mode), "NPI"
 * (nested posted-interrupt notifications, i.e. for an L2, taken outside
 * guest mode) or "PIW" (posted-interrupt wakeups).
 */
#define HOST_IRQ_MAX_CPUS	64

struct host_irq_count {
	int nr_cpus;
	unsigned long long cpu[HOST_IRQ_MAX_CPUS];
};

/* Read the line @name; false (nr_cpus 0) if the host has no such line. */
bool host_irq_read(const char *name, struct host_irq_count *count);

/*
 * Print "NAME: +a +b ... (per CPU), +total" as a TAP diagnostic and return
 * the total of @after - @before.
 */
unsigned long long host_irq_print_delta(const char *name,
					const struct host_irq_count *before,
					const struct host_irq_count *after);

/*
 * The host's posted-interrupt notifications taken outside guest mode, for
 * L1 (PIN) and for an L2 (NPI), and their deltas per CPU as TAP
 * diagnostics.
 */
struct host_pi_notifications {
	struct host_irq_count pin, npi;
};

void host_pi_notifications_read(struct host_pi_notifications *n);
void host_pi_notifications_print_delta(const struct host_pi_notifications *before,
				       const struct host_pi_notifications *after);

/*
 * Pin @nr threads to distinct CPUs of the process's affinity mask, in its
 * order, so that interrupts they send each other cross CPUs.  Returns false
 * (pinning nothing) if the mask has fewer than @nr CPUs.
 */
bool pin_threads_to_distinct_cpus(pthread_t *threads, int nr);

/* A vCPU run by a thread of its own, which sets @done at GUEST_DONE. */
struct vcpu_thread {
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	bool done;
};

/* Start @fn(@t) in a new thread. */
void vcpu_thread_start(struct vcpu_thread *t, void *(*fn)(void *));

/*
 * Pin the threads of vCPUs @a and @b to two distinct host CPUs, in that
 * order, when the process may run on two; say which as a TAP diagnostic.
 */
void vcpu_threads_pin_apart(struct vcpu_thread *a, struct vcpu_thread *b);

/*
 * Join @t by @deadline (CLOCK_REALTIME): the test fails if the thread is
 * still running then, or ended without its vCPU reaching GUEST_DONE.
 */
void vcpu_thread_join(struct vcpu_thread *t, const struct timespec *deadline);

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

/* Skip the test unless the module is loaded. */
void require_apicv_defer(void);

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
