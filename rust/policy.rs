// SPDX-License-Identifier: GPL-2.0

//! The deferral policy.
//!
//! [`on_refresh`] and [`on_nested_vmexit`] decide, from the per-vCPU hook word alone (plus
//! whether L2 is active), what each callback does. [`refresh`] and [`nested_vmexit`] carry the
//! decisions out: on the word with atomics, on KVM through [`L2State`]/[`ApplyVmcs01`], and on
//! the module's reference count through [`ModuleRef`]. The callbacks in `rust/hook.rs` use them
//! with the real vCPU and module; the KUnit tests below use fakes.
//!
//! The word's one bit, [`UPDATE_VMCS01_APICV_STATUS`], is set exactly while a deferral is
//! pending, and each set bit holds one reference on the module: that is what makes `rmmod`
//! refuse until every deferral is drained.

use kernel::sync::atomic::{
    Atomic,
    Relaxed, //
};

use crate::stats::Stats;

/// The per-vCPU word KVM reserves for the hook (`nested_vmx.apicv_hook_state`).
///
/// KVM zeroes it when the vCPU is created and never touches it again; the hook must leave it
/// zero when it unregisters.
pub(crate) type HookWord = Atomic<usize>;

/// Bit in the hook word: an APICv update of vmcs01 was taken while L2 was active and is not
/// applied yet (what `nested_vmx.update_vmcs01_apicv_status` was before Linux 7.0).
pub(crate) const UPDATE_VMCS01_APICV_STATUS: usize = 1 << 0;

/// How a pending deferral is applied at nested VM-Exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refresh vmcs01 (`kvm_vmx_apicv_refresh_vmcs01()`), then raise `KVM_REQ_APICV_UPDATE`.
    Refresh,
    /// Test only: raise `KVM_REQ_APICV_UPDATE` and nothing else, as 7c69661e225c did in 2022.
    ///
    /// Known broken: when the request is serviced, `apic->apicv_active` already has the new
    /// value, so KVM returns early and vmcs01 keeps stale APICv controls. Exists to prove that
    /// the tests catch exactly that.
    RequestOnly,
}

/// The mode this build uses: [`Mode::RequestOnly`] only when built with
/// `--cfg kad_request_only` (`KAD_REQUEST_ONLY=1`).
pub(crate) const MODE: Mode = if cfg!(kad_request_only) {
    Mode::RequestOnly
} else {
    Mode::Refresh
};

impl Mode {
    /// How the load message describes this mode.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Mode::Refresh => "mode: refresh at VM-Exit",
            Mode::RequestOnly => "TEST-ONLY request-only mode (known broken)",
        }
    }
}

/// What to do with an APICv refresh KVM offers the hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshAction {
    /// L1 is active and nothing is pending: KVM writes vmcs01 now.
    PassThrough,
    /// L1 is active but a deferral is still recorded (L2 was left without a nested VM-Exit
    /// callback): KVM writes the current state to vmcs01 now, which covers the deferred update
    /// too, so forget the deferral.
    Supersede,
    /// L2 is active and nothing is pending: take the update and record a deferral.
    Defer,
    /// L2 is active and a deferral is pending: take the update; the pending refresh applies
    /// whatever state is current at VM-Exit, so it covers this one as well.
    Coalesce,
}

/// Decides what to do with a refresh, given the hook word and whether L2 is active.
pub(crate) fn on_refresh(word: usize, in_guest_mode: bool) -> RefreshAction {
    let pending = word & UPDATE_VMCS01_APICV_STATUS != 0;
    match (in_guest_mode, pending) {
        (false, false) => RefreshAction::PassThrough,
        (false, true) => RefreshAction::Supersede,
        (true, false) => RefreshAction::Defer,
        (true, true) => RefreshAction::Coalesce,
    }
}

/// What to do at a nested VM-Exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitAction {
    /// Nothing is pending.
    Nothing,
    /// Drain the pending deferral: clear the bit, refresh vmcs01 if `refresh_vmcs01`, raise
    /// `KVM_REQ_APICV_UPDATE`, drop the deferral's module reference.
    Apply {
        /// Whether to refresh vmcs01 (false only in [`Mode::RequestOnly`]).
        refresh_vmcs01: bool,
    },
}

