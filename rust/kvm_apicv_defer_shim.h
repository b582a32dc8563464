/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The C half of kvm_apicv_defer: the part of the host's APICv hook API and of
 * KVM that Rust cannot reach (macros, static inlines, struct layouts).  The Rust
 * side declares these by hand in rust/host.rs; keep the two in sync.
 */
#ifndef KVM_APICV_DEFER_SHIM_H
#define KVM_APICV_DEFER_SHIM_H

#include <linux/types.h>

struct kvm_vcpu;

/* Implemented in Rust (rust/hook.rs); the shim's ops point at them. */
bool kad_refresh_apicv_exec_ctrl(struct kvm_vcpu *vcpu, bool pending);
void kad_nested_vmexit(struct kvm_vcpu *vcpu);

/* boot_cpu_has(X86_FEATURE_VMX). */
bool kad_cpu_has_vmx(void);

/*
 * Resolve the hook API in kvm-intel.ko with symbol_get(), which also pins
 * kvm-intel: 0, or -ENOENT (nothing held) when kvm_intel is not loaded or
 * lacks the hook.  kad_host_put() drops what kad_host_get() took.
 */
int kad_host_get(void);
void kad_host_put(void);

/*
 * kvm_vmx_apicv_hook_{register,unregister}() with the shim's ops; only between
 * a successful kad_host_get() and kad_host_put().
 */
int kad_hook_register(void);
void kad_hook_unregister(void);

/* kvm_vmx_apicv_refresh_vmcs01(); only from kad_nested_vmexit(). */
void kad_refresh_vmcs01(struct kvm_vcpu *vcpu);

/* kvm_make_request(KVM_REQ_APICV_UPDATE, vcpu). */
void kad_request_apicv_update(struct kvm_vcpu *vcpu);

#ifdef KAD_FAULT_POINTS
/* TEST ONLY: whether the module parameter fail_step names @step. */
bool kad_fault_point(const char *step);
#endif

#if defined(KAD_DATA_RACE) || defined(KAD_OOB_WRITE)
/*
 * TEST ONLY: a planted bug the hardening kernels must report: two kernel
 * threads racing on a plain counter (KAD_DATA_RACE, for KCSAN) or a write
 * past a kmalloc'ed buffer (KAD_OOB_WRITE, for KASAN).
 */
void kad_test_planted_bug(void);
#endif

#endif /* KVM_APICV_DEFER_SHIM_H */
