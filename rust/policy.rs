// SPDX-License-Identifier: GPL-2.0

//! The deferral policy.
//!
//! KVM offers the hook a refresh of vmcs01's APICv controls only while L2 is active, and keeps
//! the record of a deferral itself (`nested_vmx.update_vmcs01_apicv_status`, tagged with our
//! registration), so the policy is small: [`refresh`] takes every refresh offered, and
//! [`nested_vmexit`], called at the nested VM-Exit where KVM hands the deferral back, applies
//! it to vmcs01 and raises `KVM_REQ_APICV_UPDATE`. [`on_refresh`] and [`on_nested_vmexit`]
//! decide; the callbacks in `rust/hook.rs` carry the decisions out on the real vCPU through
//! [`ApplyVmcs01`], and the KUnit tests below on a fake one.
//!
//! Because KVM owns the record, nothing here holds a module reference: if the module goes away
//! with deferrals pending (even by `rmmod -f`), KVM applies them itself at each vCPU's next
//! nested VM-Exit, and a later load of the module never sees them.

use crate::stats::Stats;

/// How a pending deferral is applied at nested VM-Exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refresh vmcs01 (`kvm_vmx_apicv_refresh_vmcs01()`), then raise `KVM_REQ_APICV_UPDATE`.
    ///
    /// The refresh is what makes vmcs01 right. The request finds nothing left to do when KVM
    /// services it; it is raised because the module's contract, the 2022 deferral's, says the
    /// nested VM-Exit raises it, so whatever relied on that request still sees it. `make bench`
    /// measures what it costs (see [`Mode::RefreshWithoutRequest`]).
    Refresh,
    /// Test only: raise `KVM_REQ_APICV_UPDATE` and nothing else, as 7c69661e225c did in 2022.
    ///
    /// Known broken: when the request is serviced, `apic->apicv_active` already has the new
    /// value, so KVM returns early and vmcs01 keeps stale APICv controls. Exists to prove that
    /// the tests catch exactly that.
    RequestOnly,
    /// Test only, for `make bench`: refresh vmcs01 without raising `KVM_REQ_APICV_UPDATE`, so the
    /// benchmark can report what the request costs on its own.
    RefreshWithoutRequest,
}

/// The mode this build uses: [`Mode::Refresh`] unless built with `--cfg kad_request_only`
/// (`KAD_REQUEST_ONLY=1`) or `--cfg kad_no_request` (`KAD_NO_REQUEST=1`), the test-only builds.
pub(crate) const MODE: Mode = if cfg!(kad_request_only) {
    Mode::RequestOnly
} else if cfg!(kad_no_request) {
    Mode::RefreshWithoutRequest
} else {
    Mode::Refresh
};

impl Mode {
    /// How the load message describes this mode.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Mode::Refresh => "mode: refresh at VM-Exit",
            Mode::RequestOnly => "TEST-ONLY request-only mode (known broken)",
            Mode::RefreshWithoutRequest => "TEST-ONLY refresh without the request (bench)",
        }
    }
}

/// What to do with a refresh KVM offers while L2 is active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshAction {
    /// Nothing of ours is pending: take the update, starting a deferral.
    Defer,
    /// A deferral of ours is pending: take the update too; the pending refresh applies whatever
    /// state is current at VM-Exit, so it covers this one as well.
    Coalesce,
}

/// Decides what to do with a refresh, given whether a deferral of ours is pending.
pub(crate) fn on_refresh(pending: bool) -> RefreshAction {
    if pending {
        RefreshAction::Coalesce
    } else {
        RefreshAction::Defer
    }
}

/// What to do at the nested VM-Exit where KVM hands back a deferral.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitAction {
    /// Whether to refresh vmcs01 (false only in [`Mode::RequestOnly`]).
    pub(crate) refresh_vmcs01: bool,
    /// Whether to raise `KVM_REQ_APICV_UPDATE` (false only in [`Mode::RefreshWithoutRequest`]).
    pub(crate) request_apicv_update: bool,
}

/// Decides what to do with a deferral handed back at nested VM-Exit.
pub(crate) fn on_nested_vmexit(mode: Mode) -> ExitAction {
    ExitAction {
        refresh_vmcs01: mode != Mode::RequestOnly,
        request_apicv_update: mode != Mode::RefreshWithoutRequest,
    }
}

/// What the nested VM-Exit callback may do to a vCPU whose vmcs01 is loaded.
pub(crate) trait ApplyVmcs01 {
    /// Writes the vCPU's current APICv state into vmcs01.
    fn refresh_vmcs01(&self);
    /// Raises `KVM_REQ_APICV_UPDATE`.
    fn request_apicv_update(&self);
}

