// SPDX-License-Identifier: GPL-2.0
/*
 * C shim of kvm_apicv_defer, see kvm_apicv_defer_shim.h.
 *
 * The hook API is resolved with symbol_get() rather than linked directly: on a
 * kernel without patches/host (or with kvm_intel not loaded) a direct reference
 * makes insmod fail with "Unknown symbol" before our init runs, whereas this
 * way init can say what is missing.  symbol_get() also holds a reference on
 * kvm-intel, so it cannot be unloaded while we are registered.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kvm_host.h>
#include <linux/module.h>
#ifdef KAD_DATA_RACE
#include <linux/completion.h>
#include <linux/cpumask.h>
#include <linux/kthread.h>
#endif
#ifdef KAD_OOB_WRITE
#include <linux/slab.h>
#endif
#include <asm/cpufeature.h>
#include <asm/kvm_vmx_apicv_hook.h>

#include "kvm_apicv_defer_shim.h"

static int (*hook_register)(const struct kvm_vmx_apicv_hook_ops *ops);
static void (*hook_unregister)(const struct kvm_vmx_apicv_hook_ops *ops);
static void (*refresh_vmcs01)(struct kvm_vcpu *vcpu);

static const struct kvm_vmx_apicv_hook_ops kad_ops = {
	.refresh_apicv_exec_ctrl = kad_refresh_apicv_exec_ctrl,
	.nested_vmexit = kad_nested_vmexit,
};

#ifdef KAD_FAULT_POINTS
/*
 * TEST ONLY (KAD_FAULT_POINTS=1): fail one step of init, each the way it
 * fails for real, so the hardening plan can show every failure path leaves
 * nothing behind.  No upstream build has this parameter.
 */
static char *fail_step = "";
module_param(fail_step, charp, 0444);
MODULE_PARM_DESC(fail_step,
		 "TEST ONLY: fail this init step: symbol_get, debugfs, register or register_no_refresh");

bool kad_fault_point(const char *step)
{
	return !strcmp(fail_step, step);
}

/*
 * Missing a required callback, either one: kvm_vmx_apicv_hook_register()
 * says -EINVAL.
 */
static const struct kvm_vmx_apicv_hook_ops kad_ops_no_vmexit = {
	.refresh_apicv_exec_ctrl = kad_refresh_apicv_exec_ctrl,
};

static const struct kvm_vmx_apicv_hook_ops kad_ops_no_refresh = {
	.nested_vmexit = kad_nested_vmexit,
};
#else
static inline bool kad_fault_point(const char *step)
{
	return false;
}
#endif

bool kad_cpu_has_vmx(void)
{
	return boot_cpu_has(X86_FEATURE_VMX);
}

void kad_host_put(void)
{
	if (refresh_vmcs01)
		symbol_put(kvm_vmx_apicv_refresh_vmcs01);
	if (hook_unregister)
		symbol_put(kvm_vmx_apicv_hook_unregister);
	if (hook_register)
		symbol_put(kvm_vmx_apicv_hook_register);
	refresh_vmcs01 = NULL;
	hook_unregister = NULL;
	hook_register = NULL;
}

int kad_host_get(void)
{
	hook_register = symbol_get(kvm_vmx_apicv_hook_register);
	hook_unregister = symbol_get(kvm_vmx_apicv_hook_unregister);
	/* Fault point: the last lookup fails after two succeeded. */
	refresh_vmcs01 = kad_fault_point("symbol_get") ? NULL :
			 symbol_get(kvm_vmx_apicv_refresh_vmcs01);
	if (hook_register && hook_unregister && refresh_vmcs01)
		return 0;

	kad_host_put();
	return -ENOENT;
}

int kad_hook_register(void)
{
#ifdef KAD_FAULT_POINTS
	/* Fault point: KVM itself refuses the registration. */
	if (kad_fault_point("register"))
		return hook_register(&kad_ops_no_vmexit);
	if (kad_fault_point("register_no_refresh"))
		return hook_register(&kad_ops_no_refresh);
#endif
	return hook_register(&kad_ops);
}

void kad_hook_unregister(void)
{
	hook_unregister(&kad_ops);
}

void kad_refresh_vmcs01(struct kvm_vcpu *vcpu)
{
	refresh_vmcs01(vcpu);
}

void kad_request_apicv_update(struct kvm_vcpu *vcpu)
{
	kvm_make_request(KVM_REQ_APICV_UPDATE, vcpu);
}

#ifdef KAD_DATA_RACE
/*
 * TEST ONLY (KAD_DATA_RACE=1): a deliberate data race, for the kcsan plan to
 * show that KCSAN reports one in this module's code.  Two threads, on two
 * CPUs, start together and increment a plain counter.
 */
static unsigned long kad_racy_counter;
static atomic_t kad_race_started;

struct kad_race {
	struct completion done;
};

static int kad_race_thread(void *data)
{
	struct kad_race *race = data;
	int i;

	atomic_inc(&kad_race_started);
	while (atomic_read(&kad_race_started) < 2)
		cond_resched();
	for (i = 0; i < 1000000; i++) {
		kad_racy_counter++;	/* plain and unsynchronized: the race */
		/*
		 * Without it the compiler folds the loop into one load and
		 * one store, which KCSAN's sampling all but never watches.
		 */
		barrier();
	}
	/* Not complete() and return: init may return and rmmod free this code. */
	kthread_complete_and_exit(&race->done, 0);
}

void kad_test_planted_bug(void)
{
	struct kad_race race[2];
	struct task_struct *t;
	unsigned int cpu, n = 0;

	if (num_online_cpus() < 2) {
		pr_warn("TEST-ONLY data race: needs two CPUs\n");
		return;
	}
	atomic_set(&kad_race_started, 0);
	for_each_online_cpu(cpu) {
		if (n == ARRAY_SIZE(race))
			break;
		init_completion(&race[n].done);
		t = kthread_run_on_cpu(kad_race_thread, &race[n], cpu, "kad_race/%u");
		if (IS_ERR(t)) {
			pr_warn("TEST-ONLY data race: no thread on CPU %u\n", cpu);
			/* Let a started thread go on alone. */
			atomic_inc(&kad_race_started);
			continue;
		}
		n++;
	}
	while (n)
		wait_for_completion(&race[--n].done);
	pr_warn("TEST-ONLY data race done: counter=%lu\n", READ_ONCE(kad_racy_counter));
}
#endif

#ifdef KAD_OOB_WRITE
/*
 * TEST ONLY (KAD_OOB_WRITE=1): a deliberate out-of-bounds write, one byte past
 * a kmalloc'ed buffer, for the hardening plan to show that KASAN reports one
 * in this module's code.
 */
void kad_test_planted_bug(void)
{
	size_t len = 8;
	char *buf = kmalloc(len, GFP_KERNEL);

	if (!buf)
		return;
	/* Hidden from the compiler, which would reject the constant index. */
	OPTIMIZER_HIDE_VAR(len);
	buf[len] = 1;
	kfree(buf);
	pr_warn("TEST-ONLY out-of-bounds write done\n");
}
#endif
