# SPDX-License-Identifier: GPL-2.0
# apt-get against a private sources list and state dir, so fetching packages
# from other Debian suites never touches the machine's apt configuration.
# Source it after lib.sh; call apt_private SUITE ARGS...

apt_private() {
	local suite=$1; shift
	local dir="$CACHE/apt/$suite"
	mkdir -p "$dir/lists/partial" "$dir/archives/partial"
	if [[ ! -f "$dir/sources.list" ]]; then
		cat >"$dir/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main
SRC
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

# Refresh the private lists at most once a day.
apt_private_update() {
	local suite=$1 stamp="$CACHE/apt/$1/updated"
	if [[ ! -f "$stamp" ]] || [[ -n "$(find "$stamp" -mmin +1440)" ]]; then
		apt_private "$suite" update >/dev/null
		touch "$stamp"
	fi
}
