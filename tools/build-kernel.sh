#!/usr/bin/env bash
# Builds a Quilt kernel from Debian's linux-source-6.1 with the fragments of
# kernel-config/, or (--check-only) only proves that every option of the
# fragments survives olddefconfig.
#
#   tools/build-kernel.sh [--check-only] [--out DIR] [--src DIR] [--jobs N] ARCH [BOARD]
#
# ARCH is x86_64 or arm64 (aarch64 is taken as arm64). BOARD names an extra
# fragment, kernel-config/BOARD.config (pc_x86_64, raspberrypi4).
#
# Steps: unpack /usr/src/linux-source-6.1.tar.xz (installed with apt-get
# if missing) into --src (default .cache/kernel-src, unpacked once and
# shared by every ARCH); `make defconfig` (x86_64_defconfig, or arm64's
# defconfig) in an out-of-tree build directory, DIR/build; merge
# kernel-config/common.config, ARCH's fragment and BOARD's with
# scripts/kconfig/merge_config.sh; olddefconfig; then check every CONFIG_
# line of the fragments against the resulting .config: a value that
# changed or vanished (an unmet dependency, a misspelt name) is an error
# naming the option and its fragment. Without --check-only it then builds
# what QEMU boots: x86_64 `vmlinux` (an ELF with the PVH entry point, for
# -M microvm -kernel), arm64 `Image`, copied to DIR with the .config. No
# modules are built or needed.
#
# --out defaults to target/kernel/ARCH[-BOARD]. arm64 configuration needs
# no cross compiler (one is used if aarch64-linux-gnu-gcc is installed);
# building arm64 does.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
tarball=/usr/src/linux-source-6.1.tar.xz
srcdir=$repo/.cache/kernel-src
out=
jobs=$(nproc)
check_only=false

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
	exit "${1:-0}"
}

die() {
	echo "build-kernel: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	--check-only) check_only=true ;;
	--out) out=${2:?--out needs a directory}; shift ;;
	--src) srcdir=${2:?--src needs a directory}; shift ;;
	--jobs|-j) jobs=${2:?--jobs needs a number}; shift ;;
	-h|--help) usage 0 ;;
	-*) echo "build-kernel: unknown option $1" >&2; usage 2 >&2 ;;
	*) break ;;
	esac
	shift
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage 2 >&2; fi

arch=$1
board=${2:-}
case $arch in
x86_64|amd64) arch=x86_64 karch=x86_64 defconfig=x86_64_defconfig
	frag_arch=x86_64 target=vmlinux cross= ;;
arm64|aarch64) arch=arm64 karch=arm64 defconfig=defconfig
	frag_arch=aarch64 target=Image cross=aarch64-linux-gnu- ;;
*) die "unknown ARCH '$arch' (x86_64 or arm64)" ;;
esac

fragments=("$repo/kernel-config/common.config" "$repo/kernel-config/$frag_arch.config")
if [ -n "$board" ]; then
	[ -f "$repo/kernel-config/$board.config" ] ||
		die "no fragment kernel-config/$board.config for board '$board'"
	fragments+=("$repo/kernel-config/$board.config")
fi
out=${out:-$repo/target/kernel/$arch${board:+-$board}}

# Prerequisites: the source package and what kconfig and a build need.
# Installed only when missing (the project's machines run as root).
need=()
[ -f "$tarball" ] || need+=(linux-source-6.1)
for tool in make gcc flex bison bc xz; do
	command -v "$tool" >/dev/null || need+=("$tool")
done
if ! $check_only; then
	[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
	[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
	# Package names for the tools that are not packages of their own.
	pkgs=()
	for p in "${need[@]}"; do
		case $p in
		gcc|make) pkgs+=(build-essential) ;;
		xz) pkgs+=(xz-utils) ;;
		*) pkgs+=("$p") ;;
		esac
	done
	[ "$(id -u)" = 0 ] || die "missing ${pkgs[*]}: run apt-get install ${pkgs[*]} as root"
	echo "build-kernel: installing ${pkgs[*]}" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
