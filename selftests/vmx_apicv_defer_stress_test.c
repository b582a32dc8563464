// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_stress_test
 *
 * Two vCPUs.  vCPU0, the toggler, flips its own xAPIC ID between its vCPU ID
 * and another value in a loop, which sets and clears the VM-wide
 * APIC_ID_MODIFIED inhibit, i.e. KVM_REQ_APICV_UPDATE for every vCPU, as fast
 * as it can.  vCPU1, the nester, meanwhile cycles L1 -> L2 -> L1: L2 takes a
 * few exits to L0, spins a while without exiting and VMCALLs back.  The
 * updates land on vCPU1 at random points, in L1 (vmcs01 written right away)
 * and in L2 (vmcs01 updated through the guard or deferred to the VM-Exit),
 * racing with its nested transitions.
 *
 * Once vCPU1 has enabled its APIC (a fixed IPI to a software-disabled APIC
 * is dropped), vCPU0 sends vCPU1 one fixed IPI after each toggle and waits
 * (bounded) until vCPU1 has taken it; vCPU1 keeps IRQs disabled in L2 and
 * opens a one-instruction IRQ window in L1 after every VM-Exit.  The handler
 * EOIs.  Since the IPIs are sent one at a time, none can merge with another:
 * the count vCPU1 receives must equal the count vCPU0 sent, exactly.  An IPI
 * that a stale vmcs01 strands (APICv off in vmcs01, on in KVM) is never taken
 * and the bounded wait fails; one that a stale vmcs01 delivers twice (KVM
 * injects it while the CPU still has it in RVI) makes the counts differ the
 * same way.
 *
 * Placement: with two host CPUs or more, the vCPU threads are pinned to
 * different CPUs, so the toggler's IPIs are posted from one CPU to the
 * nester running on another, often in L2 right after it took the update the
 * toggle made (which kvm_apicv_defer.ko defers to the next VM-Exit): KVM
 * sends the posted-interrupt notification across CPUs, and the nester's CPU
 * takes it outside non-root mode (vmcs02 has L2's notification vector, not
 * L1's).  The test prints the host's per-CPU PIN and
 * NPI counts of /proc/interrupts before and after; the rig's plans check
 * that they moved.
 *
 * Bounded in count (-n, default 300 toggles) and in guest time (-s, default
 * 10 s of toggling, 2 s per IPI); userspace gives the vCPUs a hard deadline.
 *
 * Request-only build: may fail, not judged (it races).
 */
#include <pthread.h>
#include <time.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define IPI_VECTOR		0xe0
#define TOGGLER_ALT_APIC_ID	0x2a
#define NESTER_APIC_ID		1
#define IPI_TIMEOUT_MS		2000
#define READY_TIMEOUT_MS	10000
#define NR_L2_MSR_EXITS		10
/* Loop iterations L2 runs without exiting, between its exits to L0. */
#define NR_L2_SPINS		50000
/* Delays between a toggle and its IPI: 0, 1, 2 or 3 times this. */
#define TOGGLER_DELAY_US	100
#define DEFAULT_NR_TOGGLES	300
#define DEFAULT_SECONDS		10
/* Host-side deadline on top of the guest's own budget. */
#define HOST_SLACK_SECONDS	30

/* Shared by both vCPUs (guest memory). */
static volatile u64 ipis_sent;
static volatile u64 ipis_received;
static volatile u64 nested_runs;
static volatile bool nester_ready;
static volatile bool toggler_done;

/* Set by the host before the vCPUs run. */
static u64 nr_toggles;
static u64 budget_seconds;

static void nester_ipi_handler(struct ex_regs *regs)
{
	ipis_received++;
	xapic_write_reg(APIC_EOI, 0);
}

static u64 tsc_ms(u64 ms)
{
	return guest_tsc_khz * ms;
}

static void toggler_guest_code(void)
{
	u64 start = rdtsc(), deadline;
	u64 i;

	xapic_enable();
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);

	/* An IPI sent before the nester's APIC is software-enabled is dropped. */
	deadline = start + tsc_ms(READY_TIMEOUT_MS);
	while (!nester_ready && (s64)(rdtsc() - deadline) < 0)
		cpu_relax();
	__GUEST_ASSERT(nester_ready, "Nester not ready within %u ms", READY_TIMEOUT_MS);
	start = rdtsc();

	for (i = 0; i < nr_toggles; i++) {
		if (i && rdtsc() - start > tsc_ms(budget_seconds * 1000))
			break;

		xapic_write_reg(APIC_ID, (i & 1 ? 0 : TOGGLER_ALT_APIC_ID) << 24);
		/*
		 * The toggle kicked the nester out of guest mode to take the
		 * update; give it (sometimes) time to enter L2 again, so that
		 * the IPI is posted to it while it runs L2 on its CPU.
		 */
		udelay((i % 4) * TOGGLER_DELAY_US);

		ipis_sent++;
		xapic_write_reg(APIC_ICR2, SET_APIC_DEST_FIELD(NESTER_APIC_ID));
		xapic_write_reg(APIC_ICR, APIC_DEST_PHYSICAL | APIC_DM_FIXED | IPI_VECTOR);

		deadline = rdtsc() + tsc_ms(IPI_TIMEOUT_MS);
		while (ipis_received < ipis_sent && (s64)(rdtsc() - deadline) < 0)
			cpu_relax();
		__GUEST_ASSERT(ipis_received == ipis_sent,
			       "After IPI %lu (waited up to %u ms) the nester has taken %lu IPIs (%lu nested runs)",
			       ipis_sent, IPI_TIMEOUT_MS, ipis_received, nested_runs);
	}

	xapic_write_reg(APIC_ID, 0);
	toggler_done = true;
	GUEST_SYNC(i);
	GUEST_DONE();
}