/// The `refresh_apicv_exec_ctrl` callback: returns whether the hook takes the update (then KVM
/// writes no VMCS and records the deferral).
///
/// Runs with preemption disabled: takes no lock and never sleeps.
pub(crate) fn refresh(pending: bool, stats: &Stats) -> bool {
    match on_refresh(pending) {
        RefreshAction::Defer => stats.note_deferred(),
        RefreshAction::Coalesce => stats.note_coalesced(),
    }
    true
}

/// The `nested_vmexit` callback: applies the deferral KVM handed back, now that vmcs01 is
/// loaded.
pub(crate) fn nested_vmexit(vcpu: &impl ApplyVmcs01, stats: &Stats, mode: Mode) {
    let action = on_nested_vmexit(mode);
    if action.refresh_vmcs01 {
        vcpu.refresh_vmcs01();
        stats.note_applied();
    }
    if action.request_apicv_update {
        vcpu.request_apicv_update();
        stats.note_request();
    }
    stats.note_drained();
}

// Built only into `kvm_apicv_defer_kunit.ko` (`rust/policy_kunit.rs`), which can be loaded on any
// kernel with KUnit: 7.2 runs a module's suites once it is live, i.e. only if its init
// succeeded, which `kvm_apicv_defer.ko`'s does only on a VMX host with the hook.
#[cfg(kad_kunit)]
#[kernel::macros::kunit_tests(kvm_apicv_defer)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use kernel::sync::atomic::{
        Atomic,
        Relaxed, //
    };

    /// When the callbacks acted on a vCPU: the 1-based index of the call, 0 if never.
    #[derive(Default)]
    struct FakeVcpu {
        calls: Cell<u32>,
        refreshed_at: Cell<u32>,
        requested_at: Cell<u32>,
    }

    impl FakeVcpu {
        fn note(&self, at: &Cell<u32>) {
            self.calls.set(self.calls.get() + 1);
            at.set(self.calls.get());
        }
    }

    impl ApplyVmcs01 for FakeVcpu {
        fn refresh_vmcs01(&self) {
            self.note(&self.refreshed_at);
        }

        fn request_apicv_update(&self) {
            self.note(&self.requested_at);
        }
    }

    fn count(stats: &Stats, counter: fn(&Stats) -> &Atomic<u64>) -> u64 {
        counter(stats).load(Relaxed)
    }

    #[test]
    fn decisions() {
        assert_eq!(on_refresh(false), RefreshAction::Defer);
        assert_eq!(on_refresh(true), RefreshAction::Coalesce);
        let refresh = ExitAction {
            refresh_vmcs01: true,
            request_apicv_update: true,
        };
        let request_only = ExitAction {
            refresh_vmcs01: false,
            request_apicv_update: true,
        };
        assert_eq!(on_nested_vmexit(Mode::Refresh), refresh);
        assert_eq!(on_nested_vmexit(Mode::RequestOnly), request_only);
        let no_request = ExitAction {
            refresh_vmcs01: true,
            request_apicv_update: false,
        };
        assert_eq!(on_nested_vmexit(Mode::RefreshWithoutRequest), no_request);
    }

    #[test]
    fn refresh_in_l2_is_taken_and_counted() {
        let stats = Stats::new();

        assert!(refresh(false, &stats));
        assert_eq!(count(&stats, |s| &s.deferred), 1);
        assert_eq!(count(&stats, |s| &s.coalesced), 0);
        assert_eq!(stats.pending.load(Relaxed), 1);

        // A second update in the same L2 run folds into the pending one.
        assert!(refresh(true, &stats));
        assert_eq!(count(&stats, |s| &s.deferred), 1);
        assert_eq!(count(&stats, |s| &s.coalesced), 1);
        assert_eq!(stats.pending.load(Relaxed), 1);
    }

    #[test]
    fn vmexit_refreshes_vmcs01_then_requests() {
        let (stats, vcpu) = (Stats::new(), FakeVcpu::default());

        assert!(refresh(false, &stats));
        nested_vmexit(&vcpu, &stats, Mode::Refresh);
        // vmcs01 first: the request alone would find nothing to do (apicv_active matches).
        assert_eq!(vcpu.refreshed_at.get(), 1);
        assert_eq!(vcpu.requested_at.get(), 2);
        assert_eq!(count(&stats, |s| &s.applied), 1);
        assert_eq!(count(&stats, |s| &s.requests), 1);
        assert_eq!(stats.pending.load(Relaxed), 0);
    }

    #[test]
    fn request_only_mode_requests_without_refresh() {
        let (stats, vcpu) = (Stats::new(), FakeVcpu::default());

        assert!(refresh(false, &stats));
        nested_vmexit(&vcpu, &stats, Mode::RequestOnly);
        assert_eq!(vcpu.refreshed_at.get(), 0);
        assert_eq!(vcpu.requested_at.get(), 1);
        assert_eq!(count(&stats, |s| &s.applied), 0);
        assert_eq!(count(&stats, |s| &s.requests), 1);
        assert_eq!(stats.pending.load(Relaxed), 0);
    }
}
