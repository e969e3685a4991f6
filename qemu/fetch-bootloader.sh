#!/usr/bin/env bash
# Fetch Debian's systemd-boot EFI binary for a board architecture and print
# its path, for `quilt image disk --bootloader`. On x86_64 it is the
# installed systemd-boot-efi package (tools/setup.sh); for aarch64 the
# arm64 package is `apt-get download`ed and unpacked into
# .cache/systemd-boot/aarch64/ (needs dpkg's arm64 architecture:
# tools/setup.sh --arm64). Idempotent; no root needed for aarch64.
#
# Usage: qemu/fetch-bootloader.sh [x86_64|aarch64]
set -euo pipefail

arch="${1:-x86_64}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

case "$arch" in
x86_64)
	efi=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
	if [[ ! -s "$efi" ]]; then
		echo "fetch-bootloader: $efi missing; run tools/setup.sh (package systemd-boot-efi)" >&2
		exit 1
	fi
	echo "$efi"
	exit 0
	;;
aarch64) ;;
*)
	echo "fetch-bootloader: unsupported arch '$arch' (supported: x86_64, aarch64)" >&2
	exit 2
	;;
esac

out="$repo_root/.cache/systemd-boot/aarch64"
efi="$out/systemd-bootaa64.efi"
if [[ -s "$efi" ]]; then
	echo "$efi"
	exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64 &&
	[[ "$(dpkg --print-architecture)" != arm64 ]]; then
	echo "fetch-bootloader: dpkg has no arm64 architecture; run 'tools/setup.sh --arm64'" >&2
	exit 1
fi
mkdir -p "$out"
exec 9>"$out.lock"
flock 9
if [[ ! -s "$efi" ]]; then
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -q systemd-boot-efi:arm64 >&2)
	dpkg-deb -x "$tmp"/systemd-boot-efi_*_arm64.deb "$tmp/x"
	cp "$tmp/x/usr/lib/systemd/boot/efi/systemd-bootaa64.efi" "$efi.tmp"
	mv "$efi.tmp" "$efi"
fi
echo "$efi"
