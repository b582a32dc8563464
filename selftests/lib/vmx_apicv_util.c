// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helpers for nested VMX tests of L1's APICv state (vmx_apicv_util.h).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

volatile int irqs_received;

void irq_count_handler(struct ex_regs *regs)
{
	irqs_received++;
}

int irq_window(void)
{
	int before = irqs_received;

	sti_nop_cli();
	return irqs_received - before;
}

void irq_window_expect(int nr)
{
	int before = irqs_received;

	sti_nop_cli();
	__GUEST_ASSERT(irqs_received == before + nr,
		       "Wanted %d IRQ(s) in the window, got %d", nr,
		       irqs_received - before);
}

bool x2apic_mode(void)
{
	return rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_EXTD;
}

u32 apic_read(unsigned int reg)
{
	return x2apic_mode() ? x2apic_read_reg(reg) : xapic_read_reg(reg);
}

void apic_eoi(void)
{
	if (x2apic_mode())
		x2apic_write_reg(APIC_EOI, 0);
	else
		xapic_write_reg(APIC_EOI, 0);
}

bool xapic_vector_is_set(unsigned int reg, u8 vector)
{
	return xapic_read_reg(reg + APIC_VECTOR_TO_REG_OFFSET(vector)) &
	       BIT(APIC_VECTOR_TO_BIT_NUMBER(vector));
}

bool apic_vector_is_set(unsigned int reg, u8 vector)
{
	return apic_read(reg + APIC_VECTOR_TO_REG_OFFSET(vector)) &
	       BIT(APIC_VECTOR_TO_BIT_NUMBER(vector));
}

void xapic_send_self_ipi(u8 vector)
{
	xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | vector);
}

void apic_send_self_ipi(enum self_ipi_kind kind, u8 vector)
{
	if (!x2apic_mode())
		xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | vector);
	else if (kind == SELF_IPI_ICR)
		x2apic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | vector);
	else
		x2apic_write_reg(APIC_SELF_IPI, vector);
}

static void __eoi_and_check(u8 vector, unsigned int checks, bool any_mode)
{
	bool (*is_set)(unsigned int, u8) = any_mode ? apic_vector_is_set :
						      xapic_vector_is_set;
	u32 (*read)(unsigned int) = any_mode ? apic_read : xapic_read_reg;

	if (checks & EOI_CHECK_IRR)
		GUEST_ASSERT(!is_set(APIC_IRR, vector));
	GUEST_ASSERT(is_set(APIC_ISR, vector));
	if (any_mode)
		apic_eoi();
	else
		xapic_write_reg(APIC_EOI, 0);
	__GUEST_ASSERT(!is_set(APIC_ISR, vector),
		       "Vector 0x%x still in service after EOI", vector);
	if (checks & EOI_CHECK_PPR)
		GUEST_ASSERT_EQ(read(APIC_PROCPRI), 0);
}

void xapic_eoi_and_check(u8 vector, unsigned int checks)
{
	__eoi_and_check(vector, checks, false);
}

void apic_eoi_and_check(u8 vector, unsigned int checks)
{
	__eoi_and_check(vector, checks, true);
}

void xapic_check_self_ipis(u8 vector, int rounds, unsigned int eoi_checks)
{
	int i;

	for (i = 0; i < rounds; i++) {
		xapic_send_self_ipi(vector);
		irq_window_expect(1);
		xapic_eoi_and_check(vector, eoi_checks);
	}
}

/* L2's stack, in guest memory: each VM has its own copy of the image. */
static u8 l2_stack[L2_STACK_SIZE] __aligned(16);
static bool l2_stack_taken;

void __l1_prepare_l2(struct vmx_pages *vmx_pages, void *l2_code)
{
	__GUEST_ASSERT(!__atomic_exchange_n(&l2_stack_taken, true, __ATOMIC_SEQ_CST),
		       "L2 already prepared in this VM: one L2 stack per VM");
	GUEST_ASSERT(prepare_for_vmx_operation(vmx_pages));
	GUEST_ASSERT(load_vmcs(vmx_pages));
	prepare_vmcs(vmx_pages, l2_code, &l2_stack[L2_STACK_SIZE]);
}

