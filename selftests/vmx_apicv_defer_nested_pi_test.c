// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_nested_pi_test
 *
 * L1 gives L2 posted interrupts, and L1's own APICv changes while L2 runs.
 *
 * Two vCPUs.  On vCPU0 (the receiver) L1 runs L2 with the posted-interrupt
 * controls of vmcs12: external-interrupt exiting with acknowledge-on-exit, a
 * TPR shadow on a virtual-APIC page, virtual-interrupt delivery, virtualized
 * x2APIC mode (L2 EOIs with WRMSR) and a posted-interrupt descriptor with
 * notification vector NOTIFICATION_VECTOR.  On vCPU1 (the sender) L1 acts as
 * the hypervisor that posts to L2: it sets L2_POSTED_VECTOR in the PIR, sets
 * ON and sends NOTIFICATION_VECTOR to vCPU0's APIC.  KVM (L0) recognizes the
 * notification for L2 (vmx_deliver_nested_posted_interrupt()) and sends
 * POSTED_INTR_NESTED_VECTOR to vCPU0's CPU, where the CPU processes it into
 * L2's virtual APIC, or, if vCPU0 is not in non-root mode then, KVM does so
 * before the next VM-Entry (the host counts those as "NPI" in
 * /proc/interrupts).  The sender also sends L1's own IPI, L1_IPI_VECTOR, to
 * vCPU0: while L2 runs it makes L2 exit to L1 (external-interrupt VM-Exit,
 * the vector acknowledged into L1's ISR), while L1 runs it is delivered to
 * L1 (posted for L1 when APICv is active).
 *
 * Each round, while vCPU0 runs L2, the sender has its userspace thread set
 * or clear KVM_GUESTDBG_BLOCKIRQ on vCPU1, which inhibits or uninhibits
 * APICv for the whole VM: vCPU0 services that update with L2 active, so
 * vmcs01 is updated through the vmcs01 guard (upstream 7.0+) or at the next
 * nested VM-Exit (kvm_apicv_defer.ko).  Then, with that update pending, the
 * sender posts to L2 and sends L1 IPIs that take vCPU0 out of L2; L2 VMCALLs
 * when all its interrupts are in; L1 checks L2's virtual APIC and waits in
 * L1, interrupts enabled, for more IPIs from the sender.  Rounds alternate:
 * odd rounds inhibit APICv while L2 runs and uninhibit it while L1 runs,
 * after L1's checks; even rounds inhibit it while L1 runs, before entering
 * L2, and uninhibit it while L2 runs.  So every update made in L2 starts
 * from a vmcs01 that KVM wrote directly, and a lost update cannot be undone
 * by the next one (two lost updates in a row would cancel out, which is why
 * upstream's vmx_apicv_updates_test cannot see this bug).
 *
 * Everything is sent one at a time, and the sender waits (bounded) until it
 * was taken, so no two interrupts merge: L2 must take exactly the interrupts
 * posted to it and EOI each (L2's ISR, IRR, RVI and SVI clear, the PIR and
 * ON clear at its VM-Exit), L1 exactly its IPIs, each acknowledged and EOIed
 * (ISR set, then clear).  L1 never sees the notification vector: KVM
 * processes it for L2 also when it reaches vCPU0 while L1 is between VM-Exit
 * and VM-Entry.
 *
 * What bites: after an uninhibit in L2, L1 depends on vmcs01's APICv being
 * active.  KVM then posts L1's IPIs and only sets RVI, counting on
 * virtual-interrupt delivery; a vmcs01 left with it off (the request-only
 * deferral, 7c69661e225c) never delivers them, and L1's wait after the
 * VM-Exit times out.  (The deactivation half cannot show here: L1's xAPIC
 * accesses are emulated while APICv is inhibited, and L1 cannot enter L2
 * with an IPI held in RVI when L2 exits on external interrupts.)
 *
 * The vCPU threads are pinned to different host CPUs when there are two, so
 * the notifications cross CPUs.  The host counts a nested notification
 * ("NPI" in /proc/interrupts) only when it reaches vCPU0's CPU in root mode,
 * e.g. right after one of L2's exits to L0 (in non-root mode the CPU
 * processes it itself): 1 to 8 % of them in the emulated host, hence
 * 256 posts per round.  The test prints the host's per-CPU PIN and NPI
 * counts; it does not judge them (the rig's plan does).  -r rounds (4), -p
 * posts per round (256).
 *
 * Request-only build: must fail.
 */
#include <pthread.h>
#include <time.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define L1_IPI_VECTOR		0xe0
#define L2_POSTED_VECTOR	0x60
#define NOTIFICATION_VECTOR	0xf2

#define RECEIVER_APIC_ID	0
#define SENDER_APIC_ID		1

#define DEFAULT_ROUNDS		4
#define DEFAULT_POSTS		256
/* L1 IPIs per round: while L2 runs (VM-Exits), then in L1. */
#define L1_IPIS_IN_L2		3
#define L1_IPIS_IN_L1		3

/*
 * Guest-time bounds: the receiver's for all its IPIs after a VM-Exit, the
 * sender's for each interrupt, longer, so that the receiver reports a loss.
 */
#define RECEIVER_WAIT_MS	2000
#define SENDER_WAIT_MS		4000
#define ROUND_MS		30000
/* Host-side deadline: the rounds' guest-time bound, plus slack. */
#define HOST_SECONDS_PER_ROUND	40
#define HOST_SLACK_SECONDS	30

enum {
	SYNC_INHIBIT_APICV = 1,	/* sender: set BLOCKIRQ on vCPU1 */
	SYNC_UNINHIBIT_APICV,	/* sender: clear it */
};

/* Set by the host before the vCPUs run. */
static u64 nr_rounds;
static u64 nr_posts;

/* Shared by both vCPUs and read by the host (guest memory). */
static volatile u64 receiver_ready;
static volatile u64 l2_round;		/* L2: the round it runs */
static volatile u64 posting_done;	/* sender: last round it posted in */
static volatile u64 l1_waiting;		/* L1: round it waits for IPIs in */
static volatile u64 l1_toggle_wanted;	/* L1: round it wants a toggle in L1 in */
static volatile u64 l1_toggle_done;	/* sender: round it toggled in L1 in */
static volatile u64 l2_posted, l2_received;
static volatile u64 l1_sent, l1_received, l1_received_at_exit;
/* vCPU0 runs L2 (L1 sets it before VM-Entry, clears it after VM-Exit). */
static volatile bool in_l2;

static u64 tsc_ms(u64 ms)
{
	return guest_tsc_khz * ms;
}

static bool tsc_before(u64 deadline)
{
	return (s64)(rdtsc() - deadline) < 0;
}

/*
 * Odd rounds inhibit APICv while L2 runs and uninhibit it after L1's checks,
 * while L1 runs; even rounds inhibit it while L1 runs, before entering L2,
 * and uninhibit it while L2 runs.  Each round starts and ends with APICv
 * active, and vmcs01 is written directly (L1 active) before each update
 * made in L2, so that a lost update cannot be cancelled by the next one.
 */
static bool round_activates_in_l2(u64 round)
{
	return !(round % 2);
}

static const char *round_update(u64 round)
{
	return round_activates_in_l2(round) ? "uninhibited" : "inhibited";
}

/* --- L2, on vCPU0 ---------------------------------------------------------- */

static void l2_posted_handler(struct ex_regs *regs)
{
	l2_received++;
	l2_x2apic_eoi();
}

static void l2_guest_code(void)
{
	u64 round, deadline;

	/* Virtual-interrupt delivery needs RFLAGS.IF = 1. */
	sti();
	for (round = 1;; round++) {
		l2_round = round;
		deadline = rdtsc() + tsc_ms(ROUND_MS);
		/*
		 * Exit to L0 (L1's MSR bitmap is empty) while waiting: L2 keeps
		 * being entered with the APICv update pending, and the nested
		 * notifications also reach vCPU0's CPU outside non-root mode.
		 */
		while (posting_done != round) {
			__GUEST_ASSERT(tsc_before(deadline),
				       "L2: round %lu not done after %u ms (%lu of %lu posted interrupts taken)",
				       round, ROUND_MS, l2_received, l2_posted);
			l2_exits_to_l0(1);
		}
		vmcall();
	}
}

/* --- L1 on vCPU0: the receiver --------------------------------------------- */

static void receiver_ipi_handler(struct ex_regs *regs)
{
	l1_received++;
	xapic_eoi_and_check(L1_IPI_VECTOR, 0);
}

/*
 * Nothing sends 0xff, the xAPIC's spurious vector.  A CPU that processes a
 * notification whose PIR is empty (KVM already moved the PIR to the virtual
 * IRR, vmx_complete_nested_posted_interrupt()) must leave RVI alone; one
 * that raises RVI to 0xff (Bochs 3.0 did: patches/bochs/0007) delivers it.
 */
static void spurious_vector_handler(struct ex_regs *regs)
{
	GUEST_FAIL("%s took vector 0xff at RIP 0x%lx: RVI raised from an empty PIR?",
		   in_l2 ? "L2" : "L1", regs->rip);
}

static void unexpected_notification_handler(struct ex_regs *regs)
{
	GUEST_FAIL("L1 took the notification vector 0x%x: KVM did not process it for L2",
		   NOTIFICATION_VECTOR);
}

/*
 * L2's registers, kept across its VM-Exits to L1: the external-interrupt
 * exits come at any instruction of L2, and vmresume() would resume L2 with
 * L1's registers (with IPI virtualization on the emulated host, L2's round
 * counter became L1's pointer to the posted-interrupt pages and L2 waited
 * for a round that never comes).
 */
static struct l2_gprs l2_gprs;

/*
 * Run L2 until its VMCALL, taking the L1 IPIs that make it exit on the way:
 * acknowledged on exit, in service in L1's ISR, EOIed here.
 */
static void receiver_run_l2(bool launch)
{
	u32 reason, info;

	for (;;) {
		in_l2 = true;
		GUEST_ASSERT(!l1_enter_l2_keeping_gprs(&l2_gprs, launch));
		in_l2 = false;
		launch = false;

		reason = vmreadz(VM_EXIT_REASON);
		if (reason == EXIT_REASON_VMCALL)
			break;
		__GUEST_ASSERT(reason == EXIT_REASON_EXTERNAL_INTERRUPT,
			       "Unexpected VM-Exit %u from L2", reason);
		info = vmreadz(VM_EXIT_INTR_INFO);
		__GUEST_ASSERT((info & INTR_INFO_VALID_MASK) &&
			       (info & INTR_INFO_VECTOR_MASK) == L1_IPI_VECTOR,
			       "External-interrupt VM-Exit with info 0x%x, wanted L1's IPI 0x%x",
			       info, L1_IPI_VECTOR);
		l1_received++;
		l1_received_at_exit++;
		xapic_eoi_and_check(L1_IPI_VECTOR, 0);
	}
	l1_skip_vmcall();
}

/* L2 took every interrupt posted to it and EOIed it; nothing is left over. */
static void receiver_check_l2_apic(struct l2_posted_intr_pages *pi)
{
	int i;

	GUEST_ASSERT_EQ(l2_received, l2_posted);
	for (i = 0; i < ARRAY_SIZE(pi->desc->pir); i++)
		__GUEST_ASSERT(!pi->desc->pir[i], "PIR[%d] = 0x%x after L2's VM-Exit",
			       i, pi->desc->pir[i]);
	GUEST_ASSERT(!(pi->desc->control & PI_DESC_ON));
	GUEST_ASSERT(!vapic_vector_is_set(pi->virtual_apic, APIC_IRR, L2_POSTED_VECTOR));
	GUEST_ASSERT(!vapic_vector_is_set(pi->virtual_apic, APIC_ISR, L2_POSTED_VECTOR));
	GUEST_ASSERT(!vapic_vector_is_set(pi->virtual_apic, APIC_ISR, 0xff));
	/* RVI and SVI: nothing pending, nothing in service. */
	GUEST_ASSERT_EQ(vmreadz(GUEST_INTR_STATUS), 0);
}

/*
 * Have the sender toggle APICv while this vCPU runs L1, interrupts disabled:
 * KVM services the update before L1 runs again, with vmcs01 loaded.
 */
static void receiver_toggle_in_l1(u64 round)
{
	u64 deadline = rdtsc() + tsc_ms(RECEIVER_WAIT_MS);

	l1_toggle_wanted = round;
	while (l1_toggle_done != round && tsc_before(deadline))
		cpu_relax();
	__GUEST_ASSERT(l1_toggle_done == round,
		       "Round %lu: the sender did not toggle APICv in %u ms",
		       round, RECEIVER_WAIT_MS);
}

/*
 * Ask the sender for L1_IPIS_IN_L1 IPIs and take them in L1, interrupts
 * enabled.  After an uninhibit in L2 they are posted for L1 and need
 * vmcs01's virtual-interrupt delivery.
 */
static void receiver_take_l1_ipis(u64 round)
{
	u64 want = l1_received + L1_IPIS_IN_L1;
	u64 deadline = rdtsc() + tsc_ms(RECEIVER_WAIT_MS);

	l1_waiting = round;
	sti();
	while (l1_received < want && tsc_before(deadline))
		cpu_relax();
	cli();
	__GUEST_ASSERT(l1_received == want,
		       "Round %lu (APICv %s while L2 ran): L1 took %lu of its %u IPIs after the VM-Exit",
		       round, round_update(round),
		       l1_received + L1_IPIS_IN_L1 - want, L1_IPIS_IN_L1);
}

static void receiver_l1_code(struct vmx_pages *vmx_pages,
			     struct l2_posted_intr_pages *pi)
{
	u64 round;

	l1_prepare_l2(vmx_pages, l2_guest_code);
	l1_enable_l2_posted_intr(pi, NOTIFICATION_VECTOR);

	xapic_enable();
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), RECEIVER_APIC_ID << 24);
	receiver_ready = 1;

	for (round = 1; round <= nr_rounds; round++) {
		if (round_activates_in_l2(round))
			receiver_toggle_in_l1(round);
		receiver_run_l2(round == 1);
		receiver_check_l2_apic(pi);
		GUEST_ASSERT_EQ(l1_received_at_exit, round * L1_IPIS_IN_L2);
		receiver_take_l1_ipis(round);
		if (!round_activates_in_l2(round))
			receiver_toggle_in_l1(round);
		GUEST_SYNC(round);
	}
	GUEST_ASSERT_EQ(l1_received, l1_sent);
	GUEST_DONE();
}

