# SPDX-License-Identifier: GPL-2.0
# Fault injection into kvm_apicv_defer's init and exit, on the hardening
# kernel (CONFIG_FAILSLAB, CONFIG_DEBUG_KMEMLEAK), with the test-only
# fault-points build.  Sourced by plans after configs.sh.
#
# - Every fallible step of init fails once, the way it fails for real: the
#   test-only build's fail_step= (symbol_get, debugfs allocation,
#   registration with either callback missing, which KVM itself refuses); plus every slab allocation of a
#   load in turn, through the insmod task's fail-nth (the kernel's loader,
#   the module's KBox, the debugfs dentries and inodes).
# - Loads with random slab failures: failslab at a probability on the insmod
#   task only (task-filter, /proc/self/make-it-fail).
# Both only fail allocations under do_init_module(), i.e. the module's init
# (the stack filter, CONFIG_FAULT_INJECTION_STACKTRACE_FILTER).
# - Exit with every slab allocation of the rmmod task failing.
# After each: the load succeeded (then it unloads) or failed with at most one
# line of the module's, a known one; nothing is left (no module, no debugfs
# directory, kvm_intel's reference count as before, the hook free for the
# sample to register); the next normal load works; and at the end kmemleak
# finds nothing new.
#
# busybox's insmod and rmmod are NOEXEC applets: `exec insmod` in a shell
# runs them in that process, so the task whose make-it-fail or fail-nth the
# shell set is the one that makes the system call (a fork would reset it).
# busybox's insmod retries with init_module() when finit_module() fails, so
# one insmod may run init twice: each failed attempt may log one line.

FAULT_KO=$M/fault-points/kvm_apicv_defer.ko
# The build the fail-nth walk and the random loads load.
FAULT_TALLY_KO=$M/kvm_apicv_defer.ko
FAILSLAB=/sys/kernel/debug/failslab
KMEMLEAK=/sys/kernel/debug/kmemleak
# The module's refusals, one of which a failed init must have logged.
FAULT_LINES='kvm_intel is not loaded or lacks the APICv hook|allocating the debugfs counters failed|registering the APICv hook failed|another APICv hook is already registered'

# failslab_setup: fail only tasks with make-it-fail set (or a fail-nth),
# GFP_KERNEL allocations too, silently (a failure's stack dump would look
# like a splat to tap_dmesg_clean), as often as asked, and only allocations
# made by the module loader (see failslab_only_loader).
failslab_setup() {
	echo Y >$FAILSLAB/task-filter &&
		echo N >$FAILSLAB/ignore-gfp-wait &&
		echo 0 >$FAILSLAB/verbose &&
		echo 0 >$FAILSLAB/space &&
		echo 1 >$FAILSLAB/interval &&
		echo -1 >$FAILSLAB/times &&
		echo 0 >$FAILSLAB/probability &&
		echo 32 >$FAILSLAB/stacktrace-depth &&
		failslab_only_loader
}

# kallsyms_extents SYMBOL...: "0xSTART 0xEND" for each SYMBOL of vmlinux,
# its address and the next higher one.  /proc/kallsyms lists vmlinux's
# symbols in address order, so the end is a few lines below: grep reads
# the file once, with fixed strings (under KASAN in Bochs a sort of it took
# 50 s, awk over every line 270 s, a regular expression 100 s).  Addresses
# compare as strings: they are all 16 hex digits.
kallsyms_extents() {
	printf ' %s\n' "$@" >/tmp/kallsyms.want
	grep -F -A 8 -f /tmp/kallsyms.want /proc/kallsyms | awk -v want=" $* " '
		index(want, " " $3 " ") && !($3 in start) { start[$3] = $1; cur = $3; next }
		cur != "" && !(cur in end) && ("" $1) > ("" start[cur]) { end[cur] = $1 }
		END { n = split(want, w, " "); for (i = 1; i <= n; i++) print "0x" start[w[i]], "0x" end[w[i]] }'
}

