# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module data-race
# The kcsan kernel's boot (scripts/kernel-variants/kcsan.config: KCSAN,
# kCFI; make check-full): a planted data race KCSAN must report, then the
# module's configurations (b) and (r, 40 cycles) of configs.sh, where any
# KCSAN report fails a "no kernel warnings" check.
# Sourced by /init.
# KCSAN's watchpoints slow the guests down: recalc_apic_map_test was killed
# at the default 300 s here.
SUITE_TIMEOUT=1800
. /lib/kad/configs.sh

host_checks
planted_bug_reported data-race 'BUG: KCSAN: data-race in kad_race_thread'
config_b
config_r 40 alternate
