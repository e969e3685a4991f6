#!/usr/bin/env bash
# Checks buildroot-external/ and board/ against a Buildroot source tree
# kept outside this repository (this script never downloads one):
#
#   tools/check-buildroot.sh [--if-available] [BUILDROOT_SRC]
#
# BUILDROOT_SRC (the argument, or the environment variable) is a Buildroot
# checkout or unpacked release, 2026.08 or later. The checks:
#
#   1. utils/check-package -b on every file of buildroot-external/ and
#      board/ (it runs shellcheck on the shell scripts, flake8 on Python);
#   2. for each configs/*_defconfig: `make BR2_EXTERNAL=... O=... NAME`,
#      then support/scripts/check-dotconfig.py .config defconfig (every
#      line of the defconfig survived: nothing dropped by an unmet
#      dependency, e.g. a toolchain that hides the Rust packages);
#   3. each board's post-image script with genimage, on stand-in inputs
#      (a small squashfs, dummy kernel and firmware files): the layout
#      must build and its GPT names must be bootstate, rootfs-a,
#      rootfs-b, data as partitions 1-4 (2-5 on the Raspberry Pi, whose
#      boot partition comes first; board/README.md).
#
# Any finding makes the exit status non-zero. --if-available: exit 0 with
# a SKIPPED line when no Buildroot tree is given (CI has none). Host tools
# (python3-magic, flake8, shellcheck, rsync, genimage, mtools, dosfstools,
# squashfs-tools, fdisk, grub-common) are installed with apt-get when
# missing and root. grub-script-check also checks board/*/grub.cfg.
# Output directories go to a temporary directory, removed at the end
# (QUILT_KEEP=1 keeps it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
if_available=false
if [ "${1:-}" = --if-available ]; then
	if_available=true
	shift
fi
br=${1:-${BUILDROOT_SRC:-}}

if [ -z "$br" ]; then
	if $if_available; then
		echo "check-buildroot: SKIPPED: no Buildroot source (pass a directory or set BUILDROOT_SRC)"
		exit 0
	fi
	echo "check-buildroot: no Buildroot source: pass its directory or set BUILDROOT_SRC" >&2
	exit 2
fi
br=$(cd "$br" && pwd)
if [ ! -x "$br/utils/check-package" ] || [ ! -f "$br/support/scripts/check-dotconfig.py" ]; then
	echo "check-buildroot: $br is not a Buildroot source tree" >&2
	exit 2