fi

# Unpack once; the stamp records which tarball the tree came from, so a
# new linux-source-6.1 upload is unpacked afresh.
src=$srcdir/linux-source-6.1
stamp="$(stat -c '%s %Y' "$tarball") $tarball"
if [ "$(cat "$srcdir/.unpacked" 2>/dev/null || true)" != "$stamp" ]; then
	echo "build-kernel: unpacking $tarball into $srcdir" >&2
	rm -rf "$srcdir"
	mkdir -p "$srcdir"
	tar -xJf "$tarball" -C "$srcdir"
	[ -f "$src/Makefile" ] || die "$tarball did not unpack to $src"
	echo "$stamp" > "$srcdir/.unpacked"
fi

build=$out/build
mkdir -p "$build"
kmake=(make -C "$src" O="$build" ARCH="$karch" -s)
if [ -n "$cross" ]; then
	if command -v "${cross}gcc" >/dev/null; then
		kmake+=(CROSS_COMPILE="$cross")
	elif ! $check_only; then
		die "building $arch needs ${cross}gcc: apt-get install gcc-aarch64-linux-gnu"
	fi
	# Without a cross compiler, kconfig probes the host gcc: options that
	# test compiler flags may differ, none of the fragments' do.
fi

"${kmake[@]}" "$defconfig"
(cd "$build" && "$src/scripts/kconfig/merge_config.sh" -m -O "$build" "$build/.config" "${fragments[@]}" >/dev/null)
"${kmake[@]}" olddefconfig

# Every CONFIG_ line of the fragments, last fragment winning, must be in
# the final .config exactly: "CONFIG_X=v" as it is, "# CONFIG_X is not
# set" as unset.
failures=$(awk '
	FILENAME == ARGV[1] {
		if ($0 ~ /^CONFIG_[A-Za-z0-9_]+=/) { s = $0; sub(/=.*/, "", s); have[s] = $0 }
		next
	}
	/^CONFIG_[A-Za-z0-9_]+=/ { s = $0; sub(/=.*/, "", s); want[s] = $0; from[s] = FILENAME; if (!(s in seen)) { seen[s] = 1; order[++n] = s } }
	/^# CONFIG_[A-Za-z0-9_]+ is not set$/ { s = $2; want[s] = $0; from[s] = FILENAME; if (!(s in seen)) { seen[s] = 1; order[++n] = s } }
	END {
		for (i = 1; i <= n; i++) {
			s = order[i]; w = want[s]; f = from[s]; sub(/.*\//, "", f)
			got = (s in have) ? have[s] : "# " s " is not set"
			if (w ~ /is not set$/) { if (s in have && have[s] !~ /=n$/) printf "%s: %s wanted unset, got %s\n", f, s, have[s] }
			else if (got != w) printf "%s: %s wanted, got %s\n", f, w, got
		}
	}
' "$build/.config" "${fragments[@]}")
if [ -n "$failures" ]; then
	echo "build-kernel: $arch${board:+ $board}: options of the fragments did not survive olddefconfig" >&2
	echo "(a missing dependency, a misspelt name, or an option this kernel lacks):" >&2
	printf '%s\n' "$failures" | sed 's/^/  /' >&2
	exit 1
fi
count=$(grep -hcE '^(CONFIG_|# CONFIG_.* is not set$)' "${fragments[@]}" | paste -sd+ | bc)
echo "build-kernel: $arch${board:+ $board}: all $count option lines of ${#fragments[@]} fragments kept ($build/.config)"
cp "$build/.config" "$out/config"

$check_only && exit 0

start=$(date +%s)
"${kmake[@]}" -j"$jobs" "$target"
case $target in
vmlinux) cp "$build/vmlinux" "$out/vmlinux"; image=$out/vmlinux ;;
Image) cp "$build/arch/arm64/boot/Image" "$out/Image"; image=$out/Image ;;
esac
echo "build-kernel: built $image in $(($(date +%s) - start)) s" >&2
echo "$image"
