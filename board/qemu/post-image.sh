#!/usr/bin/env bash
# Post-image script of quilt_qemu_x86_64_defconfig and
# quilt_qemu_aarch64_virt_defconfig: lays out disk.img with genimage from
# board/qemu_<arch>/genimage.cfg (bootstate, rootfs-a, rootfs-b, data:
# board/README.md), then writes start-qemu.sh next to the images.
# Buildroot's own board/qemu/post-image.sh only knows its own defconfigs.
#
# QEMU has no boot loader here: the kernel is passed with -kernel and boots
# slot A (QUILT_SLOT=b start-qemu.sh boots slot B by hand). The guest's
# serial console is on stdio; quilt-init powers the guest off, which ends
# QEMU.
#
# Buildroot runs it from its top directory with BINARIES_DIR as $1 and
# BINARIES_DIR, BUILD_DIR, HOST_DIR and BR2_CONFIG in the environment.
set -euo pipefail

board_root=$(cd "$(dirname "$0")/.." && pwd)
binaries=${1:-${BINARIES_DIR:?BINARIES_DIR not set}}

if grep -q '^BR2_aarch64=y$' "${BR2_CONFIG}"; then
	board=qemu_aarch64_virt
	# i6300esb sits on virt's PCI bus (aarch64.config builds its driver in).
	qemu='qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 2 -m 512M -device i6300esb'
	kernel=Image
	# virtio-mmio on virt, no PCI needed.
	disk='-drive file=disk.img,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0'
	console=ttyAMA0
else
	board=qemu_x86_64
	# i6300esb: an emulated hardware watchdog for quilt-init to feed.
	qemu='qemu-system-x86_64 -M pc -m 512M -device i6300esb'
	kernel=bzImage
	disk='-drive file=disk.img,if=virtio,format=raw'
	console=ttyS0
fi

for image in "${kernel}" rootfs.squashfs; do
	if [ ! -e "${binaries}/${image}" ]; then
		echo "post-image: ${binaries}/${image} missing" >&2
		exit 1
	fi
done

if [ "${board}" = qemu_aarch64_virt ]; then
	# genimage.cfg has an ESP for `quilt image disk`; Buildroot's image
	# boots with -kernel, so it stays empty here.
	mkdir -p "${binaries}/efi-part/EFI"
fi
support/scripts/genimage.sh -c "${board_root}/${board}/genimage.cfg"

cat > "${binaries}/start-qemu.sh" <<SCRIPT
#!/bin/sh
# Boots this Quilt image in QEMU (written by board/qemu/post-image.sh).
# QUILT_SLOT=a|b picks the root slot (default a). Extra arguments go to
# QEMU. The QEMU that Buildroot built comes first in PATH.
set -eu
cd "\$(dirname "\$0")"
PATH="${HOST_DIR}/bin:\${PATH}"
slot=\${QUILT_SLOT:-a}
exec ${qemu} -nographic -no-reboot \\
	-kernel ${kernel} ${disk} \\
	-append "root=PARTLABEL=rootfs-\${slot} rootfstype=squashfs ro rootwait console=${console}" "\$@"
SCRIPT
chmod 0755 "${binaries}/start-qemu.sh"
