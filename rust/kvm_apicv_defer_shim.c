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
#include <linux/kvm_host.h>
#include <linux/module.h>
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
	refresh_vmcs01 = symbol_get(kvm_vmx_apicv_refresh_vmcs01);
	if (hook_register && hook_unregister && refresh_vmcs01)
		return 0;

	kad_host_put();
	return -ENOENT;
}

int kad_hook_register(void)
{
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
