// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_defer_exit_paths_test
 *
 * Every way out of L2 with an APICv update of L1 deferred.  KVM (with
 * kvm_apicv_defer.ko loaded) writes no VMCS when L1's APICv activation
 * changes while L2 is active, and drains the deferral in
 * __nested_vmx_vmexit(), so every path that leaves L2 must go through it.
 * One scenario per path, each in a fresh VM (and a child process, so one
 * failing path does not hide the others):
 *
 *   smi               KVM_SMI while L2 runs: the SMI is taken from L2,
 *                     vmx_enter_smm() -> nested_vmx_vmexit(vcpu, -1, 0, 0).
 *                     The SMI handler reports to userspace (in SMM, L2 left,
 *                     KVM_STATE_NESTED_SMM_GUEST_MODE set), then RSM
 *                     re-enters L2 (vmx_leave_smm()), which VMCALLs to L1.
 *                     BLOCKIRQ blocks SMIs too (kvm_check_and_inject_events()
 *                     returns before injecting them), so when it must stay
 *                     set (deactivate, below) userspace first modifies L1's
 *                     xAPIC ID, which keeps APICv inhibited, clears BLOCKIRQ
 *                     for the SMI, and sets it again from the SMI handler's
 *                     exit: neither changes APICv's activation.
 *   set_nested_state  KVM_SET_NESTED_STATE on the same vCPU with the state
 *                     just read (L2 active): vmx_set_nested_state() ->
 *                     vmx_leave_nested() -> nested_vmx_vmexit(vcpu, -1, 0, 0),
 *                     then L2 is entered again and VMCALLs to L1.
 *   init              L2 sends INIT to all including self through L1's
 *                     xAPIC (emulated for L2); KVM latches it, and
 *                     vmx_check_nested_events() turns it into a nested
 *                     VM-Exit, nested_vmx_vmexit(vcpu, EXIT_REASON_INIT_SIGNAL,
 *                     0, 0); L1, now in VMX root operation, has INIT blocked
 *                     and runs on (vmx_apic_init_signal_blocked()).
 *   feat_ctl          userspace writes 0 to MSR_IA32_FEAT_CTL (host
 *                     initiated, vcpu_set_msr()) while L2 is active:
 *                     vmx_set_msr() -> vmx_leave_nested(); L1 resumes at
 *                     its VM-Exit RIP out of VMX operation (no VMCS to read).
 *   triple_fault      L2 loads an empty IDT and executes INT3; the CPU
 *                     triple-faults in VMX non-root operation, and L0
 *                     reflects the VM-Exit: nested_vmx_reflect_vmexit() ->
 *                     nested_vmx_vmexit(vcpu, EXIT_REASON_TRIPLE_FAULT, ...).
 *   triple_fault_event  userspace makes a triple fault pending
 *                     (KVM_SET_VCPU_EVENTS, KVM_CAP_X86_TRIPLE_FAULT_EVENT):
 *                     KVM_REQ_TRIPLE_FAULT -> nested_vmx_triple_fault() ->
 *                     nested_vmx_vmexit(vcpu, EXIT_REASON_TRIPLE_FAULT, 0, 0).
 *   vm_destroy        the VM is freed with the deferral pending
 *                     (kvm_vm_free() drops its last reference): KVM destroys
 *                     the vCPU, vmx_vcpu_free() -> nested_vmx_free_vcpu() ->
 *                     vmx_leave_nested().  L1 never runs again, so only
 *                     the module's counters can witness it (and the
 *                     harness's check of the kernel log); see
 *                     vmx_apicv_defer_teardown_test.c for more rounds.
 *
 * A failed nested VM-Entry also leaves guest mode, without
 * __nested_vmx_vmexit(): no activation change is serviced between entering
 * guest mode and the failure, but loading the VM-entry MSRs can defer an
 * SVI write (vmx_apicv_defer_entry_fail_test.c).
 *
 * Each path runs in two directions:
 *
 *   deactivate  L1 sends itself an IPI with IRQs disabled and enters L2; L2
 *               exits to userspace (GUEST_SYNC), which sets
 *               KVM_GUESTDBG_BLOCKIRQ (APICv inhibited); L2 runs on, so KVM
 *               services KVM_REQ_APICV_UPDATE with L2 active, and syncs
 *               again; userspace checks L2 is still active and takes the
 *               path.  Back in L1, a one-instruction IRQ window must deliver
 *               nothing: with a stale vmcs01 (virtual-interrupt delivery
 *               still on), the CPU delivers the IPI from RVI behind KVM's
 *               back.  Userspace then clears BLOCKIRQ while L1 runs, and the
 *               IPI must arrive exactly once.
 *   activate    BLOCKIRQ is set while L1 runs (vmcs01 written at once), L1's
 *               IPI stays pending, userspace clears BLOCKIRQ while L2 runs.
 *               Back in L1 the IPI must arrive exactly once: with a stale
 *               vmcs01 (virtual-interrupt delivery still off) KVM no longer
 *               injects it and the CPU cannot, so it is lost.
 *
 * Then L1 EOIs it (IRR clear and ISR set before, ISR clear and PPR 0 after)
 * and sends itself more IPIs, each delivered once.
 *
 * With the module loaded (its debugfs directory present), its counters are
 * a second witness: deferred +1 and pending +1 when L2 syncs the second
 * time, applied +1, requests +1 and pending back where it was right after
 * the path (after the ioctl, in the SMI handler, when L1 syncs, or after
 * the VM is freed), and nothing else moving.  They are checked after L1's
 * own checks, so against the request-only build the failure reported is
 * what L1 sees.  Without the module the counter checks are skipped.
 *
 * Must pass on upstream 7.2 and with kvm_apicv_defer.ko; every scenario
 * fails with the module's request-only test build (vm_destroy by its
 * counters only: applied does not move).
 *
 * Usage: vmx_apicv_defer_exit_paths_test [-p PATH]  (run one path only)
 *
 * Request-only build: must fail.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "smm.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define IPI_VECTOR		0xe0
