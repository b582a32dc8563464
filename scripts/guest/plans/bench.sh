# SPDX-License-Identifier: GPL-2.0
# kad-payload: module no-request bench
# `make bench`: the hook's and the deferral's cost against 7.2's guard, in one
# boot of the emulated Intel host.  Configurations, interleaved per repetition
# (upstream patched module upstream patched module ...):
#   upstream      the unpatched base's kvm-intel.ko (= upstream 7.2; both
#                 kvm-intel.ko builds carry patches/test's VMPTRLD counter)
#   patched       patches/host's kvm-intel.ko, no hook registered
#   module        patched + kvm_apicv_defer.ko (the deferral)
#   module-noreq  patched + the TEST-ONLY no-request kvm_apicv_defer.ko
#                 (no-request/kvm_apicv_defer.ko): refreshes vmcs01 at
#                 VM-Exit without KVM_REQ_APICV_UPDATE, for the request's cost
#   counter       patched + apicv_hook_counter.ko (the sample: a hook that
#                 takes no refresh: the hook API's own cost)
# /bench/vmx_apicv_bench prints "KAD-BENCH <metric> <config> <value>" lines,
# which scripts/bench collects from the console.  Kernel command line:
#   kad.bench_n=N          repetitions (default 5)
#   kad.bench_args=A,B,..  arguments for vmx_apicv_bench (commas: spaces)
#   kad.bench_configs=A,B  configurations, in order (default
#                          upstream,patched,module)
#   kad.bench_settle=S     seconds to idle after loading a configuration
#                          (default 1)
# Sourced by /init.
. /lib/kad/kvm.sh
BENCH=/bench/vmx_apicv_bench

bench_n=5
bench_args=
bench_configs="upstream patched module"
bench_settle=1
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	kad.bench_n=*) bench_n=${arg#kad.bench_n=} ;;
	kad.bench_args=*) bench_args=$(echo "${arg#kad.bench_args=}" | tr , ' ') ;;
	kad.bench_configs=*) bench_configs=$(echo "${arg#kad.bench_configs=}" | tr , ' ') ;;
	kad.bench_settle=*) bench_settle=${arg#kad.bench_settle=} ;;
	esac
done

# What is loaded: kvm_intel "patched" or "unpatched"; the hook module
# "none", "defer" (kvm_apicv_defer.ko), "noreq" (no-request/kvm_apicv_defer.ko)
# or "counter" (apicv_hook_counter.ko).
cur_intel=none
cur_mod=none

# The module name (for rmmod) and file of a hook module.
mod_name() {
	case "$1" in
	defer|noreq) echo kvm_apicv_defer ;;
	counter) echo apicv_hook_counter ;;
	esac
}
mod_file() {
	case "$1" in
	defer) echo $M/kvm_apicv_defer.ko ;;
	noreq) echo $M/no-request/kvm_apicv_defer.ko ;;
	counter) echo $M/apicv_hook_counter.ko ;;
	esac
}

bench_module() {
	[ "$cur_mod" = "$1" ] && return 0
	if [ "$cur_mod" != none ]; then
		rmmod "$(mod_name "$cur_mod")" || return 1
	fi
	cur_mod=none
	if [ "$1" != none ]; then
		insmod "$(mod_file "$1")" || return 1
	fi
	cur_mod=$1
}

bench_intel() {
	[ "$cur_intel" = "$1" ] && return 0
	bench_module none || return 1
	if [ "$cur_intel" != none ]; then
		rmmod kvm_intel || return 1
	fi
	cur_intel=none
	if [ "$1" = unpatched ]; then
		kvm_load $M/unpatched/kvm-intel.ko || return 1
	else
		kvm_load || return 1
	fi
	cur_intel=$1
}

bench_setup() {
	case "$1" in
	upstream) bench_intel unpatched ;;
	patched) bench_intel patched && bench_module none ;;
	module) bench_intel patched && bench_module defer ;;
	module-noreq) bench_intel patched && bench_module noreq ;;
	counter) bench_intel patched && bench_module counter ;;
	*) return 1 ;;
	esac
}

uptime_s() {
	cut -d' ' -f1 /proc/uptime
}

# The hook modules' debugfs counters: proof that the configuration ran the
# path it is named after.  debugfs_count CONFIG COUNTER
debugfs_count() {
	local dir
	case "$1" in
	module|module-noreq) dir=kvm_apicv_defer ;;
	counter) dir=apicv_hook_counter ;;
	*) echo 0; return ;;
	esac
	cat "/sys/kernel/debug/$dir/$2" 2>/dev/null || echo 0
}

