# SPDX-License-Identifier: GPL-2.0
# kad-payload: selftests module request-only
# `make test T=GLOB` (scripts/test): the tests that kad.only= picks, in
# (a) no module, (b) module and (c) request-only, as make check runs them
# there.  Sourced by /init.
. /lib/kad/configs.sh

host_checks
config_a
config_b
config_c
