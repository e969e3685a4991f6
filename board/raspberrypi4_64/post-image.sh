#!/usr/bin/env bash
# Post-image script of quilt_raspberrypi4_64_defconfig: gathers the boot
# partition's files in boot-part/ (firmware, config.txt and the device
# tree overlays at the top, shared by both slots; the kernel, device trees
# and cmdline.txt of slot A under slot-a/, which config.txt's os_prefix
# selects), then lays out sdcard.img with genimage.cfg (board/README.md).
#
# Buildroot runs it from its top directory with BINARIES_DIR as $1 and
# BINARIES_DIR, BUILD_DIR and BR2_CONFIG in the environment.
set -euo pipefail

board_dir=$(cd "$(dirname "$0")" && pwd)
binaries=${1:-${BINARIES_DIR:?BINARIES_DIR not set}}
fw=${binaries}/rpi-firmware
boot=${binaries}/boot-part

for f in "${fw}/start4.elf" "${fw}/fixup4.dat" "${fw}/config.txt" \
	"${fw}/cmdline.txt" "${fw}/overlays" "${binaries}/Image" "${binaries}/rootfs.squashfs"; do
	if [ ! -e "${f}" ]; then
		echo "post-image: ${f} missing" >&2
		exit 1
	fi
done
if ! grep -qx 'os_prefix=slot-a/' "${fw}/config.txt"; then
	echo "post-image: ${fw}/config.txt does not select slot-a/ (use ${board_dir}/config.txt)" >&2
	exit 1
fi

rm -rf "${boot}"
mkdir -p "${boot}/slot-a"
cp "${fw}/start4.elf" "${fw}/fixup4.dat" "${fw}/config.txt" "${boot}/"
cp "${binaries}/Image" "${fw}/cmdline.txt" "${boot}/slot-a/"
shopt -s nullglob
dtbs=("${binaries}"/*.dtb)
if [ ${#dtbs[@]} -eq 0 ]; then
	echo "post-image: no device tree (*.dtb) in ${binaries}" >&2
	exit 1
fi
cp "${dtbs[@]}" "${boot}/slot-a/"
# Overlays come from rpi-firmware, not from the kernel: shared by both
# slots at the top (they follow os_prefix only where
# slot-X/overlays/README exists, and none does).
cp -r "${fw}/overlays" "${boot}/"
rm -f "${boot}/overlays/README"

support/scripts/genimage.sh -c "${board_dir}/genimage.cfg"