#define NR_IPI_ROUNDS		3
#define NR_L2_MSR_EXITS		100
#define SCENARIO_TIMEOUT_S	120

#define MODIFIED_APIC_ID	0x55

#define SMRAM_GPA		0x1000000
#define SMI_SYNC_PORT		0xe
#define SMI_STAGE		0xfe

#define COUNTERS_DIR		APICV_DEFER_COUNTERS_DIR

/* What L1 reads in VM_EXIT_REASON when L2 is gone: none, L1 left VMX. */
#define NO_VMCS			0xffffffffu

enum exit_path {
	PATH_SMI,
	PATH_SET_NESTED_STATE,
	PATH_INIT,
	PATH_FEAT_CTL,
	PATH_TRIPLE_FAULT,
	PATH_TRIPLE_FAULT_EVENT,
	PATH_VM_DESTROY,
	NR_PATHS,
};

struct exit_path_desc {
	const char *name;
	/* The KVM function that leaves L2 (for the TAP line). */
	const char *leaves_l2;
	/* VM_EXIT_REASON L1 finds when it runs again, or NO_VMCS. */
	u32 l1_exit_reason;
	/* Capability the path needs beyond nested VMX, or 0. */
	int cap;
};

static const struct exit_path_desc exit_paths[NR_PATHS] = {
	[PATH_SMI] = {
		"smi", "vmx_enter_smm", EXIT_REASON_VMCALL, KVM_CAP_X86_SMM,
	},
	[PATH_SET_NESTED_STATE] = {
		"set_nested_state", "vmx_set_nested_state -> vmx_leave_nested",
		EXIT_REASON_VMCALL, 0,
	},
	[PATH_INIT] = {
		"init", "vmx_check_nested_events", EXIT_REASON_INIT_SIGNAL, 0,
	},
	[PATH_FEAT_CTL] = {
		"feat_ctl", "vmx_set_msr -> vmx_leave_nested", NO_VMCS, 0,
	},
	[PATH_TRIPLE_FAULT] = {
		"triple_fault", "nested_vmx_reflect_vmexit",
		EXIT_REASON_TRIPLE_FAULT, 0,
	},
	[PATH_TRIPLE_FAULT_EVENT] = {
		"triple_fault_event", "nested_vmx_triple_fault",
		EXIT_REASON_TRIPLE_FAULT, KVM_CAP_X86_TRIPLE_FAULT_EVENT,
	},
	[PATH_VM_DESTROY] = {
		"vm_destroy", "nested_vmx_free_vcpu -> vmx_leave_nested",
		NO_VMCS, 0,
	},
};

enum {
	SYNC_L1_SET_BLOCKIRQ = 1,
	SYNC_L2_UPDATE,
	SYNC_L2_TAKE_PATH,
	SYNC_L1_EXITED,
	SYNC_L1_CLEAR_BLOCKIRQ,
};

/*
 * Runs in SMM (real-address mode): report to userspace through an IN, RSM.
 * The same handler as x86/smm_test.c, on its own port.
 */
static const u8 smi_handler[] = {
	0xb0, SMI_STAGE,	/* mov $SMI_STAGE, %al */
	0xe4, SMI_SYNC_PORT,	/* in $SMI_SYNC_PORT, %al */
	0x0f, 0xaa,		/* rsm */
};

