# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module fault-points data-race cfi-mismatch
# The hardening kernel variant's boots (scripts/kernel-variants/
# hardening.config: kCFI, KCSAN, fault injection, kmemleak): plans/emulated.sh
# with its hardening parts, plus the test-only module builds they need.
#   kad.part=hardening        (b), 40 load cycles (r), the fault injection of
#                             faults.sh (100 random loads), the data race
#   kad.part=hardening-quick  the same with 20 cycles and 20 random loads
#   kad.part=cfi-mismatch     must end in a kCFI trap (a panic)
# Sourced by /init.
. /plans/emulated.sh