void l1_prepare_l2(struct vmx_pages *vmx_pages, void *l2_code)
{
	__l1_prepare_l2(vmx_pages, l2_code);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL,
		vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_USE_MSR_BITMAPS);
}

void l1_skip_vmcall(void)
{
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
}

void l1_run_l2(bool launch)
{
	GUEST_ASSERT(launch ? !vmlaunch() : !vmresume());
	l1_skip_vmcall();
}

/*
 * int l1_enter_l2_keeping_gprs(struct l2_gprs *gprs, bool launch): @gprs in
 * RDI, @launch in ESI.  HOST_RSP points at the saved @gprs, HOST_RIP at 1:.
 * The GPR loads (MOV) keep the flags of "test %esi".  VMCS encodings:
 * HOST_RSP 0x6c14, HOST_RIP 0x6c16; struct l2_gprs offsets: rax 0x00 ...
 * r15 0x70, in the order of the struct.
 */
asm(".pushsection .text\n"
	".global l1_enter_l2_keeping_gprs\n"
	".type l1_enter_l2_keeping_gprs, @function\n"
	"l1_enter_l2_keeping_gprs:\n"
	"\tpush %rbp\n"
	"\tpush %rbx\n"
	"\tpush %r12\n"
	"\tpush %r13\n"
	"\tpush %r14\n"
	"\tpush %r15\n"
	"\tpush %rdi\n"
	"\tmov $0x6c14, %eax\n"
	"\tvmwrite %rsp, %rax\n"
	"\tmov $0x6c16, %eax\n"
	"\tlea 1f(%rip), %rdx\n"
	"\tvmwrite %rdx, %rax\n"
	"\ttest %esi, %esi\n"
	"\tmov 0x00(%rdi), %rax\n"
	"\tmov 0x08(%rdi), %rbx\n"
	"\tmov 0x10(%rdi), %rcx\n"
	"\tmov 0x18(%rdi), %rdx\n"
	"\tmov 0x20(%rdi), %rsi\n"
	"\tmov 0x30(%rdi), %rbp\n"
	"\tmov 0x38(%rdi), %r8\n"
	"\tmov 0x40(%rdi), %r9\n"
	"\tmov 0x48(%rdi), %r10\n"
	"\tmov 0x50(%rdi), %r11\n"
	"\tmov 0x58(%rdi), %r12\n"
	"\tmov 0x60(%rdi), %r13\n"
	"\tmov 0x68(%rdi), %r14\n"
	"\tmov 0x70(%rdi), %r15\n"
	"\tmov 0x28(%rdi), %rdi\n"
	"\tjz 2f\n"
	"\tvmlaunch\n"
	"\tjmp 3f\n"
	"2:\tvmresume\n"
	/* VMfail: the stack is as before the VMWRITEs. */
	"3:\tmov $1, %eax\n"
	"\tjmp 4f\n"
	/* VM-Exit: RSP = HOST_RSP, every other GPR is L2's. */
	"1:\tpush %rax\n"
	"\tmov 8(%rsp), %rax\n"
	"\tmov %rbx, 0x08(%rax)\n"
	"\tmov %rcx, 0x10(%rax)\n"
	"\tmov %rdx, 0x18(%rax)\n"
	"\tmov %rsi, 0x20(%rax)\n"
	"\tmov %rdi, 0x28(%rax)\n"
	"\tmov %rbp, 0x30(%rax)\n"
	"\tmov %r8, 0x38(%rax)\n"
	"\tmov %r9, 0x40(%rax)\n"
	"\tmov %r10, 0x48(%rax)\n"
	"\tmov %r11, 0x50(%rax)\n"
	"\tmov %r12, 0x58(%rax)\n"
	"\tmov %r13, 0x60(%rax)\n"
	"\tmov %r14, 0x68(%rax)\n"
	"\tmov %r15, 0x70(%rax)\n"
	"\tpop %rbx\n"
	"\tmov %rbx, 0x00(%rax)\n"
	"\txor %eax, %eax\n"
	"4:\tpop %rdi\n"
	"\tpop %r15\n"
	"\tpop %r14\n"
	"\tpop %r13\n"
	"\tpop %r12\n"
	"\tpop %rbx\n"
	"\tpop %rbp\n"
	"\tret\n"
	".size l1_enter_l2_keeping_gprs, . - l1_enter_l2_keeping_gprs\n"
	".popsection\n");

