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
T=/tests
export KVM_APICV_DEFER_KO=$M/kvm_apicv_defer.ko

PEER="vmx_apicv_updates_test vmx_apic_access_test nested_set_state_test
	xapic_state_test xapic_tpr_test debug_regs state_test hyperv_features
	smm_test vmx_msrs_test nested_exceptions_test nested_tsc_adjust_test
	vmx_preemption_timer_test recalc_apic_map_test xapic_ipi_test"
OWN=$(cd $T && ls vmx_apicv_defer_*_test 2>/dev/null)

counter() {
	cat "/sys/kernel/debug/kvm_apicv_defer/$1" 2>/dev/null || echo "?"
}

echo "# kernel: $(uname -r) $(uname -v)"
tap_check "packaged kernel: uname -r is a +kad release" sh -c 'uname -r | grep -q "+kad\."'
tap_check "insmod kvm-intel.ko (from the linux-image package)" kvm_load
kvm_report_host
for p in enable_apicv nested ept; do
	tap_check "kvm_intel.$p=Y" [ "$(kvm_intel_param $p)" = Y ]
done
tap_dmesg_clean "boot: no kernel warnings"

v=$(strings $M/kvm_apicv_defer.ko 2>/dev/null | grep -m1 '^vermagic=')
[ -z "$v" ] || echo "# DKMS-built kvm_apicv_defer.ko: $v"
if tap_check "b:dkms: insmod kvm_apicv_defer.ko (built by DKMS)" insmod $M/kvm_apicv_defer.ko; then
	dmesg | grep 'kvm_apicv_defer:' | tail -1 | sed 's/^/# /'
	for t in $PEER $OWN; do
		if [ -x "$T/$t" ]; then
			tap_run "b:dkms: $t" 300 "$T/$t"
		else
			tap_not_ok "b:dkms: $t # binary missing from the initramfs"
		fi
	done
	for c in deferred coalesced applied requests pending; do
		echo "# b:dkms: debugfs $c=$(counter $c)"
	done
	tap_check "b:dkms: deferred > 0" [ "$(counter deferred)" -gt 0 ]
	tap_check "b:dkms: applied == deferred" [ "$(counter applied)" -eq "$(counter deferred)" ]
	tap_check "b:dkms: pending == 0" [ "$(counter pending)" -eq 0 ]
	tap_check "b:dkms: rmmod kvm_apicv_defer" rmmod kvm_apicv_defer
fi
tap_dmesg_clean "b:dkms: no kernel warnings"
