// SPDX-License-Identifier: GPL-2.0

//! The two callbacks KVM makes through the ops in `kvm_apicv_defer_shim.c`.
//!
//! They turn the raw arguments into the safe views of `rust/vcpu.rs` and hand them to the
//! policy together with this module's reference count and counters.

use kernel::ffi::c_ulong;

use crate::{
    host::{
        kvm_vcpu,
        ThisModuleRef, //
    },
    policy,
    stats::STATS,
    vcpu::{
        hook_word,
        Vcpu,
        Vmcs01Vcpu, //
    },
};

/// `refresh_apicv_exec_ctrl`: called first thing in `vmx_refresh_apicv_exec_ctrl()`, after KVM
/// changed the vCPU's APICv activation. Returns true to take the update (KVM writes no VMCS).
///
/// # Safety
///
/// Only KVM may call this, through the ops registered by [`crate::host::Registration`]:
/// `vcpu` is a live vCPU loaded by the current task (preemption disabled), `hook_state` is its
/// hook word, and unregistering waits for this call to return.
#[no_mangle]
unsafe extern "C" fn kad_refresh_apicv_exec_ctrl(
    vcpu: *mut kvm_vcpu,
    hook_state: *mut c_ulong,
) -> bool {
    // SAFETY: KVM passes a live, loaded vCPU and the ops stay registered (so the API stays
    // resolved) until this returns, per this function's safety requirements.
    let vcpu = unsafe { Vcpu::from_raw(vcpu) };
    // SAFETY: `hook_state` is the vCPU's hook word, which KVM never accesses and we only access
    // atomically.
    let word = unsafe { hook_word(hook_state) };
    policy::refresh(word, &vcpu, &ThisModuleRef, &STATS)
}

/// `nested_vmexit`: called on every exit from L2 (nested VM-Exit, `vmx_leave_nested()`), right
/// after vmcs01 has been loaded. Preemptible.
///
/// # Safety
///
/// As for [`kad_refresh_apicv_exec_ctrl`], and vmcs01 is the vCPU's current VMCS.
#[no_mangle]
unsafe extern "C" fn kad_nested_vmexit(vcpu: *mut kvm_vcpu, hook_state: *mut c_ulong) {
    // SAFETY: As above, and KVM calls this right after switching to vmcs01.
    let vcpu = unsafe { Vmcs01Vcpu::from_raw(vcpu) };
    // SAFETY: As above.
    let word = unsafe { hook_word(hook_state) };
    policy::nested_vmexit(word, &vcpu, &ThisModuleRef, &STATS, policy::MODE);
}