static_assert(__builtin_offsetof(struct l2_gprs, rdi) == 0x28 &&
	      __builtin_offsetof(struct l2_gprs, rbp) == 0x30 &&
	      __builtin_offsetof(struct l2_gprs, r15) == 0x70,
	      "l1_enter_l2_keeping_gprs() offsets");
static_assert(HOST_RSP == 0x6c14 && HOST_RIP == 0x6c16,
	      "l1_enter_l2_keeping_gprs() VMCS encodings");

void l2_exits_to_l0(int nr)
{
	int i;

	for (i = 0; i < nr; i++)
		GUEST_ASSERT(rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_ENABLE);
}

void require_vmx_apicv(const char *why)
{
	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	__TEST_REQUIRE(get_kvm_intel_param_bool("enable_apicv"),
		       "APICv disabled (kvm_intel.enable_apicv=N): %s", why);
}

/* @vcpu runs L1: its VMX pages as its argument, L1's xAPIC mapped. */
static void vcpu_setup_l1(struct kvm_vm *vm, struct kvm_vcpu *vcpu)
{
	gva_t vmx_pages_gva;

	vcpu_alloc_vmx(vm, &vmx_pages_gva);
	vcpu_args_set(vcpu, 1, vmx_pages_gva);
	virt_pg_map(vm, APIC_DEFAULT_GPA, APIC_DEFAULT_GPA);
}

struct kvm_vm *vm_create_l1(struct kvm_vcpu **vcpu, void *l1_code)
{
	struct kvm_vm *vm = vm_create_with_one_vcpu(vcpu, l1_code);

	vcpu_setup_l1(vm, *vcpu);
	return vm;
}

struct kvm_vm *vm_create_l1_on_vcpu1(struct kvm_vcpu **vcpu, void *l1_code)
{
	struct kvm_vcpu *vcpus[2];
	struct kvm_vm *vm = vm_create_with_vcpus(2, l1_code, vcpus);

	vcpu_setup_l1(vm, vcpus[1]);
	*vcpu = vcpus[1];
	return vm;
}

struct kvm_vm *vm_create_l1_with_xapic(struct kvm_vcpu **vcpu, void *l1_code,
				       u8 vector)
{
	struct kvm_vm *vm = vm_create_l1(vcpu, l1_code);

	vm_install_exception_handler(vm, vector, irq_count_handler);
	return vm;
}

u64 read_guest_u64(struct kvm_vm *vm, volatile u64 *guest_var)
{
	return *(volatile u64 *)addr_gva2hva(vm, (gva_t)guest_var);
}

bool vcpu_get_sync(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

	switch (get_ucall(vcpu, uc)) {
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(*uc);
		/* NOT REACHED */
	case UCALL_SYNC:
		return true;
	case UCALL_DONE:
		return false;
	default:
		TEST_FAIL("Unexpected ucall %lu", uc->cmd);
	}
	return false;
}

bool vcpu_run_to_sync(struct kvm_vcpu *vcpu, struct ucall *uc)
{
	vcpu_run(vcpu);
	return vcpu_get_sync(vcpu, uc);
}

