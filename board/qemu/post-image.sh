#!/bin/sh
# Post-image script of quilt_qemu_x86_64_defconfig and
# quilt_qemu_aarch64_virt_defconfig: writes start-qemu.sh next to the
# images. Buildroot's own board/qemu/post-image.sh only knows its own
# defconfig names. The guest's serial console is on stdio; quilt-init
# powers the guest off, which ends QEMU.
#
# Buildroot runs it with BINARIES_DIR, HOST_DIR and BR2_CONFIG set.
set -eu

if grep -q '^BR2_aarch64=y$' "${BR2_CONFIG}"; then
	qemu='qemu-system-aarch64 -M virt -cpu cortex-a57 -smp 2 -m 512M'
	kernel=Image
	rootfs=rootfs.ext4
	disk='-drive file=rootfs.ext4,if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0'
	console=ttyAMA0
else
	# i6300esb: an emulated hardware watchdog for quilt-init to feed.
	qemu='qemu-system-x86_64 -M pc -m 512M -device i6300esb'
	kernel=bzImage
	rootfs=rootfs.ext2
	disk='-drive file=rootfs.ext2,if=virtio,format=raw'
	console=ttyS0
fi

for image in "${kernel}" "${rootfs}"; do
	if [ ! -e "${BINARIES_DIR}/${image}" ]; then
		echo "post-image: ${BINARIES_DIR}/${image} missing" >&2
		exit 1
	fi
done

cat > "${BINARIES_DIR}/start-qemu.sh" <<SCRIPT
#!/bin/sh
# Boots this Quilt image in QEMU (written by board/qemu/post-image.sh).
# Extra arguments go to QEMU. The QEMU that Buildroot built comes first.
set -eu
cd "\$(dirname "\$0")"
PATH="${HOST_DIR}/bin:\${PATH}"
exec ${qemu} -nographic -no-reboot \\
	-kernel ${kernel} ${disk} \\
	-append "rootwait root=/dev/vda ro console=${console}" "\$@"
SCRIPT
chmod 0755 "${BINARIES_DIR}/start-qemu.sh"