/* --- L1 on vCPU1: the sender ----------------------------------------------- */

static void sender_wait(volatile u64 *value, u64 want, const char *what)
{
	u64 deadline = rdtsc() + tsc_ms(SENDER_WAIT_MS);

	while (*value < want && tsc_before(deadline))
		cpu_relax();
	__GUEST_ASSERT(*value == want, "Sender: %s is %lu after %u ms, wanted %lu",
		       what, *value, SENDER_WAIT_MS, want);
}

static void sender_post_to_l2(struct l2_posted_intr_pages *pi)
{
	l2_posted++;
	/* The last one was processed, which clears ON: notify each time. */
	__GUEST_ASSERT(pi_desc_post(pi->desc, L2_POSTED_VECTOR),
		       "ON still set at post %lu", l2_posted);
	xapic_send_ipi(RECEIVER_APIC_ID, NOTIFICATION_VECTOR);
	sender_wait(&l2_received, l2_posted, "interrupts taken by L2");
}

static void sender_send_l1_ipi(void)
{
	l1_sent++;
	xapic_send_ipi(RECEIVER_APIC_ID, L1_IPI_VECTOR);
	sender_wait(&l1_received, l1_sent, "IPIs taken by L1");
}

/* Toggle APICv (from userspace) when the receiver asks, while it runs L1. */
static void sender_toggle_in_l1(u64 round, bool inhibit)
{
	sender_wait(&l1_toggle_wanted, round, "the round L1 wants a toggle in");
	GUEST_SYNC(inhibit ? SYNC_INHIBIT_APICV : SYNC_UNINHIBIT_APICV);
	l1_toggle_done = round;
}

