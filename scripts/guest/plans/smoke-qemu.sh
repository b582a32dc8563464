# SPDX-License-Identifier: GPL-2.0
# kad-payload: module hello
# QEMU smoke plan (no VMX): the kernel boots, its built-in KUnit suites pass,
# kvm_intel refuses cleanly, and the project's Kbuild makes Rust modules that
# load.  Sourced by /init.
M=/lib/modules/kad

# Built-in KUnit suites (incl. the Rust doctests) ran during boot.
dmesg >/tmp/boot.log
tap_kunit /tmp/boot.log '[a-z0-9_]+' "kunit (built-in)"

tap_check "insmod irqbypass.ko" insmod $M/irqbypass.ko
tap_check "insmod kvm.ko" insmod $M/kvm.ko
if insmod $M/kvm-intel.ko 2>/tmp/err; then
	tap_not_ok "insmod kvm-intel.ko refuses without VMX"
else
	tap_diag /tmp/err
	dmesg | tail -3 | sed 's/^/# /'
	tap_ok "insmod kvm-intel.ko refuses without VMX"
fi

tap_check "insmod hello_kad.ko (out-of-tree Rust)" insmod $M/hello_kad.ko
tap_check "hello_kad says hello" sh -c 'dmesg | grep -q "hello_kad: hello from the kvm-apicv-defer rig"'
tap_check "rmmod hello_kad" rmmod hello_kad
tap_check "hello_kad says goodbye" sh -c 'dmesg | grep -q "hello_kad: goodbye"'

# The module's KUnit suites live in their own module: KUnit runs a module's
# suites only once its init succeeded, and kvm_apicv_defer.ko refuses here.
mark=$(dmesg | wc -l)
tap_check "insmod kvm_apicv_defer_kunit.ko" insmod $M/kvm_apicv_defer_kunit.ko
dmesg | tail -n +"$((mark + 1))" >/tmp/kunit.log
tap_kunit /tmp/kunit.log 'kvm_apicv_defer[a-z0-9_]*' "kunit (kvm_apicv_defer)"
tap_check "rmmod kvm_apicv_defer_kunit" rmmod kvm_apicv_defer_kunit

mark=$(dmesg | wc -l)
if insmod $M/kvm_apicv_defer.ko 2>/tmp/err; then
	tap_not_ok "insmod kvm_apicv_defer.ko refuses without VMX"
	rmmod kvm_apicv_defer
else
	tap_ok "insmod kvm_apicv_defer.ko refuses without VMX"
fi
dmesg | tail -n +"$((mark + 1))" >/tmp/mod.log
tap_diag /tmp/err
tap_diag /tmp/mod.log
tap_check "kvm_apicv_defer says why it refused" grep -q 'kvm_apicv_defer: .*VMX' /tmp/mod.log
tap_check "kvm_apicv_defer refused with ENODEV" grep -qF ": No such device" /tmp/err

tap_dmesg_clean "no kernel warnings"
