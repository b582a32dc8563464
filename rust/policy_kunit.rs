// SPDX-License-Identifier: GPL-2.0

//! `kvm_apicv_defer_kunit`: the KUnit suite `kvm_apicv_defer` of the module's policy.
//!
//! KUnit runs a module's suites once the module is live, so they cannot live in
//! `kvm_apicv_defer.ko`, whose init refuses to load without VMX and the host hook. This module
//! compiles the same `policy.rs` and `stats.rs` with `--cfg kad_kunit` and loads anywhere
//! (no KVM needed). Insert it on a kernel with `CONFIG_KUNIT=y`: the suite's KTAP goes to the
//! kernel log and `/sys/kernel/debug/kunit/kvm_apicv_defer/results`; then remove it.

use kernel::prelude::*;

// Only the tests use the policy here; the module's entry points are not built in.
#[allow(dead_code)]
mod policy;
#[allow(dead_code)]
mod stats;

module! {
    type: PolicyKunit,
    name: "kvm_apicv_defer_kunit",
    authors: ["kvm-apicv-defer developers"],
    description: "KUnit tests of kvm_apicv_defer's deferral policy",
    license: "GPL",
}

struct PolicyKunit;

impl kernel::Module for PolicyKunit {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        Ok(Self)
    }
}
