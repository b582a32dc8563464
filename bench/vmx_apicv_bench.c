// SPDX-License-Identifier: GPL-2.0-only
/*
 * vmx_apicv_bench
 *
 * What the APICv hook (patches/host) and kvm_apicv_defer.ko cost, next to
 * 7.2's own guard(vmx_vmcs01), written as a KVM selftest.  One run measures
 * whatever kvm_intel (and hook module) the host has loaded; -c names that
 * configuration in the output.  scripts/bench runs it under each
 * configuration, interleaved, and aggregates.
 *
 * 1. roundtrip: L1 loops vmresume -> L2 vmcall -> nested VM-Exit to L1 and
 *    reads the TSC around each vmresume (without the library's per-entry
 *    HOST_RSP/HOST_RIP writes, each an exit to L0: see l1_vmresume()).  The
 *    per-run value is the median over the iterations (host timer ticks and
 *    the like land in ~10% of them); roundtrip_mean is the whole loop's TSC
 *    delta per iteration, ticks, RIP advance and loop overhead included.
 *    Nothing is deferred meanwhile: with a hook registered, the nested
 *    VM-Exit only tests KVM's per-vCPU deferral word.
 *
 * 2. update_l2: L2 exits to userspace (GUEST_SYNC: L1 does not intercept
 *    I/O, see prepare_vmcs()), userspace toggles KVM_GUESTDBG_BLOCKIRQ (an
 *    APICv inhibit for the VM) and runs the vCPU, still in L2, to L2's next
 *    GUEST_SYNC.  Host-side TSC cycles for KVM_SET_GUEST_DEBUG + KVM_RUN.
 *    KVM services KVM_REQ_APICV_UPDATE in that KVM_RUN while L2 is active:
 *    without the module vmx_refresh_apicv_exec_ctrl() switches to vmcs01,
 *    writes it and switches back (the guard), and so do the SVI and
 *    TPR-threshold writes around it; with it, KVM only records them.
 *    noop_l2 is the same ioctl without a change of BLOCKIRQ (no APICv
 *    update): the difference is the update's own cost.
 *
 * 3. exit_landing: right after (2), L2 reads the TSC and does vmcall; L1
 *    reads the TSC when the nested VM-Exit returns to it.  That exit is the
 *    one where KVM drains what it deferred into vmcs01 (the module's
 *    callback refreshes the controls and raises KVM_REQ_APICV_UPDATE).
 *    exit_plain is the same exit after the no-op ioctl.
 *
 * The update metrics alternate set and clear of BLOCKIRQ: deactivation (the
 * inhibit set: even samples) and activation (cleared: odd samples).
 * update_l2, noop_l2, exit_landing and exit_plain are the mean of the two
 * directions' medians.  Per direction, against the no-op run's samples of
 * the same parity (median of each, then the difference):
 *   cost_update_deact, cost_update_act    update_l2 - noop_l2
 *   cost_landing_deact, cost_landing_act  exit_landing - exit_plain
 * i.e. what one update while L2 runs costs, at the update and at the
 * nested VM-Exit where it lands.
 *
 * 4. vmptrld_update_{deact,act}, vmptrld_landing_{deact,act}: VMPTRLDs per
 *    APICv update while L2 runs, per direction, from the test-only counter
 *    /sys/module/kvm_intel/parameters/vmptrld_count (patches/test; summed
 *    over CPUs).  A second pair of update and no-op runs, not timed, reads
 *    it around the update (KVM_SET_GUEST_DEBUG + KVM_RUN, as in 2) and
 *    around the KVM_RUN holding the landing (L2's vmcall, the nested
 *    VM-Exit, L1, and its next VM-Entry into L2); the value is the median
 *    over the direction's updates of (update run - no-op run) for the same
 *    iteration.  Each of 7.2's guard(vmx_vmcs01) switches is 2 (vmcs01 and
 *    back): a deactivation writes the controls and the TPR threshold at the
 *    update, and the TPR threshold again on the KVM_REQ_EVENT after L1's
 *    next VM-Entry (APICv still off); an activation writes SVI and the
 *    controls.  A full deferral is 0 and 0.  Without that file (a kernel
 *    without patches/test) these lines are left out, with a note.
 *
 * Output: one line per metric, "KAD-BENCH <metric> <config> <value>", TSC
 * cycles (VMPTRLD counts for vmptrld_*) with one decimal; "# ..." lines are
 * diagnostics.  On the emulated host (Bochs, clock sync=none) the TSC
 * advances once per retired instruction, so these are instruction path
 * lengths, not hardware latency.
 *
 * Usage: vmx_apicv_bench [-c CONFIG] [-r ROUNDTRIPS] [-u UPDATES] [-w WARMUP]
 */