/*
 * Stay in non-root mode for a while: an IPI the toggler sends from another
 * CPU then finds the nester running L2, and KVM's posted-interrupt
 * notification makes it exit to L0 (the host counts it as PIN).
 */
static void l2_spin(int nr)
{
	int i;

	for (i = 0; i < nr; i++)
		__asm__ __volatile__("" ::: "memory");
}

static void l2_guest_code(void)
{
	for (;;) {
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		l2_spin(NR_L2_SPINS);
		vmcall();
	}
}

static void nester_guest_code(struct vmx_pages *vmx_pages)
{
	u64 start, limit;

	l1_prepare_l2(vmx_pages, l2_guest_code);

	xapic_enable();
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), NESTER_APIC_ID << 24);
	nester_ready = true;

	start = rdtsc();
	limit = tsc_ms((budget_seconds + 5) * 1000 + IPI_TIMEOUT_MS);
	while (!toggler_done) {
		__GUEST_ASSERT(rdtsc() - start < limit,
			       "Toggler did not finish (%lu IPIs sent, %lu received)",
			       ipis_sent, ipis_received);

		GUEST_ASSERT(nested_runs ? !vmresume() : !vmlaunch());
		l1_skip_vmcall();
		nested_runs++;

		sti_nop_cli();
	}

	/* The last IPI was taken before the toggler finished. */
	sti_nop_cli();
	GUEST_ASSERT_EQ(ipis_received, ipis_sent);
	GUEST_DONE();
}

/* The toggler's count of toggles, from its GUEST_SYNC. */
static u64 toggles;

static void *vcpu_thread_main(void *arg)
{
	struct vcpu_thread *t = arg;
	struct ucall uc;

	while (vcpu_run_to_sync(t->vcpu, &uc))
		toggles = uc.args[1];
	t->done = true;
	return NULL;
}

static void help(const char *name)
{
	printf("usage: %s [-n toggles] [-s seconds]\n", name);
	exit(KSFT_SKIP);
}

int main(int argc, char *argv[])
{
	struct host_pi_notifications before, after;
	struct vcpu_thread toggler = {}, nester = {};
	struct timespec deadline;
	gva_t vmx_pages_gva;
	struct kvm_vm *vm;
	u64 sent, received, runs;
	int opt;

	nr_toggles = DEFAULT_NR_TOGGLES;
	budget_seconds = DEFAULT_SECONDS;
	while ((opt = getopt(argc, argv, "n:s:h")) != -1) {
		switch (opt) {
		case 'n':
			nr_toggles = atoi_positive("Number of toggles", optarg);
			break;
		case 's':
			budget_seconds = atoi_positive("Seconds of toggling", optarg);
			break;
		default:
			help(argv[0]);
		}
	}

	require_vmx_apicv("nothing to defer");

	ksft_print_header();
	ksft_set_plan(1);

	vm = vm_create(2);
	toggler.vcpu = vm_vcpu_add(vm, 0, toggler_guest_code);
	nester.vcpu = vm_vcpu_add(vm, NESTER_APIC_ID, nester_guest_code);
	vcpu_alloc_vmx(vm, &vmx_pages_gva);
	vcpu_args_set(nester.vcpu, 1, vmx_pages_gva);
	virt_pg_map(vm, APIC_DEFAULT_GPA, APIC_DEFAULT_GPA);
	vm_install_exception_handler(vm, IPI_VECTOR, nester_ipi_handler);
	sync_global_to_guest(vm, nr_toggles);
	sync_global_to_guest(vm, budget_seconds);

	host_pi_notifications_read(&before);

	vcpu_thread_start(&nester, vcpu_thread_main);
	vcpu_thread_start(&toggler, vcpu_thread_main);
	vcpu_threads_pin_apart(&toggler, &nester);

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += budget_seconds + HOST_SLACK_SECONDS;
	vcpu_thread_join(&toggler, &deadline);
	vcpu_thread_join(&nester, &deadline);

	sent = read_guest_u64(vm, &ipis_sent);
	received = read_guest_u64(vm, &ipis_received);
	runs = read_guest_u64(vm, &nested_runs);

	host_pi_notifications_read(&after);
	host_pi_notifications_print_delta(&before, &after);

	ksft_print_msg("%lu inhibit toggles, %lu IPIs sent, %lu received, %lu L1->L2->L1 cycles\n",
		       toggles, sent, received, runs);
	TEST_ASSERT_EQ(sent, toggles);
	TEST_ASSERT_EQ(received, sent);
	TEST_ASSERT(sent > 0 && runs > 0, "Nothing happened");
	ksft_test_result_pass("%lu inhibit toggles vs %lu nested runs, IPI counts match\n",
			      sent, runs);

	kvm_vm_free(vm);
	ksft_finished();
}
