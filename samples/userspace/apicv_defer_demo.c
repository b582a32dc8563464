// SPDX-License-Identifier: GPL-2.0-only
/*
 * apicv_defer_demo - watch KVM handle L1's APICv updates while L2 runs
 *
 * The program behind `make run`, written as a KVM selftest (it links the
 * selftest library of tools/testing/selftests/kvm) and meant to be read as a
 * tutorial.  It tells, on stdout, what happens to one vCPU:
 *
 *  - L1 (the guest) turns on VMX and runs a nested guest, L2.  L1 owns an
 *    xAPIC that KVM accelerates with APICv: vmcs01, the VMCS KVM uses to
 *    run L1, has posted interrupts and virtual-interrupt delivery (VID) on.
 *  - While L2 runs, userspace (this program) sets and clears
 *    KVM_GUESTDBG_BLOCKIRQ with KVM_SET_GUEST_DEBUG.  BLOCKIRQ tells KVM not
 *    to inject interrupts, so KVM inhibits APICv for the whole VM while it is
 *    set (VID would deliver interrupts behind KVM's back).  The vCPU applies
 *    the inhibit on its next entry, which is an entry into L2: vmcs02 is
 *    loaded, vmcs01 is not.
 *  - Linux 7.2 switches to vmcs01 on the spot, rewrites its APICv controls
 *    and switches back (guard(vmx_vmcs01)).  With kvm_apicv_defer.ko loaded,
 *    KVM records the update instead and applies it to vmcs01 at the next
 *    nested VM-Exit, when vmcs01 is loaded anyway.  The module's debugfs
 *    counters (/sys/kernel/debug/kvm_apicv_defer/) show each step.
 *  - Either way L1 must then see exactly what BLOCKIRQ allows: L1 keeps a
 *    self-IPI pending across each L2 run and opens a one-instruction IRQ
 *    window after it.  With a stale vmcs01 it would get an IRQ BLOCKIRQ
 *    forbids (VID still on) or lose one (VID still off).
 *
 * Three rounds:
 *  1. BLOCKIRQ set and cleared during one L2 run (two updates, one VM-Exit:
 *     the second is folded into the first, "coalesced").
 *  2. BLOCKIRQ set while L2 runs and left set: L1 must get no IRQ.  The L2
 *     run that applies the inhibit is shown with the number of VMCS loads
 *     (VMPTRLDs) KVM did meanwhile: 7.2's guard loads vmcs01 and vmcs02
 *     again, the deferral loads nothing.  BLOCKIRQ is then cleared while L1
 *     runs (nothing to defer) and the IRQ arrives.
 *  3. BLOCKIRQ set while L1 runs, cleared while L2 runs: the IRQ must arrive
 *     right after the VM-Exit.
 *
 * With the module loaded, the counters must move exactly as predicted
 * (deferred 3, coalesced 1, applied 3, requests 3, pending 0 at the end).
 * Exit status: 0 when everything went as told, 4 when the host
 * cannot run it (no VMX, APICv off), anything else on a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"

#define MODULE_NAME		"kvm_apicv_defer"
#define COUNTERS_DIR		"/sys/kernel/debug/" MODULE_NAME
#define IPI_VECTOR		0xe0
#define NR_L2_MSR_EXITS		100
#define NR_ROUNDS		3

/* Why the guest stopped in userspace (the ucall's stage). */
enum {
	/* from L2, i.e. with L2 active */
	SYNC_L2_SET_BLOCKIRQ = 1,
	SYNC_L2_CLEAR_BLOCKIRQ,
	SYNC_L2_PENDING,		/* an update is pending: try rmmod */
	/* from L1 */
	SYNC_L1_ROUND,			/* arg: round number */
	SYNC_L1_SET_BLOCKIRQ,
	SYNC_L1_CLEAR_BLOCKIRQ,
	SYNC_L1_WINDOW,			/* args: IRQs received, expected */
};

/* ---------------------------------------------------------------- guest */

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

/* With IRQs disabled in L1, the IPI stays pending in L1's IRR. */
static void l1_send_self_ipi(void)
{
	xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
}

/*
 * Open an IRQ window of one instruction, report and check what arrived.
 * @after_exit: L2 has just exited to L1 (for the story only).
 */