static struct {
	struct kvm_nested_state state;
	u8 data[16384];
} nested;

struct kvm_nested_state *vcpu_nested_state(struct kvm_vcpu *vcpu)
{
	nested.state.size = sizeof(nested);
	vcpu_nested_state_get(vcpu, &nested.state);
	return &nested.state;
}

bool vcpu_in_l2(struct kvm_vcpu *vcpu)
{
	return vcpu_nested_state(vcpu)->flags & KVM_STATE_NESTED_GUEST_MODE;
}

void vcpu_set_blockirq(struct kvm_vcpu *vcpu, bool block)
{
	struct kvm_guest_debug debug = {
		.control = block ? KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ : 0,
	};

	vcpu_guest_debug_set(vcpu, &debug);
}

static void __vcpu_set_xapic_id(struct kvm_vcpu *vcpu, bool check, u8 old_id,
				u8 new_id)
{
	struct kvm_lapic_state lapic;
	u32 *id = (u32 *)&lapic.regs[APIC_ID];

	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
	TEST_ASSERT(!check || *id == (u32)old_id << 24,
		    "xAPIC ID is 0x%x, wanted 0x%x", *id, (u32)old_id << 24);
	*id = (u32)new_id << 24;
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
}

void vcpu_change_xapic_id(struct kvm_vcpu *vcpu, u8 old_id, u8 new_id)
{
	__vcpu_set_xapic_id(vcpu, true, old_id, new_id);
}

void vcpu_set_xapic_id(struct kvm_vcpu *vcpu, u8 id)
{
	__vcpu_set_xapic_id(vcpu, false, 0, id);
}

struct l2_posted_intr_pages *vcpu_alloc_l2_posted_intr(struct kvm_vm *vm,
						       gva_t *p_gva)
{
	gva_t gva = vm_alloc_page(vm);
	struct l2_posted_intr_pages *pi = addr_gva2hva(vm, gva);

	/* A page each: page aligned is 64-byte aligned. */
	pi->desc = (void *)vm_alloc_page(vm);
	pi->desc_gpa = addr_gva2gpa(vm, (gva_t)pi->desc);
	memset(addr_gva2hva(vm, (gva_t)pi->desc), 0, getpagesize());

	pi->virtual_apic = (void *)vm_alloc_page(vm);
	pi->virtual_apic_gpa = addr_gva2gpa(vm, (gva_t)pi->virtual_apic);
	memset(addr_gva2hva(vm, (gva_t)pi->virtual_apic), 0, getpagesize());

	*p_gva = gva;
	return pi;
}

/* The allowed-1 settings (high half) of a VMX capability MSR have @bits. */
static bool vmx_ctls_allow(u32 msr, u32 bits)
{
	return ((rdmsr(msr) >> 32) & bits) == bits;
}