# bench_run REP CONFIG
bench_run() {
	local rep=$1 cfg=$2 log=/tmp/bench.log t0 t1 rc c1= c2= a=0 b=0
	# Two counters per hook configuration: what it must have done (c1)
	# and what it must (module) or must not (the others) have done (c2).
	case $cfg in
	module|module-noreq) c1=deferred c2=requests ;;
	counter) c1=refreshes c2=nested_vmexits ;;
	esac
	if [ -n "$c1" ]; then
		a=$(debugfs_count "$cfg" $c1)
		b=$(debugfs_count "$cfg" $c2)
	fi
	t0=$(uptime_s)
	# shellcheck disable=SC2086 # bench_args is a word list
	timeout -s KILL 600 $BENCH -c "$cfg" $bench_args >$log 2>&1
	rc=$?
	t1=$(uptime_s)
	grep '^KAD-BENCH ' $log
	grep -v '^KAD-BENCH ' $log | sed 's/^# //; s/^/# /'
	echo "# rep $rep $cfg: ${t0}s -> ${t1}s (guest uptime)"
	case $rc in
	0) tap_ok "rep $rep: $cfg" ;;
	4) tap_not_ok "rep $rep: $cfg # SKIPPED by the benchmark: no numbers" ;;
	137) tap_not_ok "rep $rep: $cfg # timed out" ;;
	*) tap_not_ok "rep $rep: $cfg # exit=$rc" ;;
	esac
	if [ -n "$c1" ]; then
		a=$(($(debugfs_count "$cfg" $c1) - a))
		b=$(($(debugfs_count "$cfg" $c2) - b))
	fi
	case $cfg in
	module)
		tap_check "rep $rep: module: updates deferred ($a), requests raised at VM-Exit ($b)" \
			[ "$a" -gt 0 -a "$b" -gt 0 ]
		;;
	module-noreq)
		tap_check "rep $rep: module-noreq: updates deferred ($a), no requests raised ($b)" \
			[ "$a" -gt 0 -a "$b" -eq 0 ]
		;;
	counter)
		tap_check "rep $rep: counter: refreshes offered while L2 is active ($a), none taken (nested_vmexit calls: $b)" \
			[ "$a" -gt 0 -a "$b" -eq 0 ]
		;;
	esac
}

# Kernel messages (module load lines) would land in the middle of the
# benchmark's lines still draining through the UART: keep them off the
# console.  tap_dmesg_clean still reads the log.
dmesg -n 1
echo "# KAD-BENCH-INFO emulated: Bochs TSC counts retired instructions (path length, not latency)"
tap_check "insmod kvm-intel.ko" bench_intel patched
kvm_report_host
for p in enable_apicv nested ept; do
	tap_check "kvm_intel.$p=Y" [ "$(kvm_intel_param $p)" = Y ]
done
tap_check "benchmark binary present" [ -x $BENCH ]
tap_check "upstream kvm-intel.ko present" [ -f $M/unpatched/kvm-intel.ko ]
tap_check "kvm_intel.vmptrld_count present (patches/test)" [ -r /sys/module/kvm_intel/parameters/vmptrld_count ]
for cfg in $bench_configs; do
	case $cfg in
	module) tap_check "kvm_apicv_defer.ko present" [ -f "$(mod_file defer)" ] ;;
	module-noreq) tap_check "no-request kvm_apicv_defer.ko present" [ -f "$(mod_file noreq)" ] ;;
	counter) tap_check "apicv_hook_counter.ko present" [ -f "$(mod_file counter)" ] ;;
	esac
done
tap_dmesg_clean "setup: no kernel warnings"

rep=1
while [ "$rep" -le "$bench_n" ]; do
	for cfg in $bench_configs; do
		if bench_setup $cfg; then
			# Let the work a module load leaves behind (RCU callbacks,
			# workqueues) run before, not during, the measurement.
			[ "$bench_settle" = 0 ] || sleep "$bench_settle"
			bench_run $rep $cfg
		else
			tap_not_ok "rep $rep: $cfg # could not load the configuration"
		fi
	done
	rep=$((rep + 1))
done
bench_setup patched
tap_dmesg_clean "bench: no kernel warnings"