/* Set by userspace before the first run. */
static u64 guest_path;
static bool guest_activate;
static u32 guest_l1_exit_reason;

/* Open an IRQ window of one instruction; expect exactly @nr IRQs. */
static void l1_expect_irqs(int nr, const char *when)
{
	int got = irq_window();

	__GUEST_ASSERT(got == nr, "Wanted %d IRQ(s) in the window %s, got %d",
		       nr, when, got);
}

#define EOI_CHECKS		(EOI_CHECK_IRR | EOI_CHECK_PPR)

static void l1_check_ipis(void)
{
	int i;

	for (i = 0; i < NR_IPI_ROUNDS; i++) {
		xapic_send_self_ipi(IPI_VECTOR);
		l1_expect_irqs(1, "for a fresh self-IPI");
		xapic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
	}
}

static void l2_triple_fault(void)
{
	const struct desc_ptr no_idt = { .size = 0, .address = 0 };

	/* #BP -> #GP (IDT limit) -> #DF -> triple fault, all in hardware. */
	set_idt(&no_idt);
	asm volatile("int3");
}

/* L2's exits go to L0 only (L1's MSR bitmap is empty): VM-Entries to L2. */
static void l2_guest_code(void)
{
	GUEST_SYNC(SYNC_L2_UPDATE);
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	GUEST_SYNC(SYNC_L2_TAKE_PATH);

	/* The host-initiated paths happen on the way back into L2. */
	switch (guest_path) {
	case PATH_INIT:
		/* L2's accesses to L1's xAPIC are emulated, on L1's APIC. */
		xapic_write_reg(APIC_ICR, APIC_DEST_ALLINC | APIC_INT_ASSERT |
					  APIC_DM_INIT);
		break;
	case PATH_TRIPLE_FAULT:
		l2_triple_fault();
		break;
	default:
		break;
	}
	l2_exits_to_l0(NR_L2_MSR_EXITS);
	vmcall();
	GUEST_FAIL("L2 resumed after its VMCALL");
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	l1_prepare_l2(vmx_pages, l2_guest_code);

	xapic_enable();
	l1_check_ipis();

	if (guest_activate) {
		GUEST_SYNC(SYNC_L1_SET_BLOCKIRQ);
		xapic_send_self_ipi(IPI_VECTOR);
		l1_expect_irqs(0, "before L2 (BLOCKIRQ set)");
	} else {
		xapic_send_self_ipi(IPI_VECTOR);
	}

	/* L2 runs, the update is deferred, the path takes L2 away. */
	GUEST_ASSERT(!vmlaunch());
	if (guest_l1_exit_reason != NO_VMCS)
		GUEST_ASSERT_EQ(vmreadz(VM_EXIT_REASON), guest_l1_exit_reason);
	GUEST_SYNC(SYNC_L1_EXITED);

	if (!guest_activate) {
		l1_expect_irqs(0, "after the exit path (BLOCKIRQ set in L2)");
		GUEST_ASSERT(xapic_vector_is_set(APIC_IRR, IPI_VECTOR));
		GUEST_SYNC(SYNC_L1_CLEAR_BLOCKIRQ);
		l1_expect_irqs(1, "after BLOCKIRQ was cleared in L1");
	} else {
		l1_expect_irqs(1, "after the exit path (BLOCKIRQ cleared in L2)");
	}
	xapic_eoi_and_check(IPI_VECTOR, EOI_CHECKS);
	l1_check_ipis();
	GUEST_DONE();
}

struct counters {
	long long v[NR_APICV_DEFER_COUNTERS];
	bool read;	/* read at this point (all zero without the module) */
};

static bool have_counters;

static void read_counters(struct counters *c)
{
	const char *name;
	int i;

	memset(c, 0, sizeof(*c));
	c->read = true;
	if (!have_counters)
		return;
	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++) {
		name = apicv_defer_counter_names[i];
		TEST_ASSERT(apicv_defer_read_counter(name, &c->v[i]),
			    "Cannot open " COUNTERS_DIR "/%s", name);
	}
}

/* @now - @start must be the given deltas (pending's is its own delta). */
static void expect_counters(const char *when, const struct counters *start,
			    const struct counters *now, long long d_deferred,
			    long long d_applied, long long d_pending)
{
	const long long delta[NR_APICV_DEFER_COUNTERS] = {
		[APICV_DEFER_DEFERRED] = d_deferred,
		[APICV_DEFER_COALESCED] = 0,
		[APICV_DEFER_APPLIED] = d_applied,
		[APICV_DEFER_REQUESTS] = d_applied,
		[APICV_DEFER_PENDING] = d_pending,
	};
	int i;

	TEST_ASSERT(now->read, "Counters not read %s", when);
	for (i = 0; i < NR_APICV_DEFER_COUNTERS; i++)
		TEST_ASSERT(now->v[i] - start->v[i] == delta[i],
			    "%s: %s moved by %lld, wanted %lld", when,
			    apicv_defer_counter_names[i], now->v[i] - start->v[i],
			    delta[i]);
}

