// SPDX-License-Identifier: GPL-2.0

//! `kvm_apicv_defer`: defer vmcs01 APICv updates while L2 is active.
//!
//! Since Linux 7.0, when L1's APICv activation changes while the vCPU runs L2, KVM switches to
//! vmcs01, rewrites its APICv controls and switches back (`guard(vmx_vmcs01)`). Before 7.0,
//! KVM instead recorded the update and applied it at the next nested VM-Exit, when vmcs01 is
//! loaded anyway (7c69661e225c, fixed by 297631388309). This module restores the
//! deferral through the hook API of `patches/host`
//! (`arch/x86/include/asm/kvm_vmx_apicv_hook.h`):
//!
//! - `refresh_apicv_exec_ctrl` (KVM calls it only while L2 is active): take the update. KVM
//!   writes no VMCS and records the deferral for us in the vCPU's `update_vmcs01_apicv_status`,
//!   tagged with our registration. KVM also defers vmcs01's SVI and TPR threshold while a hook
//!   is registered, so an APICv update while L2 runs loads vmcs01 zero times.
//! - `nested_vmexit`: KVM hands the deferral back at the next nested VM-Exit, with vmcs01
//!   loaded: apply the current APICv state to vmcs01 (`kvm_vmx_apicv_refresh_vmcs01()`) and
//!   raise `KVM_REQ_APICV_UPDATE`. Raising the request alone would not do: by the time it is
//!   serviced, `apic->apicv_active` already has the new value and KVM returns early, leaving
//!   vmcs01 stale.
//!
//! # Loading
//!
//! Load `kvm_intel` first, from a kernel with `patches/host`. Init refuses, with one `pr_err`
//! line and nothing registered, when:
//!
//! - the CPU has no VMX (e.g. an AMD host): `ENODEV`;
//! - `kvm_intel` is not loaded or lacks the hook (unpatched kernel): `ENOENT`;
//! - APICv is disabled (`kvm_intel enable_apicv=0`): `ENODEV`;
//! - nested VMX is disabled (`kvm_intel nested=0`): `EOPNOTSUPP`;
//! - another module's hook is registered: `EBUSY`;
//! - the debugfs counters cannot be allocated: `ENOMEM`.
//!
//! On success it logs `deferring vmcs01 APICv updates while L2 is active (mode: refresh at
//! VM-Exit)`. While loaded it pins `kvm_intel`. There are no module parameters.
//!
//! # Unloading
//!
//! Always possible, also with deferrals pending and with `rmmod -f`: module exit unregisters the
//! hook, which waits for callbacks in flight, so no callback runs after the module is gone.
//! KVM owns the record of every deferral, so the ones still pending are applied by KVM itself
//! at each vCPU's next nested VM-Exit, and a later load of the module never sees them. The
//! module holds no reference per deferral. The unload message counts them (`pending=`).
//!
//! # Observability
//!
//! debugfs `kvm_apicv_defer/`: `deferred`, `coalesced`, `applied`, `requests`, `pending` (see
//! [`stats::Stats`]), readable while guests run. The totals are logged on unload.
//!
//! # Test-only request-only and no-request builds
//!
//! Built with `KAD_REQUEST_ONLY=1`, the VM-Exit callback only raises `KVM_REQ_APICV_UPDATE`,
//! as merged in 2022: known broken, it exists to show that the tests catch it, and says
//! `TEST-ONLY request-only mode (known broken)` when loaded. Built with `KAD_NO_REQUEST=1`, it
//! refreshes vmcs01 but raises no request, so that `make bench` can measure what the request
//! costs; it says `TEST-ONLY refresh without the request (bench)`.
//!
//! # Test-only hardening builds
//!
//! For the `hardening` (KASAN, kCFI, fault injection) and `kcsan` kernel variants, four more
//! test-only builds show that their checks are live, and say `TEST-ONLY` when loaded:
//! `KAD_CFI_MISMATCH=1` gives the refresh callback a `void *` where KVM passes a
//! `struct kvm_vcpu *` (kCFI must trap on the first call), `KAD_FAULT_POINTS=1` adds the
//! parameter `fail_step=symbol_get|debugfs|register|register_no_refresh` that fails that step
//! of init, `KAD_OOB_WRITE=1` writes one byte past a kmalloc'ed buffer at init (KASAN must
//! report it) and `KAD_DATA_RACE=1` races two threads on a plain counter at init (KCSAN must
//! report it).
//!
//! # Layout
//!
//! This file is the entry point; [`host`] wraps the hook API (through the C shim
//! `kvm_apicv_defer_shim.c`) as RAII values; [`hook`] holds the callbacks; [`vcpu`] the safe
//! view of the vCPU they apply to; [`policy`] the decisions; [`stats`] the counters. The policy's
//! KUnit suite `kvm_apicv_defer` is built into a separate module, `kvm_apicv_defer_kunit.ko`
//! (`policy_kunit.rs`), which loads on any KUnit kernel.

