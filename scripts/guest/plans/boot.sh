# SPDX-License-Identifier: GPL-2.0
# kad-payload:
# `make boot`: load KVM on the emulated Intel host and show its VMX setup.
. /lib/kad/kvm.sh
tap_check "insmod kvm-intel.ko" kvm_load
kvm_report_host
for p in enable_apicv nested ept enable_ipiv; do
	tap_check "kvm_intel.$p=Y" [ "$(kvm_intel_param $p)" = Y ]
done
tap_dmesg_clean "no kernel warnings"
