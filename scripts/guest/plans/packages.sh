# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests
# scripts/check-packages' boot test: the kernel of the linux-image package
# (booted with --kernel/--modules), KVM's modules from that package and
# kvm_apicv_defer.ko as DKMS built it from kvm-apicv-defer-dkms in a clean
# Debian root, in configuration (b) of scripts/guest/plans/emulated.sh:
# every upstream peer test and project scenario with the module loaded, its
# counters, rmmod.  (The module's KUnit suite is not there: the packaged
# kernel has no KUnit, see scripts/kernel-variants/host.config.)
# Sourced by /init.
. /lib/kad/kvm.sh
. /lib/kad/suite.sh
export KVM_APICV_DEFER_KO=$M/kvm_apicv_defer.ko

echo "# kernel: $(uname -r) $(uname -v)"
tap_check "packaged kernel: uname -r is a +kad release" sh -c 'uname -r | grep -q "+kad\."'
tap_check "insmod kvm-intel.ko (from the linux-image package)" kvm_load
kvm_report_host
kvm_checks_host
tap_dmesg_clean "boot: no kernel warnings"

v=$(strings $M/kvm_apicv_defer.ko 2>/dev/null | grep -m1 '^vermagic=')
[ -z "$v" ] || echo "# DKMS-built kvm_apicv_defer.ko: $v"
if tap_check "b:dkms: insmod kvm_apicv_defer.ko (built by DKMS)" insmod $M/kvm_apicv_defer.ko; then
	dmesg | grep 'kvm_apicv_defer:' | tail -1 | sed 's/^/# /'
	run_suite "b:dkms"
	module_counters_checked "b:dkms"
	tap_check "b:dkms: rmmod kvm_apicv_defer" rmmod kvm_apicv_defer
fi
tap_dmesg_clean "b:dkms: no kernel warnings"
