// SPDX-License-Identifier: GPL-2.0

//! The two callbacks KVM makes through the ops in `kvm_apicv_defer_shim.c`.
//!
//! They hand the policy this module's counters and, for the nested VM-Exit (the one that
//! writes a VMCS), the vCPU as the safe view of `rust/vcpu.rs`.

use crate::{
    host::kvm_vcpu,
    policy,
    stats::STATS,
    vcpu::Vmcs01Vcpu, //
};

/// `refresh_apicv_exec_ctrl`: L1's APICv activation changed while L2 is active (KVM calls the
/// hook for nothing else). `pending` says whether an update this registration took is already
/// pending. Returns true to take the update: KVM then writes no VMCS, records the deferral and
/// calls [`kad_nested_vmexit`] at the next nested VM-Exit.
///
/// Runs with preemption disabled: takes no lock and never sleeps.
///
/// # Safety
///
/// Only KVM may call this, through the ops registered by [`crate::host::Registration`].
#[cfg(not(kad_cfi_mismatch))]
#[no_mangle]
unsafe extern "C" fn kad_refresh_apicv_exec_ctrl(_vcpu: *mut kvm_vcpu, pending: bool) -> bool {
    policy::refresh(pending, &STATS)
}

/// TEST ONLY (`KAD_CFI_MISMATCH=1`): the same callback taking the vCPU as `void *` where the C
/// ops have `struct kvm_vcpu *`. The registers carry the same bits, but under kCFI the function's
/// type hash no longer matches the one KVM's indirect call checks, so the first call must trap.
/// (A `u8` for the `bool` would not do: integer normalization, which Rust needs, gives both the
/// same hash.)
///
/// # Safety
///
/// Never call it: it exists to be caught by kCFI.
#[cfg(kad_cfi_mismatch)]
#[no_mangle]
unsafe extern "C" fn kad_refresh_apicv_exec_ctrl(
    _vcpu: *mut kernel::ffi::c_void,
    pending: bool,
) -> bool {
    policy::refresh(pending, &STATS)
}

/// `nested_vmexit`: a nested VM-Exit found an update this registration took pending; vmcs01 is
/// loaded and L1 is active. KVM has already forgotten the deferral: apply it now.
///
/// # Safety
///
/// Only KVM may call this, through the ops registered by [`crate::host::Registration`]: `vcpu`
/// is a live vCPU loaded by the current task, whose current VMCS is vmcs01, and unregistering
/// waits for this call to return.
#[no_mangle]
unsafe extern "C" fn kad_nested_vmexit(vcpu: *mut kvm_vcpu) {
    // SAFETY: KVM passes a live, loaded vCPU whose current VMCS is vmcs01, and the ops stay
    // registered (so the API stays resolved) until this returns, per this function's safety
    // requirements.
    let vcpu = unsafe { Vmcs01Vcpu::from_raw(vcpu) };
    policy::nested_vmexit(&vcpu, &STATS, policy::MODE);
}
