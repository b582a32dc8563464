// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_unload_test
 *
 * kvm_apicv_defer.ko may be unloaded at any time, even forcibly and while a
 * vCPU has a vmcs01 APICv update deferred: KVM keeps the record of the
 * deferral, tagged with the hook registration that took it, and applies the
 * update itself at the vCPU's next nested VM-Exit if that registration is
 * gone.  A module loaded meanwhile must never be handed the old deferral.
 *
 * L1 runs with its xAPIC ID modified (APICv inhibited) and launches L2.
 * While L2 runs, userspace restores the ID, so KVM activates APICv with L2
 * active and the module defers the vmcs01 refresh.  With the vCPU still in
 * L2 (stopped in userspace, the deferral pending), three rounds, two with
 * SVI recorded instead, and a last one:
 *
 *  1. delete_module(O_NONBLOCK) must succeed, and the module is loaded again
 *     at once, still with the old deferral pending: at L2's VM-Exit KVM must
 *     apply it (L1's self-IPIs are delivered exactly once each and EOIed,
 *     i.e. vmcs01 has APICv on) and the new module's counters must not move.
 *  2. delete_module(O_NONBLOCK | O_TRUNC), i.e. `rmmod -f`, must succeed too;
 *     L2's VM-Exit then finds no hook at all, and L1 checks vmcs01 again.
 *  3. With the module loaded again, a fresh deferral is taken and applied by
 *     the module at VM-Exit: deferred == applied == 1, nothing pending.
 *  4. SVI, which KVM records for vmcs01 while L2 runs as long as a hook is
 *     registered: L2 sends L1 a self-IPI through L1's xAPIC (L2's accesses
 *     to it are emulated on L1's APIC), and as L1 does not intercept
 *     external interrupts KVM injects it into L2, acknowledging it on L1's
 *     APIC (SVI recorded).  Then `rmmod -f`, and L2 EOIs it the same way:
 *     with no hook KVM writes SVI to vmcs01 at once, and that write must
 *     also void the older record, or the drain at L2's VM-Exit writes the
 *     EOIed vector back and PPR virtualization masks L1's next self-IPI.
 *  5. Round 4 with the module kept loaded: L2's EOI is recorded too, over
 *     the first record, and the drain must write that later value.
 *  6. Round 1, and then, still in the same L2 run, BLOCKIRQ set and (at
 *     L2's next stop) cleared: the new registration must take the first
 *     update as a deferral of its own (the old one is not its own), the
 *     second as coalesced, and apply them at L2's VM-Exit.
 *
 * On the rig's kernels, which count VMPTRLDs (vmx_apicv_defer_debugfs_test
 * says how), L2's EOI must load vmcs01 in round 4, as 7.2 does: with the
 * module gone KVM must not defer anything any more.  In round 5 it must
 * load no VMCS.  The test pins itself to one host CPU for that; the count
 * is the whole host's, so no other VM may run meanwhile (the rig runs one
 * test at a time).
 *
 * Round 3 is where the TEST-ONLY request-only build fails (vmcs01 stale).
 * The test leaves the module loaded, as it found it, also when it fails
 * (atexit), from the path given with -m (or $KVM_APICV_DEFER_KO); without a
 * path it skips.  Skips when the module is not loaded.  Needs CAP_SYS_MODULE.
 *
 *   vmx_apicv_defer_unload_test -m /path/to/kvm_apicv_defer.ko
 *
 * Request-only build: must fail.
 */
#include <fcntl.h>
#include <sys/syscall.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define MODULE_NAME		"kvm_apicv_defer"
#define MODULE_SYSFS		APICV_DEFER_SYSFS

#define IPI_VECTOR		0xe0
#define MODIFIED_APIC_ID	0x2a
#define NR_IPI_ROUNDS		3
#define NR_L2_MSR_EXITS		100

#define NR_ROUNDS		6
#define ROUND_SVI		3	/* and ROUND_SVI + 1, with the module kept */
#define ROUND_RELOAD_UPDATE	5

static const char * const round_names[NR_ROUNDS] = {
	"unload and reload with a deferral pending: KVM applied it",
	"rmmod -f with a deferral pending: KVM applied it",
	"reloaded module defers and applies",
	"rmmod -f with SVI recorded, SVI written again in L2: the later write stands",
	"SVI recorded twice while L2 runs: the later record stands",
	"reload with a deferral pending, then updates in the same L2 run: the new module defers its own",
};

enum {
	SYNC_L2_RESTORE_ID = 1,		/* userspace uninhibits APICv */
	SYNC_L2_PENDING,		/* the update is deferred: unload here */
	SYNC_L2_RUNNING,		/* still in L2: round 6 updates again */
	SYNC_L1_CHECKED,		/* L1 saw vmcs01 right after the VM-Exit */
	SYNC_L2_SVI_RECORDED,		/* SVI recorded for vmcs01: round 4 unloads */
	SYNC_L2_SVI_WRITTEN,		/* L2 EOIed: count the VMPTRLDs */
};