static void sender_code(struct l2_posted_intr_pages *pi)
{
	u64 every = nr_posts / L1_IPIS_IN_L2;
	u64 round, i;

	xapic_enable();
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), SENDER_APIC_ID << 24);
	/* Fixed IPIs to a software-disabled APIC are dropped. */
	sender_wait(&receiver_ready, 1, "receiver ready");

	for (round = 1; round <= nr_rounds; round++) {
		if (round_activates_in_l2(round))
			sender_toggle_in_l1(round, true);

		sender_wait(&l2_round, round, "L2's round");
		/* vCPU0 is in L2 and stays there until posting_done. */
		GUEST_SYNC(round_activates_in_l2(round) ? SYNC_UNINHIBIT_APICV :
							  SYNC_INHIBIT_APICV);

		for (i = 0; i < nr_posts; i++) {
			sender_post_to_l2(pi);
			/* L1's IPIs spread among the posts, L2 exiting. */
			if (i % every == 0 && i / every < L1_IPIS_IN_L2)
				sender_send_l1_ipi();
		}
		posting_done = round;

		sender_wait(&l1_waiting, round, "the round L1 waits in");
		for (i = 0; i < L1_IPIS_IN_L1; i++)
			sender_send_l1_ipi();

		if (!round_activates_in_l2(round))
			sender_toggle_in_l1(round, false);
	}
	GUEST_DONE();
}