use kernel::{
    debugfs::Scope,
    prelude::*,
    sync::atomic::Relaxed, //
};

mod hook;
mod host;
mod policy;
mod stats;
mod vcpu;

use host::{
    Host,
    RegisterError,
    Registration, //
};
use stats::{
    Stats,
    STATS, //
};

module! {
    type: KvmApicvDefer,
    name: "kvm_apicv_defer",
    authors: ["kvm-apicv-defer developers"],
    description: "Defer vmcs01 APICv updates while L2 is active (nested VMX)",
    license: "GPL",
}

/// The loaded module: the registered hook and its debugfs files.
///
/// # Invariants
///
/// `registration` is `Some` from init until [`Drop::drop`] takes it to unregister first.
struct KvmApicvDefer {
    registration: Option<Registration>,
    _debugfs: Pin<KBox<Scope<&'static Stats>>>,
}

impl kernel::Module for KvmApicvDefer {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if !host::cpu_has_vmx() {
            pr_err!("CPU has no VMX (Intel VT-x): nothing to defer on this host\n");
            return Err(ENODEV);
        }

        // `Host::get()` fails only with ENOENT here: this is its one caller, so no other
        // `Host` exists.
        let host = Host::get().inspect_err(|_| {
            pr_err!("kvm_intel is not loaded or lacks the APICv hook (patches/host)\n");
        })?;

        // Before registering, so the files show every callback's counts. Only allocating the
        // scope can fail init: debugfs itself failing (or being disabled) just hides the files.
        let debugfs = if host::fault_point(c"debugfs") {
            Err(ENOMEM)
        } else {
            KBox::pin_init(STATS.debugfs(), GFP_KERNEL)
        }
        .inspect_err(|e| {
            pr_err!("allocating the debugfs counters failed: {}\n", e.to_errno());
        })?;

        let registration = Registration::new(host).map_err(|err| {
            match err {
                RegisterError::ApicvDisabled => {
                    pr_err!("APICv is disabled (kvm_intel enable_apicv=0): nothing to defer\n")
                }
                RegisterError::NestedDisabled => {
                    pr_err!("nested VMX is disabled (kvm_intel nested=0): nothing to defer\n")
                }
                RegisterError::Busy => pr_err!("another APICv hook is already registered\n"),
                RegisterError::Other(e) => {
                    pr_err!("registering the APICv hook failed: {}\n", e.to_errno())
                }
            }
            err.to_error()
        })?;

        pr_info!(
            "deferring vmcs01 APICv updates while L2 is active ({})\n",
            policy::MODE.describe()
        );
        if cfg!(kad_cfi_mismatch) {
            pr_warn!("TEST-ONLY kCFI mismatch build: the first refresh callback must trap\n");
        }
        if cfg!(kad_fault_points) {
            pr_warn!("TEST-ONLY fault-points build (module parameter fail_step)\n");
        }
        #[cfg(kad_planted_bug)]
        // SAFETY: Deliberately unsound, in test-only builds that are never shipped: the planted
        // bug (a data race between two kernel threads it waits for, or a write one byte past
        // its own kmalloc'ed buffer) is what the sanitizer kernel must report. It needs nothing
        // from the caller.
        unsafe {
            host::shim::kad_test_planted_bug()
        };
        // INVARIANT: `registration` is `Some` until `drop` takes it.
        Ok(Self {
            registration: Some(registration),
            _debugfs: debugfs,
        })
    }
}

impl Drop for KvmApicvDefer {
    fn drop(&mut self) {
        // Unregister first: this waits for callbacks in flight, and none runs afterwards.
        drop(self.registration.take());

        let pending = STATS.pending.load(Relaxed);
        if pending != 0 {
            // KVM applies them at each vCPU's next nested VM-Exit.
            pr_info!("{pending} pending deferrals left to KVM\n");
        }
        pr_info!("unloaded: {}\n", STATS);
    }
}