/// Decides what to do at a nested VM-Exit, given the hook word.
pub(crate) fn on_nested_vmexit(word: usize, mode: Mode) -> ExitAction {
    if word & UPDATE_VMCS01_APICV_STATUS == 0 {
        return ExitAction::Nothing;
    }
    ExitAction::Apply {
        refresh_vmcs01: mode == Mode::Refresh,
    }
}

/// References on the module.
pub(crate) trait ModuleRef {
    /// Takes a reference; fails once the module has started unloading.
    fn try_get(&self) -> bool;
    /// Drops a reference taken with [`ModuleRef::try_get`].
    fn put(&self);
}

/// Whether a vCPU runs L2.
pub(crate) trait L2State {
    /// True while L2 is active (`is_guest_mode()`).
    fn in_guest_mode(&self) -> bool;
}

/// What the nested VM-Exit callback may do to a vCPU whose vmcs01 is loaded.
pub(crate) trait ApplyVmcs01 {
    /// Writes the vCPU's current APICv state into vmcs01.
    fn refresh_vmcs01(&self);
    /// Raises `KVM_REQ_APICV_UPDATE`.
    fn request_apicv_update(&self);
}

/// The `refresh_apicv_exec_ctrl` callback: returns whether the hook takes the update (then KVM
/// writes no VMCS).
///
/// Runs with preemption disabled: takes no lock and never sleeps.
pub(crate) fn refresh(
    word: &HookWord,
    vcpu: &impl L2State,
    module: &impl ModuleRef,
    stats: &Stats,
) -> bool {
    let old = word.load(Relaxed);
    match on_refresh(old, vcpu.in_guest_mode()) {
        RefreshAction::PassThrough => false,
        RefreshAction::Supersede => {
            if word.xchg(0, Relaxed) & UPDATE_VMCS01_APICV_STATUS != 0 {
                stats.note_superseded();
                stats.note_drained();
                module.put();
            }
            false
        }
        RefreshAction::Coalesce => {
            stats.note_coalesced();
            true
        }
        RefreshAction::Defer => {
            // Reference first, then publish the bit: a set bit always holds a reference. If
            // the module is unloading, leave the update to KVM; nothing is left pending.
            if !module.try_get() {
                return false;
            }
            if word
                .cmpxchg(old, old | UPDATE_VMCS01_APICV_STATUS, Relaxed)
                .is_err()
            {
                // The word changed under us. KVM runs a vCPU's callbacks one at a time, so this
                // does not happen; if it did, letting KVM write vmcs01 now is always correct.
                module.put();
                return false;
            }
            stats.note_deferred();
            true
        }
    }
}

/// The `nested_vmexit` callback: applies a pending deferral now that vmcs01 is loaded.
///
/// The common case, nothing pending, is one load of the word.
pub(crate) fn nested_vmexit(
    word: &HookWord,
    vcpu: &impl ApplyVmcs01,
    module: &impl ModuleRef,
    stats: &Stats,
    mode: Mode,
) {
    let ExitAction::Apply { refresh_vmcs01 } = on_nested_vmexit(word.load(Relaxed), mode) else {
        return;
    };
    if word.xchg(0, Relaxed) & UPDATE_VMCS01_APICV_STATUS == 0 {
        // Drained in between; cannot happen as callbacks on a vCPU are serialized.
        return;
    }
    if refresh_vmcs01 {
        vcpu.refresh_vmcs01();
        stats.note_applied();
    }
    vcpu.request_apicv_update();
    stats.note_request();
    stats.note_drained();
    // Last: this may be the reference an `rmmod` is waiting to see dropped.
    module.put();
}

