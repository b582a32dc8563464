// SPDX-License-Identifier: GPL-2.0

//! A safe view of the vCPU KVM hands the nested VM-Exit callback.

use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

use crate::{
    host::{
        kvm_vcpu,
        shim, //
    },
    policy::ApplyVmcs01,
};

/// A vCPU during a nested VM-Exit, with vmcs01 loaded (L1's host state not yet loaded from
/// vmcs12).
///
/// # Invariants
///
/// `ptr` points to a live `struct kvm_vcpu` that is loaded on this CPU by the current task and
/// whose current VMCS is vmcs01, the current task is in KVM's nested VM-Exit path (inside the
/// `nested_vmexit` callback), and the hook API is resolved (the ops are registered), for at
/// least `'a`.
pub(crate) struct Vmcs01Vcpu<'a> {
    ptr: NonNull<kvm_vcpu>,
    _callback: PhantomData<&'a kvm_vcpu>,
}

impl<'a> Vmcs01Vcpu<'a> {
    /// Wraps the vCPU pointer the nested VM-Exit callback received.
    ///
    /// # Safety
    ///
    /// `ptr` must be non-null and point to a live vCPU loaded by the current task whose current
    /// VMCS is vmcs01, the current task must be in KVM's nested VM-Exit path, and the hook API
    /// must stay resolved, for `'a`. This holds for the `vcpu` argument of the `nested_vmexit`
    /// callback, for the duration of the call.
    pub(crate) unsafe fn from_raw(ptr: *mut kvm_vcpu) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            // SAFETY: The caller guarantees `ptr` is non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _callback: PhantomData,
        }
    }
}

impl ApplyVmcs01 for Vmcs01Vcpu<'_> {
    fn refresh_vmcs01(&self) {
        // SAFETY: The API is resolved, the vCPU is live and loaded, vmcs01 is its current VMCS
        // and we are in the nested VM-Exit path (type invariants), which is what
        // `kvm_vmx_apicv_refresh_vmcs01()` requires.
        unsafe { shim::kad_refresh_vmcs01(self.ptr.as_ptr()) }
    }

    fn request_apicv_update(&self) {
        // SAFETY: `ptr` is a live vCPU (type invariant); making a request is allowed in any
        // context.
        unsafe { shim::kad_request_apicv_update(self.ptr.as_ptr()) }
    }
}
