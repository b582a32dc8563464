# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module fault-points
# One mutant of `make mutants` (scripts/mutants): (b), the refusals, the
# fault-points build's failed init steps, the sample hook and 10
# load/unload cycles, every unload forced.  A kernel mutant is a
# kvm-intel.ko packed as /lib/modules/kad/mutant/kvm-intel.ko, loaded
# instead of the rig's; a module mutant is the module of the payload, built
# from the mutant's tree.  Sourced by /init.
. /lib/kad/configs.sh
. /lib/kad/faults.sh

if [ -f "$M/mutant/kvm-intel.ko" ]; then
	cp "$M/mutant/kvm-intel.ko" "$M/kvm-intel.ko"
	echo "# kvm-intel.ko: the mutant's"
fi
host_checks
config_b
refusals
FAULT_REFCNT=$(kvm_intel_refcnt)
fault_steps
config_sample
config_r 10 all
