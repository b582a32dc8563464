// SPDX-License-Identifier: GPL-2.0

//! Safe views of what KVM hands the hook's callbacks: the vCPU and its hook word.

use core::{
    marker::PhantomData,
    ptr::NonNull, //
};
use kernel::{
    ffi::c_ulong,
    sync::atomic::Atomic, //
};

use crate::{
    host::{
        kvm_vcpu,
        shim, //
    },
    policy::{
        ApplyVmcs01,
        HookWord,
        L2State, //
    },
};

/// A vCPU, as seen from inside one of the hook's callbacks.
///
/// # Invariants
///
/// `ptr` points to a live `struct kvm_vcpu` that is loaded on this CPU by the current task for
/// at least `'a`, and the hook API is resolved (the ops are registered) for at least `'a`.
pub(crate) struct Vcpu<'a> {
    ptr: NonNull<kvm_vcpu>,
    _callback: PhantomData<&'a kvm_vcpu>,
}

impl<'a> Vcpu<'a> {
    /// Wraps the vCPU pointer a callback received.
    ///
    /// # Safety
    ///
    /// `ptr` must be non-null and point to a live vCPU loaded by the current task, and the hook
    /// API must stay resolved, for `'a`. This holds for the `vcpu` argument of a callback KVM
    /// makes through our registered ops, for the duration of the call.
    pub(crate) unsafe fn from_raw(ptr: *mut kvm_vcpu) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            // SAFETY: The caller guarantees `ptr` is non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            _callback: PhantomData,
        }
    }

    /// Raises `KVM_REQ_APICV_UPDATE`, serviced before the vCPU next enters the guest.
    pub(crate) fn request_apicv_update(&self) {
        // SAFETY: `ptr` is a live vCPU (type invariant); making a request is allowed in any
        // context.
        unsafe { shim::kad_request_apicv_update(self.ptr.as_ptr()) }
    }
}

impl L2State for Vcpu<'_> {
    fn in_guest_mode(&self) -> bool {
        // SAFETY: `ptr` is a live vCPU loaded by the current task (type invariant), so its
        // `hflags` are stable while we read them.
        unsafe { shim::kad_is_guest_mode(self.ptr.as_ptr()) }
    }
}

/// A vCPU during a nested VM-Exit, right after KVM loaded vmcs01.
///
/// # Invariants
///
/// As for [`Vcpu`], and vmcs01 is the vCPU's current VMCS for `'a`.
pub(crate) struct Vmcs01Vcpu<'a> {
    vcpu: Vcpu<'a>,
}

impl<'a> Vmcs01Vcpu<'a> {
    /// Wraps the vCPU pointer the nested VM-Exit callback received.
    ///
    /// # Safety
    ///
    /// As for [`Vcpu::from_raw`], and vmcs01 must be the current VMCS for `'a`: true for the
    /// `vcpu` argument of the `nested_vmexit` callback, for the duration of the call.
    pub(crate) unsafe fn from_raw(ptr: *mut kvm_vcpu) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            // SAFETY: The caller guarantees what `Vcpu::from_raw` needs.
            vcpu: unsafe { Vcpu::from_raw(ptr) },
        }
    }
}

impl ApplyVmcs01 for Vmcs01Vcpu<'_> {
    fn refresh_vmcs01(&self) {
        // SAFETY: The API is resolved, the vCPU is live and loaded, and vmcs01 is its current
        // VMCS (type invariants), which is what `kvm_vmx_apicv_refresh_vmcs01()` requires. We
        // are in the preemptible nested VM-Exit path, where the refresh may run.
        unsafe { shim::kad_refresh_vmcs01(self.vcpu.ptr.as_ptr()) }
    }

    fn request_apicv_update(&self) {
        self.vcpu.request_apicv_update();
    }
}

/// Views the `hook_state` pointer a callback received as an atomic word.
///
/// # Safety
///
/// `ptr` must be non-null, aligned, valid for reads and writes for `'a`, and only accessed
/// atomically during `'a`: true for the `hook_state` argument of a callback KVM makes through
/// our ops, for the duration of the call (KVM itself never accesses the word).
pub(crate) unsafe fn hook_word<'a>(ptr: *mut c_ulong) -> &'a HookWord {
    // SAFETY: `c_ulong` is `usize` in the kernel's FFI types; alignment, validity and the
    // absence of non-atomic accesses are guaranteed by the caller.
    unsafe { Atomic::from_ptr(ptr) }
}