/* --- Userspace -------------------------------------------------------------- */

static void *receiver_thread(void *arg)
{
	struct vcpu_thread *t = arg;
	struct kvm_vm *vm = t->vcpu->vm;
	struct ucall uc;
	u64 round;

	while (vcpu_run_to_sync(t->vcpu, &uc)) {
		round = uc.args[1];
		ksft_test_result_pass("round %lu (%s in L2): L2 took %lu, L1 %lu (%lu at exits)\n",
				      round, round_update(round),
				      read_guest_u64(vm, &l2_received),
				      read_guest_u64(vm, &l1_received),
				      read_guest_u64(vm, &l1_received_at_exit));
	}
	t->done = true;
	return NULL;
}

static void *sender_thread(void *arg)
{
	struct vcpu_thread *t = arg;
	struct ucall uc;

	while (vcpu_run_to_sync(t->vcpu, &uc)) {
		TEST_ASSERT(uc.args[1] == SYNC_INHIBIT_APICV ||
			    uc.args[1] == SYNC_UNINHIBIT_APICV,
			    "Unexpected sender stage %lu", uc.args[1]);
		/* BLOCKIRQ on any vCPU inhibits APICv for the whole VM. */
		vcpu_set_blockirq(t->vcpu, uc.args[1] == SYNC_INHIBIT_APICV);
	}
	t->done = true;
	return NULL;
}

