// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_debugfs_test
 *
 * kvm_apicv_defer.ko defers vmcs01 APICv refreshes that KVM makes while L2
 * is active and applies them at the next nested VM-Exit.  Its debugfs
 * counters (/sys/kernel/debug/kvm_apicv_defer/) say what it did:
 *
 *   deferred    refreshes taken while L2 was active with nothing pending
 *   coalesced   refreshes taken while L2 was active with a deferral pending
 *   applied     deferrals applied to vmcs01 at a nested VM-Exit
 *   requests    KVM_REQ_APICV_UPDATE raised at a nested VM-Exit
 *   pending     deferrals not yet handed back by KVM (a gauge)
 *
 * This test drives single APICv updates at known points and checks that the
 * counters move by exactly what each one predicts (this VM is the only user
 * of the module while the test runs):
 *
 *  1. BLOCKIRQ set while L2 runs: deferred +1, pending 1 while L2 still
 *     runs, nothing applied yet; at L2's VM-Exit applied +1, requests +1,
 *     pending 0.
 *  2. BLOCKIRQ cleared while L1 runs: nothing moves (KVM writes vmcs01).
 *  3. BLOCKIRQ set, then cleared, in one L2 run: deferred +1, coalesced +1,
 *     pending 1; at VM-Exit applied +1, requests +1, pending 0.
 *  4. An L2 run without APICv updates: nothing moves at its VM-Exit.
 *  5. L1 enters L2 with its xAPIC ID modified (inhibited) and userspace
 *     restores the ID while L2 runs: the deferred activation moves deferred,
 *     then applied and requests, by one each.
 *
 * After each step L1 sends itself IPIs and EOIs them, and checks that it
 * gets exactly what BLOCKIRQ allows: the counters moving is not enough,
 * vmcs01 must be right.
 *
 * On the rig's kernels, whose test instrumentation counts VMPTRLDs
 * (/sys/module/kvm_intel/parameters/vmptrld_count), the updates of steps 1,
 * 3 and 5 must also load no VMCS at all while L2 runs: a deferral that
 * still writes vmcs01 through the guard loads vmcs01 and vmcs02 again.  The
 * test pins itself to one host CPU, so that the vCPU is never reloaded
 * elsewhere; the count is the whole host's, so no other VM may run
 * meanwhile (the rig runs one test at a time).
 *
 * Skips when the module is not loaded.
 *
 * Request-only build: must fail.
 */
#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define COUNTERS_DIR		APICV_DEFER_COUNTERS_DIR

#define IPI_VECTOR		0xe0
#define MODIFIED_APIC_ID	0x2a
#define NR_IPI_ROUNDS		2
#define NR_L2_MSR_EXITS		50

enum {
	SYNC_SNAPSHOT = 1,		/* host: read the counters */
	SYNC_L2_SET_BLOCKIRQ,
	SYNC_L2_CLEAR_BLOCKIRQ,
	SYNC_L2_EXPECT_ONE_DEFERRED,
	SYNC_L2_EXPECT_COALESCED,
	SYNC_L2_RESTORE_ID,
	SYNC_L1_EXPECT_APPLIED,
	SYNC_L1_CLEAR_BLOCKIRQ,
	SYNC_L1_EXPECT_UNCHANGED,
};

static void l2_guest_code(void)
{
	/* 1 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	GUEST_SYNC(SYNC_L2_EXPECT_ONE_DEFERRED);
	vmcall();

	/* 3 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	GUEST_SYNC(SYNC_L2_EXPECT_COALESCED);
	vmcall();

	/* 4 */
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	vmcall();

	/* 5 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L2_RESTORE_ID);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	GUEST_SYNC(SYNC_L2_EXPECT_ONE_DEFERRED);
	vmcall();

	GUEST_FAIL("L2 should not get here");
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	l1_prepare_l2(vmx_pages, l2_guest_code);

	xapic_enable();
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, 0);

	/* 1: the pending IPI must stay pending while BLOCKIRQ is set. */
	xapic_send_self_ipi(IPI_VECTOR);
	l1_run_l2(true);
	GUEST_SYNC(SYNC_L1_EXPECT_APPLIED);
	irq_window_expect(0);

	/* 2 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
	GUEST_SYNC(SYNC_L1_EXPECT_UNCHANGED);
	irq_window_expect(1);
	xapic_eoi_and_check(IPI_VECTOR, 0);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, 0);

	/* 3 */
	l1_run_l2(false);
	GUEST_SYNC(SYNC_L1_EXPECT_APPLIED);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, 0);

	/* 4 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	l1_run_l2(false);
	GUEST_SYNC(SYNC_L1_EXPECT_UNCHANGED);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, 0);

	/* 5 */
	xapic_write_reg(APIC_ID, MODIFIED_APIC_ID << 24);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, 0);
	l1_run_l2(false);
	GUEST_SYNC(SYNC_L1_EXPECT_APPLIED);
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
	xapic_check_self_ipis(IPI_VECTOR, NR_IPI_ROUNDS, 0);

	GUEST_DONE();
}

/* Counters the module must have; the others are checked when present. */
static const bool counter_required[NR_APICV_DEFER_COUNTERS] = {
	[APICV_DEFER_DEFERRED] = true, [APICV_DEFER_APPLIED] = true,
	[APICV_DEFER_REQUESTS] = true, [APICV_DEFER_PENDING] = true,
};