// Built only into `kvm_apicv_defer_kunit.ko` (`rust/policy_kunit.rs`), which can be loaded on any
// kernel with KUnit: 7.2 runs a module's suites once it is live, i.e. only if its init
// succeeded, which `kvm_apicv_defer.ko`'s does only on a VMX host with the hook.
#[cfg(kad_kunit)]
#[kernel::macros::kunit_tests(kvm_apicv_defer)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use kernel::sync::atomic::Relaxed;

    /// This module, with its counters and a reference count; it may be unloading.
    #[derive(Default)]
    struct FakeModule {
        refs: Cell<i64>,
        going: Cell<bool>,
        stats: Stats,
    }

    impl Default for Stats {
        fn default() -> Self {
            Self::new()
        }
    }

    impl ModuleRef for FakeModule {
        fn try_get(&self) -> bool {
            if self.going.get() {
                return false;
            }
            self.refs.set(self.refs.get() + 1);
            true
        }

        fn put(&self) {
            self.refs.set(self.refs.get() - 1);
        }
    }

    /// A vCPU with its hook word, recording what the callbacks did to it.
    struct FakeVcpu {
        word: HookWord,
        guest_mode: Cell<bool>,
        refreshes: Cell<u32>,
        requests: Cell<u32>,
    }

    impl L2State for FakeVcpu {
        fn in_guest_mode(&self) -> bool {
            self.guest_mode.get()
        }
    }

    impl ApplyVmcs01 for FakeVcpu {
        fn refresh_vmcs01(&self) {
            self.refreshes.set(self.refreshes.get() + 1);
        }

        fn request_apicv_update(&self) {
            self.requests.set(self.requests.get() + 1);
        }
    }

    impl FakeVcpu {
        fn new(guest_mode: bool) -> Self {
            Self {
                word: HookWord::new(0),
                guest_mode: Cell::new(guest_mode),
                refreshes: Cell::new(0),
                requests: Cell::new(0),
            }
        }

        fn in_l1() -> Self {
            Self::new(false)
        }

        fn in_l2() -> Self {
            Self::new(true)
        }

        fn pending(&self) -> bool {
            self.word.load(Relaxed) & UPDATE_VMCS01_APICV_STATUS != 0
        }
    }

    impl FakeModule {
        /// KVM offers the hook a refresh of `vcpu`'s APICv state.
        fn refresh(&self, vcpu: &FakeVcpu) -> bool {
            refresh(&vcpu.word, vcpu, self, &self.stats)
        }

        /// A nested VM-Exit: L2 is left, then the callback runs (as in `__nested_vmx_vmexit()`).
        fn exit_to_l1(&self, vcpu: &FakeVcpu, mode: Mode) {
            vcpu.guest_mode.set(false);
            nested_vmexit(&vcpu.word, vcpu, self, &self.stats, mode);
        }

        fn count(&self, counter: fn(&Stats) -> &kernel::sync::atomic::Atomic<u64>) -> u64 {
            counter(&self.stats).load(Relaxed)
        }

        fn pending(&self) -> i64 {
            self.stats.pending.load(Relaxed)
        }
    }

    #[test]
    fn decisions_follow_guest_mode_and_pending_bit() {
        let p = UPDATE_VMCS01_APICV_STATUS;
        assert_eq!(on_refresh(0, false), RefreshAction::PassThrough);
        assert_eq!(on_refresh(p, false), RefreshAction::Supersede);
        assert_eq!(on_refresh(0, true), RefreshAction::Defer);
        assert_eq!(on_refresh(p, true), RefreshAction::Coalesce);
        assert_eq!(on_nested_vmexit(0, Mode::Refresh), ExitAction::Nothing);
        assert_eq!(on_nested_vmexit(0, Mode::RequestOnly), ExitAction::Nothing);
        let refresh = ExitAction::Apply {
            refresh_vmcs01: true,
        };
        let request_only = ExitAction::Apply {
            refresh_vmcs01: false,
        };
        assert_eq!(on_nested_vmexit(p, Mode::Refresh), refresh);
        assert_eq!(on_nested_vmexit(p, Mode::RequestOnly), request_only);
    }

    #[test]
    fn guest_mode_refresh_defers() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l2());

        assert!(module.refresh(&vcpu));
        assert!(vcpu.pending());
        assert_eq!(module.refs.get(), 1);
        assert_eq!(module.count(|s| &s.deferred), 1);
        assert_eq!(module.pending(), 1);
        // Nothing touched vmcs01 yet.
        assert_eq!(vcpu.refreshes.get(), 0);
        assert_eq!(vcpu.requests.get(), 0);
    }

    #[test]
    fn l1_refresh_passes_through() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l1());

        assert!(!module.refresh(&vcpu));
        assert!(!vcpu.pending());
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.count(|s| &s.deferred), 0);
        assert_eq!(module.pending(), 0);
    }

    #[test]
    fn vmexit_with_flag_applies_and_requests() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l2());

        assert!(module.refresh(&vcpu));
        module.exit_to_l1(&vcpu, Mode::Refresh);
        assert!(!vcpu.pending());
        assert_eq!(vcpu.refreshes.get(), 1);
        assert_eq!(vcpu.requests.get(), 1);
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.count(|s| &s.applied), 1);
        assert_eq!(module.count(|s| &s.requests), 1);
        assert_eq!(module.pending(), 0);
    }

    #[test]
    fn vmexit_without_flag_does_nothing() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l2());

        module.exit_to_l1(&vcpu, Mode::Refresh);
        assert!(!vcpu.pending());
        assert_eq!(vcpu.refreshes.get(), 0);
        assert_eq!(vcpu.requests.get(), 0);
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.count(|s| &s.applied), 0);
        assert_eq!(module.count(|s| &s.requests), 0);
    }

    #[test]
    fn double_deferral_applies_once() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l2());

        // Inhibit, then uninhibit, while L2 runs: both taken, one deferral, one reference.
        assert!(module.refresh(&vcpu));
        assert!(module.refresh(&vcpu));
        assert_eq!(module.refs.get(), 1);
        assert_eq!(module.count(|s| &s.deferred), 1);
        assert_eq!(module.count(|s| &s.coalesced), 1);

        module.exit_to_l1(&vcpu, Mode::Refresh);
        module.exit_to_l1(&vcpu, Mode::Refresh);
        assert_eq!(vcpu.refreshes.get(), 1);
        assert_eq!(vcpu.requests.get(), 1);
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.count(|s| &s.applied), 1);
        assert_eq!(module.pending(), 0);
    }

    #[test]
    fn request_only_mode_requests_without_refresh() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l2());

        assert!(module.refresh(&vcpu));
        module.exit_to_l1(&vcpu, Mode::RequestOnly);
        assert!(!vcpu.pending());
        assert_eq!(vcpu.refreshes.get(), 0);
        assert_eq!(vcpu.requests.get(), 1);
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.count(|s| &s.applied), 0);
        assert_eq!(module.count(|s| &s.requests), 1);
        assert_eq!(module.pending(), 0);
    }

    #[test]
    fn unload_drains_and_refuses_new_deferrals() {
        let module = FakeModule::default();
        let vcpus = [FakeVcpu::in_l2(), FakeVcpu::in_l2(), FakeVcpu::in_l2()];

        // Two vCPUs defer while in L2: each deferral holds a reference, so rmmod would refuse.
        assert!(module.refresh(&vcpus[0]));
        assert!(module.refresh(&vcpus[1]));
        assert_eq!(module.refs.get(), 2);
        assert_eq!(module.pending(), 2);

        // Once unloading has begun, a refresh in L2 is left to KVM: nothing becomes pending.
        module.going.set(true);
        assert!(!module.refresh(&vcpus[2]));
        assert!(!vcpus[2].pending());
        assert_eq!(module.refs.get(), 2);

        // The pending ones drain at their next nested VM-Exit, dropping every reference.
        for vcpu in &vcpus {
            module.exit_to_l1(vcpu, Mode::Refresh);
        }
        assert!(vcpus.iter().all(|vcpu| !vcpu.pending()));
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.pending(), 0);
        assert_eq!(module.count(|s| &s.deferred), 2);
        assert_eq!(module.count(|s| &s.applied), 2);
        assert_eq!(vcpus[2].refreshes.get(), 0);
    }

    #[test]
    fn l1_refresh_supersedes_stale_deferral() {
        let (module, vcpu) = (FakeModule::default(), FakeVcpu::in_l2());

        assert!(module.refresh(&vcpu));
        // L2 is left without the VM-Exit callback; KVM's own refresh in L1 then covers it.
        vcpu.guest_mode.set(false);
        assert!(!module.refresh(&vcpu));
        assert!(!vcpu.pending());
        assert_eq!(module.refs.get(), 0);
        assert_eq!(module.count(|s| &s.superseded), 1);
        assert_eq!(module.pending(), 0);
        // And the next VM-Exit has nothing left to do.
        module.exit_to_l1(&vcpu, Mode::Refresh);
        assert_eq!(vcpu.refreshes.get(), 0);
        assert_eq!(vcpu.requests.get(), 0);
    }
}
