# SPDX-License-Identifier: GPL-2.0
# Load/unload under nested load.  Sourced by plans after kvm.sh.

# unload_module: rmmod, retried while a pending deferral holds a module
# reference (rmmod fails with EAGAIN until the vCPU's next exit from L2).
# Sets REFUSED to the number of refused attempts.  Bounded: ~20 s.
unload_module() {
	local tries=0
	REFUSED=0
	until rmmod kvm_apicv_defer 2>/dev/null; do
		REFUSED=$((REFUSED + 1))
		tries=$((tries + 1))
		[ $tries -lt 400 ] || return 1
		usleep 50000
	done
}

# load_cycles N: N insmod/rmmod cycles of the module while the stress test's
# two vCPUs cycle L1<->L2 under a toggling APICv inhibit.  Every load epoch
# must end with pending == 0 and applied == deferred (the module logs its
# totals on unload), the guests' IPI counts must match, and nothing splats.
load_cycles() {
	local n=$1 i=0 refused=0 runs=0 failed_runs=0 stress_pid= mark
	mark=$(dmesg | wc -l)
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
		unload_module || break
		refused=$((refused + REFUSED))
		i=$((i + 1))
	done
	[ -d /sys/module/kvm_apicv_defer ] && unload_module
	wait "$stress_pid" || failed_runs=$((failed_runs + 1))
	tap_diag /tmp/stress.log
	dmesg | tail -n +"$((mark + 1))" | grep 'kvm_apicv_defer: unloaded:' >/tmp/epochs.log
	echo "# r: $i load cycles, $refused rmmod attempts refused while a deferral was pending"
	# Each line: "... unloaded: deferred=D coalesced=C applied=A ... pending=P".
	set -- $(awk '{ for (f = 1; f <= NF; f++) { split($f, kv, "="); v[kv[1]] = kv[2] }
			d += v["deferred"]; a += v["applied"]
			if (v["pending"] != 0 || v["applied"] != v["deferred"]) bad++ }
		END { print NR, d, a, bad + 0 }' /tmp/epochs.log)
	echo "# r: epochs=$1 deferred=$2 applied=$3 unbalanced=$4"
	tap_check "r: $n insmod/rmmod cycles completed under nested load" [ "$i" -eq "$n" ]
	tap_check "r: every load epoch ended with pending == 0 and applied == deferred" \
		[ "$1" -eq "$i" -a "$4" -eq 0 ]
	tap_check "r: the module deferred updates during the cycles" [ "$2" -gt 0 ]
	tap_check "r: stress test's IPI counts matched in all $runs runs" [ "$failed_runs" -eq 0 ]
}