struct counters {
	long long v[NR_APICV_DEFER_COUNTERS];
	bool present[NR_APICV_DEFER_COUNTERS];
};

static void read_counters(struct counters *c)
{
	const char *name;
	int i;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++) {
		name = apicv_defer_counter_names[i];
		c->present[i] = apicv_defer_read_counter(name, &c->v[i]);
		TEST_ASSERT(c->present[i] || !counter_required[i],
			    "Cannot open " COUNTERS_DIR "/%s", name);
	}
}

/* VMPTRLDs since the update was asked for; -1 without the instrumentation. */
static long long vmptrlds_before;

static void expect_no_vmcs_load(const char *step)
{
	long long now = read_vmptrld_count();

	if (now < 0 || vmptrlds_before < 0)
		return;
	TEST_ASSERT(now == vmptrlds_before,
		    "%s: %lld VMCS loads (VMPTRLD) while L2 ran, wanted none",
		    step, now - vmptrlds_before);
}

static void print_counters(const char *what, const struct counters *c)
{
	char line[256];
	int i, len = 0;

	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++)
		if (c->present[i])
			len += snprintf(line + len, sizeof(line) - len, " %s=%lld",
					apicv_defer_counter_names[i], c->v[i]);
	ksft_print_msg("%s:%s\n", what, line);
}

/*
 * Check @now against @then: counters other than "pending" must have moved by
 * the given deltas; "pending" must equal @pending.
 */
static void expect_counters(const char *step, const struct counters *then,
			    const struct counters *now, long long d_deferred,
			    long long d_coalesced, long long d_applied,
			    long long d_requests, long long pending)
{
	const long long delta[NR_APICV_DEFER_COUNTERS] = {
		[APICV_DEFER_DEFERRED] = d_deferred,
		[APICV_DEFER_COALESCED] = d_coalesced,
		[APICV_DEFER_APPLIED] = d_applied,
		[APICV_DEFER_REQUESTS] = d_requests,
	};
	int i;

	print_counters(step, now);
	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++) {
		if (!now->present[i])
			continue;
		if (i == APICV_DEFER_PENDING)
			TEST_ASSERT(now->v[i] == pending,
				    "%s: pending is %lld, wanted %lld", step,
				    now->v[i], pending);
		else
			TEST_ASSERT(now->v[i] - then->v[i] == delta[i],
				    "%s: %s moved by %lld, wanted %lld", step,
				    apicv_defer_counter_names[i],
				    now->v[i] - then->v[i], delta[i]);
	}
}

int main(int argc, char *argv[])
{
	struct counters snap, now;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int step = 0;

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	require_apicv_defer();
	__TEST_REQUIRE(apicv_defer_have_counters(),
		       "kvm_apicv_defer is loaded but " COUNTERS_DIR
		       " is missing (debugfs not mounted, or CONFIG_DEBUG_FS=n)");

	ksft_print_header();
	ksft_set_plan(5);
	pin_self_to_cpu(sched_getcpu());

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);

	read_counters(&snap);
	print_counters("at start", &snap);
	TEST_ASSERT(snap.v[APICV_DEFER_PENDING] == 0, "%lld deferrals pending before the test",
		    snap.v[APICV_DEFER_PENDING]);

	while (vcpu_run_to_sync(vcpu, &uc)) {
		switch (uc.args[1]) {
		case SYNC_SNAPSHOT:
			read_counters(&snap);
			break;
		case SYNC_L2_SET_BLOCKIRQ:
		case SYNC_L2_CLEAR_BLOCKIRQ:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			if (uc.args[1] == SYNC_L2_SET_BLOCKIRQ)
				vmptrlds_before = read_vmptrld_count();
			vcpu_set_blockirq(vcpu, uc.args[1] == SYNC_L2_SET_BLOCKIRQ);
			break;
		case SYNC_L2_RESTORE_ID:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			vmptrlds_before = read_vmptrld_count();
			vcpu_change_xapic_id(vcpu, MODIFIED_APIC_ID, 0);
			break;
		case SYNC_L2_EXPECT_ONE_DEFERRED:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			read_counters(&now);
			expect_counters("one update while L2 runs", &snap, &now,
					1, 0, 0, 0, 1);
			expect_no_vmcs_load("one update while L2 runs");
			break;
		case SYNC_L2_EXPECT_COALESCED:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			read_counters(&now);
			expect_counters("two updates while L2 runs", &snap, &now,
					1, 1, 0, 0, 1);
			expect_no_vmcs_load("two updates while L2 runs");
			break;
		case SYNC_L1_EXPECT_APPLIED:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			read_counters(&now);
			expect_counters("after the VM-Exit", &snap, &now, 1,
					now.v[APICV_DEFER_COALESCED] -
					snap.v[APICV_DEFER_COALESCED],
					1, 1, 0);
			ksft_test_result_pass("step %d: deferred, then applied at VM-Exit\n",
					      ++step);
			break;
		case SYNC_L1_CLEAR_BLOCKIRQ:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			vcpu_set_blockirq(vcpu, false);
			break;
		case SYNC_L1_EXPECT_UNCHANGED:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			read_counters(&now);
			expect_counters("nothing to defer", &snap, &now, 0, 0, 0, 0, 0);
			ksft_test_result_pass("step %d: counters unchanged\n", ++step);
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

	TEST_ASSERT_EQ(step, 5);
	kvm_vm_free(vm);
	ksft_finished();
}
