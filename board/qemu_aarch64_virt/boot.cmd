# U-Boot boot script of the qemu-aarch64-virt image (quilt image disk
# compiles it to boot.scr on the ESP with mkimage). U-Boot's distro boot
# (u-boot-qemu's qemu_arm64) finds it on the bootable ESP and runs it
# before it would try EFI; AAVMF ignores it and runs systemd-boot.
#
# No boot counting on this path: it always starts slot A's kernel and
# stage 1, and quilt-init chooses the root slot from the boot state. It
# passes no quilt.slot=, so quilt-init leaves the systemd-boot entries alone.
setenv bootargs "console=ttyAMA0 quiet panic=-1"
load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} quilt/a/linux
load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} quilt/a/initrd
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