void l1_enable_l2_posted_intr(struct l2_posted_intr_pages *pi,
			      u8 notification_vector)
{
	u32 secondary = SECONDARY_EXEC_VIRTUALIZE_X2APIC_MODE |
			SECONDARY_EXEC_VIRTUAL_INTR_DELIVERY;
	u32 pin = PIN_BASED_EXT_INTR_MASK | PIN_BASED_POSTED_INTR;

	__GUEST_ASSERT(vmx_ctls_allow(MSR_IA32_VMX_TRUE_PINBASED_CTLS, pin),
		       "No posted interrupts for L2 (kvm_intel.enable_apicv=N?)");
	GUEST_ASSERT(vmx_ctls_allow(MSR_IA32_VMX_TRUE_EXIT_CTLS,
				    VM_EXIT_ACK_INTR_ON_EXIT));
	GUEST_ASSERT(vmx_ctls_allow(MSR_IA32_VMX_TRUE_PROCBASED_CTLS,
				    CPU_BASED_TPR_SHADOW |
				    CPU_BASED_ACTIVATE_SECONDARY_CONTROLS));
	GUEST_ASSERT(vmx_ctls_allow(MSR_IA32_VMX_PROCBASED_CTLS2, secondary));

	vmwrite(PIN_BASED_VM_EXEC_CONTROL,
		vmreadz(PIN_BASED_VM_EXEC_CONTROL) | pin);
	vmwrite(VM_EXIT_CONTROLS,
		vmreadz(VM_EXIT_CONTROLS) | VM_EXIT_ACK_INTR_ON_EXIT);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL,
		vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_TPR_SHADOW |
		CPU_BASED_ACTIVATE_SECONDARY_CONTROLS);
	vmwrite(SECONDARY_VM_EXEC_CONTROL,
		vmreadz(SECONDARY_VM_EXEC_CONTROL) | secondary);

	vmwrite(VIRTUAL_APIC_PAGE_ADDR, pi->virtual_apic_gpa);
	vmwrite(TPR_THRESHOLD, 0);
	vmwrite(EOI_EXIT_BITMAP0, 0);
	vmwrite(EOI_EXIT_BITMAP1, 0);
	vmwrite(EOI_EXIT_BITMAP2, 0);
	vmwrite(EOI_EXIT_BITMAP3, 0);
	vmwrite(GUEST_INTR_STATUS, 0);
	vmwrite(POSTED_INTR_NV, notification_vector);
	vmwrite(POSTED_INTR_DESC_ADDR, pi->desc_gpa);
}

bool pi_desc_post(struct posted_intr_desc *desc, u8 vector)
{
	u64 old;

	__atomic_fetch_or(&desc->pir[vector / 32], BIT(vector % 32),
			  __ATOMIC_SEQ_CST);
	old = __atomic_fetch_or(&desc->control, PI_DESC_ON, __ATOMIC_SEQ_CST);
	return !(old & PI_DESC_ON);
}

bool vapic_vector_is_set(void *virtual_apic, unsigned int reg, u8 vector)
{
	u32 *word = virtual_apic + reg + APIC_VECTOR_TO_REG_OFFSET(vector);

	return *(volatile u32 *)word & BIT(APIC_VECTOR_TO_BIT_NUMBER(vector));
}

void xapic_send_ipi(u8 dest_apic_id, u8 vector)
{
	xapic_write_reg(APIC_ICR2, SET_APIC_DEST_FIELD(dest_apic_id));
	xapic_write_reg(APIC_ICR, APIC_DEST_PHYSICAL | APIC_DM_FIXED | vector);
}

bool host_irq_read(const char *name, struct host_irq_count *count)
{
	size_t len = strlen(name);
	char *line = NULL, *p, *end;
	size_t size = 0;
	bool found = false;
	FILE *f;

	count->nr_cpus = 0;
	f = fopen("/proc/interrupts", "r");
	if (!f)
		return false;
	while (!found && getline(&line, &size, f) > 0) {
		p = line + strspn(line, " ");
		if (strncmp(p, name, len) || p[len] != ':')
			continue;
		found = true;
		p += len + 1;
		while (count->nr_cpus < HOST_IRQ_MAX_CPUS) {
			unsigned long long v = strtoull(p, &end, 10);

			/* The per-CPU columns end where the description starts. */
			if (end == p)
				break;
			count->cpu[count->nr_cpus++] = v;
			p = end;
		}
	}
	free(line);
	fclose(f);
	return found;
}

unsigned long long host_irq_print_delta(const char *name,
					const struct host_irq_count *before,
					const struct host_irq_count *after)
{
	unsigned long long total = 0, d;
	char buf[512];
	int i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < after->nr_cpus; i++) {
		d = after->cpu[i] - (i < before->nr_cpus ? before->cpu[i] : 0);
		total += d;
		n += snprintf(buf + n, sizeof(buf) - n, " CPU%d +%llu", i, d);
		if (n >= (int)sizeof(buf))
			break;
	}
	ksft_print_msg("host /proc/interrupts %s:%s, total +%llu\n",
		       name, after->nr_cpus ? buf : " (no such line)", total);
	return total;
}