#include <stdlib.h>
#include <unistd.h>

#include "test_util.h"
#include "kvm_util.h"
#include "processor.h"
#include "vmx.h"
#include "apic.h"
#include "vmx_apicv_util.h"

#define MAX_SAMPLES	4096

enum {
	CMD_ROUNDTRIP = 1,
	CMD_UPDATE,
	CMD_DONE,
};

enum {
	SYNC_L1_CMD = 1,
	SYNC_L2_UPDATE,
	SYNC_L2_AFTER,
};

/* Written by the host before each command (sync_global_to_guest). */
static u64 l1_cmd;
static u64 l1_iters;

/* Written by L1, read by L2 (same address space, no EPT). */
static volatile u64 l2_sync;
/* Written by L2 right before vmcall, read by L1. */
static volatile u64 l2_tsc;

/* Results, read by the host (sync_global_from_guest). */
static u64 l1_samples[MAX_SAMPLES];
static u64 l1_total;

static void l2_guest_code(void)
{
	for (;;) {
		if (l2_sync) {
			GUEST_SYNC(SYNC_L2_UPDATE);
			GUEST_SYNC(SYNC_L2_AFTER);
		}
		l2_tsc = rdtsc();
		vmcall();
	}
}

/*
 * vmresume() of the selftest library writes HOST_RSP and HOST_RIP before
 * every VM-Entry; KVM does not shadow those fields, so each write is one more
 * exit to L0, two per round trip.  This variant writes them only when they
 * differ from what the last call wrote (never, in a loop), so a round trip
 * is the VM-Entry and the nested VM-Exit alone.  Only this helper may write
 * the two fields once it has been used.
 */
static u64 cur_host_rsp, cur_host_rip;

static inline int l1_vmresume(void)
{
	int ret;

	__asm__ __volatile__("push %%rbp;"
			     "push %%rcx;"
			     "push %%rdx;"
			     "push %%rsi;"
			     "push %%rdi;"
			     "push $0;"
			     "cmp %%rsp, %[cur_rsp];"
			     "je 2f;"
			     "mov %%rsp, %[cur_rsp];"
			     "vmwrite %%rsp, %[host_rsp];"
			     "2: lea 1f(%%rip), %%rax;"
			     "cmp %%rax, %[cur_rip];"
			     "je 3f;"
			     "mov %%rax, %[cur_rip];"
			     "vmwrite %%rax, %[host_rip];"
			     "3: vmresume;"
			     "incq (%%rsp);"
			     "1: pop %%rax;"
			     "pop %%rdi;"
			     "pop %%rsi;"
			     "pop %%rdx;"
			     "pop %%rcx;"
			     "pop %%rbp;"
			     : [ret]"=&a"(ret), [cur_rsp]"+m"(cur_host_rsp),
			       [cur_rip]"+m"(cur_host_rip)
			     : [host_rsp]"r"((u64)HOST_RSP),
			       [host_rip]"r"((u64)HOST_RIP)
			     : "memory", "cc", "rbx", "r8", "r9", "r10",
			       "r11", "r12", "r13", "r14", "r15");
	return ret;
}

static void l1_roundtrip(u64 n)
{
	u64 start, t0, t1, i;

	l2_sync = 0;
	start = rdtsc();
	for (i = 0; i < n; i++) {
		t0 = rdtsc();
		GUEST_ASSERT(!l1_vmresume());
		t1 = rdtsc();
		l1_samples[i] = t1 - t0;
		l1_skip_vmcall();
	}
	l1_total = rdtsc() - start;
}

static void l1_update(u64 n)
{
	u64 t1, i;

	l2_sync = 1;
	for (i = 0; i < n; i++) {
		GUEST_ASSERT(!l1_vmresume());
		t1 = rdtsc();
		l1_samples[i] = t1 - l2_tsc;
		l1_skip_vmcall();
	}
	l2_sync = 0;
}

