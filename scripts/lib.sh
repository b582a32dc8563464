# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the rig's scripts.  Source it; do not run it.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvm-apicv-defer}
LLVM_SUFFIX=${LLVM_SUFFIX:--19}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Print a short hash of the named files' contents and the given strings, for
# keying cached outputs on their inputs.
inputs_hash() {
	local f
	{
		for f in "$@"; do
			if [[ -f "$f" ]]; then
				printf '%s\n' "${f#"$TOP"/}"; cat "$f"
			else
				printf '%s\n' "$f"
			fi
		done
	} | sha256sum | cut -c1-16
}
