// SPDX-License-Identifier: GPL-2.0

//! The host side: the hook API of `patches/host` (reached through the C shim), as RAII values.
//!
//! [`Host`] holds the API resolved in `kvm-intel.ko`; [`Registration`] holds our ops registered
//! with it. Dropping a [`Registration`] unregisters, which waits for callbacks in flight, so no
//! callback runs once it is gone.

use core::{
    marker::{
        PhantomData,
        PhantomPinned, //
    }, //
};
use kernel::{
    bindings,
    error::to_result,
    ffi::c_int,
    prelude::*,
    sync::atomic::{
        AtomicFlag,
        Full,
        Release, //
    }, //
};

/// `struct kvm_vcpu`, opaque to Rust: only the shim looks inside.
///
/// Named as in C so that the callbacks' types match KVM's indirect calls under kCFI.
#[allow(non_camel_case_types)]
#[repr(C)]
pub(crate) struct kvm_vcpu {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Functions of `rust/kvm_apicv_defer_shim.c`, declared as in `kvm_apicv_defer_shim.h`.
pub(crate) mod shim {
    use super::kvm_vcpu;
    use kernel::ffi::c_int;

    extern "C" {
        pub(crate) fn kad_cpu_has_vmx() -> bool;
        pub(crate) fn kad_host_get() -> c_int;
        pub(crate) fn kad_host_put();
        pub(crate) fn kad_hook_register() -> c_int;
        pub(crate) fn kad_hook_unregister();
        pub(crate) fn kad_refresh_vmcs01(vcpu: *mut kvm_vcpu);
        pub(crate) fn kad_request_apicv_update(vcpu: *mut kvm_vcpu);
        #[cfg(kad_fault_points)]
        pub(crate) fn kad_fault_point(step: *const kernel::ffi::c_char) -> bool;
        #[cfg(kad_planted_bug)]
        pub(crate) fn kad_test_planted_bug();
    }
}

/// TEST ONLY: whether the fault-points build (`KAD_FAULT_POINTS=1`) was asked to fail `step` of
/// init (module parameter `fail_step`). Always false in every other build.
pub(crate) fn fault_point(step: &CStr) -> bool {
    #[cfg(kad_fault_points)]
    {
        // SAFETY: `step` is a valid NUL-terminated string; the shim only compares it.
        unsafe { shim::kad_fault_point(step.as_char_ptr()) }
    }
    #[cfg(not(kad_fault_points))]
    {
        let _ = step;
        false
    }
}

/// Whether the boot CPU has VMX (Intel VT-x).
pub(crate) fn cpu_has_vmx() -> bool {
    // SAFETY: Reads the boot CPU's feature bits; no preconditions.
    unsafe { shim::kad_cpu_has_vmx() }
}

/// The hook API of the patched `kvm-intel.ko`, resolved with `symbol_get()`.
///
/// Holding it also pins `kvm-intel`, which cannot be unloaded until this is dropped.
///
/// # Invariants
///
/// There is at most one [`Host`] at a time, and [`HOST_HELD`] is set while it exists. The
/// shim's pointers to `kvm_vmx_apicv_hook_register()`, `kvm_vmx_apicv_hook_unregister()` and
/// `kvm_vmx_apicv_refresh_vmcs01()` are set and valid while it exists.
pub(crate) struct Host {
    _invariant: (),
}

/// Set while a [`Host`] exists: the shim keeps one set of pointers.
static HOST_HELD: AtomicFlag = AtomicFlag::new(false);

impl Host {
    /// Resolves the hook API.
    ///
    /// Fails with `ENOENT` when `kvm_intel` is not loaded or was built without `patches/host`,
    /// and with `EBUSY` if a [`Host`] exists already.
    pub(crate) fn get() -> Result<Self> {
        if HOST_HELD.cmpxchg(false, true, Full).is_err() {
            return Err(EBUSY);
        }
        // SAFETY: The shim's pointers are only written by `kad_host_get()`/`kad_host_put()`,
        // and we just claimed `HOST_HELD`, so no one else writes or uses them now.
        let ret = to_result(unsafe { shim::kad_host_get() });
        if let Err(e) = ret {
            HOST_HELD.store(false, Release);
            return Err(e);
        }
        // INVARIANT: We hold `HOST_HELD` and `kad_host_get()` set all three pointers.
        Ok(Self { _invariant: () })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the symbols are held; nothing uses them any more: the
        // only user, a `Registration`, owns this `Host` and unregistered before dropping it.
        unsafe { shim::kad_host_put() };
        HOST_HELD.store(false, Release);
    }
}

/// Why [`Registration::new`] failed, as returned by `kvm_vmx_apicv_hook_register()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegisterError {
    /// `-ENODEV`: APICv is disabled (`kvm_intel enable_apicv=0`, or no hardware support).
    ApicvDisabled,
    /// `-EOPNOTSUPP`: nested VMX is disabled (`kvm_intel nested=0`).
    NestedDisabled,
    /// `-EBUSY`: another module's hook is registered.
    Busy,
    /// Any other error code.
    Other(Error),
}

impl RegisterError {
    fn from_errno(errno: c_int) -> Self {
        match errno.unsigned_abs() {
            bindings::ENODEV => Self::ApicvDisabled,
            bindings::EOPNOTSUPP => Self::NestedDisabled,
            bindings::EBUSY => Self::Busy,
            _ => Self::Other(Error::from_errno(errno)),
        }
    }

    /// The kernel error code init returns for this failure.
    pub(crate) fn to_error(self) -> Error {
        match self {
            Self::ApicvDisabled => ENODEV,
            Self::NestedDisabled => Error::from_errno(-(bindings::EOPNOTSUPP as c_int)),
            Self::Busy => EBUSY,
            Self::Other(e) => e,
        }
    }
}

/// Our ops, registered with the host: while this exists, KVM calls `rust/hook.rs`.
///
/// # Invariants
///
/// The shim's ops are registered, and `host` keeps the API they were registered with resolved.
pub(crate) struct Registration {
    _host: Host,
}

impl Registration {
    /// Registers the shim's ops (which call [`crate::hook`]).
    ///
    /// On failure nothing is registered and `host` is dropped.
    pub(crate) fn new(host: Host) -> Result<Self, RegisterError> {
        // SAFETY: `host` proves the API is resolved (type invariant of `Host`).
        let ret = unsafe { shim::kad_hook_register() };
        if ret != 0 {
            return Err(RegisterError::from_errno(ret));
        }
        // INVARIANT: Registered above, with the API `host` holds.
        Ok(Self { _host: host })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: The ops are registered (type invariant) and the API is resolved (`self._host`).
        // On return no callback is running or will run: the host waits for them (RCU). KVM
        // applies deferrals still pending itself, at each vCPU's next nested VM-Exit.
        unsafe { shim::kad_hook_unregister() };
        // `self._host` is dropped after this, releasing `kvm-intel`.
    }
}
