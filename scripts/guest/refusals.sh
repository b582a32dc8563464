# SPDX-License-Identifier: GPL-2.0
# Bad setups: kvm_apicv_defer.ko must refuse to load, say why in one line,
# and leave nothing registered.  Sourced by configs.sh, after kvm.sh.

# insmod_error ERRNO: busybox insmod's text for the error code init
# returned (its own for ENOENT).
insmod_error() {
	case $1 in
	ENOENT) echo "unknown symbol in module, or unknown parameter" ;;
	ENODEV) echo "No such device" ;;
	EOPNOTSUPP) echo "Operation not supported" ;;
	EBUSY) echo "Device or resource busy" ;;
	*) echo "insmod_error: no text for $1" >&2; return 1 ;;
	esac
}

# refuse LABEL ERRNO EXPECTED-DMESG-TEXT [insmod args...]: insmod must fail
# with ERRNO, the kernel log must carry the message, the module must not be
# present and kvm_intel must have its references back.
refuse() {
	local label=$1 errno=$2 want=$3 error refcnt mark
	shift 3
	error=$(insmod_error "$errno") || { tap_not_ok "$label: the rig knows no error $errno"; return; }
	refcnt=$(kvm_intel_refcnt) mark=$(dmesg | wc -l)
	if insmod $M/kvm_apicv_defer.ko "$@" 2>/tmp/err; then
		tap_not_ok "$label: insmod must fail"
		rmmod kvm_apicv_defer
		return
	fi
	dmesg | tail -n +"$((mark + 1))" >/tmp/refuse.log
	tap_diag /tmp/err
	tap_diag /tmp/refuse.log
	if ! grep -qF ": $error" /tmp/err; then
		tap_not_ok "$label: refused, but not with $errno (\"$error\")"
	elif ! grep -qF "$want" /tmp/refuse.log || [ -d /sys/module/kvm_apicv_defer ]; then
		tap_not_ok "$label: refused, but without \"$want\" or left loaded"
	elif [ "$(kvm_intel_refcnt)" != "$refcnt" ]; then
		tap_not_ok "$label: refused, but kvm_intel's refcnt went from $refcnt to $(kvm_intel_refcnt)"
	else
		tap_ok "$label: refused with $errno: $want"
	fi
}

# Nothing registered after a refusal: the sample hook can still register.
hook_is_free() {
	insmod $M/apicv_hook_counter.ko && rmmod apicv_hook_counter
}

# sample_refused: the sample hook cannot register while the module is, and
# gives back its reference on kvm_intel.
sample_refused() {
	local refcnt
	refcnt=$(kvm_intel_refcnt)
	! insmod $M/apicv_hook_counter.ko 2>/tmp/err || { rmmod apicv_hook_counter; return 1; }
	tap_diag /tmp/err
	grep -qF ": $(insmod_error EBUSY)" /tmp/err && [ "$(kvm_intel_refcnt)" = "$refcnt" ]
}

# The module has no parameters, and the kernel loads a module despite unknown
# ones (it warns and ignores them), so there is no invalid-parameter case.
run_refusals() {
	kvm_unload
	refuse "refuse: kvm_intel not loaded" ENOENT "kvm_intel is not loaded or lacks the APICv hook"

	kvm_load $M/kvm-intel.ko enable_apicv=0
	refuse "refuse: enable_apicv=0" ENODEV "APICv is disabled (kvm_intel enable_apicv=0)"
	kvm_unload

	kvm_load $M/kvm-intel.ko nested=0
	refuse "refuse: nested=0" EOPNOTSUPP "nested VMX is disabled (kvm_intel nested=0)"
	kvm_unload

	kvm_load $M/unpatched/kvm-intel.ko
	refuse "refuse: unpatched kvm_intel (upstream 7.2)" ENOENT "kvm_intel is not loaded or lacks the APICv hook"
	kvm_unload

	kvm_load
	insmod $M/apicv_hook_counter.ko
	refuse "refuse: second registrant" EBUSY "another APICv hook is already registered"
	rmmod apicv_hook_counter
	tap_check "refuse: nothing left registered after the refusals" hook_is_free
	if insmod $M/kvm_apicv_defer.ko; then
		tap_check "refuse: the sample cannot register while the module is loaded (EBUSY, kvm_intel's refcnt back)" \
			sample_refused
		rmmod kvm_apicv_defer
	else
		tap_not_ok "refuse: kvm_apicv_defer.ko loads on the sane host"
	fi
}
