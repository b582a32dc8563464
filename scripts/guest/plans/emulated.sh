# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module request-only series-selftests
# The emulated Intel host's suite (Bochs, Skylake-X): KVM's VMX setup, then
# the upstream peer tests and the project's nested APICv tests in each
# configuration (scripts/guest/configs.sh):
#   (a) patched kernel, module not loaded (7.2's in-tree guard path)
#   (b) patched kernel, kvm_apicv_defer.ko loaded
#   (c) TEST-ONLY request-only build: the tests that guard against it must
#       fail there, else they do not bite.
#   (r) 100 load/unload cycles under nested load, each unload forced (rmmod -f)
#   (u) the unpatched base's kvm-intel.ko, i.e. upstream 7.2
# plus the refusals of bad setups and the sample hook (apicv_hook_counter).
# kad.part=1 or 2 runs half of it, so two emulated hosts share the work
# (make check boots them one after the other on one host core, beside the
# hardening kernel's boot on the other); no kad.part runs all.
# The sanitizer kernels' boots are plans/hardening.sh.
# Sourced by /init.
. /lib/kad/configs.sh

host_checks
case "${KAD_PART:-all}" in
1) config_a; refusals; config_sample; config_u ;;
2) config_b; config_r 100 all; config_c ;;
all) config_a; config_b; config_r 100 all; refusals; config_sample; config_u; config_c ;;
*) tap_not_ok "kad.part=$KAD_PART: the emulated plan has parts 1, 2 and all" ;;
esac
