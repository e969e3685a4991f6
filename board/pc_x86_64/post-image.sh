#!/usr/bin/env bash
# Post-image script of quilt_pc_x86_64_defconfig: puts GRUB's
# configuration and environment block and slot A's kernel on the EFI
# system partition (efi-part/), then lays out disk.img with genimage.cfg
# (board/README.md).
#
# Buildroot runs it from its top directory with BINARIES_DIR as $1 and
# BINARIES_DIR, BUILD_DIR and BR2_CONFIG in the environment.
set -euo pipefail

board_dir=$(cd "$(dirname "$0")" && pwd)
binaries=${1:-${BINARIES_DIR:?BINARIES_DIR not set}}
efi=${binaries}/efi-part

for f in "${efi}/EFI/BOOT/bootx64.efi" "${binaries}/bzImage" "${binaries}/rootfs.squashfs"; do
	if [ ! -e "${f}" ]; then
		echo "post-image: ${f} missing" >&2
		exit 1
	fi
done

cp "${board_dir}/grub.cfg" "${efi}/EFI/BOOT/grub.cfg"
rm -rf "${efi}/slot-a" "${efi}/slot-b"
mkdir -p "${efi}/slot-a"
cp "${binaries}/bzImage" "${efi}/slot-a/bzImage"

# GRUB's environment block: exactly 1024 bytes, '#'-padded. GRUB's
# save_env only rewrites an existing block in place (it cannot grow a
# file), so it must exist from the start.
env_block=$(printf '# GRUB Environment Block\nQUILT_ORDER=A B\nQUILT_A_OK=1\nQUILT_A_TRY=0\nQUILT_B_OK=0\nQUILT_B_TRY=0\n')
{
	printf '%s\n' "${env_block}"
	head -c $((1024 - ${#env_block} - 1)) /dev/zero | tr '\0' '#'
} > "${efi}/EFI/BOOT/grubenv"
if [ "$(stat -c %s "${efi}/EFI/BOOT/grubenv")" -ne 1024 ]; then
	echo "post-image: grubenv is not 1024 bytes" >&2
	exit 1
fi

support/scripts/genimage.sh -c "${board_dir}/genimage.cfg"
