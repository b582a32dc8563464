# SPDX-License-Identifier: GPL-2.0
# Shared helpers for the rig's scripts.  Source it; do not run it.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${KAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvm-apicv-defer}
# LLVM_SUFFIX: the LLVM tools' suffix (clang-19: -19; "" for plain clang).
# Every build uses it: one set by the user is checked here (bootstrap
# installs the default, so it is not checked there).
if [[ -n ${LLVM_SUFFIX+set} && $(basename "$0") != bootstrap ]] &&
	! command -v "clang$LLVM_SUFFIX" >/dev/null; then
	printf '[%s] error: LLVM_SUFFIX=%s: there is no clang%s: install that LLVM or leave LLVM_SUFFIX unset (default -19, which make bootstrap installs)\n' \
		"$(basename "$0")" "$LLVM_SUFFIX" "$LLVM_SUFFIX" >&2
	exit 1
fi
LLVM_SUFFIX=${LLVM_SUFFIX--19}
export PATH="$HOME/.cargo/bin:$PATH"
# The rig's own Rust toolchain (a rustup toolchain, selected for the rig's
# builds only: the user's default stays as it is).  7.2 wants rustc >= 1.85.
RIG_RUST_TOOLCHAIN=1.95.0
RUST_TOOLCHAIN=${KAD_RUST_TOOLCHAIN:-$RIG_RUST_TOOLCHAIN}
export RUSTUP_TOOLCHAIN=$RUST_TOOLCHAIN

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

# cached_build NAME KEY CMD...: the output directory $CACHE/NAME-KEY,
# building it first if it is not there: CMD runs with STAGE set to an empty
# temporary directory to fill (its output goes to stderr), which is then
# marked done (.kad-done) and renamed into place, under a per-NAME lock so
# that concurrent callers build once; only the three newest outputs of NAME
# are kept.  Prints the directory.
cached_build() {
	local name=$1 key=$2 out lock old
	shift 2
	out="$CACHE/$name-$key"
	if [[ ! -f "$out/.kad-done" ]]; then
		exec {lock}>"$CACHE/$name.lock"
		flock "$lock"
		if [[ ! -f "$out/.kad-done" ]]; then
			rm -rf "$out.tmp"
			mkdir -p "$out.tmp"
			STAGE=$out.tmp "$@" >&2
			touch "$out.tmp/.kad-done"
			rm -rf "$out"
			mv "$out.tmp" "$out"
			for old in $(ls -1dt "$CACHE/$name"-* 2>/dev/null | tail -n +4); do
				[[ $old =~ -[0-9a-f]{16}$ && -f $old/.kad-done ]] && rm -rf "$old"
			done
		fi
		exec {lock}>&-
	fi
	echo "$out"
}

# need_rust_toolchain: the Rust toolchain is there, before a build changes
# anything (make check and make run install it first, through bootstrap).
need_rust_toolchain() {
	command -v rustup >/dev/null || die "rustup is not installed: run make bootstrap"
	rustup run "$RUST_TOOLCHAIN" rustc --version >/dev/null 2>&1 && return
	[[ -n ${KAD_RUST_TOOLCHAIN:-} ]] &&
		die "KAD_RUST_TOOLCHAIN=$KAD_RUST_TOOLCHAIN: rustup has no such toolchain: run make bootstrap (it installs it) or unset KAD_RUST_TOOLCHAIN (the rig's $RIG_RUST_TOOLCHAIN)"
	die "the rig's Rust toolchain $RUST_TOOLCHAIN is not installed: run make bootstrap"
}

