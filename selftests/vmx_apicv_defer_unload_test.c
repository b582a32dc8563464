// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_unload_test
 *
 * kvm_apicv_defer.ko holds a reference on itself for every deferral it has
 * taken and not yet applied, so it cannot be unloaded while a vCPU has a
 * vmcs01 update pending: the update would be lost and vmcs01 left stale.
 *
 * L1 runs with its xAPIC ID modified (APICv inhibited) and launches L2.
 * While L2 runs, userspace restores the ID, so KVM activates APICv with L2
 * active and the module defers the vmcs01 refresh.  With the vCPU still in
 * L2 (stopped in userspace), delete_module(O_NONBLOCK) must fail with
 * EWOULDBLOCK and the module must stay loaded.  L2 then exits to L1, which
 * applies the deferral, and delete_module() must now succeed.  L1 then checks
 * that vmcs01 has APICv on (its self-IPIs are delivered, exactly once each,
 * and EOIed), and does one more inhibit/uninhibit round trip through L2 with
 * no module loaded.
 *
 * The test then loads the module again from the path given with -m (or
 * $KVM_APICV_DEFER_KO), leaving the host as it found it, and checks that a
 * fresh deferral works: the unload must have left the module's per-vCPU state
 * (KVM's hook word) clean.  Without a path it skips: it would otherwise leave
 * the module unloaded for whatever runs next.  If it fails after unloading
 * the module, it loads it back on its way out.
 *
 * Skips when the module is not loaded.  Needs CAP_SYS_MODULE.
 *
 *   vmx_apicv_defer_unload_test -m /path/to/kvm_apicv_defer.ko
 */
#include <fcntl.h>
#include <sys/syscall.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"

#define MODULE_NAME		"kvm_apicv_defer"
#define MODULE_SYSFS		"/sys/module/" MODULE_NAME
#define COUNTERS_DIR		"/sys/kernel/debug/" MODULE_NAME

#define IPI_VECTOR		0xe0
#define MODIFIED_APIC_ID	0x2a
#define NR_IPI_ROUNDS		3
#define NR_L2_MSR_EXITS		100

enum {
	SYNC_L2_RESTORE_ID = 1,		/* userspace uninhibits APICv */
	SYNC_L2_TRY_UNLOAD,		/* deferral pending: unload must fail */
	SYNC_L1_UNLOAD,			/* deferral applied: unload must work */
	SYNC_L1_CHECKED_UNLOADED,
	SYNC_L1_RELOAD,
	SYNC_L1_CHECKED_RELOADED,
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

static void l1_check_ipis(void)
{
	int i, before;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		before = ipis_received;
		xapic_write_reg(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | IPI_VECTOR);
		sti_nop_cli();
		__GUEST_ASSERT(ipis_received == before + 1,
			       "Self-IPI not delivered to L1: received %d, wanted %d",
			       ipis_received, before + 1);
		GUEST_ASSERT(apic_vector_is_set(APIC_ISR, IPI_VECTOR));
		xapic_write_reg(APIC_EOI, 0);
		__GUEST_ASSERT(!apic_vector_is_set(APIC_ISR, IPI_VECTOR),
			       "Vector 0x%x still in service after EOI", IPI_VECTOR);
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
	/* Module loaded: the update is deferred and unload must fail. */
	GUEST_SYNC(SYNC_L2_RESTORE_ID);
	l2_run_a_while();
	GUEST_SYNC(SYNC_L2_TRY_UNLOAD);
	l2_run_a_while();
	vmcall();

	/* Module unloaded: KVM's own vmcs01 guard. */
	GUEST_SYNC(SYNC_L2_RESTORE_ID);
	l2_run_a_while();
	vmcall();

	/* Module reloaded: deferred again. */
	GUEST_SYNC(SYNC_L2_RESTORE_ID);
	l2_run_a_while();
	vmcall();

	GUEST_FAIL("L2 should not get here");
}

static void l1_run_l2(bool launch)
{
	GUEST_ASSERT(launch ? !vmlaunch() : !vmresume());
	GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), EXIT_REASON_VMCALL);
	vmwrite(GUEST_RIP, vmreadz(GUEST_RIP) + vmreadz(VM_EXIT_INSTRUCTION_LEN));
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
#define L2_GUEST_STACK_SIZE 512
	unsigned long l2_guest_stack[L2_GUEST_STACK_SIZE];

	GUEST_ASSERT(prepare_for_vmx_operation(vmx_pages));
	GUEST_ASSERT(load_vmcs(vmx_pages));
	prepare_vmcs(vmx_pages, l2_guest_code, &l2_guest_stack[L2_GUEST_STACK_SIZE]);
	vmwrite(CPU_BASED_VM_EXEC_CONTROL,
		vmreadz(CPU_BASED_VM_EXEC_CONTROL) | CPU_BASED_USE_MSR_BITMAPS);

	xapic_enable();
	l1_check_ipis();

	l1_inhibit_and_run_l2(true);
	GUEST_SYNC(SYNC_L1_UNLOAD);
	l1_check_ipis();

	l1_inhibit_and_run_l2(false);
	l1_check_ipis();
	GUEST_SYNC(SYNC_L1_CHECKED_UNLOADED);

	GUEST_SYNC(SYNC_L1_RELOAD);
	l1_inhibit_and_run_l2(false);
	l1_check_ipis();
	GUEST_SYNC(SYNC_L1_CHECKED_RELOADED);
	GUEST_DONE();
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

static bool module_loaded(void)
{
	return !access(MODULE_SYSFS, F_OK);
}

/* One of the module's debugfs counters, or -1 without debugfs. */
static long long read_counter(const char *name)
{
	char path[128], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), COUNTERS_DIR "/%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	TEST_ASSERT(n > 0, "Cannot read %s", path);
	buf[n] = '\0';
	return strtoll(buf, NULL, 0);
}

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
	TEST_ASSERT(module_loaded(), "%s loaded but " MODULE_SYSFS " is missing", path);
}