fi
case $br/ in
"$repo"/*) echo "check-buildroot: keep the Buildroot tree outside this repository ($br)" >&2; exit 2 ;;
esac
version=$(sed -n 's/^export BR2_VERSION := //p' "$br/Makefile")
commit=$(git -C "$br" rev-parse --short=12 HEAD 2>/dev/null || echo "not a git checkout")
echo "check-buildroot: Buildroot $version ($commit) at $br"

# Host tools, installed when missing. Debian's python3 and tools come
# before any virtualenv's, which would lack python-magic.
export PATH=/usr/bin:/usr/sbin:$PATH
need=()
python3 -c 'import magic' 2>/dev/null || need+=(python3-magic)
for t in flake8:flake8 shellcheck:shellcheck rsync:rsync genimage:genimage mcopy:mtools \
	mkfs.vfat:dosfstools mksquashfs:squashfs-tools sfdisk:fdisk mke2fs:e2fsprogs \
	grub-script-check:grub-common; do
	command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "check-buildroot: missing ${need[*]}: apt-get install ${need[*]}" >&2
		exit 2
	fi
	echo "check-buildroot: installing ${need[*]}" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

work=$(mktemp -d /tmp/check-buildroot.XXXXXX)
if [ "${QUILT_KEEP:-}" = 1 ]; then
	echo "check-buildroot: keeping $work"
else
	trap 'rm -rf "$work"' EXIT
fi
findings=0
finding() {
	echo "check-buildroot: FINDING: $*" >&2
	findings=$((findings + 1))
}

# 1. check-package.
mapfile -t files < <(cd "$repo" && find buildroot-external board -type f | sort)
if (cd "$repo" && "$br/utils/check-package" -b "${files[@]}"); then
	echo "check-buildroot: check-package -b: ${#files[@]} files, 0 warnings"
else
	finding "check-package -b reported warnings (above)"
fi

# 2. Every defconfig, through make and check-dotconfig.py.
for defconfig in "$repo"/buildroot-external/configs/*_defconfig; do
	name=$(basename "$defconfig")
	out=$work/${name%_defconfig}
	if ! make -s -C "$br" BR2_EXTERNAL="$repo/buildroot-external" O="$out" "$name" >"$out.log" 2>&1; then
		cat "$out.log" >&2
		finding "make $name failed"
		continue
	fi
	if "$br/support/scripts/check-dotconfig.py" "$out/.config" "$defconfig"; then
		echo "check-buildroot: $name: make and check-dotconfig.py clean"
	else
		finding "$name: lines of the defconfig are missing from .config (above)"
	fi
done

# 3. The board layouts, through the real post-image scripts and
# Buildroot's support/scripts/genimage.sh, on stand-in inputs.
expect_names() { # BOARD IMAGE NAME... : the GPT partition names, in order
	local board=$1 img=$2 got
	shift 2
	got=$(sfdisk -J "$img" | python3 -c '
import json, sys
print(" ".join(p.get("name", "?") for p in json.load(sys.stdin)["partitiontable"]["partitions"]))')
	if [ "$got" != "$*" ]; then
		finding "$board: partitions of $(basename "$img") are '$got', expected '$*'"
		return
	fi
	echo "check-buildroot: $board: $(basename "$img"): $got"
}
mkdir -p "$work/rootfs/sbin"
echo stand-in > "$work/rootfs/sbin/init"
for board in qemu_x86_64 qemu_aarch64_virt raspberrypi4_64 pc_x86_64; do
	b=$work/layout-$board
	bin=$b/images
	mkdir -p "$bin" "$b/build"
	mksquashfs "$work/rootfs" "$bin/rootfs.squashfs" -quiet -noappend >/dev/null
	case $board in
	*aarch64*|raspberrypi*) echo 'BR2_aarch64=y' > "$b/.config" ;;
	*) echo 'BR2_x86_64=y' > "$b/.config" ;;
	esac
	case $board in
	qemu_*)
		script=$repo/board/qemu/post-image.sh
		echo kernel > "$bin/bzImage"
		echo kernel > "$bin/Image"
		images=("disk.img:bootstate rootfs-a rootfs-b data")
		# The arm64 layout has the ESP quilt image disk fills (docs/images.md).
		if [[ $board == qemu_aarch64_virt ]]; then
			images=("disk.img:bootstate rootfs-a rootfs-b data esp")
		fi
		;;
	raspberrypi4_64)
		script=$repo/board/$board/post-image.sh
		echo kernel > "$bin/Image"
		echo dtb > "$bin/bcm2711-rpi-4-b.dtb"
		mkdir -p "$bin/rpi-firmware/overlays"
		echo fw > "$bin/rpi-firmware/start4.elf"
		echo fw > "$bin/rpi-firmware/fixup4.dat"
		echo dtbo > "$bin/rpi-firmware/overlays/miniuart-bt.dtbo"
		cp "$repo/board/$board/config.txt" "$repo/board/$board/cmdline.txt" "$bin/rpi-firmware/"
		images=("sdcard.img:boot bootstate rootfs-a rootfs-b data") ;;
	pc_x86_64)
		script=$repo/board/$board/post-image.sh
		echo kernel > "$bin/bzImage"
		mkdir -p "$bin/efi-part/EFI/BOOT"
		echo grub > "$bin/efi-part/EFI/BOOT/bootx64.efi"
		images=("disk.img:bootstate rootfs-a rootfs-b data esp") ;;
	esac
	if ! (cd "$br" && BINARIES_DIR="$bin" BUILD_DIR="$b/build" BR2_CONFIG="$b/.config" \
		HOST_DIR="$b/host" TARGET_DIR="$work/rootfs" "$script" "$bin") >"$b.log" 2>&1; then
		cat "$b.log" >&2
		finding "$board: post-image script failed"
		continue
	fi
	for spec in "${images[@]}"; do
		# shellcheck disable=SC2086 # the names are words
		expect_names "$board" "$bin/${spec%%:*}" ${spec#*:}
	done
done

for cfg in "$repo"/board/*/grub.cfg; do
	if grub-script-check "$cfg"; then
		echo "check-buildroot: ${cfg#"$repo"/}: grub-script-check clean"
	else
		finding "${cfg#"$repo"/}: grub-script-check failed"
	fi
done

if [ "$findings" -gt 0 ]; then
	echo "check-buildroot: $findings finding(s) against Buildroot $version" >&2
	exit 1
fi
echo "check-buildroot: clean against Buildroot $version ($commit)"
