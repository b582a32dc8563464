# SPDX-License-Identifier: GPL-2.0
# Load/unload under nested load.  Sourced by configs.sh, after kvm.sh.

# unload_module [-f]: rmmod (or rmmod -f), which must succeed at once, also
# with deferrals pending: KVM applies those itself at each vCPU's next
# nested VM-Exit.
unload_module() {
	rmmod "$@" kvm_apicv_defer
}

# load_cycles N [FORCED]: N insmod/rmmod cycles of the module while the
# stress test's two vCPUs cycle L1<->L2 under a toggling APICv inhibit; the
# unloads are forced (rmmod -f, CONFIG_MODULE_FORCE_UNLOAD) when FORCED is
# all, every other one when it is alternate (the default), none when none.
# Every load epoch must balance, applied + pending ==
# deferred (the module logs its totals on unload; what is pending then is
# left to KVM), the guests' IPI counts must match (so the updates KVM
# applied after an unload were applied right), and nothing splats.
load_cycles() {
	local n=$1 forced=${2:-alternate} i=0 runs=0 failed_runs=0 stress_pid= mark force pin0
	mark=$(dmesg | wc -l)
	pin0=$(irq_total PIN)
	: >/tmp/stress.log
	while [ $i -lt "$n" ]; do
		# Keep the nested load running for the whole loop: restart the
		# stress test when its time budget is used up.
		if [ -z "$stress_pid" ] || ! kill -0 "$stress_pid" 2>/dev/null; then
			if [ -n "$stress_pid" ]; then
				wait "$stress_pid" || failed_runs=$((failed_runs + 1))
			fi
			$T/vmx_apicv_defer_stress_test -n 1000000 -s 30 >>/tmp/stress.log 2>&1 &
			stress_pid=$!
			runs=$((runs + 1))
		fi
		insmod $M/kvm_apicv_defer.ko || break
		usleep $(( (i % 7) * 20000 ))
		case $forced in
		all) force=-f ;;
		alternate) force=; [ $((i % 2)) -eq 1 ] && force=-f ;;
		*) force= ;;
		esac
		unload_module $force || break
		i=$((i + 1))
	done
	[ -d /sys/module/kvm_apicv_defer ] && unload_module
	wait "$stress_pid" || failed_runs=$((failed_runs + 1))
	tap_diag /tmp/stress.log
	dmesg | tail -n +"$((mark + 1))" | grep 'kvm_apicv_defer: unloaded:' >/tmp/epochs.log
	# Each line: "... unloaded: deferred=D coalesced=C applied=A ... pending=P".
	set -- $(awk '{ for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
			d += v["deferred"]; a += v["applied"]; p += v["pending"]
			if (v["pending"] > 0) left++
			if (v["pending"] < 0 || v["applied"] + v["pending"] != v["deferred"]) bad++ }
		END { print NR, d, a, p, left + 0, bad + 0 }' /tmp/epochs.log)
	echo "# r: $i load cycles (rmmod -f: $forced): epochs=$1 deferred=$2 applied=$3"
	echo "# r: $5 epochs ended with deferrals pending ($4 in all), left to KVM's drain"
	tap_check "r: $n insmod/rmmod cycles (rmmod -f: $forced) completed under nested load" [ "$i" -eq "$n" ]
	tap_check "r: every load epoch balanced (applied + pending == deferred)" \
		[ "$1" -eq "$i" -a "$6" -eq 0 ]
	tap_check "r: the module deferred updates during the cycles" [ "$2" -gt 0 ]
	tap_check "r: stress test's IPI counts matched in all $runs runs" [ "$failed_runs" -eq 0 ]
	posted_interrupts r PIN "$pin0" "posted-interrupt notifications"
}

# irq_total NAME: NAME's line of /proc/interrupts (PIN, NPI, ...), summed
# over the CPUs.
irq_total() {
	awk -v name="$1:" '$1 == name { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i }
		END { print s + 0 }' /proc/interrupts
}

# posted_interrupts LABEL NAME SINCE WHAT: the per-CPU posted-interrupt
# counts of /proc/interrupts as diagnostics; with two CPUs or more, a check
# that NAME's total moved since it was SINCE: notifications (WHAT) sent from
# one CPU reached another outside guest mode, i.e. that the run raced
# senders against running vCPUs at all.
posted_interrupts() {
	local now
	grep -E '^ *(CPU|PIN|NPI|PIW)' /proc/interrupts | sed "s/^/# $1: /"
	[ "$(grep -c '^processor' /proc/cpuinfo)" -ge 2 ] || return 0
	now=$(irq_total "$2")
	tap_check "$1: $4 ($2) seen on an SMP host (+$((now - $3)))" [ "$now" -gt "$3" ]
}
