# SPDX-License-Identifier: GPL-2.0
# kad-payload:
# `make boot`: load KVM on the emulated Intel host and show its VMX setup.
. /lib/kad/kvm.sh
tap_check "insmod kvm-intel.ko" kvm_load
kvm_report_host
kvm_checks_host
tap_dmesg_clean "no kernel warnings"