# failslab_only_loader: fail (and, for fail-nth, count) only allocations
# with do_init_module() on the stack: the module's init, its error paths,
# and the loader's last steps around it; not the kernel loader's own work
# before (copying and relocating the module: those allocations are the
# kernel's), nor busybox's system calls (opening and reading the file).  And not under alloc_vmap_area():
# its vmap_area allocations come from a per-CPU preload that is never
# supposed to fail, and when failslab fails both, va_clip() WARNs
# (mm/vmalloc.c) - a WARN about the injection, not about the module.
LOADER_EXTENTS=
failslab_only_loader() {
	[ -n "$LOADER_EXTENTS" ] || LOADER_EXTENTS=$(kallsyms_extents do_init_module alloc_vmap_area)
	set -- $LOADER_EXTENTS
	case " $* " in *" 0x "*) set -- ;; esac
	[ $# -eq 4 ] || { echo "# faults: do_init_module or alloc_vmap_area not in /proc/kallsyms"; return 1; }
	echo "# faults: failslab only under do_init_module ($1..$2), not under alloc_vmap_area ($3..$4)"
	echo "$1" >$FAILSLAB/require-start && echo "$2" >$FAILSLAB/require-end &&
		echo "$3" >$FAILSLAB/reject-start && echo "$4" >$FAILSLAB/reject-end
}

# failslab_anywhere: no stack filter (for the rmmod task's allocations).
failslab_anywhere() {
	echo 0 >$FAILSLAB/require-start && echo 0xffffffffffffffff >$FAILSLAB/require-end &&
		echo 0 >$FAILSLAB/reject-start && echo 0 >$FAILSLAB/reject-end
}

# nothing_left: no module, no debugfs directory, kvm_intel's references back
# to $FAULT_REFCNT (symbol_get() takes them), and the hook free.
nothing_left() {
	[ ! -d /sys/module/kvm_apicv_defer ] || { echo "# module still loaded"; return 1; }
	[ ! -e /sys/kernel/debug/kvm_apicv_defer ] || { echo "# debugfs directory left"; return 1; }
	[ "$(kvm_intel_refcnt)" = "$FAULT_REFCNT" ] ||
		{ echo "# kvm_intel refcnt $(kvm_intel_refcnt), was $FAULT_REFCNT"; return 1; }
	hook_is_free >/dev/null 2>&1 || { echo "# the sample hook cannot register"; return 1; }
}

# fault_load KO HOW ARG [PARAMS]: one insmod of KO in a task set up by HOW
# (nth: fail its ARG-th slab allocation; prob: fail each with ARG percent;
# none), unloading it if it loaded.  Sets FAULT_RC (insmod's status),
# FAULT_OUTCOME (loaded, refused: init failed with one known line, early:
# failed before the module said anything) and FAULT_COUNTERS (debugfs files
# while loaded), and returns 1, saying why, if the load broke a rule.
fault_load() {
	local ko=$1 how=$2 arg=$3 mark n
	shift 3
	mark=$(dmesg | wc -l)
	case $how in
	nth)
		# The ARG-th allocation fails and, through make-it-fail at 100%,
		# every later one: busybox's retry cannot mask the failure.
		echo 100 >$FAILSLAB/probability
		sh -c "echo $arg >/proc/thread-self/fail-nth && echo 1 >/proc/self/make-it-fail &&
			exec insmod $ko $*" >/tmp/fault.out 2>&1
		echo 0 >$FAILSLAB/probability
		;;
	prob)
		echo "$arg" >$FAILSLAB/probability
		sh -c "echo 1 >/proc/self/make-it-fail && exec insmod $ko $*" >/tmp/fault.out 2>&1
		echo 0 >$FAILSLAB/probability
		;;
	*) insmod "$ko" "$@" >/tmp/fault.out 2>&1 ;;
	esac
	FAULT_RC=$?
	dmesg | tail -n +"$((mark + 1))" | grep 'kvm_apicv_defer: ' |
		grep -vE 'TEST-ONLY fault-points build|loading out-of-tree module taints kernel' >/tmp/fault.lines
	n=$(wc -l </tmp/fault.lines)
	FAULT_COUNTERS=0
	# Loaded or not, by the kernel's word: busybox's insmod was seen to
	# exit 0 with nothing loaded when its fallback could not read the file.
	if [ "$FAULT_RC" -eq 0 ] && [ ! -d /sys/module/kvm_apicv_defer ]; then
		echo "# $how $arg: insmod exited 0 but nothing is loaded (busybox's fallback failed)"
		FAULT_RC=1
	fi
	if [ -d /sys/module/kvm_apicv_defer ]; then
		FAULT_OUTCOME=loaded
		# debugfs failures do not fail init: the counters may be missing.
		FAULT_COUNTERS=$(ls /sys/kernel/debug/kvm_apicv_defer 2>/dev/null | wc -l)
		if ! rmmod kvm_apicv_defer; then
			echo "# $how $arg: loaded, but rmmod failed"
			return 1
		fi
	elif [ "$n" -eq 0 ]; then
		FAULT_OUTCOME=early
	elif [ "$n" -le 2 ] && ! grep -vqE "$FAULT_LINES" /tmp/fault.lines; then
		FAULT_OUTCOME=refused
	else
		echo "# $how $arg: insmod failed with $n lines of the module's, not one known line per attempt:"
		tap_diag /tmp/fault.lines
		return 1
	fi
	if ! nothing_left; then
		echo "# $how $arg: after a $FAULT_OUTCOME load something is left:"
		tap_diag /tmp/fault.out
		return 1
	fi
}

