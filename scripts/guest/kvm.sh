# SPDX-License-Identifier: GPL-2.0
# Loading KVM and the module in the emulated host.  Sourced by plans.
M=/lib/modules/kad

# The emulated CPU has IPI virtualization (patches/bochs/0006) and KVM
# uses it; kad.ipiv=0 on the command line loads kvm_intel with
# enable_ipiv=0.  (vmx_apicv_defer_nested_pi_test once failed with it: the
# test resumed L2 with L1's registers after L2's external-interrupt exits,
# which IPIv moved to anywhere in L2; the test keeps them now.)
IPIV=1
grep -qw 'kad.ipiv=0' /proc/cmdline && IPIV=0

# kvm_load [kvm-intel.ko path] [kvm_intel params...]
kvm_load() {
	local intel=${1:-$M/kvm-intel.ko}
	[ $# -gt 0 ] && shift
	grep -q '^irqbypass ' /proc/modules || insmod $M/irqbypass.ko || return 1
	grep -q '^kvm ' /proc/modules || insmod $M/kvm.ko || return 1
	insmod "$intel" enable_ipiv=$IPIV "$@"
}

# kvm_checks_host: kvm_intel has what the rig needs, and the CPU offers IPI
# virtualization (used unless kad.ipiv=0).
kvm_checks_host() {
	local p
	for p in enable_apicv nested ept; do
		tap_check "kvm_intel.$p=Y" [ "$(kvm_intel_param $p)" = Y ]
	done
	tap_check "CPU: IPI virtualization (vmx flag ipi_virt); kvm_intel.enable_ipiv=$(kvm_intel_param enable_ipiv)" \
		sh -c 'grep -m1 "^vmx flags" /proc/cpuinfo | grep -qw ipi_virt'
}

# Unload kvm_intel and kvm: enable_apicv is kvm.ko's variable (kvm_intel
# only exposes it as a parameter), so kvm_intel enable_apicv=0 sticks until
# kvm.ko itself is reloaded.
kvm_unload() {
	rmmod kvm_intel 2>/dev/null
	rmmod kvm
}

kvm_intel_param() {
	cat "/sys/module/kvm_intel/parameters/$1" 2>/dev/null || echo "?"
}

# kvm_intel's references: symbol_get() takes one, a refused load must give
# it back.
kvm_intel_refcnt() {
	cat /sys/module/kvm_intel/refcnt 2>/dev/null || echo "?"
}

# Report the emulated host's VMX setup as TAP diagnostics and checks.
kvm_report_host() {
	local p
	for p in enable_apicv nested ept enable_ipiv preemption_timer enable_shadow_vmcs; do
		echo "# kvm_intel.$p=$(kvm_intel_param $p)"
	done
	grep -m1 '^model name' /proc/cpuinfo | sed 's/^/# /'
	grep -m1 '^vmx flags' /proc/cpuinfo | sed 's/^/# /'
}

# debugfs_counter NAME: one of the module's debugfs counters, "?" if absent.
debugfs_counter() {
	cat "/sys/kernel/debug/kvm_apicv_defer/$1" 2>/dev/null || echo "?"
}
