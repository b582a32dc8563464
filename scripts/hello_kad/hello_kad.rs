// SPDX-License-Identifier: GPL-2.0

//! Proves the rig can build an out-of-tree Rust module that loads and unloads.

use kernel::prelude::*;

module! {
    type: HelloKad,
    name: "hello_kad",
    authors: ["kvm-apicv-defer developers"],
    description: "Rig check: an out-of-tree Rust module loads and unloads",
    license: "GPL",
}

struct HelloKad;

impl kernel::Module for HelloKad {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("hello from the kvm-apicv-defer rig\n");
        Ok(HelloKad)
    }
}

impl Drop for HelloKad {
    fn drop(&mut self) {
        pr_info!("goodbye\n");
    }
}
