# SPDX-License-Identifier: GPL-2.0
# TAP accounting for `make check` on the host side.  Source it.  Every stage
# reports through these, so the run ends with one plan line and one
# "N passed, N failed, N skipped" line.

H_N=0 H_PASS=0 H_FAIL=0 H_SKIP=0

h_ok() { H_N=$((H_N + 1)); H_PASS=$((H_PASS + 1)); echo "ok $H_N $*"; }
h_not_ok() { H_N=$((H_N + 1)); H_FAIL=$((H_FAIL + 1)); echo "not ok $H_N $*"; }
h_skip() {
	local name=$1; shift
	H_N=$((H_N + 1)); H_SKIP=$((H_SKIP + 1)); echo "ok $H_N $name # SKIP $*"
}

# h_step NAME CMD...: one TAP line for a host-side step; its output goes to
# $LOGDIR/NAME.log and, on failure, is shown as diagnostics.  H_OUT is the
# step's last line of output (the build scripts print their product there).
h_step() {
	local name=$1; shift
	local logf="$LOGDIR/${name//[^A-Za-z0-9_.-]/_}.log"
	H_OUT=
	if "$@" >"$logf" 2>&1; then
		H_OUT=$(tail -n 1 "$logf")
		h_ok "$name"
	else
		tail -n 40 "$logf" | sed 's/^/# /'
		h_not_ok "$name # see $logf"
		return 1
	fi
}

# h_import PREFIX LOG: re-number and re-emit a guest's TAP lines.
h_import() {
	local prefix=$1 logf=$2 line rest
	while IFS= read -r line; do
		case "$line" in
		"not ok "*)
			rest=${line#not ok }; rest=${rest#* }
			h_not_ok "$prefix: $rest"
			;;
		"ok "*" # SKIP"*)
			rest=${line#ok }; rest=${rest#* }
			H_N=$((H_N + 1)); H_SKIP=$((H_SKIP + 1)); echo "ok $H_N $prefix: $rest"
			;;
		"ok "*)
			rest=${line#ok }; rest=${rest#* }
			h_ok "$prefix: $rest"
			;;
		esac
	done < <(grep -aE '^(not )?ok [0-9]+ ' "$logf")
}

h_done() {
	echo "1..$H_N"
	echo "$H_PASS passed, $H_FAIL failed, $H_SKIP skipped"
	((H_FAIL == 0 && H_N > 0))
}
