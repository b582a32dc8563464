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
 * Skips when the module is not loaded.
 */
#include <fcntl.h>
#include <sys/mount.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"

#define MODULE_SYSFS		"/sys/module/kvm_apicv_defer"
#define DEBUGFS			"/sys/kernel/debug"
#define COUNTERS_DIR		DEBUGFS "/kvm_apicv_defer"

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

static void l1_send_self_ipi(void)
{
	xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
}

static void l1_expect_irqs(int nr)
{
	int before = ipis_received;

	sti_nop_cli();
	__GUEST_ASSERT(ipis_received == before + nr,
		       "Wanted %d IRQ(s) in the window, got %d", nr,
		       ipis_received - before);
}

static void l1_eoi_and_check(void)
{
	GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
	xapic_write_reg(APIC_EOI, 0);
	__GUEST_ASSERT(!apic_vector_is_set(APIC_ISR, IPI_VECTOR),
		       "Vector 0x%x still in service after EOI", IPI_VECTOR);
}

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		l1_send_self_ipi();
		l1_expect_irqs(1);
		l1_eoi_and_check();
	}
}

static void l2_run_a_while(void)
{
	int i;

	for (i = 0; i < NR_L2_MSR_EXITS; i++)
		GUEST_ASSERT(rdmsr(MSR_IA32_APICBASE) & MSR_IA32_APICBASE_ENABLE);
}

static void l2_guest_code(void)
{
	/* 1 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_EXPECT_ONE_DEFERRED);
	vmcall();

	/* 3 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L2_SET_BLOCKIRQ);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_CLEAR_BLOCKIRQ);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_EXPECT_COALESCED);
	vmcall();

	/* 4 */
	l2_run_a_while();
	vmcall();

	/* 5 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L2_RESTORE_ID);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_EXPECT_ONE_DEFERRED);
	vmcall();

	GUEST_FAIL("L2 should not get here");
}

static void l1_run_l2(bool launch)
{
	GUEST_ASSERT(launch ? !vmlaunch() : !vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
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
	l1_check_ipis();

	/* 1: the pending IPI must stay pending while BLOCKIRQ is set. */
	l1_send_self_ipi();
	l1_run_l2(true);
	GUEST_SYNC(SYNC_L1_EXPECT_APPLIED);
	l1_expect_irqs(0);

	/* 2 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
	GUEST_SYNC(SYNC_L1_EXPECT_UNCHANGED);
	l1_expect_irqs(1);
	l1_eoi_and_check();
	l1_check_ipis();

	/* 3 */
	l1_run_l2(false);
	GUEST_SYNC(SYNC_L1_EXPECT_APPLIED);
	l1_check_ipis();

	/* 4 */
	GUEST_SYNC(SYNC_SNAPSHOT);
	l1_run_l2(false);
	GUEST_SYNC(SYNC_L1_EXPECT_UNCHANGED);
	l1_check_ipis();

	/* 5 */
	xapic_write_reg(APIC_ID, MODIFIED_APIC_ID << 24);
	l1_check_ipis();
	l1_run_l2(false);
	GUEST_SYNC(SYNC_L1_EXPECT_APPLIED);
	GUEST_ASSERT_EQ(xapic_read_reg(APIC_ID), 0);
	l1_check_ipis();

	GUEST_DONE();
}

enum { DEFERRED, COALESCED, APPLIED, REQUESTS, PENDING, NR_COUNTERS };

static const char * const counter_names[NR_COUNTERS] = {
	"deferred", "coalesced", "applied", "requests", "pending",
};

/* Counters the module must have; the others are checked when present. */
static const bool counter_required[NR_COUNTERS] = {
	[DEFERRED] = true, [APPLIED] = true, [REQUESTS] = true, [PENDING] = true,
};

struct counters {
	long long v[NR_COUNTERS];
	bool present[NR_COUNTERS];
};

static void read_counters(struct counters *c)
{
	char path[128], buf[32];
	int i, fd;
	ssize_t n;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < NR_COUNTERS; i++) {
		snprintf(path, sizeof(path), COUNTERS_DIR "/%s", counter_names[i]);
		fd = open(path, O_RDONLY);
		c->present[i] = fd >= 0;
		if (fd < 0) {
			TEST_ASSERT(!counter_required[i], "Cannot open %s", path);
			continue;
		}
		n = read(fd, buf, sizeof(buf) - 1);
		TEST_ASSERT(n > 0, "Cannot read %s", path);
		buf[n] = '\0';
		c->v[i] = strtoll(buf, NULL, 0);
		close(fd);
	}
}