void host_pi_notifications_read(struct host_pi_notifications *n)
{
	host_irq_read("PIN", &n->pin);
	host_irq_read("NPI", &n->npi);
}

void host_pi_notifications_print_delta(const struct host_pi_notifications *before,
				       const struct host_pi_notifications *after)
{
	host_irq_print_delta("PIN", &before->pin, &after->pin);
	host_irq_print_delta("NPI", &before->npi, &after->npi);
}

bool pin_threads_to_distinct_cpus(pthread_t *threads, int nr)
{
	int cpu = -1, i;
	cpu_set_t mask;

	TEST_ASSERT(!sched_getaffinity(0, sizeof(mask), &mask),
		    "sched_getaffinity() failed");
	if (CPU_COUNT(&mask) < nr)
		return false;
	for (i = 0; i < nr; i++) {
		do {
			cpu++;
		} while (!CPU_ISSET(cpu, &mask));
		pin_task_to_cpu(threads[i], cpu);
	}
	return true;
}

void vcpu_thread_start(struct vcpu_thread *t, void *(*fn)(void *))
{
	TEST_ASSERT(!pthread_create(&t->thread, NULL, fn, t),
		    "pthread_create() failed");
}

void vcpu_threads_pin_apart(struct vcpu_thread *a, struct vcpu_thread *b)
{
	pthread_t threads[2] = { a->thread, b->thread };

	ksft_print_msg("vCPU threads %s\n",
		       pin_threads_to_distinct_cpus(threads, 2) ?
		       "pinned to two host CPUs" :
		       "not pinned (fewer than two host CPUs)");
}

void vcpu_thread_join(struct vcpu_thread *t, const struct timespec *deadline)
{
	int r = pthread_timedjoin_np(t->thread, NULL, deadline);

	TEST_ASSERT(!r, "vCPU%u did not finish in time (%s)", t->vcpu->id,
		    r == ETIMEDOUT ? "timed out" : strerror(r));
	TEST_ASSERT(t->done, "vCPU%u stopped without GUEST_DONE", t->vcpu->id);
}

const char * const apicv_defer_counter_names[NR_APICV_DEFER_COUNTERS] = {
	[APICV_DEFER_DEFERRED] = "deferred",
	[APICV_DEFER_COALESCED] = "coalesced",
	[APICV_DEFER_APPLIED] = "applied",
	[APICV_DEFER_REQUESTS] = "requests",
	[APICV_DEFER_PENDING] = "pending",
};

void require_apicv_defer(void)
{
	__TEST_REQUIRE(apicv_defer_loaded(),
		       "kvm_apicv_defer.ko is not loaded (no " APICV_DEFER_SYSFS ")");
}

bool apicv_defer_have_counters(void)
{
	if (apicv_defer_loaded() && access(APICV_DEFER_COUNTERS_DIR, F_OK))
		mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	return !access(APICV_DEFER_COUNTERS_DIR, F_OK);
}

/* Read a number from sysfs or debugfs; -1 (errno set) if @path won't open. */
static int read_number(const char *path, long long *value)
{
	char buf[32], *end;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	TEST_ASSERT(n > 0, "Cannot read %s", path);
	buf[n] = '\0';
	*value = strtoll(buf, &end, 0);
	TEST_ASSERT(end != buf && (*end == '\n' || !*end), "Bad %s '%s'",
		    path, buf);
	return 0;
}

bool apicv_defer_read_counter(const char *name, long long *value)
{
	char path[128];

	snprintf(path, sizeof(path), APICV_DEFER_COUNTERS_DIR "/%s", name);
	return !read_number(path, value);
}

long long read_vmptrld_count(void)
{
	long long v;

	return read_number(VMPTRLD_COUNT, &v) ? -1 : v;
}
