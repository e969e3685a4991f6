#!/usr/bin/env bash
# Download Debian's stock kernel and unpack what the QEMU boot tests need into
# .cache/kernel/<arch>/:
#   vmlinuz   the boot image as Debian ships it (bzImage on x86_64)
#   vmlinux   x86_64: the ELF kernel pulled out of vmlinuz; QEMU's microvm
#             boots it directly, which is the fastest and most reliable path
#   Image     aarch64: the raw arm64 Image (Debian's vmlinuz, gunzipped if
#             it is compressed), what `qemu-system-aarch64 -M virt -kernel`
#             boots
#   modules/  the lib/modules/<version> tree (kernel/**/*.ko) with the
#             modules.dep that depmod writes at install time
#   version   the kernel release string, e.g. 6.1.0-56-amd64
#
# Idempotent: a complete cache is left alone. Needs apt-get, dpkg-deb, depmod
# (kmod) and the decompressors installed by tools/setup.sh; no root needed.
#
# Usage: qemu/fetch-kernel.sh [x86_64|aarch64]
# aarch64 needs dpkg's arm64 architecture: run `tools/setup.sh --arm64` once.
set -euo pipefail

arch="${1:-x86_64}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$repo_root/.cache/kernel/$arch"

case "$arch" in
x86_64)
	debarch=amd64
	flavour=amd64
	;;
aarch64)
	debarch=arm64
	flavour=arm64
	if ! dpkg --print-foreign-architectures | grep -qx arm64 &&
		[[ "$(dpkg --print-architecture)" != arm64 ]]; then
		echo "fetch-kernel: dpkg has no arm64 architecture; run 'tools/setup.sh --arm64'" >&2
		exit 1
	fi
	;;
*)
	echo "fetch-kernel: unsupported arch '$arch' (supported: x86_64, aarch64)" >&2
	exit 2
	;;
esac

complete() {
	[[ -s "$out/version" && -s "$out/vmlinuz" && -s "$out/modules/modules.dep" ]] &&
		case "$arch" in
		x86_64) [[ -s "$out/vmlinux" ]] ;;
		aarch64) [[ -s "$out/Image" ]] ;;
		esac
}
complete && exit 0

# Test binaries run in parallel; one download at a time, the others wait.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
complete && exit 0

# The package that linux-image-<flavour> currently depends on, e.g.
# linux-image-6.1.0-56-amd64; we take its -unsigned twin (same kernel, no
# Secure Boot signature appended).
pick_package() {
	local dep
	dep="$(apt-cache depends "linux-image-$flavour:$debarch" 2>/dev/null |
		sed -n "s/^ *Depends: \(linux-image-[0-9][^ :]*-$flavour\)\(:$debarch\)\?\$/\1/p" |
		head -n1)"
	if [[ -n "$dep" ]] && apt-cache show "$dep-unsigned:$debarch" >/dev/null 2>&1; then
		echo "$dep-unsigned"
		return
	fi
	apt-cache search --names-only "^linux-image-[0-9.]+-[0-9]+-$flavour-unsigned\$" |
		cut -d' ' -f1 | sort -V | tail -n1
}

# Find each compressed-payload magic in a bzImage, decompress from there and
# keep the first result that is an ELF file (the logic of the kernel's
# scripts/extract-vmlinux).
extract_elf() {
	local img="$1" dst="$2" magic tool pos
	local -a tries=(
		'\037\213\010' 'gzip -dc'
		'\3757zXZ\000' 'xz -dc'
		'BZh' 'bzip2 -dc'
		'\135\000\000\000' 'xz -F lzma -dc'
		'\050\265\057\375' 'zstd -dc'
		'\002\041\114\030' 'lz4 -dc'
	)
	local i
	for ((i = 0; i < ${#tries[@]}; i += 2)); do
		magic="$(printf '%b' "${tries[i]}" | od -An -tx1 | tr -d ' \n')"
		tool="${tries[i + 1]}"
		# Byte offsets of the magic, found on the hex dump (two chars a byte).
		while read -r pos; do
			[[ -n "$pos" ]] || continue
			# shellcheck disable=SC2086 # $tool is a command with arguments
			tail -c "+$((pos + 1))" "$img" | $tool >"$dst.tmp" 2>/dev/null || true
			if [[ "$(head -c4 "$dst.tmp" | od -An -tx1 | tr -d ' \n')" == 7f454c46 ]]; then
				mv "$dst.tmp" "$dst"
				return 0
			fi
		done < <(od -An -v -tx1 "$img" | tr -d ' \n' |
			grep -ob "$magic" | cut -d: -f1 |
			awk '$1 % 2 == 0 { print $1 / 2 }' | head -n 8)
	done
	rm -f "$dst.tmp"
	echo "fetch-kernel: no compressed ELF payload found in $img" >&2
	return 1
}

pkg="$(pick_package)"
# Empty package lists (a fresh container, or apt's cache cleaned): refresh
# once when we may.
if [[ -z "$pkg" && "$(id -u)" -eq 0 ]]; then
	apt-get update -q >&2
	pkg="$(pick_package)"
fi
if [[ -z "$pkg" ]]; then
	echo "fetch-kernel: no linux-image-*-$flavour-unsigned package; run 'apt-get update' (tools/setup.sh)" >&2
	exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch-kernel: downloading $pkg ($debarch)" >&2
# As root apt warns that _apt cannot write to a mktemp dir; harmless.
(cd "$work" && apt-get download -q "$pkg:$debarch") >&2
dpkg-deb -x "$work"/*.deb "$work/root"

vmlinuz="$(find "$work/root/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)"
version="${vmlinuz##*/vmlinuz-}"
[[ -d "$work/root/lib/modules/$version" ]] || {
	echo "fetch-kernel: $pkg has no lib/modules/$version" >&2
	exit 1
}

# Debian makes modules.dep in the package's postinst; do what it would do.
depmod -b "$work/root" "$version"

stage="$out.tmp"
rm -rf "$stage"
mkdir -p "$stage"
cp "$vmlinuz" "$stage/vmlinuz"
mv "$work/root/lib/modules/$version" "$stage/modules"
case "$arch" in
x86_64) extract_elf "$stage/vmlinuz" "$stage/vmlinux" ;;
aarch64)
	# Either the raw Image (EFI-stub "MZ" header, "ARMd" magic at 0x38; what
	# bookworm ships) or that Image gzip'd.
	if [[ "$(head -c2 "$stage/vmlinuz" | od -An -tx1 | tr -d ' \n')" == 1f8b ]]; then
		gzip -dc "$stage/vmlinuz" >"$stage/Image"
	else
		ln "$stage/vmlinuz" "$stage/Image"
	fi
	[[ "$(tail -c "+57" "$stage/Image" | head -c4)" == ARMd ]] || {
		echo "fetch-kernel: $pkg's vmlinuz is not an arm64 Image" >&2
		exit 1
	}
	;;
esac
echo "$version" >"$stage/version"
rm -rf "$out"
mv "$stage" "$out"
echo "fetch-kernel: $out ($version)" >&2