# fault_step STEP WANT: fail_step=STEP must make init fail with exactly the
# line WANT, and leave nothing.
fault_step() {
	if fault_load "$FAULT_KO" none 0 fail_step="$1" && [ "$FAULT_OUTCOME" = refused ] &&
		! grep -vqF "$2" /tmp/fault.lines; then
		tap_diag /tmp/fault.lines
		tap_ok "faults: fail_step=$1: refused with one line per attempt, nothing left"
	else
		tap_diag /tmp/fault.out
		tap_not_ok "faults: fail_step=$1: wanted one line \"$2\" per attempt and nothing left (outcome: ${FAULT_OUTCOME:-?})"
	fi
}

# fault_steps: every fail_step (plans hardening and mutant); needs
# FAULT_REFCNT, kvm_intel's reference count with the module unloaded.
fault_steps() {
	tap_clock "faults: fail_step"
	fault_step symbol_get "kvm_intel is not loaded or lacks the APICv hook"
	fault_step debugfs "allocating the debugfs counters failed: -12"
	fault_step register "registering the APICv hook failed: -22"
	fault_step register_no_refresh "registering the APICv hook failed: -22"
}

# fault_tally HOW ARG: one fault_load of the module, counted in FAULT_TALLY
# ("loaded refused early broken"), which fault_tally_says prints.
fault_tally() {
	set -- "$1" "$2" $FAULT_TALLY
	if ! fault_load "$FAULT_TALLY_KO" "$1" "$2"; then
		FAULT_OUTCOME=broken
		FAULT_TALLY="$3 $4 $5 $(($6 + 1))"
		return
	fi
	case $FAULT_OUTCOME in
	loaded) FAULT_TALLY="$(($3 + 1)) $4 $5 $6" ;;
	refused) FAULT_TALLY="$3 $(($4 + 1)) $5 $6" ;;
	early) FAULT_TALLY="$3 $4 $(($5 + 1)) $6" ;;
	esac
}
fault_tally_says() {
	set -- $FAULT_TALLY
	echo "loaded=$1 refused-by-init=$2 failed-before-init=$3 broken=$4"
}

# fault_nth_walk MAX: fail the 1st, 2nd, ... slab allocation of the
# module's init and every one after it (and their error paths), until three
# loads in a row succeed with all counters (past the last allocation) or
# MAX loads.
fault_nth_walk() {
	local max=$1 n=1 clean=0
	FAULT_TALLY="0 0 0 0"
	while [ $n -le "$max" ]; do
		fault_tally nth $n
		# Three loads in a row that succeed with all five counters:
		# past the last allocation, every one has had its turn.
		if [ "$FAULT_OUTCOME" = loaded ] && [ "$FAULT_COUNTERS" -eq 5 ]; then
			clean=$((clean + 1))
			[ $clean -ge 3 ] && break
		else
			clean=0
		fi
		n=$((n + 1))
	done
	echo "# faults: fail-nth 1..$n: $(fault_tally_says)"
	set -- $FAULT_TALLY
	tap_check "faults: every slab allocation of a load failed in turn ($n loads), each clean" \
		[ "$4" -eq 0 -a $n -le "$max" ]
	tap_check "faults: some allocation failures reached the module's init and were refused" \
		[ "$2" -gt 0 ]
}

# fault_random N: N loads of the module with failslab at a probability on
# the insmod task, cycling through 5, 10, 25 and 50 percent (of the few
# allocations of init: lower ones rarely hit one).
fault_random() {
	local i=0 p
	FAULT_TALLY="0 0 0 0"
	while [ $i -lt "$1" ]; do
		case $((i % 4)) in 0) p=5 ;; 1) p=10 ;; 2) p=25 ;; *) p=50 ;; esac
		fault_tally prob $p
		i=$((i + 1))
	done
	echo "# faults: $1 random loads (failslab 5/10/25/50%): $(fault_tally_says)"
	set -- $FAULT_TALLY
	tap_check "faults: $i loads with random slab failures: each loaded or failed cleanly" [ "$4" -eq 0 ]
}