static void l1_irq_window(int expected, bool after_exit)
{
	int before = ipis_received, got;

	sti_nop_cli();
	got = ipis_received - before;
	GUEST_SYNC_ARGS(SYNC_L1_WINDOW, got, expected, after_exit, 0);
	__GUEST_ASSERT(got == expected, "Wanted %d IRQ(s) in the window, got %d",
		       expected, got);
}

/* The IRQ taken must be in service until EOI, and not after it. */
static void l1_eoi(void)
{
	GUEST_ASSERT(!apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
	xapic_write_reg(APIC_EOI, 0);
	__GUEST_ASSERT(!apic_vector_is_set(APIC_ISR, IPI_VECTOR),
		       "Vector 0x%x still in service after EOI", IPI_VECTOR);
}

static void l1_run_l2(bool launch)
{
	GUEST_ASSERT(launch ? !vmlaunch() : !vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
}

/* L2 keeps running: each RDMSR exits to L0 only (L1's MSR bitmap is empty). */
static void l2_run_a_while(void)
{
	int i;

	for (i = 0; i < NR_L2_MSR_EXITS; i++)
		GUEST_ASSERT(rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_ENABLE);
}

static void l2_guest_code(void)
{
	/* Round 1 */
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_run_a_while();
	vmcall();

	/* Round 2 */
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_PENDING);
	vmcall();

	/* Round 3 */
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_run_a_while();
	vmcall();

	GUEST_FAIL("L2 should not get here");
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

	/* 1: set and cleared during one L2 run; the IRQ arrives after it. */
	GUEST_SYNC_ARGS(SYNC_L1_ROUND, 1, 0, 0, 0);
	l1_send_self_ipi();
	l1_run_l2(true);
	l1_irq_window(1, true);
	l1_eoi();

	/* 2: set during an L2 run and still set in L1: nothing arrives. */
	GUEST_SYNC_ARGS(SYNC_L1_ROUND, 2, 0, 0, 0);
	l1_send_self_ipi();
	l1_run_l2(false);
	l1_irq_window(0, true);
	GUEST_ASSERT(apic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
	l1_irq_window(1, false);
	l1_eoi();

	/* 3: set in L1, cleared during an L2 run: it arrives after it. */
	GUEST_SYNC_ARGS(SYNC_L1_ROUND, 3, 0, 0, 0);
	GUEST_SYNC(SYNC_L1_SET_BLOCKIRQ);
	l1_send_self_ipi();
	l1_irq_window(0, false);
	l1_run_l2(false);
	l1_irq_window(1, true);
	l1_eoi();

	GUEST_DONE();
}

/* ------------------------------------------------------------ userspace */

/* The module's debugfs counters, in the order its directory lists them. */
static const char * const counter_names[] = {
	"deferred", "coalesced", "applied", "requests", "pending",
};

#define NR_COUNTERS	ARRAY_SIZE(counter_names)
enum { DEFERRED, COALESCED, APPLIED, REQUESTS, PENDING };

struct counters {
	long long v[NR_COUNTERS];
};

/* What each round must add to the counters when the module is loaded. */
static const struct counters round_expected[NR_ROUNDS] = {
	{ { [DEFERRED] = 1, [COALESCED] = 1, [APPLIED] = 1, [REQUESTS] = 1 } },
	{ { [DEFERRED] = 1, [APPLIED] = 1, [REQUESTS] = 1 } },
	{ { [DEFERRED] = 1, [APPLIED] = 1, [REQUESTS] = 1 } },
};

static bool module_loaded;
static struct counters last_shown, round_start, run_start;
static int failures;

static long long read_counter(const char *name)
{
	char path[128], buf[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), COUNTERS_DIR "/%s", name);
	fd = open(path, O_RDONLY);
	TEST_ASSERT(fd >= 0, "open(%s) failed: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	TEST_ASSERT(n > 0, "read(%s) failed", path);
	close(fd);
	return strtoll(buf, NULL, 0);
}

static void read_counters(struct counters *c)
{
	int i;

	for (i = 0; i < NR_COUNTERS; i++)
		c->v[i] = read_counter(counter_names[i]);
}

/*
 * Print the counters that moved since they were last shown, and what that
 * means; without the module, print what 7.2 did instead (if @without).
 */
static void show_counters(const char *meaning, const char *without)
{
	struct counters now;
	int i, moved = 0;

	if (!module_loaded) {
		if (without)
			printf("      -> %s\n", without);
		return;
	}
	read_counters(&now);
	printf("      counters:");
	for (i = 0; i < NR_COUNTERS; i++) {
		long long d = now.v[i] - last_shown.v[i];

		if (!d)
			continue;
		printf("%s %s %+lld (now %lld)", moved++ ? "," : "",
		       counter_names[i], d, now.v[i]);
	}
	printf("%s\n", moved ? "" : " no change");
	if (meaning)
		printf("      -> %s\n", meaning);
	last_shown = now;
}

/* At the end of a round: did the counters move exactly as predicted? */
static void check_round(int round)
{
	const struct counters *want = &round_expected[round - 1];
	struct counters now;
	int i, bad = 0;

	if (!module_loaded || round < 1)
		return;
	read_counters(&now);
	printf("    round %d, counters moved by:", round);
	for (i = 0; i < NR_COUNTERS; i++) {
		long long d = now.v[i] - round_start.v[i];

		printf(" %s %+lld", counter_names[i], d);
		if (d != want->v[i]) {
			printf(" (PREDICTED %+lld)", want->v[i]);
			bad = 1;
		}
	}
	printf("\n    %s\n", bad ? "NOT as predicted" : "as predicted");
	failures += bad;
	round_start = now;
	last_shown = now;
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
 * VMPTRLDs kvm_intel has executed (the rig's test instrumentation,
 * patches/test; -1 on kernels without it).
 */
#define VMPTRLD_COUNT		"/sys/module/kvm_intel/parameters/vmptrld_count"

static long long read_vmptrlds(void)
{
	char buf[32] = "";
	ssize_t n;
	int fd;

	fd = open(VMPTRLD_COUNT, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtoll(buf, NULL, 0) : -1;
}

/*
 * VMPTRLDs after the last stop's KVM_GET_NESTED_STATE and before this one's:
 * that ioctl switches VMCSes itself, and is this program's, not the update's.
 */
static long long vmptrlds_at_stop, vmptrlds_now;

/* How many VMCS loads KVM needed between the two stops. */
static void show_vmptrlds(void)
{
	if (vmptrlds_now < 0 || vmptrlds_at_stop < 0)
		return;
	printf("      VMCS loads (VMPTRLD) since the last stop: %lld%s\n",
	       vmptrlds_now - vmptrlds_at_stop,
	       module_loaded ? " (vmcs01 was never loaded)" :
			       " (the guard: vmcs01, then vmcs02 again)");
}

#define DEFERRED_MEANING \
	"the inhibit was applied in L2: vmcs01 untouched, one deferral pending"
#define GUARD_MEANING \
	"the inhibit was applied in L2: KVM switched to vmcs01, wrote it, switched back"

static const char * const round_titles[NR_ROUNDS] = {
	"APICv inhibited and uninhibited again, both while L2 runs",
	"APICv inhibited while L2 runs, uninhibited later while L1 runs",
	"APICv inhibited while L1 runs, uninhibited while L2 runs",
};

/* Tell what the guest did since it last stopped, and act on the stop. */
static void handle_stop(struct kvm_vcpu *vcpu, struct ucall *uc, int *round)
{
	int stage = uc->args[1];
	long long after_state;
	bool in_l2;

	vmptrlds_now = read_vmptrlds();
	in_l2 = vcpu_in_l2(vcpu);
	after_state = read_vmptrlds();

	TEST_ASSERT(in_l2 == (stage < SYNC_L1_ROUND),
		    "Stage %d: L2 is %s", stage, in_l2 ? "active" : "not active");

	switch (stage) {
	case SYNC_L1_ROUND:
		check_round(*round);
		*round = uc->args[2];
		printf("\nRound %d: %s\n", *round, round_titles[*round - 1]);
		break;
	case SYNC_L2_SET_BLOCKIRQ:
	case SYNC_L2_CLEAR_BLOCKIRQ:
		if (*round == 1 && stage == SYNC_L2_CLEAR_BLOCKIRQ) {
			printf("    L2 ran on (%d exits to L0) and stopped again.\n",
			       NR_L2_MSR_EXITS);
			show_counters(DEFERRED_MEANING, GUARD_MEANING);
		} else {
			printf("    L1 entered L2 (its IPI 0x%x pending); %s\n", IPI_VECTOR,
			       "L2 stopped in userspace, L2 is active.");
			show_counters(NULL, NULL);
		}
		printf("    userspace: %s BLOCKIRQ (KVM_SET_GUEST_DEBUG) -> APICv %s;\n"
		       "      the vCPU applies it on its next entry, into L2.\n",
		       stage == SYNC_L2_SET_BLOCKIRQ ? "sets" : "clears",
		       stage == SYNC_L2_SET_BLOCKIRQ ? "inhibited" : "active again");
		set_blockirq(vcpu, stage == SYNC_L2_SET_BLOCKIRQ);
		break;
	case SYNC_L2_PENDING:
		printf("    L2 ran on (%d exits to L0) and stopped again.\n", NR_L2_MSR_EXITS);
		show_counters(DEFERRED_MEANING, GUARD_MEANING);
		show_vmptrlds();
		break;
	case SYNC_L1_SET_BLOCKIRQ:
	case SYNC_L1_CLEAR_BLOCKIRQ:
		printf("    userspace: %s BLOCKIRQ while L1 runs: %s\n",
		       stage == SYNC_L1_SET_BLOCKIRQ ? "sets" : "clears",
		       "KVM writes vmcs01 itself, nothing to defer.");
		set_blockirq(vcpu, stage == SYNC_L1_SET_BLOCKIRQ);
		break;
	case SYNC_L1_WINDOW:
		if (uc->args[4]) {
			printf("    L2 ran on, then VMCALL: nested VM-Exit to L1.\n");
			show_counters("vmcs01 was refreshed at the VM-Exit (applied), not before",
				      NULL);
		} else {
			show_counters(NULL, NULL);
		}
		printf("    L1 opens a one-instruction IRQ window: got %lu IRQ%s, expected %lu (BLOCKIRQ %s)\n",
		       uc->args[2], uc->args[2] == 1 ? "" : "s", uc->args[3],
		       uc->args[3] ? "off" : "on");
		break;
	default:
		TEST_FAIL("Unexpected stage %d", stage);
	}
	vmptrlds_at_stop = after_state;
}

int main(int argc, char *argv[])
{
	gva_t vmx_pages_gva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	struct stat st;
	int round = 0;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	__TEST_REQUIRE(get_kvm_intel_param_bool("enable_apicv"),
		       "APICv disabled (kvm_intel.enable_apicv=N): nothing to show");

	/* Line-buffered even into a pipe or a file: the story keeps its order. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	module_loaded = !stat(COUNTERS_DIR, &st);
	printf("One vCPU; L1 runs a nested guest L2; userspace toggles L1's APICv.\n");
	if (module_loaded) {
		printf("%s is loaded: KVM defers vmcs01 APICv updates made while L2\n"
		       "runs to the next nested VM-Exit (counters: %s/).\n",
		       MODULE_NAME, COUNTERS_DIR);
		read_counters(&run_start);
		round_start = run_start;
		last_shown = run_start;
	} else {
		printf("%s is not loaded: KVM switches to vmcs01 and writes it on the\n"
		       "spot (Linux 7.2's guard(vmx_vmcs01)); there is nothing to count.\n",
		       MODULE_NAME);
	}

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
			handle_stop(vcpu, &uc, &round);
			break;
		case UCALL_DONE:
			goto done;
		default:
			TEST_FAIL("Unexpected ucall %lu", uc.cmd);
		}
	}

done:
	check_round(round);
	TEST_ASSERT_EQ(round, NR_ROUNDS);
	kvm_vm_free(vm);

	printf("\nL1 got exactly the IRQs BLOCKIRQ allowed after every L2 run.\n");
	if (module_loaded) {
		struct counters end;

		read_counters(&end);
		printf("kvm_apicv_defer: deferred %lld, applied %lld, pending %lld (this run: deferred %+lld, applied %+lld).\n",
		       end.v[DEFERRED], end.v[APPLIED], end.v[PENDING],
		       end.v[DEFERRED] - run_start.v[DEFERRED],
		       end.v[APPLIED] - run_start.v[APPLIED]);
		if (end.v[PENDING]) {
			printf("NOT drained: %lld update(s) still pending\n", end.v[PENDING]);
			failures++;
		}
	}
	if (failures) {
		printf("%d step(s) did not go as predicted\n", failures);
		return 1;
	}
	return 0;
}