/* Called with L2 active, stopped in userspace, an update deferred. */
static void take_host_path(struct kvm_vcpu *vcpu, enum exit_path path,
			   bool activate)
{
	struct kvm_vcpu_events events;
	struct kvm_nested_state *state;

	switch (path) {
	case PATH_SMI:
		/* BLOCKIRQ would hold the SMI: lift it, APICv stays off. */
		if (!activate) {
			/* APIC_ID_MODIFIED, for as long as the VM lives. */
			vcpu_set_xapic_id(vcpu, MODIFIED_APIC_ID);
			vcpu_set_blockirq(vcpu, false);
		}
		vcpu_ioctl(vcpu, KVM_SMI, NULL);
		break;
	case PATH_SET_NESTED_STATE:
		vcpu_run_complete_io(vcpu);
		state = vcpu_nested_state(vcpu);
		TEST_ASSERT(state->flags & KVM_STATE_NESTED_GUEST_MODE,
			    "L2 is not active in the saved state");
		vcpu_nested_state_set(vcpu, state);
		TEST_ASSERT(vcpu_in_l2(vcpu), "L2 not active after KVM_SET_NESTED_STATE");
		break;
	case PATH_FEAT_CTL:
		vcpu_run_complete_io(vcpu);
		vcpu_set_msr(vcpu, MSR_IA32_FEAT_CTL, 0);
		state = vcpu_nested_state(vcpu);
		TEST_ASSERT(!(state->flags & KVM_STATE_NESTED_GUEST_MODE) &&
			    state->hdr.vmx.vmxon_pa == -1ull,
			    "Still in VMX operation after MSR_IA32_FEAT_CTL = 0 (flags 0x%x)",
			    state->flags);
		break;
	case PATH_TRIPLE_FAULT_EVENT:
		vcpu_events_get(vcpu, &events);
		events.flags |= KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
		events.triple_fault.pending = true;
		vcpu_events_set(vcpu, &events);
		break;
	default:
		break;
	}
}

static void check_in_smm(struct kvm_vcpu *vcpu)
{
	struct kvm_vcpu_events events;
	struct kvm_nested_state *state;

	vcpu_events_get(vcpu, &events);
	TEST_ASSERT(events.smi.smm, "SMI handler ran outside SMM?");
	state = vcpu_nested_state(vcpu);
	TEST_ASSERT(!(state->flags & KVM_STATE_NESTED_GUEST_MODE) &&
		    (state->hdr.vmx.smm.flags & KVM_STATE_NESTED_SMM_GUEST_MODE),
		    "In SMM but L2 not left for it (flags 0x%x, smm.flags 0x%x)",
		    state->flags, state->hdr.vmx.smm.flags);
}

