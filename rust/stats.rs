// SPDX-License-Identifier: GPL-2.0

//! Event counters, exported read-only in debugfs as `kvm_apicv_defer/<counter>`.

use kernel::{
    debugfs::Scope,
    fmt,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    }, //
};

/// What the hook has done since the module was loaded.
///
/// Counters are updated with relaxed atomics and may be read at any time, e.g. while guests
/// run; a read of several counters is not a snapshot. Once all vCPUs are back in L1 (or the VMs
/// are gone), `applied == deferred` in the default mode and `pending == 0`.
pub(crate) struct Stats {
    /// Deferrals started: refreshes taken while L2 was active and nothing was pending.
    pub(crate) deferred: Atomic<u64>,
    /// Refreshes taken while L2 was active and a deferral was already pending.
    pub(crate) coalesced: Atomic<u64>,
    /// Deferrals applied to vmcs01 by the hook at nested VM-Exit.
    pub(crate) applied: Atomic<u64>,
    /// `KVM_REQ_APICV_UPDATE` requests raised at nested VM-Exit.
    pub(crate) requests: Atomic<u64>,
    /// Deferrals started and not yet handed back by KVM at a nested VM-Exit.
    pub(crate) pending: Atomic<i64>,
}

/// The module's counters (the callbacks have no context pointer to carry them).
pub(crate) static STATS: Stats = Stats::new();

impl Stats {
    /// All counters zero.
    pub(crate) const fn new() -> Self {
        Self {
            deferred: Atomic::new(0),
            coalesced: Atomic::new(0),
            applied: Atomic::new(0),
            requests: Atomic::new(0),
            pending: Atomic::new(0),
        }
    }

    /// A deferral started.
    pub(crate) fn note_deferred(&self) {
        self.deferred.add(1, Relaxed);
        self.pending.add(1, Relaxed);
    }

    /// A refresh was folded into a pending deferral.
    pub(crate) fn note_coalesced(&self) {
        self.coalesced.add(1, Relaxed);
    }

    /// vmcs01 was refreshed at nested VM-Exit.
    pub(crate) fn note_applied(&self) {
        self.applied.add(1, Relaxed);
    }

    /// `KVM_REQ_APICV_UPDATE` was raised.
    pub(crate) fn note_request(&self) {
        self.requests.add(1, Relaxed);
    }

    /// A deferral was handed back at nested VM-Exit and applied (or, test only, requested).
    pub(crate) fn note_drained(&self) {
        self.pending.add(-1, Relaxed);
    }

    /// Creates the debugfs directory `kvm_apicv_defer/` with one read-only file per counter.
    ///
    /// The directory is removed when the returned [`Scope`] is dropped. Without debugfs this
    /// does nothing and cannot fail.
    pub(crate) fn debugfs(&'static self) -> impl PinInit<Scope<&'static Stats>> {
        Scope::dir(self, c"kvm_apicv_defer", |stats, dir| {
            dir.read_only_file(c"deferred", &stats.deferred);
            dir.read_only_file(c"coalesced", &stats.coalesced);
            dir.read_only_file(c"applied", &stats.applied);
            dir.read_only_file(c"requests", &stats.requests);
            dir.read_only_file(c"pending", &stats.pending);
        })
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deferred={} coalesced={} applied={} requests={} pending={}",
            self.deferred.load(Relaxed),
            self.coalesced.load(Relaxed),
            self.applied.load(Relaxed),
            self.requests.load(Relaxed),
            self.pending.load(Relaxed),
        )
    }
}
