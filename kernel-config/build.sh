#!/usr/bin/env bash
# Build the stage1-kvm guest kernel (an uncompressed, stripped x86_64 vmlinux
# that boots through its PVH entry point) from Debian's linux-source-6.12 and
# stage1-kvm.config (a fragment applied on top of `make tinyconfig`).
#
# The result is cached outside the checkout:
#   ${STAGE1_KVM_CACHE:-$HOME/.cache/stage1-kvm}/kernel/<key>/{vmlinux,config}
#   key = 6.12-<linux-source-6.12 package version>-<sha256(fragment + this script), 16 hex>
# A cache hit prints the path and exits at once. On a miss: install missing
# packages (apt-get, needs root), unpack, configure, verify the config, build,
# strip (keeping the ELF notes), check the PVH note, store atomically.
#
# stdout: exactly one line, the absolute path of vmlinux. Everything else: stderr.
# Environment:
#   STAGE1_KVM_CACHE   cache root (default $HOME/.cache/stage1-kvm)
#   KEEP_KERNEL_BUILD  1 = keep the build tree (<cache>/kernel/<key>.build) after success
set -Eeuo pipefail

readonly SERIES=6.12
readonly SRC_PKG=linux-source-$SERIES
readonly TARBALL=/usr/src/$SRC_PKG.tar.xz
readonly BUILD_DEPS=(flex bison bc libelf-dev libssl-dev make gcc xz-utils)

