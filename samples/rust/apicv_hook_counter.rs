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
    },
    ptr::NonNull, //
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

/// A symbol resolved with `__symbol_get()`, which pins the module exporting it.
///
/// # Invariants
///
/// `__symbol_get()` resolved `name` to `addr`, and this value owns the module reference it
/// took: `addr` stays valid until this is dropped.
struct Symbol {
    name: &'static CStr,
    addr: NonNull<c_void>,
}

// SAFETY: A `Symbol` is an exported symbol's address and a reference on the module exporting
// it: any thread may use the address, and give the reference back (`__symbol_put()`).
unsafe impl Send for Symbol {}
// SAFETY: Shared, a `Symbol` only hands out its address, which any thread may use.
unsafe impl Sync for Symbol {}

impl Symbol {
    /// Resolves `name`, or `None` if no loaded module exports it (GPL-only).
    fn get(name: &'static CStr) -> Option<Self> {
        // SAFETY: `name` is a NUL-terminated string.
        let addr = NonNull::new(unsafe { bindings::__symbol_get(name.as_char_ptr()) })?;
        // INVARIANT: Resolved just above, with its module's reference.
        Some(Self { name, addr })
    }
}

impl Drop for Symbol {
    fn drop(&mut self) {
        // SAFETY: `__symbol_get()` resolved `name` and this value owns that reference (type
        // invariant), which this gives back.
        unsafe { bindings::__symbol_put(self.name.as_char_ptr()) }
    }
}

/// Our ops, registered with the host hook API.
///
/// # Invariants
///
/// [`OPS`] is registered with `unregister`'s module, which `_unregister_symbol` pins, so
/// `unregister` stays valid.
struct Registration {
    unregister: UnregisterFn,
    _unregister_symbol: Symbol,
}

impl Registration {
    fn new() -> Result<Self> {
        let (Some(register_symbol), Some(unregister_symbol)) =
            (Symbol::get(REGISTER), Symbol::get(UNREGISTER))
        else {
            pr_err!("kvm_intel is not loaded or lacks the APICv hook (patches/host)\n");
            return Err(ENOENT);
        };
        // SAFETY: The symbols are the host's functions of these types (see the header).
        let (register, unregister) = unsafe {
            (
                core::mem::transmute::<*mut c_void, RegisterFn>(register_symbol.addr.as_ptr()),
                core::mem::transmute::<*mut c_void, UnregisterFn>(unregister_symbol.addr.as_ptr()),
            )
        };

        // SAFETY: `register` is valid (`register_symbol` pins its module) and `OPS` is static.
        let ret = to_result(unsafe { register(&OPS) });
        drop(register_symbol);
        ret.inspect_err(|e| {
            if *e == EBUSY {
                pr_err!("another APICv hook is already registered\n");
            } else {
                pr_err!("registering the APICv hook failed: {}\n", e.to_errno());
            }
        })?;
        // INVARIANT: Registered above; `unregister_symbol` pins `unregister`'s module.
        Ok(Self {
            unregister,
            _unregister_symbol: unregister_symbol,
        })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: `OPS` is registered and `unregister` is valid (type invariants). On return no
        // callback runs any more.
        unsafe { (self.unregister)(&OPS) };
        // `_unregister_symbol` is dropped after this, unpinning `kvm-intel`.
    }
}

/// The loaded sample: the registered ops and their debugfs files.
///
/// # Invariants
///
/// `registration` is `Some` from init until [`Drop::drop`] takes it to unregister first.
struct ApicvHookCounter {
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
        // INVARIANT: `registration` is `Some` until `drop` takes it.
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