static void run_scenario(enum exit_path path, bool activate)
{
	const struct exit_path_desc *p = &exit_paths[path];
	struct counters start, deferred = {}, exited = {}, end = {};
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	vm = vm_create_l1_with_xapic(&vcpu, l1_guest_code, IPI_VECTOR);
	if (path == PATH_SMI)
		setup_smram(vm, vcpu, SMRAM_GPA, smi_handler, sizeof(smi_handler));
	if (path == PATH_TRIPLE_FAULT_EVENT)
		vm_enable_cap(vm, KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1);

	guest_path = path;
	guest_activate = activate;
	guest_l1_exit_reason = p->l1_exit_reason;
	sync_global_to_guest(vm, guest_path);
	sync_global_to_guest(vm, guest_activate);
	sync_global_to_guest(vm, guest_l1_exit_reason);

	read_counters(&start);

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT_KVM_EXIT_REASON(vcpu, KVM_EXIT_IO);

		if (vcpu->run->io.port == SMI_SYNC_PORT) {
			TEST_ASSERT(path == PATH_SMI && !exited.read,
				    "Unexpected SMI handler run");
			check_in_smm(vcpu);
			read_counters(&exited);
			if (!activate)
				vcpu_set_blockirq(vcpu, true);
			continue;
		}

		if (!vcpu_get_sync(vcpu, &uc))
			break;

		switch (uc.args[1]) {
		case SYNC_L1_SET_BLOCKIRQ:
			TEST_ASSERT(activate && !vcpu_in_l2(vcpu), "Unexpected L1 sync");
			vcpu_set_blockirq(vcpu, true);
			break;
		case SYNC_L2_UPDATE:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			/* Serviced on the next KVM_RUN, with L2 active. */
			vcpu_set_blockirq(vcpu, !activate);
			break;
		case SYNC_L2_TAKE_PATH:
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active");
			read_counters(&deferred);
			if (path == PATH_VM_DESTROY) {
				kvm_vm_free(vm);
				read_counters(&exited);
				end = exited;
				goto destroyed;
			}
			take_host_path(vcpu, path, activate);
			if (path == PATH_SET_NESTED_STATE || path == PATH_FEAT_CTL)
				read_counters(&exited);
			break;
		case SYNC_L1_EXITED:
			TEST_ASSERT(!vcpu_in_l2(vcpu), "L2 is active after the exit path");
			TEST_ASSERT(path != PATH_SMI || exited.read,
				    "L1 runs again, but the SMI was not taken from L2");
			if (!exited.read)
				read_counters(&exited);
			break;
		case SYNC_L1_CLEAR_BLOCKIRQ:
			TEST_ASSERT(!activate && !vcpu_in_l2(vcpu), "Unexpected L1 sync");
			vcpu_set_blockirq(vcpu, false);
			break;
		default:
			TEST_FAIL("Unexpected stage %lu", uc.args[1]);
		}
	}

	read_counters(&end);
	kvm_vm_free(vm);
destroyed:
	if (!have_counters)
		return;
	/* L1's checks passed; now the module's account of the same story. */
	expect_counters("with the update deferred", &start, &deferred, 1, 0, 1);
	expect_counters("right after the exit path", &start, &exited, 1, 1, 0);
	expect_counters("at the end", &start, &end, 1, 1, 0);
}

/*
 * Run one scenario in a child: a failed assertion exits the child only.
 * Returns the child's exit status (KSFT_PASS, KSFT_SKIP, or a failure).
 */
static int run_scenario_in_child(enum exit_path path, bool activate)
{
	int status;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork() failed");
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(SCENARIO_TIMEOUT_S);
		run_scenario(path, activate);
		exit(KSFT_PASS);
	}
	TEST_ASSERT(waitpid(pid, &status, 0) == pid, "waitpid() failed");
	if (WIFSIGNALED(status)) {
		ksft_print_msg("%s: killed by signal %d%s\n", exit_paths[path].name,
			       WTERMSIG(status),
			       WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
		return KSFT_FAIL;
	}
	return WEXITSTATUS(status);
}

int main(int argc, char *argv[])
{
	const char *only = NULL;
	int path, activate, opt, nr = 0;

	while ((opt = getopt(argc, argv, "p:h")) != -1) {
		switch (opt) {
		case 'p':
			only = optarg;
			break;
		default:
			printf("usage: %s [-p PATH]  PATH: smi, set_nested_state, init, feat_ctl,\n"
			       "       triple_fault, triple_fault_event, vm_destroy\n", argv[0]);
			exit(opt == 'h' ? KSFT_PASS : KSFT_FAIL);
		}
	}

	require_vmx_apicv("nothing to defer");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));

	have_counters = apicv_defer_have_counters();
	TEST_ASSERT(have_counters || !apicv_defer_loaded(),
		    "kvm_apicv_defer is loaded but " COUNTERS_DIR " is missing");

	for (path = 0; path < NR_PATHS; path++)
		if (!only || !strcmp(only, exit_paths[path].name))
			nr += 2;
	TEST_ASSERT(nr, "No path named %s", only);

	ksft_print_header();
	ksft_set_plan(nr);
	if (!have_counters)
		ksft_print_msg("kvm_apicv_defer not loaded: L1's checks only\n");

	for (path = 0; path < NR_PATHS; path++) {
		const struct exit_path_desc *p = &exit_paths[path];

		if (only && strcmp(only, p->name))
			continue;
		for (activate = 0; activate < 2; activate++) {
			const char *dir = activate ? "activate" : "deactivate";
			int rc;

			if (p->cap && !kvm_has_cap(p->cap)) {
				ksft_test_result_skip("%s, %s: capability %d missing\n",
						      p->name, dir, p->cap);
				continue;
			}
			rc = run_scenario_in_child(path, activate);
			if (rc == KSFT_SKIP)
				ksft_test_result_skip("%s, %s\n", p->name, dir);
			else
				ksft_test_result(rc == KSFT_PASS, "%s, %s (%s)\n",
						 p->name, dir, p->leaves_l2);
		}
	}
	ksft_finished();
}