static void l1_guest_code(struct vmx_pages *vmx_pages)
{
	__l1_prepare_l2(vmx_pages, l2_guest_code);
	/*
	 * A software-enabled local APIC, as any real L1 (and the project's
	 * selftests and demo) has: without it KVM skips the TPR-threshold
	 * update that follows an APICv deactivation (update_cr8_intercept()),
	 * one of the vmcs01 writes an update while L2 runs can make.  vmcs12
	 * has no TPR shadow, so that write goes to vmcs01.
	 */
	xapic_enable();

	l2_sync = 0;
	GUEST_ASSERT(!vmlaunch());
	l1_skip_vmcall();

	for (;;) {
		GUEST_SYNC(SYNC_L1_CMD);
		GUEST_ASSERT(l1_iters <= MAX_SAMPLES);
		switch (l1_cmd) {
		case CMD_ROUNDTRIP:
			l1_roundtrip(l1_iters);
			break;
		case CMD_UPDATE:
			l1_update(l1_iters);
			break;
		case CMD_DONE:
			GUEST_DONE();
			break;
		default:
			GUEST_FAIL("Unknown command %lu", l1_cmd);
		}
	}
}

static u64 host_samples[MAX_SAMPLES];
/* The update run's samples, kept across the no-op run. */
static u64 upd_host[MAX_SAMPLES], upd_l1[MAX_SAMPLES];

/* VMPTRLDs counted in one update run, per iteration (see run_update()). */
struct vmptrld_counts {
	s64 update[MAX_SAMPLES];
	s64 landing[MAX_SAMPLES];
};

static int cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/* Median of every @stride-th sample from @first (sorts a copy). */
static double median(const u64 *s, u64 n, u64 first, u64 stride)
{
	static u64 tmp[MAX_SAMPLES];
	u64 i, m = 0;

	for (i = first; i < n; i += stride)
		tmp[m++] = s[i];
	TEST_ASSERT(m, "No samples");
	qsort(tmp, m, sizeof(tmp[0]), cmp_u64);
	return m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2.0;
}

static int cmp_s64(const void *a, const void *b)
{
	s64 x = *(const s64 *)a, y = *(const s64 *)b;

	return x < y ? -1 : x > y;
}

/* Median of a[i] - b[i] over every @stride-th i from @first, i < @n. */
static double median_diff(const s64 *a, const s64 *b, u64 n, u64 first, u64 stride)
{
	static s64 tmp[MAX_SAMPLES];
	u64 i, m = 0;

	for (i = first; i < n; i += stride)
		tmp[m++] = a[i] - b[i];
	TEST_ASSERT(m, "No samples");
	qsort(tmp, m, sizeof(tmp[0]), cmp_s64);
	return m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2.0;
}

/* Mean of the medians of the even (set) and odd (clear) samples. */
static double median_pairs(const u64 *s, u64 n)
{
	return (median(s, n, 0, 2) + median(s, n, 1, 2)) / 2;
}

static void report(const char *metric, const char *config, double v)
{
	printf("KAD-BENCH %s %s %.1f\n", metric, config, v);
}

/* Spread of one run's samples, for the log: outliers are interrupts. */
static void diag(const char *metric, const u64 *s, u64 n)
{
	u64 i, lo = ~0ull, hi = 0, sum = 0, over = 0;
	double med = median(s, n, 0, 1);

	for (i = 0; i < n; i++) {
		lo = s[i] < lo ? s[i] : lo;
		hi = s[i] > hi ? s[i] : hi;
		sum += s[i];
		over += s[i] > med * 1.05;
	}
	printf("# %s: %lu samples, min %lu, median %.1f, mean %.1f, max %lu, ",
	       metric, n, lo, med, (double)sum / n, hi);
	printf("%lu above median+5%%\n", over);
}

/* The stage of the GUEST_SYNC KVM_RUN stopped at; 0 at GUEST_DONE. */
static u64 get_sync(struct kvm_vcpu *vcpu)
{
	struct ucall uc;

	return vcpu_get_sync(vcpu, &uc) ? uc.args[1] : 0;
}

/* Send L1 a command; returns with L1 at its next SYNC_L1_CMD. */
static void l1_command(struct kvm_vcpu *vcpu, u64 cmd, u64 iters)
{
	l1_cmd = cmd;
	l1_iters = iters;
	sync_global_to_guest(vcpu->vm, l1_cmd);
	sync_global_to_guest(vcpu->vm, l1_iters);
	vcpu_run(vcpu);
}