/* Set by L1 for L2 (they share memory): this L2 run is round 4's or 5's. */
static volatile bool l2_svi_round;

static void l1_check_ipis(void)
{
	int i, before;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		before = irqs_received;
		xapic_send_self_ipi(IPI_VECTOR);
		sti_nop_cli();
		__GUEST_ASSERT(irqs_received == before + 1,
			       "Self-IPI not delivered to L1: received %d, wanted %d",
			       irqs_received, before + 1);
		xapic_eoi_and_check(IPI_VECTOR, 0);
	}
}

/* Rounds 4 and 5 in L2, on L1's xAPIC. */
static void l2_svi_round_code(void)
{
	int before = irqs_received;

	/* Injected into L2 and acknowledged on L1's APIC: SVI recorded. */
	xapic_send_self_ipi(IPI_VECTOR);
	sti_nop_cli();
	__GUEST_ASSERT(irqs_received == before + 1,
		       "L1's self-IPI not injected into L2: received %d, wanted %d",
		       irqs_received, before + 1);
	GUEST_SYNC(SYNC_L2_SVI_RECORDED);
	/*
	 * SVI with no IRQ in service: round 4 has no hook now, so KVM writes
	 * vmcs01 at once; round 5 records it again.
	 */
	xapic_write_reg(APIC_EOI, 0);
	GUEST_SYNC(SYNC_L2_SVI_WRITTEN);
	vmcall();
}

static void l2_guest_code(void)
{
	for (;;) {
		if (l2_svi_round) {
			l2_svi_round_code();
			continue;
		}
		GUEST_SYNC(SYNC_L2_RESTORE_ID);
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		GUEST_SYNC(SYNC_L2_PENDING);
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		GUEST_SYNC(SYNC_L2_RUNNING);
		l2_exits_to_l0(NR_L2_MSR_EXITS);
		vmcall();
	}
}

static void l1_inhibit_and_run_l2(bool launch)
{
	xapic_write_reg(APIC_ID, MODIFIED_APIC_ID << 24);
	l1_check_ipis();
	l1_run_l2(launch);
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	int round;

	l1_prepare_l2(vmx_pages, l2_guest_code);

	xapic_enable();
	l1_check_ipis();

	for (round = 0; round < ROUND_SVI; round++) {
		l1_inhibit_and_run_l2(!round);
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);
	}
	l2_svi_round = true;
	for (; round < ROUND_RELOAD_UPDATE; round++) {
		l1_run_l2(false);
		GUEST_ASSERT(!xapic_vector_is_set(APIC_ISR, IPI_VECTOR));
		l1_check_ipis();
		GUEST_SYNC(SYNC_L1_CHECKED);
	}
	l2_svi_round = false;
	l1_inhibit_and_run_l2(false);
	l1_check_ipis();
	GUEST_SYNC(SYNC_L1_CHECKED);
	GUEST_DONE();
}

/* One of the module's debugfs counters, or -1 without debugfs. */
static long long read_counter(const char *name)
{
	long long v;

	return apicv_defer_read_counter(name, &v) ? v : -1;
}

/*
 * The module's counters at its last load (all zero), or, for the module
 * loaded before the test, when the test started.
 */
static long long base_deferred, base_applied, base_requests;

static int delete_module(const char *name, unsigned int flags)
{
	return syscall(__NR_delete_module, name, flags);
}

static int __load_module(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -1;
	r = syscall(__NR_finit_module, fd, "", 0);
	close(fd);
	return r;
}

static void load_module(const char *path)
{
	TEST_ASSERT(!__load_module(path), "finit_module(%s) failed", path);
	TEST_ASSERT(apicv_defer_loaded(), "%s loaded but " MODULE_SYSFS " is missing", path);
	base_deferred = 0;
	base_applied = 0;
	base_requests = 0;
}

/* The module to load back if the test fails after unloading it. */
static const char *reload_on_exit;

static void reload_module_on_exit(void)
{
	if (!reload_on_exit || apicv_defer_loaded())
		return;
	if (__load_module(reload_on_exit))
		fprintf(stderr, "Could not load %s back: %s\n", reload_on_exit,
			strerror(errno));
	else
		fprintf(stderr, "Loaded %s back after the failure\n", reload_on_exit);
}

static void help(const char *name)
{
	printf("usage: %s -m /path/to/kvm_apicv_defer.ko\n", name);
	exit(KSFT_SKIP);
}

static void counters_from_now(void)
{
	base_deferred = read_counter("deferred");
	base_applied = read_counter("applied");
	base_requests = read_counter("requests");
}

