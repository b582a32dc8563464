# SPDX-License-Identifier: GPL-2.0
# kad-payload: module demo
# `make run` (scripts/run): the demo samples/userspace/apicv_defer_demo.c,
# first on Linux 7.2's own KVM, then with kvm_apicv_defer.ko loaded, then
# rmmod.  Story lines go straight to the console; checks are TAP lines.
# Sourced by /init.
. /lib/kad/kvm.sh
DEMO=/usr/bin/apicv_defer_demo
DEBUGFS=/sys/kernel/debug/kvm_apicv_defer

banner() {
	echo
	echo "======================================================================"
	echo "$*"
	echo "======================================================================"
}

# Kernel log lines of the module since MARK, without timestamps.
module_dmesg() {
	dmesg | tail -n +"$(($1 + 1))" | grep 'kvm_apicv_defer' |
		sed 's/^\[[^]]*\] */  dmesg: /'
}

# run_demo LABEL: the demo's own output is the story; one TAP line for it.
run_demo() {
	echo
	timeout -s KILL 300 "$DEMO"
	rc=$?
	echo
	case $rc in
	0) tap_ok "demo $1" ;;
	4) tap_skip "demo $1" "the host cannot run it (see above)" ;;
	137) tap_not_ok "demo $1 # timed out after 300s" ;;
	*) tap_not_ok "demo $1 # exit=$rc" ;;
	esac
}

# Kernel messages would land in the middle of the story's lines: keep them
# off the console (only emergencies) and quote the module's ones instead.
# The plan's share of the kernel log is printed at the end, with its
# timestamps (scripts/run hides those lines; they are in out/run/serial.log).
dmesg -n 1
plan_mark=$(dmesg | wc -l)

banner "The emulated Intel host"
tap_check "insmod kvm-intel.ko" kvm_load
grep -m1 '^model name' /proc/cpuinfo | sed 's/^model name[[:space:]]*: */  CPU: /'
echo "  kvm_intel: enable_apicv=$(kvm_intel_param enable_apicv)" \
	"nested=$(kvm_intel_param nested) ept=$(kvm_intel_param ept)"
tap_check "kvm_intel.enable_apicv=Y nested=Y" \
	[ "$(kvm_intel_param enable_apicv)$(kvm_intel_param nested)" = YY ]

banner "1. Linux 7.2 as it is: kvm_apicv_defer.ko not loaded"
run_demo "without the module"

banner "2. With kvm_apicv_defer.ko"
mark=$(dmesg | wc -l)
echo "  # insmod kvm_apicv_defer.ko"
if tap_check "insmod kvm_apicv_defer.ko" insmod $M/kvm_apicv_defer.ko; then
	module_dmesg "$mark"
	run_demo "with the module"
	echo "  # grep . $DEBUGFS/*"
	for c in deferred coalesced applied requests pending; do
		echo "  $c = $(debugfs_counter $c)"
	done
	tap_check "module: deferred > 0" [ "$(debugfs_counter deferred)" -gt 0 ]
	tap_check "module: applied == deferred" [ "$(debugfs_counter applied)" -eq "$(debugfs_counter deferred)" ]
	tap_check "module: pending == 0" [ "$(debugfs_counter pending)" -eq 0 ]
	mark=$(dmesg | wc -l)
	echo "  # rmmod kvm_apicv_defer"
	tap_check "rmmod kvm_apicv_defer (nothing pending)" rmmod kvm_apicv_defer
	module_dmesg "$mark"
fi
echo
dmesg | tail -n +"$((plan_mark + 1))"
tap_dmesg_clean "no kernel warnings"