static void print_counters(const char *what, const struct counters *c)
{
	char line[256];
	int i, len = 0;

	for (i = 0; i < NR_COUNTERS; i++)
		if (c->present[i])
			len += snprintf(line + len, sizeof(line) - len, " %s=%lld",
					counter_names[i], c->v[i]);
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
	const long long delta[NR_COUNTERS] = {
		[DEFERRED] = d_deferred, [COALESCED] = d_coalesced,
		[APPLIED] = d_applied, [REQUESTS] = d_requests,
	};
	int i;

	print_counters(step, now);
	for (i = 0; i < NR_COUNTERS; i++) {
		if (!now->present[i])
			continue;
		if (i == PENDING)
			TEST_ASSERT(now->v[i] == pending,
				    "%s: pending is %lld, wanted %lld", step,
				    now->v[i], pending);
		else
			TEST_ASSERT(now->v[i] - then->v[i] == delta[i],
				    "%s: %s moved by %lld, wanted %lld", step,
				    counter_names[i], now->v[i] - then->v[i], delta[i]);
	}
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

static void set_xapic_id(struct kvm_vcpu *vcpu, u8 old_id, u8 new_id)
{
	struct kvm_lapic_state lapic;
	u32 *id = (u32 *)&lapic.regs[APIC_ID];

	vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
	TEST_ASSERT(*id == (u32)old_id << 24, "xAPIC ID is 0x%x, wanted 0x%x",
		    *id, (u32)old_id << 24);
	*id = (u32)new_id << 24;
	vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
}

int main(int argc, char *argv[])
{
	struct counters snap, now;
	gva_t vmx_pages_gva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int step = 0;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	__TEST_REQUIRE(get_kvm_intel_param_bool("enable_apicv"),
		       "APICv disabled (kvm_intel.enable_apicv=N): nothing to defer");
	__TEST_REQUIRE(!access(MODULE_SYSFS, F_OK),
		       "kvm_apicv_defer.ko is not loaded (no " MODULE_SYSFS ")");
	if (access(COUNTERS_DIR, F_OK))
		mount("debugfs", DEBUGFS, "debugfs", 0, NULL);
	__TEST_REQUIRE(!access(COUNTERS_DIR, F_OK),
		       "kvm_apicv_defer is loaded but " COUNTERS_DIR
		       " is missing (debugfs not mounted, or CONFIG_DEBUG_FS=n)");

	ksft_print_header();
	ksft_set_plan(5);

	vm = vm_create_with_one_vcpu(&vcpu, l1_guest_code);
	vcpu_alloc_vmx(vm, &vmx_pages_gva);
	vcpu_args_set(vcpu, 1, vmx_pages_gva);
	virt_pg_map(vm, APIC_DEFAULT_GPA, APIC_DEFAULT_GPA);
	vm_install_exception_handler(vm, IPI_VECTOR, ipi_handler);

	read_counters(&snap);
	print_counters("at start", &snap);
	TEST_ASSERT(snap.v[PENDING] == 0, "%lld deferrals pending before the test",
		    snap.v[PENDING]);

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT(uc);
			/* NOT REACHED */
		case UCALL_SYNC:
			break;
		case UCALL_DONE:
			goto done;
		default:
			TEST_FAIL("Unexpected ucall %lu", uc.cmd);
		}

		switch (uc.args[1]) {
		case SYNC_SNAPSHOT:
			read_counters(&snap);
			break;
		case SYNC_L2_SET_BLOCKIRQ:
		case SYNC_L2_CLEAR_BLOCKIRQ:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			set_blockirq(vcpu, uc.args[1] == SYNC_L2_SET_BLOCKIRQ);
			break;
		case SYNC_L2_RESTORE_ID:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			set_xapic_id(vcpu, MODIFIED_APIC_ID, 0);
			break;
		case SYNC_L2_EXPECT_ONE_DEFERRED:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			read_counters(&now);
			expect_counters("one update while L2 runs", &snap, &now,
					1, 0, 0, 0, 1);
			break;
		case SYNC_L2_EXPECT_COALESCED:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			read_counters(&now);
			expect_counters("two updates while L2 runs", &snap, &now,
					1, 1, 0, 0, 1);
			break;
		case SYNC_L1_EXPECT_APPLIED:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			read_counters(&now);
			expect_counters("after the VM-Exit", &snap, &now,
					1, now.v[COALESCED] - snap.v[COALESCED],
					1, 1, 0);
			ksft_test_result_pass("step %d: deferred, then applied at VM-Exit\n",
					      ++step);
			break;
		case SYNC_L1_CLEAR_BLOCKIRQ:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			set_blockirq(vcpu, false);
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

done:
	TEST_ASSERT_EQ(step, 5);
	kvm_vm_free(vm);
	ksft_finished();
}
