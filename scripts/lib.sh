# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the rig's scripts.  Source it; do not run it.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvm-apicv-defer}
LLVM_SUFFIX=${LLVM_SUFFIX:--19}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Every build output lives in the cache: it must be a writable directory.
if ! mkdir -p "$CACHE" 2>/dev/null || [[ ! -w $CACHE ]]; then
	die "the cache $CACHE is not a writable directory: set KAD_CACHE to one (e.g. KAD_CACHE=\$HOME/kad-cache)"
fi

# need_space GIB WHAT: fail early, with one line, when the cache's file
# system has less than GIB GiB free for WHAT.
need_space() {
	local avail
	avail=$(df --output=avail -BG "$CACHE" | tail -n 1 | tr -dc '0-9')
	((avail >= $1)) ||
		die "$2 needs about $1 GiB free in $CACHE, which has ${avail} GiB: free some space or set KAD_CACHE to a bigger file system"
}

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