static void run_roundtrip(struct kvm_vcpu *vcpu, u64 n)
{
	l1_command(vcpu, CMD_ROUNDTRIP, n);
	TEST_ASSERT_EQ(get_sync(vcpu), SYNC_L1_CMD);
	sync_global_from_guest(vcpu->vm, l1_samples);
	sync_global_from_guest(vcpu->vm, l1_total);
}

/*
 * L1 runs L2 @n times; each time L2 stops at SYNC_L2_UPDATE, where we set
 * BLOCKIRQ to the opposite of its current state (@toggle) or to the same
 * (no APICv update), timing the ioctl and the KVM_RUN to SYNC_L2_AFTER.
 *
 * With @cnt, the run is not timed but counts VMPTRLDs: cnt->update[i] over
 * the ioctl and KVM_RUN of iteration i, cnt->landing[i] over the KVM_RUN
 * after it (L2's vmcall, the nested VM-Exit where update i lands, L1, and
 * L1's next VM-Entry into L2, or for the last iteration L1's return to its
 * command loop instead).
 */
static void run_update(struct kvm_vcpu *vcpu, u64 n, bool toggle, bool check_l2,
		       struct vmptrld_counts *cnt)
{
	struct kvm_guest_debug debug = {};
	bool blocked = false;
	u64 i = 0, t0, t1;
	s64 c0 = 0;
	int r1, r2;

	l1_cmd = CMD_UPDATE;
	l1_iters = n;
	sync_global_to_guest(vcpu->vm, l1_cmd);
	sync_global_to_guest(vcpu->vm, l1_iters);
	for (;;) {
		if (cnt)
			c0 = read_vmptrld_count();
		vcpu_run(vcpu);
		if (cnt && i)
			cnt->landing[i - 1] = read_vmptrld_count() - c0;
		switch (get_sync(vcpu)) {
		case SYNC_L2_UPDATE:
			break;
		case SYNC_L1_CMD:
			TEST_ASSERT_EQ(i, n);
			sync_global_from_guest(vcpu->vm, l1_samples);
			TEST_ASSERT(!blocked, "BLOCKIRQ left set");
			return;
		default:
			TEST_FAIL("Unexpected stop at iteration %lu", i);
		}
		if (check_l2)
			TEST_ASSERT(vcpu_in_l2(vcpu), "L2 is not active at SYNC_L2_UPDATE");
		if (toggle)
			blocked = !blocked;
		debug.control = blocked ? KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ : 0;
		TEST_ASSERT(i < MAX_SAMPLES, "Too many L2 stops");

		if (cnt)
			c0 = read_vmptrld_count();
		t0 = rdtsc();
		r1 = __vcpu_ioctl(vcpu, KVM_SET_GUEST_DEBUG, &debug);
		r2 = __vcpu_run(vcpu);
		t1 = rdtsc();
		if (cnt)
			cnt->update[i] = read_vmptrld_count() - c0;

		TEST_ASSERT(!r1, "KVM_SET_GUEST_DEBUG failed, errno %d", errno);
		TEST_ASSERT(!r2, "KVM_RUN failed, errno %d", errno);
		TEST_ASSERT_EQ(get_sync(vcpu), SYNC_L2_AFTER);
		host_samples[i++] = t1 - t0;
	}
}

/*
 * VMPTRLDs per APICv update, per direction: an update run and a no-op run
 * of @n iterations each, counted, compared iteration by iteration.
 */
static void count_vmptrlds(struct kvm_vcpu *vcpu, const char *config, u64 n)
{
	static struct vmptrld_counts upd, noop;
	static const char *const dir[] = { "deact", "act" };
	u64 d, i;

	run_update(vcpu, n, true, false, &upd);
	run_update(vcpu, n, false, false, &noop);
	for (d = 0; d < 2; d++) {
		char metric[64];

		snprintf(metric, sizeof(metric), "vmptrld_update_%s", dir[d]);
		report(metric, config, median_diff(upd.update, noop.update, n, d, 2));
		snprintf(metric, sizeof(metric), "vmptrld_landing_%s", dir[d]);
		report(metric, config, median_diff(upd.landing, noop.landing, n, d, 2));
	}
	printf("# VMPTRLDs per iteration (update run - no-op run, at update/landing):");
	for (i = 0; i < n && i < 8; i++)
		printf(" %s %ld/%ld", dir[i % 2], (long)(upd.update[i] - noop.update[i]),
		       (long)(upd.landing[i] - noop.landing[i]));
	printf("%s\n", n > 8 ? " ..." : "");
}

