#!/usr/bin/env bash
# Print the path of a Debian sysroot holding the glibc that Bun links, for
# the Bun runtime layer of a guest architecture (quilt_imagekit::BunLayer
# resolves Bun's loader and libraries inside it).
#
#   x86_64   / (the host is an amd64 Debian)
#   aarch64  Debian's libc6:arm64 (and libgcc-s1:arm64, for libquiltbus.so),
#            fetched with `apt-get download` and
#            unpacked with `dpkg-deb -x` into .cache/sysroot/aarch64/ (never
#            installed by this script). It is fetched at the version of the
#            host's libc6 when the mirror still has it, so both architectures'
#            layers carry the same glibc; otherwise the current package.
#
# Idempotent: a complete cached sysroot is reused. Needs apt-get and
# dpkg-deb; aarch64 also needs dpkg's arm64 architecture (tools/setup.sh
# --arm64). No root.
#
# Usage: qemu/fetch-sysroot.sh [x86_64|aarch64]
# The sysroot's absolute path is the only line on stdout.
set -euo pipefail

arch="${1:-x86_64}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$arch" in
x86_64)
	echo /
	exit 0
	;;
aarch64)
	debarch=arm64
	loader=lib/ld-linux-aarch64.so.1
	;;
*)
	echo "fetch-sysroot: unsupported arch '$arch' (supported: x86_64, aarch64)" >&2
	exit 2
	;;
esac

out="$repo_root/.cache/sysroot/$arch"
# libgcc_s (libgcc-s1): what libquiltbus.so, a Rust cdylib, needs besides
# libc (the demo's Bun layer with --bus-lib).
gcc_s=lib/aarch64-linux-gnu/libgcc_s.so.1
# The .complete stamp is written last, so an interrupted unpack is redone.
if [[ -e "$out/.complete" && -e "$out/$loader" && -e "$out/$gcc_s" ]]; then
	echo "$out"
	exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx "$debarch" &&
	[[ "$(dpkg --print-architecture)" != "$debarch" ]]; then
	echo "fetch-sysroot: dpkg has no $debarch architecture; run 'tools/setup.sh --arm64'" >&2
	exit 1
fi

# Test binaries run in parallel; one download at a time.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if [[ ! -e "$out/.complete" || ! -e "$out/$loader" ]]; then
	# Name the host's architecture: with libc6:arm64 installed too, a bare
	# `libc6` matches both and prints both versions.
	version="$(dpkg-query -W -f='${Version}' "libc6:$(dpkg --print-architecture)" 2>/dev/null || true)"
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	echo "fetch-sysroot: downloading libc6:$debarch${version:+=$version}" >&2
	# As root apt warns that _apt cannot write to a mktemp dir; harmless.
	(cd "$work" && apt-get download -q "libc6:$debarch${version:+=$version}") >&2 ||
		(cd "$work" && apt-get download -q "libc6:$debarch") >&2
	rm -rf "$out"
	mkdir -p "$work/root"
	dpkg-deb -x "$work"/libc6_*.deb "$work/root"
	[[ -e "$work/root/$loader" ]] || {
		echo "fetch-sysroot: libc6:$debarch has no /$loader" >&2
		exit 1
	}
	mv "$work/root" "$out"
	touch "$out/.complete"
fi
if [[ ! -e "$out/$gcc_s" ]]; then
	# Added to an existing sysroot in place (others may be reading it).
	gcc_work="$(mktemp -d)"
	trap 'rm -rf "${work:-}" "$gcc_work"' EXIT
	echo "fetch-sysroot: downloading libgcc-s1:$debarch" >&2
	(cd "$gcc_work" && apt-get download -q "libgcc-s1:$debarch") >&2
	dpkg-deb -x "$gcc_work"/libgcc-s1_*.deb "$gcc_work/gcc"
	cp -a "$gcc_work/gcc/." "$out/"
fi
echo "$out"
