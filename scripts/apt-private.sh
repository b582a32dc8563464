# SPDX-License-Identifier: GPL-2.0
# apt-get against a private sources list and state dir, so fetching packages
# from other Debian suites never touches the machine's apt configuration.
# Source it after lib.sh; call apt_private SUITE ARGS...
#
# The mirror is the machine's own: the first Debian archive URI its apt
# configuration (deb822 /etc/apt/sources.list.d/*.sources or one-line
# sources.list files) uses for its release's main component; KAD_DEBIAN_MIRROR
# overrides it, and deb.debian.org is the fallback.

# debian_mirror: print the Debian archive URI to use.
debian_mirror() {
	local f uri
	if [[ -n "${KAD_DEBIAN_MIRROR:-}" ]]; then
		echo "${KAD_DEBIAN_MIRROR%/}"
		return
	fi
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		# deb822 stanzas: the URIs of one whose Suites name a release
		# (not -security, -updates or -backports) and has main.
		uri=$(awk 'BEGIN { RS = ""; FS = "\n" }
			{ u = ""; s = ""; c = ""
			  for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { u = $i; sub(/^URIs: */, "", u); sub(/ .*/, "", u) }
				if ($i ~ /^Suites:/) s = $i
				if ($i ~ /^Components:/) c = $i }
			  if (u != "" && c ~ / main( |$)/ && s ~ /: *[a-z]+( |$)/ && s !~ /^Suites: *[a-z]+-security/) { print u; exit } }' "$f")
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		uri=$(awk '$1 == "deb" && $0 ~ / main( |$)/ && $0 !~ /-security/ {
				for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f")
		[[ -n $uri ]] && { echo "${uri%/}"; return; }
	done
	echo "http://deb.debian.org/debian"
}

apt_private() {
	local suite=$1; shift
	local dir="$CACHE/apt/$suite" mirror
	mkdir -p "$dir/lists/partial" "$dir/archives/partial"
	mirror=$(debian_mirror)
	cat >"$dir/sources.list.new" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
SRC
	if ! cmp -s "$dir/sources.list.new" "$dir/sources.list"; then
		mv "$dir/sources.list.new" "$dir/sources.list"
		rm -f "$dir/updated"
	else
		rm -f "$dir/sources.list.new"
	fi
	apt-get -q \
		-o Dir::Etc::SourceList="$dir/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$dir/lists" \
		-o Dir::Cache::Archives="$dir/archives" \
		-o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" \
		-o APT::Sandbox::User=root \
		"$@"
}

# apt_private_cache SUITE ARGS...: apt-cache on the same private state.
apt_private_cache() {
	local suite=$1; shift
	local dir="$CACHE/apt/$suite"
	apt-cache -o Dir::Etc::SourceList="$dir/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$dir/lists" \
		-o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" "$@"
}

# Refresh the private lists at most once a day (or when the mirror changed).
apt_private_update() {
	local suite=$1 stamp="$CACHE/apt/$1/updated"
	apt_private "$suite" --version >/dev/null
	if [[ ! -f "$stamp" ]] || [[ -n "$(find "$stamp" -mmin +1440)" ]]; then
		# --error-on=any: a list that cannot be fetched is an error (apt
		# otherwise warns and exits 0).
		apt_private "$suite" update --error-on=any >/dev/null 2>"$CACHE/apt/$suite/update.log" || {
			log "apt-get update of Debian $suite failed: $(grep -m1 '^E:' "$CACHE/apt/$suite/update.log" ||
				echo "see $CACHE/apt/$suite/update.log")"
			return 1
		}
		touch "$stamp"
	fi
}