static u64 parse_count(const char *s, u64 min)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);

	TEST_ASSERT(*s && !*end && v >= min && v <= MAX_SAMPLES,
		    "Bad count '%s' (%lu..%d)", s, min, MAX_SAMPLES);
	return v;
}

int main(int argc, char *argv[])
{
	const char *config = "unnamed";
	u64 roundtrips = 400, updates = 100, warmup = 8;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int opt;

	while ((opt = getopt(argc, argv, "c:r:u:w:h")) != -1) {
		switch (opt) {
		case 'c':
			config = optarg;
			break;
		case 'r':
			roundtrips = parse_count(optarg, 1);
			break;
		case 'u':
			updates = parse_count(optarg, 2);
			break;
		case 'w':
			warmup = parse_count(optarg, 2);
			break;
		default:
			printf("usage: %s [-c CONFIG] [-r ROUNDTRIPS] [-u UPDATES] [-w WARMUP]\n",
			       argv[0]);
			exit(opt == 'h' ? 0 : KSFT_FAIL);
		}
	}
	/* Set/clear pairs. */
	updates += updates % 2;
	warmup += warmup % 2;

	require_vmx_apicv("no APICv updates");
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_SET_GUEST_DEBUG));
	TEST_REQUIRE(kvm_has_cap(KVM_CAP_NESTED_STATE));

	vm = vm_create_l1(&vcpu, l1_guest_code);

	vcpu_run(vcpu);
	TEST_ASSERT_EQ(get_sync(vcpu), SYNC_L1_CMD);

	/* Warm up every path; check once that the toggles happen in L2. */
	run_roundtrip(vcpu, warmup);
	run_update(vcpu, warmup, true, true, NULL);
	run_update(vcpu, warmup, false, true, NULL);

	printf("# config %s: %lu round trips, %lu APICv updates per run\n",
	       config, roundtrips, updates);

	run_roundtrip(vcpu, roundtrips);
	diag("roundtrip", l1_samples, roundtrips);
	report("roundtrip", config, median(l1_samples, roundtrips, 0, 1));
	report("roundtrip_mean", config, (double)l1_total / roundtrips);

	run_update(vcpu, updates, true, false, NULL);
	memcpy(upd_host, host_samples, updates * sizeof(u64));
	memcpy(upd_l1, l1_samples, updates * sizeof(u64));
	diag("update_l2", upd_host, updates);
	report("update_l2", config, median_pairs(upd_host, updates));
	diag("exit_landing", upd_l1, updates);
	report("exit_landing", config, median_pairs(upd_l1, updates));

	run_update(vcpu, updates, false, false, NULL);
	diag("noop_l2", host_samples, updates);
	report("noop_l2", config, median_pairs(host_samples, updates));
	diag("exit_plain", l1_samples, updates);
	report("exit_plain", config, median_pairs(l1_samples, updates));

	/* Per direction: even samples set BLOCKIRQ (deactivate), odd clear it. */
	report("cost_update_deact", config,
	       median(upd_host, updates, 0, 2) - median(host_samples, updates, 0, 2));
	report("cost_landing_deact", config,
	       median(upd_l1, updates, 0, 2) - median(l1_samples, updates, 0, 2));
	report("cost_update_act", config,
	       median(upd_host, updates, 1, 2) - median(host_samples, updates, 1, 2));
	report("cost_landing_act", config,
	       median(upd_l1, updates, 1, 2) - median(l1_samples, updates, 1, 2));

	if (read_vmptrld_count() >= 0) {
		count_vmptrlds(vcpu, config, updates);
	} else {
		printf("# %s: %s: VMPTRLDs not counted (kvm_intel without the rig's patches/test)\n",
		       VMPTRLD_COUNT, strerror(errno));
	}

	l1_command(vcpu, CMD_DONE, 0);
	TEST_ASSERT_EQ(get_sync(vcpu), 0);

	kvm_vm_free(vm);
	return 0;
}