/* The module to load back if the test fails after unloading it. */
static const char *reload_on_exit;

static void reload_module_on_exit(void)
{
	if (!reload_on_exit || module_loaded())
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

int main(int argc, char *argv[])
{
	const char *ko = getenv("KVM_APICV_DEFER_KO");
	gva_t vmx_pages_gva;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	long long pending;
	int opt, r;

	while ((opt = getopt(argc, argv, "m:h")) != -1) {
		switch (opt) {
		case 'm':
			ko = optarg;
			break;
		default:
			help(argv[0]);
		}
	}

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_VMX));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));
	__TEST_REQUIRE(get_kvm_intel_param_bool("enable_apicv"),
		       "APICv disabled (kvm_intel.enable_apicv=N): nothing to defer");
	__TEST_REQUIRE(module_loaded(),
		       "kvm_apicv_defer.ko is not loaded (no " MODULE_SYSFS ")");
	__TEST_REQUIRE(ko && *ko,
		       "No path to kvm_apicv_defer.ko (-m or $KVM_APICV_DEFER_KO) to reload it after unloading");
	TEST_ASSERT(!access(ko, R_OK), "Cannot read %s", ko);

	atexit(reload_module_on_exit);
	ksft_print_header();
	ksft_set_plan(4);

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
			break;
		case UCALL_DONE:
			goto done;
		default:
			TEST_FAIL("Unexpected ucall %lu", uc.cmd);
		}

		switch (uc.args[1]) {
		case SYNC_L2_RESTORE_ID:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			set_xapic_id(vcpu, MODIFIED_APIC_ID, 0);
			break;
		case SYNC_L2_TRY_UNLOAD:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			pending = read_counter("pending");
			TEST_ASSERT(pending == -1 || pending == 1,
				    "%lld deferrals pending, wanted 1", pending);
			r = delete_module(MODULE_NAME, O_NONBLOCK);
			TEST_ASSERT(r == -1 && errno == EWOULDBLOCK,
				    "delete_module() with a deferral pending returned %d (errno %d), wanted EWOULDBLOCK",
				    r, r ? errno : 0);
			TEST_ASSERT(module_loaded(), "Module gone after a failed unload");
			ksft_test_result_pass("unload refused while a deferral is pending\n");
			break;
		case SYNC_L1_UNLOAD:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active");
			pending = read_counter("pending");
			TEST_ASSERT(pending == -1 || pending == 0,
				    "%lld deferrals pending after VM-Exit, wanted 0", pending);
			reload_on_exit = ko;
			r = delete_module(MODULE_NAME, O_NONBLOCK);
			TEST_ASSERT(!r, "delete_module() failed after the deferral was applied");
			TEST_ASSERT(!module_loaded(), MODULE_SYSFS " still present after unload");
			ksft_test_result_pass("unload after the deferral was applied at VM-Exit\n");
			break;
		case SYNC_L1_CHECKED_UNLOADED:
			ksft_test_result_pass("vmcs01 correct after unload and without module\n");
			break;
		case SYNC_L1_RELOAD:
			load_module(ko);
			break;
		case SYNC_L1_CHECKED_RELOADED:
			pending = read_counter("pending");
			TEST_ASSERT(pending == -1 || pending == 0,
				    "%lld deferrals pending after reload and VM-Exit, wanted 0",
				    pending);
			/* A fresh module: its counters started at zero. */
			if (pending == 0) {
				TEST_ASSERT_EQ(read_counter("deferred"), 1);
				TEST_ASSERT_EQ(read_counter("applied"), 1);
			}
			ksft_test_result_pass("reloaded module defers and applies again\n");
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

done:
	kvm_vm_free(vm);
	ksft_finished();
}