# fault_exit: the module unloads with every slab allocation of the rmmod
# task failing (exit has no fallible step: it must not need one).
fault_exit() {
	if ! insmod $M/kvm_apicv_defer.ko; then
		tap_not_ok "faults: exit under failslab: the module does not load"
		return
	fi
	failslab_anywhere
	echo 100 >$FAILSLAB/probability
	sh -c 'echo 1 >/proc/self/make-it-fail && exec rmmod kvm_apicv_defer' >/tmp/fault.out 2>&1
	FAULT_RC=$?
	echo 0 >$FAILSLAB/probability
	failslab_only_loader >/dev/null
	tap_diag /tmp/fault.out
	if [ "$FAULT_RC" -eq 0 ] && nothing_left; then
		tap_ok "faults: exit with every slab allocation failing: unloaded, nothing left"
	else
		[ -d /sys/module/kvm_apicv_defer ] && rmmod kvm_apicv_defer
		tap_not_ok "faults: exit with every slab allocation failing (rc=$FAULT_RC)"
	fi
}

# jiffies_now: the kernel's jiffies (/proc/timer_list, one line per CPU).
jiffies_now() {
	sed -n 's/^jiffies: //p' /proc/timer_list | head -n 1
}

# kmemleak_new_leaks SINCE: a scan now; the suspects allocated at or after
# jiffies SINCE (kmemleak names each one's) in /tmp/kmemleak.new, the
# number of older ones (leaks from before, boot or KVM's runs: not judged;
# a scan before the faults, to tell them apart, took 200 s under KASAN in
# Bochs) in /tmp/kmemleak.old.
kmemleak_new_leaks() {
	echo scan >$KMEMLEAK
	awk -v since="$1" -v old=/tmp/kmemleak.old '
		function flush() { if (head != "") { if (j >= since) printf "%s", block; else n++ } head = "" }
		/^unreferenced object/ { flush(); head = $0; block = ""; j = -1 }
		head != "" { block = block $0 "\n"; if (match($0, /jiffies [0-9]+/)) j = substr($0, RSTART + 8, RLENGTH - 8) + 0 }
		END { flush(); print n + 0 > old }' $KMEMLEAK >/tmp/kmemleak.new
}

# run_faults RANDOM-LOADS NTH-MAX
run_faults() {
	local since
	if ! failslab_setup; then
		tap_not_ok "faults: failslab is configurable ($FAILSLAB)"
		return
	fi
	FAULT_REFCNT=$(kvm_intel_refcnt)
	since=$(jiffies_now)
	[ -n "$since" ] || { tap_not_ok "faults: jiffies from /proc/timer_list"; return; }

	fault_steps
	# NTH-MAX 0: no fail-nth walk (make check; check-full walks).
	[ "$2" -eq 0 ] || fault_nth_walk "$2"
	tap_clock "faults: random loads"
	fault_random "$1"
	tap_clock "faults: exit"
	fault_exit
	tap_check "faults: the next normal load works" fault_load $M/kvm_apicv_defer.ko none 0
	tap_check "faults: ... and it loaded" [ "$FAULT_OUTCOME" = loaded ]

	# kmemleak reports objects at least 5 s old.
	sleep 6
	tap_clock "faults: kmemleak scan"
	kmemleak_new_leaks "$since"
	echo "# faults: kmemleak: $(cat /tmp/kmemleak.old) suspects from before the faults (not judged)"
	if [ ! -s /tmp/kmemleak.new ]; then
		tap_ok "faults: kmemleak: no leak"
	else
		sed 's/^/# /' /tmp/kmemleak.new | head -n 80
		tap_not_ok "faults: kmemleak: $(grep -c '^unreferenced object' /tmp/kmemleak.new) unreferenced objects allocated during the faults"
	fi
}

# faults_dmesg_clean NAME: tap_dmesg_clean, except for the kernel's own
# reports of the failures injected (warn_alloc: "vmalloc error: ...
# allocation failed" or "page allocation failure" and the stack dump that
# follows, up to its </TASK>), which are not bugs.
faults_dmesg_clean() {
	tap_dmesg_clean "$1" '/vmalloc error: .*allocation failed|page allocation failure/ { skip = 1 }
		!skip { print } /<\/TASK>/ { skip = 0 }'
}