/* The module's counters moved by exactly this since the base. */
static void check_counters(long long deferred, long long applied, long long pending)
{
	if (read_counter("pending") == -1)
		return;
	TEST_ASSERT_EQ(read_counter("deferred") - base_deferred, deferred);
	TEST_ASSERT_EQ(read_counter("applied") - base_applied, applied);
	TEST_ASSERT_EQ(read_counter("requests") - base_requests, applied);
	TEST_ASSERT_EQ(read_counter("pending"), pending);
}

/* VMPTRLDs at L2's SYNC_L2_SVI_RECORDED; -1 without the instrumentation. */
static long long vmptrlds_before;

/* L2's EOI in round 4 (no hook) or 5 (the module loaded). */
static void check_svi_write(int round)
{
	long long loads = read_vmptrld_count() - vmptrlds_before;

	if (vmptrlds_before < 0)
		return;
	if (round == ROUND_SVI)
		TEST_ASSERT(loads > 0,
			    "No VMCS load (VMPTRLD) for L2's EOI with the module gone: KVM still defers");
	else
		TEST_ASSERT(!loads,
			    "%lld VMCS loads (VMPTRLD) for L2's EOI with the module loaded, wanted none",
			    loads);
}

static void unload_module(unsigned int flags)
{
	int r = delete_module(MODULE_NAME, flags);

	TEST_ASSERT(!r, "delete_module(%s) with a deferral pending failed: errno %d",
		    flags & O_TRUNC ? "O_NONBLOCK | O_TRUNC" : "O_NONBLOCK", errno);
	TEST_ASSERT(!apicv_defer_loaded(), MODULE_SYSFS " still present after unload");
}

int main(int argc, char *argv[])
{
	const char *ko = getenv("KVM_APICV_DEFER_KO");
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int opt, round = 0;

	while ((opt = getopt(argc, argv, "m:h")) != -1) {
		switch (opt) {
		case 'm':
			ko = optarg;
			break;
		default:
			help(argv[0]);
		}
	}

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	require_apicv_defer();
	__TEST_REQUIRE(ko && *ko,
		       "No path to kvm_apicv_defer.ko (-m or $KVM_APICV_DEFER_KO) to reload it after unloading");
	TEST_ASSERT(!access(ko, R_OK), "Cannot read %s", ko);

	reload_on_exit = ko;
	atexit(reload_module_on_exit);
	counters_from_now();
	ksft_print_header();
	ksft_set_plan(NR_ROUNDS);
	pin_self_to_cpu(sched_getcpu());

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	while (vcpu_run_to_sync(vcpu, &uc)) {
		switch (uc.args[1]) {
		case SYNC_L2_RESTORE_ID:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			vcpu_change_xapic_id(vcpu, MODIFIED_APIC_ID, 0);
			break;
		case SYNC_L2_PENDING:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			check_counters(1, 0, 1);
			if (round == 0 || round == ROUND_RELOAD_UPDATE) {
				unload_module(O_NONBLOCK);
				/* A new registration, while the old deferral is pending. */
				load_module(ko);
				check_counters(0, 0, 0);
				if (round == ROUND_RELOAD_UPDATE)
					vcpu_set_blockirq(vcpu, true);
			} else if (round == 1) {
				unload_module(O_NONBLOCK | O_TRUNC);
			}
			break;
		case SYNC_L2_RUNNING:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			if (round == ROUND_RELOAD_UPDATE) {
				/* BLOCKIRQ set: a deferral of its own. */
				check_counters(1, 0, 1);
				vcpu_set_blockirq(vcpu, false);
			}
			break;
		case SYNC_L2_SVI_RECORDED:
			TEST_ASSERT(round >= ROUND_SVI && vcpu_in_l2(vcpu), "Unexpected L2 sync");
			if (round == ROUND_SVI)
				unload_module(O_NONBLOCK | O_TRUNC);
			vmptrlds_before = read_vmptrld_count();
			break;
		case SYNC_L2_SVI_WRITTEN:
			TEST_ASSERT(round >= ROUND_SVI && vcpu_in_l2(vcpu), "Unexpected L2 sync");
			check_svi_write(round);
			break;
		case SYNC_L1_CHECKED:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			if (round == 0) {
				/* KVM applied the old deferral, not the new hook. */
				check_counters(0, 0, 0);
			} else if (round == 1 || round == ROUND_SVI) {
				load_module(ko);
			} else if (round == ROUND_SVI + 1) {
				/* KVM's own record: nothing for the module. */
				check_counters(0, 0, 0);
			} else {
				check_counters(1, 1, 0);
			}
			ksft_test_result_pass("%s\n", round_names[round++]);
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

	TEST_ASSERT_EQ(round, NR_ROUNDS);
	kvm_vm_free(vm);
	ksft_finished();
}