static void help(const char *name)
{
	printf("usage: %s [-r rounds] [-p posts per round]\n", name);
	exit(KSFT_SKIP);
}

int main(int argc, char *argv[])
{
	struct host_pi_notifications before, after;
	struct vcpu_thread receiver = {}, sender = {};
	gva_t vmx_pages_gva, pi_gva;
	struct timespec deadline;
	struct kvm_vm *vm;
	int opt;

	nr_rounds = DEFAULT_ROUNDS;
	nr_posts = DEFAULT_POSTS;
	while ((opt = getopt(argc, argv, "r:p:h")) != -1) {
		switch (opt) {
		case 'r':
			nr_rounds = atoi_positive("Number of rounds", optarg);
			break;
		case 'p':
			nr_posts = atoi_positive("Posts per round", optarg);
			break;
		default:
			help(argv[0]);
		}
	}
	TEST_ASSERT(nr_posts >= L1_IPIS_IN_L2, "-p must be at least %d",
		    L1_IPIS_IN_L2);

	require_vmx_apicv("no posted interrupts");

	ksft_print_header();
	ksft_set_plan(nr_rounds);

	vm = vm_create(2);
	receiver.vcpu = vm_vcpu_add(vm, RECEIVER_APIC_ID, receiver_l1_code);
	sender.vcpu = vm_vcpu_add(vm, SENDER_APIC_ID, sender_code);
	vcpu_alloc_vmx(vm, &vmx_pages_gva);
	vcpu_alloc_l2_posted_intr(vm, &pi_gva);
	vcpu_args_set(receiver.vcpu, 2, vmx_pages_gva, pi_gva);
	vcpu_args_set(sender.vcpu, 1, pi_gva);
	virt_pg_map(vm, APIC_DEFAULT_GPA, APIC_DEFAULT_GPA);
	vm_install_exception_handler(vm, L1_IPI_VECTOR, receiver_ipi_handler);
	vm_install_exception_handler(vm, L2_POSTED_VECTOR, l2_posted_handler);
	vm_install_exception_handler(vm, NOTIFICATION_VECTOR,
				     unexpected_notification_handler);
	vm_install_exception_handler(vm, 0xff, spurious_vector_handler);
	sync_global_to_guest(vm, nr_rounds);
	sync_global_to_guest(vm, nr_posts);

	ksft_print_msg("posted-interrupt pages at GVA 0x%lx\n", (unsigned long)pi_gva);
	host_pi_notifications_read(&before);

	vcpu_thread_start(&receiver, receiver_thread);
	vcpu_thread_start(&sender, sender_thread);
	vcpu_threads_pin_apart(&receiver, &sender);

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += nr_rounds * HOST_SECONDS_PER_ROUND + HOST_SLACK_SECONDS;
	vcpu_thread_join(&sender, &deadline);
	vcpu_thread_join(&receiver, &deadline);

	host_pi_notifications_read(&after);
	host_pi_notifications_print_delta(&before, &after);

	TEST_ASSERT_EQ(read_guest_u64(vm, &l2_received), nr_rounds * nr_posts);
	TEST_ASSERT_EQ(read_guest_u64(vm, &l1_received),
		       nr_rounds * (L1_IPIS_IN_L2 + L1_IPIS_IN_L1));

	kvm_vm_free(vm);
	ksft_finished();
}
