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
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define MODULE_NAME		"kvm_apicv_defer"
#define COUNTERS_DIR		APICV_DEFER_COUNTERS_DIR
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

/*
 * Open an IRQ window of one instruction, report and check what arrived.
 * @after_exit: L2 has just exited to L1 (for the story only).
 */
static void l1_irq_window(int expected, bool after_exit)
{
	int got = irq_window();

	GUEST_SYNC_ARGS(SYNC_L1_WINDOW, got, expected, after_exit, 0);
	__GUEST_ASSERT(got == expected, "Wanted %d IRQ(s) in the window, got %d",
		       expected, got);
}

/* The IRQ taken must be in service until EOI, and not after it. */
static void l1_eoi(void)
{
	xapic_eoi_and_check(IPI_VECTOR, EOI_CHECK_IRR);
}

/* L2 keeps running: each RDMSR exits to L0 only (L1's MSR bitmap is empty). */
static void l2_run_a_while(void)
{
	l2_exits_to_l0(NR_L2_MSR_EXITS);
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
	l1_prepare_l2(vmx_pages, l2_guest_code);
	xapic_enable();

	/* 1: set and cleared during one L2 run; the IRQ arrives after it. */
	GUEST_SYNC_ARGS(SYNC_L1_ROUND, 1, 0, 0, 0);
	xapic_send_self_ipi(IPI_VECTOR);
	l1_run_l2(true);
	l1_irq_window(1, true);
	l1_eoi();

	/* 2: set during an L2 run and still set in L1: nothing arrives. */
	GUEST_SYNC_ARGS(SYNC_L1_ROUND, 2, 0, 0, 0);
	xapic_send_self_ipi(IPI_VECTOR);
	l1_run_l2(false);
	l1_irq_window(0, true);
	GUEST_ASSERT(xapic_vector_is_set(APIC_IRR, IPI_VECTOR));
	GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
	l1_irq_window(1, false);
	l1_eoi();

	/* 3: set in L1, cleared during an L2 run: it arrives after it. */
	GUEST_SYNC_ARGS(SYNC_L1_ROUND, 3, 0, 0, 0);
	GUEST_SYNC(SYNC_L1_SET_BLOCKIRQ);
	xapic_send_self_ipi(IPI_VECTOR);
	l1_irq_window(0, false);
	l1_run_l2(false);
	l1_irq_window(1, true);
	l1_eoi();

	GUEST_DONE();
}

/* ------------------------------------------------------------ userspace */

/* The module's debugfs counters (vmx_apicv_util.h lists them). */
struct counters {
	long long v[NR_APICV_DEFER_COUNTERS];
};

/* What each round must add to the counters when the module is loaded. */
static const struct counters round_expected[NR_ROUNDS] = {
	{ { [APICV_DEFER_DEFERRED] = 1, [APICV_DEFER_COALESCED] = 1,
	    [APICV_DEFER_APPLIED] = 1, [APICV_DEFER_REQUESTS] = 1 } },
	{ { [APICV_DEFER_DEFERRED] = 1, [APICV_DEFER_APPLIED] = 1,
	    [APICV_DEFER_REQUESTS] = 1 } },
	{ { [APICV_DEFER_DEFERRED] = 1, [APICV_DEFER_APPLIED] = 1,
	    [APICV_DEFER_REQUESTS] = 1 } },
};

static bool module_loaded;
static struct counters last_shown, round_start, run_start;
static int failures;

static long long read_counter(const char *name)
{
	long long v;

	TEST_ASSERT(apicv_defer_read_counter(name, &v), "open(%s/%s) failed: %s",
		    COUNTERS_DIR, name, strerror(errno));
	return v;
}

static void read_counters(struct counters *c)
{
	int i;

	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++)
		c->v[i] = read_counter(apicv_defer_counter_names[i]);
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
	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++) {
		long long d = now.v[i] - last_shown.v[i];

		if (!d)
			continue;
		printf("%s %s %+lld (now %lld)", moved++ ? "," : "",
		       apicv_defer_counter_names[i], d, now.v[i]);
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
	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++) {
		long long d = now.v[i] - round_start.v[i];

		printf(" %s %+lld", apicv_defer_counter_names[i], d);
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

	vmptrlds_now = read_vmptrld_count();
	in_l2 = vcpu_in_l2(vcpu);
	after_state = read_vmptrld_count();

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
		vcpu_set_blockirq(vcpu, stage == SYNC_L2_SET_BLOCKIRQ);
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
		vcpu_set_blockirq(vcpu, stage == SYNC_L1_SET_BLOCKIRQ);
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
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	struct stat st;
	int round = 0;

	require_vmx_apicv("nothing to show");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));

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

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	while (vcpu_run_to_sync(vcpu, &uc))
		handle_stop(vcpu, &uc, &round);

	check_round(round);
	TEST_ASSERT_EQ(round, NR_ROUNDS);
	kvm_vm_free(vm);

	printf("\nL1 got exactly the IRQs BLOCKIRQ allowed after every L2 run.\n");
	if (module_loaded) {
		struct counters end;

		read_counters(&end);
		printf("kvm_apicv_defer: deferred %lld, applied %lld, pending %lld (this run: deferred %+lld, applied %+lld).\n",
		       end.v[APICV_DEFER_DEFERRED], end.v[APICV_DEFER_APPLIED],
		       end.v[APICV_DEFER_PENDING],
		       end.v[APICV_DEFER_DEFERRED] - run_start.v[APICV_DEFER_DEFERRED],
		       end.v[APICV_DEFER_APPLIED] - run_start.v[APICV_DEFER_APPLIED]);
		if (end.v[APICV_DEFER_PENDING]) {
			printf("NOT drained: %lld update(s) still pending\n",
			       end.v[APICV_DEFER_PENDING]);
			failures++;
		}
	}
	if (failures) {
		printf("%d step(s) did not go as predicted\n", failures);
		return 1;
	}
	return 0;
}
