#!/usr/bin/env bash
# Print the path of a static busybox for the guest architecture.
#
#   x86_64   /bin/busybox from the host's busybox-static (tools/setup.sh)
#   aarch64  Debian's busybox-static:arm64, fetched with `apt-get download`
#            and unpacked into .cache/busybox/aarch64/ (never installed on
#            the host: an arm64 busybox at /bin/busybox would break it).
#            It cannot run here to list its applets, so next to it goes
#            `applets`, the `--list` of the host's busybox-static: the arm64
#            package is fetched at the host package's version, and Debian
#            builds both from the same config.
#
# Idempotent: a cached binary is reused. Needs apt-get and dpkg-deb; aarch64
# also needs dpkg's arm64 architecture (tools/setup.sh --arm64). No root.
#
# Usage: qemu/fetch-busybox.sh [x86_64|aarch64]
# The binary's absolute path is the only line on stdout.
set -euo pipefail

arch="${1:-x86_64}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$arch" in
x86_64)
	[[ -x /bin/busybox ]] || {
		echo "fetch-busybox: /bin/busybox missing; run tools/setup.sh" >&2
		exit 1
	}
	echo /bin/busybox
	exit 0
	;;
aarch64) debarch=arm64 ;;
*)
	echo "fetch-busybox: unsupported arch '$arch' (supported: x86_64, aarch64)" >&2
	exit 2
	;;
esac

out="$repo_root/.cache/busybox/$arch"
if [[ -x "$out/busybox" && -s "$out/applets" ]]; then
	echo "$out/busybox"
	exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx "$debarch" &&
	[[ "$(dpkg --print-architecture)" != "$debarch" ]]; then
	echo "fetch-busybox: dpkg has no $debarch architecture; run 'tools/setup.sh --arm64'" >&2
	exit 1
fi

# Test binaries run in parallel; one download at a time.
mkdir -p "$out"
exec 9>"$out.lock"
flock 9
if [[ ! -x "$out/busybox" || ! -s "$out/applets" ]]; then
	version="$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true)"
	[[ -n "$version" && -x /bin/busybox ]] || {
		echo "fetch-busybox: the host's busybox-static is missing; run tools/setup.sh" >&2
		exit 1
	}
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' EXIT
	echo "fetch-busybox: downloading busybox-static:$debarch=$version" >&2
	# As root apt warns that _apt cannot write to a mktemp dir; harmless.
	# The mirror may have moved on from the host's version; the applet set
	# changes with busybox's own version, not Debian revisions, so fall back
	# to the current package then.
	(cd "$work" && apt-get download -q "busybox-static:$debarch=$version") >&2 ||
		(cd "$work" && apt-get download -q "busybox-static:$debarch") >&2
	dpkg-deb -x "$work"/busybox-static_*.deb "$work/root"
	/bin/busybox --list >"$out/applets.tmp"
	install -m 0755 "$work/root/bin/busybox" "$out/busybox.tmp"
	mv "$out/applets.tmp" "$out/applets"
	mv "$out/busybox.tmp" "$out/busybox"
fi
echo "$out/busybox"
