# SPDX-License-Identifier: GPL-2.0
# Bad setups: kvm_apicv_defer.ko must refuse to load, say why in one line,
# and leave nothing registered.  Sourced by plans after kvm.sh.

# refuse LABEL EXPECTED-DMESG-TEXT [insmod args...]: insmod must fail, the
# kernel log must carry the message, and the module must not be present.
refuse() {
	local label=$1 want=$2 mark
	shift 2
	mark=$(dmesg | wc -l)
	if insmod $M/kvm_apicv_defer.ko "$@" 2>/tmp/err; then
		tap_not_ok "$label: insmod must fail"
		rmmod kvm_apicv_defer
		return
	fi
	dmesg | tail -n +"$((mark + 1))" >/tmp/refuse.log
	tap_diag /tmp/refuse.log
	if grep -qF "$want" /tmp/refuse.log && [ ! -d /sys/module/kvm_apicv_defer ]; then
		tap_ok "$label: refused: $want"
	else
		tap_not_ok "$label: refused, but without \"$want\" or left loaded"
	fi
}

# Nothing registered after a refusal: the sample hook can still register.
hook_is_free() {
	insmod $M/apicv_hook_counter.ko && rmmod apicv_hook_counter
}

# The module has no parameters, and the kernel loads a module despite unknown
# ones (it warns and ignores them), so there is no invalid-parameter case.
run_refusals() {
	kvm_unload
	refuse "refuse: kvm_intel not loaded" "kvm_intel is not loaded or lacks the APICv hook"

	kvm_load $M/kvm-intel.ko enable_apicv=0
	refuse "refuse: enable_apicv=0" "APICv is disabled (kvm_intel enable_apicv=0)"
	kvm_unload

	kvm_load $M/kvm-intel.ko nested=0
	refuse "refuse: nested=0" "nested VMX is disabled (kvm_intel nested=0)"
	kvm_unload

	kvm_load $M/unpatched/kvm-intel.ko
	refuse "refuse: unpatched kvm_intel (upstream 7.2)" "kvm_intel is not loaded or lacks the APICv hook"
	kvm_unload

	kvm_load
	insmod $M/apicv_hook_counter.ko
	refuse "refuse: second registrant" "another APICv hook is already registered"
	rmmod apicv_hook_counter
	tap_check "refuse: nothing left registered after the refusals" hook_is_free
	if insmod $M/kvm_apicv_defer.ko; then
		tap_check "refuse: the sample cannot register while the module is loaded" \
			sh -c "! insmod $M/apicv_hook_counter.ko"
		rmmod kvm_apicv_defer
	else
		tap_not_ok "refuse: kvm_apicv_defer.ko loads on the sane host"
	fi
}