say() { printf 'kernel: %s\n' "$*" >&2; }
die() { printf 'kernel: error: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; printf "kernel: error: command failed (exit %d) at build.sh line %d: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

script=$(readlink -f -- "${BASH_SOURCE[0]}")
here=${script%/*}
fragment=$here/stage1-kvm.config
[[ -r $fragment ]] || die "config fragment not found: $fragment"

# --- packages ----------------------------------------------------------------

installed() { # pkg -> 0 if installed
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

apt_updated=0
ensure_packages() { # pkg... -> install the missing ones
	local missing=() p
	for p in "$@"; do installed "$p" || missing+=("$p"); done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run as root or install them with apt-get"
	command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get (Debian 12 expected)"
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ((!apt_updated)); then
		apt-get update -q >&2 || die "apt-get update failed"
		apt_updated=1
	fi
	apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
		|| die "apt-get install ${missing[*]} failed"
	for p in "${missing[@]}"; do installed "$p" || die "package $p is still not installed after apt-get install"; done
}

# The source version is part of the cache key, so the source package comes first
# (with the build dependencies, to run apt-get only once on a fresh machine).
installed "$SRC_PKG" || ensure_packages "$SRC_PKG" "${BUILD_DEPS[@]}"
src_version=$(dpkg-query -W -f='${Version}' "$SRC_PKG") || die "cannot read the version of $SRC_PKG"
[[ -n $src_version ]] || die "empty version for $SRC_PKG"

# --- cache key and fast path ---------------------------------------------------

if [[ -n ${STAGE1_KVM_CACHE:-} ]]; then
	cache_root=$STAGE1_KVM_CACHE
else
	[[ -n ${HOME:-} ]] || die "neither STAGE1_KVM_CACHE nor HOME is set"
	cache_root=$HOME/.cache/stage1-kvm
fi
cache_root=$(realpath -m -- "$cache_root")

hash=$(cat -- "$fragment" "$script" | sha256sum)
key=$SERIES-$src_version-${hash:0:16}
kdir=$cache_root/kernel
out=$kdir/$key
vmlinux=$out/vmlinux

if [[ -s $vmlinux ]]; then
	printf '%s\n' "$vmlinux"
	exit 0
fi

# --- cold build ------------------------------------------------------------------

t0=$(date +%s)
[[ $(uname -m) == x86_64 ]] || die "this builds an x86_64 kernel natively; host is $(uname -m)"

mkdir -p -- "$kdir" || die "cannot create cache dir $kdir"
exec 9>"$kdir/.build.lock"
if ! flock -n 9; then
	say "another kernel build is running; waiting for it"
	flock 9
fi
# The other build may have produced our kernel meanwhile.
if [[ -s $vmlinux ]]; then
	printf '%s\n' "$vmlinux"
	exit 0
fi

ensure_packages "${BUILD_DEPS[@]}"
[[ -r $TARBALL ]] || die "kernel source tarball missing: $TARBALL (reinstall $SRC_PKG)"
for tool in tar make gcc strip readelf flock sha256sum; do
	command -v "$tool" >/dev/null || die "required tool not found: $tool"
done

# The fragment's syntax is checked before anything expensive: each line is blank,
# a comment, CONFIG_X=value or '# CONFIG_X is not set', and no symbol twice.
fragment_awk='
	function parse() {
		if ($0 ~ /^[ \t]*$/) return 0
		if ($0 ~ /^CONFIG_[A-Za-z0-9_]+=[^ \t]/) { key = $0; sub(/=.*/, "", key); val = substr($0, length(key) + 2) }
		else if ($0 ~ /^# CONFIG_[A-Za-z0-9_]+ is not set$/) { key = $2; val = "n" }
		else if ($0 ~ /^#/ && $0 !~ /^#[ \t]*CONFIG_/) return 0
		else { printf "  line %d: not CONFIG_X=value or \"# CONFIG_X is not set\": %s\n", FNR, $0; return 0 }
		if (key in seen) printf "  line %d: %s already set on line %d\n", FNR, key, seen[key]
		seen[key] = FNR; order[++n] = key
		return 1
	}'
syntax_errors=$(awk "$fragment_awk"'{ parse() }' "$fragment")
if [[ -n $syntax_errors ]]; then
	printf '%s\n' "$syntax_errors" >&2
	die "$(basename -- "$fragment") has $(grep -c . <<<"$syntax_errors") malformed line(s): listed above"
fi

say "building $key (cache: $out)"
build=$kdir/$key.build
log=$build.log

# A tree left by a failed run of the same key is reused (make is incremental).
if [[ ! -e $build/.stage1-kvm-unpacked ]]; then
	rm -rf -- "$build"
	mkdir -p -- "$build"
	say "unpacking $TARBALL"
	tar -xJf "$TARBALL" -C "$build" --strip-components=1 \
		|| die "cannot unpack $TARBALL into $build"
	[[ -f $build/Makefile && -x $build/scripts/kconfig/merge_config.sh ]] \
		|| die "unexpected layout of $TARBALL (no Makefile or merge_config.sh)"
	touch -- "$build/.stage1-kvm-unpacked"
fi
cd -- "$build"

# Keep the caller's environment out of kbuild; pin what ends up in the image.
unset KBUILD_OUTPUT KCONFIG_CONFIG KCONFIG_ALLCONFIG LOCALVERSION CROSS_COMPILE O
export ARCH=x86
export KBUILD_BUILD_USER=stage1-kvm KBUILD_BUILD_HOST=stage1-kvm
KBUILD_BUILD_TIMESTAMP=$(date -u -r "$TARBALL" '+%a %b %e %H:%M:%S UTC %Y')
export KBUILD_BUILD_TIMESTAMP

say "configuring: tinyconfig + $(basename -- "$fragment") (log: $log)"
{
	make tinyconfig &&
	scripts/kconfig/merge_config.sh -m .config "$fragment" &&
	make olddefconfig
} >"$log" 2>&1 || { tail -n 20 -- "$log" >&2; die "kernel configuration failed; see $log"; }

# Every CONFIG_X=... and '# CONFIG_X is not set' line of the fragment must hold
# in the final .config (catches typos, unmet dependencies and choices that lost).
# A symbol absent from .config (invisible) counts as not set.
bad=$(awk "$fragment_awk"'
	FNR == NR { if (parse()) want[key] = val; next }
	/^CONFIG_[A-Za-z0-9_]+=/ { k = $0; sub(/=.*/, "", k); have[k] = substr($0, length(k) + 2) }
	END {
		for (i = 1; i <= n; i++) {
			k = order[i]; h = (k in have) ? have[k] : "n"
			if (h != want[k])
				printf "  %s: wanted %s, got %s\n", k, (want[k] == "n" ? "not set" : want[k]), (h == "n" ? "not set" : h)
		}
	}' "$fragment" .config)
if [[ -n $bad ]]; then
	printf '%s\n' "$bad" >&2
	die "$(grep -c . <<<"$bad") option(s) of $(basename -- "$fragment") did not stick (typo, unmet dependency or lost choice): listed above"
fi
say "config verified: all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set$)' "$fragment") fragment options hold"

say "make -j$(nproc) vmlinux (compiler output follows)"
make -j"$(nproc)" vmlinux >&2 || die "kernel build failed in $build"
[[ -s vmlinux ]] || die "make succeeded but produced no vmlinux in $build"

mkdir -p -- "$out"
tmp=$(mktemp -- "$out/.vmlinux.XXXXXX")
tmpcfg=$(mktemp -- "$out/.config.XXXXXX")
trap 'rm -f -- "$tmp" "$tmpcfg"' EXIT

# strip drops symbols and debug info; the allocated .notes section (and its
# PT_NOTE segment) stays, which is what PVH loaders read.
strip --strip-all -o "$tmp" vmlinux || die "strip failed"
hdr=$(readelf -h "$tmp") || die "readelf cannot read the stripped vmlinux"
[[ $hdr =~ Class:[[:space:]]*ELF64 && $hdr =~ Machine:[[:space:]]*Advanced\ Micro\ Devices\ X86-64 ]] \
	|| die "stripped vmlinux is not an x86-64 ELF64 file"
# The PVH entry point: owner "Xen", type 0x12 (XEN_ELFNOTE_PHYS32_ENTRY).
readelf -n "$tmp" | awk '$1 == "Xen" && ($2 ~ /^0x/) && ($0 ~ /0x0*12\)?$|PHYS32_ENTRY/) { found = 1 } END { exit !found }' \
	|| die "stripped vmlinux has no Xen PHYS32_ENTRY (0x12) ELF note: not PVH-bootable (is CONFIG_PVH on?)"

cp -- .config "$tmpcfg"
chmod 0644 -- "$tmp" "$tmpcfg"
mv -f -- "$tmpcfg" "$out/config"
mv -f -- "$tmp" "$vmlinux"   # last: an existing vmlinux means a complete entry
trap - EXIT

cd /
if [[ ${KEEP_KERNEL_BUILD:-0} == 1 ]]; then
	say "kept build tree: $build"
else
	rm -rf -- "$build" "$log"
fi

t=$(($(date +%s) - t0))
say "done in $((t / 60))m$((t % 60))s: $vmlinux ($(stat -c %s -- "$vmlinux") bytes)"
printf '%s\n' "$vmlinux"
