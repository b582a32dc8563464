// SPDX-License-Identifier: GPL-2.0

//! `apicv_hook_counter`: the smallest user of the VMX APICv hook API of `patches/host`.
//!
//! It registers ops that never take a refresh (KVM keeps refreshing vmcs01's APICv controls
//! itself, through its guard) and only count how often KVM calls them: debugfs
//! `apicv_hook_counter/{refreshes,nested_vmexits}`, and a `pr_info` line on unload. Being
//! registered is not neutral: like any registered hook, it makes KVM defer vmcs01's SVI and TPR
//! threshold writes made while L2 is active to the next nested VM-Exit. KVM offers a refresh
//! only while L2 is active, and calls `nested_vmexit` only to hand back a refresh the hook took,
//! so `nested_vmexits` stays 0.
//!
//! Only one hook can be registered at a time: loading this while `kvm_apicv_defer` is loaded
//! fails with `EBUSY`, and the other way round.
//!
//! The host exports the API only to a module named `kvm_apicv_defer`
//! (`EXPORT_SYMBOL_FOR_MODULES`). That restriction is enforced when a module links the symbols;
//! `symbol_get()` (here its function, `__symbol_get()`) only requires them to be GPL-only
//! exports, which is how this sample reaches them. Fine for a sample, not a supported
//! interface. It is pure Rust: no callback needs a KVM structure, so no C shim is needed.

use core::{
    marker::{
        PhantomData,
        PhantomPinned, //
    }, //
};
use kernel::{
    bindings,
    debugfs::Scope,
    error::to_result,
    ffi::{
        c_int,
        c_void, //
    },
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    }, //
};

module! {
    type: ApicvHookCounter,
    name: "apicv_hook_counter",
    authors: ["kvm-apicv-defer developers"],
    description: "Sample: count VMX APICv hook callbacks",
    license: "GPL",
}

/// `struct kvm_vcpu`, opaque (named as in C so the callbacks' types match under kCFI).
#[allow(non_camel_case_types)]
#[repr(C)]
struct kvm_vcpu {
    _opaque: [u8; 0],
    _not_send_sync_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `struct kvm_vmx_apicv_hook_ops` of `arch/x86/include/asm/kvm_vmx_apicv_hook.h`.
#[allow(non_camel_case_types)]
#[repr(C)]
struct kvm_vmx_apicv_hook_ops {
    refresh_apicv_exec_ctrl: unsafe extern "C" fn(*mut kvm_vcpu, bool) -> bool,
    nested_vmexit: unsafe extern "C" fn(*mut kvm_vcpu),
}

type RegisterFn = unsafe extern "C" fn(*const kvm_vmx_apicv_hook_ops) -> c_int;
type UnregisterFn = unsafe extern "C" fn(*const kvm_vmx_apicv_hook_ops);

const REGISTER: &CStr = c"kvm_vmx_apicv_hook_register";
const UNREGISTER: &CStr = c"kvm_vmx_apicv_hook_unregister";

static OPS: kvm_vmx_apicv_hook_ops = kvm_vmx_apicv_hook_ops {
    refresh_apicv_exec_ctrl,
    nested_vmexit,
};

/// How often KVM called each callback.
struct Counts {
    refreshes: Atomic<u64>,
    nested_vmexits: Atomic<u64>,
}

static COUNTS: Counts = Counts {
    refreshes: Atomic::new(0),
    nested_vmexits: Atomic::new(0),
};

/// Never takes the update: KVM writes vmcs01 as it would without a hook.
///
/// # Safety
///
/// Only KVM calls this, through [`OPS`] while registered.
unsafe extern "C" fn refresh_apicv_exec_ctrl(_vcpu: *mut kvm_vcpu, _pending: bool) -> bool {
    COUNTS.refreshes.add(1, Relaxed);
    false
}

/// Counts hand-backs of taken refreshes: none, as this hook takes none.
///
/// # Safety
///
/// Only KVM calls this, through [`OPS`] while registered.
unsafe extern "C" fn nested_vmexit(_vcpu: *mut kvm_vcpu) {
    COUNTS.nested_vmexits.add(1, Relaxed);
}

/// Resolves `name` with `__symbol_get()`, pinning its module.
fn symbol_get(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `name` is a NUL-terminated string.
    let addr = unsafe { bindings::__symbol_get(name.as_char_ptr()) };
    (!addr.is_null()).then_some(addr)
}

/// Drops what [`symbol_get`] took for `name`.
fn symbol_put(name: &CStr) {
    // SAFETY: `name` is a NUL-terminated string we resolved with `symbol_get`.
    unsafe { bindings::__symbol_put(name.as_char_ptr()) }
}

/// Our ops, registered with the host hook API.
///
/// # Invariants
///
/// [`OPS`] is registered through `unregister`'s module, and both symbols are held (resolved
/// with [`symbol_get`], so `unregister` stays valid).
struct Registration {
    unregister: UnregisterFn,
}

impl Registration {
    fn new() -> Result<Self> {
        let Some(register) = symbol_get(REGISTER) else {
            pr_err!("kvm_intel is not loaded or lacks the APICv hook (patches/host)\n");
            return Err(ENOENT);
        };
        let Some(unregister) = symbol_get(UNREGISTER) else {
            symbol_put(REGISTER);
            pr_err!("kvm_intel is not loaded or lacks the APICv hook (patches/host)\n");
            return Err(ENOENT);
        };
        // SAFETY: The symbols are the host's functions of these types (see the header).
        let (register, unregister) = unsafe {
            (
                core::mem::transmute::<*mut c_void, RegisterFn>(register),
                core::mem::transmute::<*mut c_void, UnregisterFn>(unregister),
            )
        };

        // SAFETY: `register` is valid (its module is pinned) and `OPS` is static.
        let ret = to_result(unsafe { register(&OPS) });
        symbol_put(REGISTER);
        if let Err(e) = ret {
            symbol_put(UNREGISTER);
            if e == EBUSY {
                pr_err!("another APICv hook is already registered\n");
            } else {
                pr_err!("registering the APICv hook failed: {}\n", e.to_errno());
            }
            return Err(e);
        }
        // INVARIANT: Registered above; `unregister` is still held.
        Ok(Self { unregister })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `OPS` is registered and `unregister` is valid (type invariants). On return no
        // callback runs any more.
        unsafe { (self.unregister)(&OPS) };
        symbol_put(UNREGISTER);
    }
}

struct ApicvHookCounter {
    /// `None` only while being dropped.
    registration: Option<Registration>,
    _debugfs: Pin<KBox<Scope<&'static Counts>>>,
}

impl kernel::Module for ApicvHookCounter {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let debugfs = KBox::pin_init(
            Scope::dir(&COUNTS, c"apicv_hook_counter", |counts, dir| {
                dir.read_only_file(c"refreshes", &counts.refreshes);
                dir.read_only_file(c"nested_vmexits", &counts.nested_vmexits);
            }),
            GFP_KERNEL,
        )?;
        let registration = Registration::new()?;
        pr_info!("counting APICv hook callbacks\n");
        Ok(Self {
            registration: Some(registration),
            _debugfs: debugfs,
        })
    }
}

impl Drop for ApicvHookCounter {
    fn drop(&mut self) {
        // Unregister first, so the totals are final.
        drop(self.registration.take());
        pr_info!(
            "refreshes={} nested_vmexits={}\n",
            COUNTS.refreshes.load(Relaxed),
            COUNTS.nested_vmexits.load(Relaxed)
        );
    }
}