# no_arguments "$@": for the scripts that take none (settings come from the
# environment): anything else is a typo, said in one line.
no_arguments() {
	(($# == 0)) || die "takes no arguments, got: $* (see the comment at the top of $0)"
}

# kernel_variants: the names scripts/build-kernel --variant takes.
kernel_variants() { (cd "$TOP/scripts/kernel-variants" && ls -- *.config | sed 's/\.config$//' | paste -sd' '); }

# base_tree: BASE, the pinned base tree (scripts/fetch-kernel), and BASE_ID,
# what names its contents in cache keys.
base_tree() {
	BASE=$("$TOP/scripts/fetch-kernel")
	[[ -d "$BASE/tools/testing/selftests/kvm" ]] || die "$BASE has no KVM selftests"
	if git -C "$BASE" rev-parse -q --verify base >/dev/null 2>&1; then
		BASE_ID=$(git -C "$BASE" rev-parse base)
	else
		BASE_ID="$BASE $(make -s -C "$BASE" kernelversion)"
	fi
}

# uapi_headers: UAPI, the base's uapi headers (an INSTALL_HDR_PATH), installed
# once per base (headers_install re-copies every header, which would force a
# full rebuild of every user each time).  Needs base_tree.
_install_uapi_headers() {
	nice -n 10 make -s -C "$BASE" O="$STAGE/obj" ARCH=x86 INSTALL_HDR_PATH="$STAGE/usr" headers_install
	rm -rf "$STAGE/obj"
}
uapi_headers() {
	UAPI=$(cached_build uapi "$(inputs_hash "$BASE_ID")" _install_uapi_headers)/usr
}

# userspace_build SRCDIR NAME: build the selftest-style programs of SRCDIR
# (selftests/, samples/userspace/, bench/) through selftests/Makefile, static,
# -Werror, against the base's selftest library, and install them
# (install_static).  Objects stay in userspace-obj/NAME-<hash of SRCDIR's
# path> for incremental builds: make's dependency files name the sources by
# path, and with one object directory for every checkout a build from
# another (a removed worktree, the previous CI clone) failed with "No rule
# to make target".  A failed build fails.  Needs base_tree and uapi_headers.
userspace_build() {
	local srcdir=$1 obj progs
	obj="$CACHE/userspace-obj/$2-$(printf '%s' "$srcdir" | sha256sum | cut -c1-16)"
	mkdir -p "$obj"
	nice -n 10 make -s -f "$TOP/selftests/Makefile" -C "$srcdir" -j"${KAD_SELFTESTS_JOBS:-2}" \
		SRCDIR="$srcdir" CC="${CC:-gcc}" KSRC="$BASE" INSTALL_HDR_PATH="$UAPI" \
		OUTPUT="$obj" WERROR=1 >&2 || die "building $srcdir's programs failed"
	progs=$(make -s --no-print-directory -f "$TOP/selftests/Makefile" -C "$srcdir" SRCDIR="$srcdir" \
		KSRC="$BASE" INSTALL_HDR_PATH="$UAPI" OUTPUT="$obj" print-progs) ||
		die "listing $srcdir's programs failed"
	install_static $progs
}

# install_static PROG... : strip each into $STAGE, refusing dynamic binaries
# (the guest is a busybox initramfs).
install_static() {
	local b
	for b in "$@"; do
		strip -o "$STAGE/$(basename "$b")" "$b"
		if readelf -l "$STAGE/$(basename "$b")" | grep -q INTERP; then
			die "$b is dynamically linked"
		fi
	done
}

# userspace_key FILE...: the cache key of a userspace build: the base, the
# compiler, the shared build rules and library, and FILE....
userspace_key() {
	local -a shared
	shopt -s nullglob
	shared=("$TOP"/selftests/Makefile "$TOP"/selftests/include/* "$TOP"/selftests/lib/*)
	shopt -u nullglob
	inputs_hash "$BASE_ID" "$("${CC:-gcc}" --version | head -1)" "$TOP/scripts/lib.sh" \
		"${shared[@]}" "$@"
}


# perl_edit FILE EXPR: apply the perl substitution EXPR to the whole of FILE
# (perl -0p: the series' Edit: lines, make mutants' mutants); fails if EXPR
# does not compile or changes nothing.
perl_edit() {
	local orig rc=0
	orig=$(mktemp) && cp "$1" "$orig" || return 1
	E=$2 perl -0pi -e 'eval $ENV{E}; die $@ if $@' "$1" && ! cmp -s "$1" "$orig" || rc=1
	rm -f "$orig"
	return $rc
}

# How the rig configures Bochs (scripts/build-bochs; make series --build
# configures Bochs master with the fixes the same way).
# --disable-show-ips: Bochs logs "ips = ..." from its SIGALRM handler, which
# takes the log mutex; when the alarm lands while the main loop is logging
# (KVM's unknown-MSR probes log a lot) Bochs deadlocks on that mutex forever
# (seen: a check run frozen at guest time 124 s, gdb showing
# bx_show_ips_handler waiting on logio_mutex inside iofunctions::out).
# Headless, no debugger; x86-64 + VMX level 2 (EPT, APICv, preemption timer,
# VMCS shadowing) + AVX/EVEX because cpu model corei7_skylake_x refuses to
# load without them; SMP for 2-vCPU IPI tests; PCI+ACPI so the guest can power
# off through ACPI and Bochs exits by itself.  --enable-x86-debugger is not
# Bochs's own debugger (that stays off) but the architectural DR0-DR3
# breakpoints: without it they never fire, and KVM's guest-debug tests
# (x86/debug_regs) run through their breakpoints.
BOCHS_CONFIGURE_ARGS=(
	--with-nogui --without-x --without-x11 --without-rfb --without-vncsrv
	--without-sdl --without-sdl2 --without-wx --without-term
	--enable-x86-64 --enable-vmx=2 --enable-smp
	--enable-avx --enable-evex --enable-monitor-mwait
	--enable-pci --enable-cdrom --enable-a20-pin
	--enable-all-optimizations
	--enable-x86-debugger
	--disable-debugger --disable-debugger-gui
	--disable-plugins --disable-docbook --disable-readline
	--disable-usb --disable-sb16 --disable-es1370 --disable-gameport
	--disable-show-ips
)
