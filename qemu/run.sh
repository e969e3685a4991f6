#!/usr/bin/env bash
# The main job: install prerequisites, build quilt-init and the quilt CLI,
# pack and sign the example Bun tools, assemble the image, boot it in QEMU,
# watch quilt-init run the tools in containers and power itself off.
#
# Usage: qemu/run.sh [--config FILE.toml] [--timeout S] [--disk BOARD]
#   --config      boot config to use (default: qemu/demo.toml)
#   --timeout S   give up after S seconds (default 300)
#   --disk BOARD  build the board's flashable image instead (quilt image
#                 disk: ESP, root slots, boot state, data; docs/images.md)
#                 and boot it the way the board does: QEMU's UEFI firmware
#                 runs systemd-boot from the image (its menu shows on the
#                 console), which starts the kernel and quilt-init; no
#                 -kernel. BOARD: pc-x86_64 (OVMF) or qemu-aarch64-virt
#                 (AAVMF; cross-builds everything for arm64 first).
#                 The image is left in target/qemu/BOARD.img.
#   --u-boot      with --disk qemu-aarch64-virt: boot with U-Boot
#                 (u-boot-qemu's qemu_arm64, runs the image's boot.scr)
#                 instead of AAVMF.
# Exit status 0 only if the guest powered off cleanly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="$root/qemu/demo.toml"
timeout_s=300
board=
uboot=false
while (($# > 0)); do
	case "$1" in
	--config)
		config="$(realpath "$2")"
		shift 2
		;;
	--timeout)
		timeout_s="$2"
		shift 2
		;;
	--disk)
		board="$2"
		shift 2
		;;
	--u-boot)
		uboot=true
		shift
		;;
	-h | --help)
		sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
done
cd "$root"

step() { printf '\n==> %s\n' "$*" >&2; }

arch=x86_64
case "$board" in
"" | pc-x86_64) ;;
qemu-aarch64-virt) arch=aarch64 ;;
*)
	echo "run.sh: --disk $board: boots pc-x86_64 or qemu-aarch64-virt (raspberrypi4-64 needs a Pi)" >&2
	exit 2
	;;
esac

step "prerequisites (tools/setup.sh)"
if [[ $arch == aarch64 ]]; then
	tools/setup.sh --arm64
else
	tools/setup.sh
fi
step "kernel (qemu/fetch-kernel.sh)"
qemu/fetch-kernel.sh "$arch"
kdir="$root/.cache/kernel/$arch"
step "quilt-init, static (tools/build-init.sh)"
init="$(tools/build-init.sh --arch "$arch")"
step "host CLI, and the same CLI static for the board"
cargo build --release -q -p quilt
quilt="$root/target/release/quilt"
guest_quilt="$(tools/build-init.sh --arch "$arch" -p quilt --bin quilt)"
bun="$(tools/fetch-bun.sh "$arch")"
bus_lib="$(tools/build-init.sh --arch "$arch" -p quilt-bus-ffi --cdylib libquiltbus.so)"
busybox=/bin/busybox
sysroot=/
if [[ $arch == aarch64 ]]; then
	busybox="$(qemu/fetch-busybox.sh aarch64 | tail -n1)"
	sysroot="$(qemu/fetch-sysroot.sh aarch64 | tail -n1)"
fi

out="$root/target/qemu"
mkdir -p "$out/bundles" "$out/trust"
step "signed bundles of examples/ (a demo key made here, never committed)"
if [[ ! -f "$out/keys/demo.key" ]]; then
	mkdir -p "$out/keys"
	"$quilt" key gen --out "$out/keys/demo"
fi
cp "$out/keys/demo.pub" "$out/trust/demo.pub"
# The board's image policy wants two signatures; the demo signs with one.
printf 'root-threshold 1\ndefault 1\n' >"$out/trust/policy"
# SDK projects are built (bun install from their lockfile, bun build, the
# tools read into the manifest) by a Bun for this host; the plain tools
# (hello: the low-level protocol; the bus pair) are packed as they are.
host_bun="$(tools/fetch-bun.sh "$(uname -m)")"
for t in hello json-transform bun-apis bus-server bus-client; do
	if [[ -f examples/$t/package.json ]]; then
		"$quilt" build "examples/$t" --bun "$host_bun" --out "$out/bundles/$t.qb"
	else
		"$quilt" bundle pack "examples/$t" --out "$out/bundles/$t.qb"
	fi
	"$quilt" bundle sign "$out/bundles/$t.qb" --key "$out/keys/demo.key"
done
inputs=(--init "$init" --config "$config"
	--rootfs "$root/rootfs" --rootfs "$root/qemu/demo-rootfs"
	--modules "$kdir/modules" --busybox "$busybox" --bun "$bun" --bus-lib "$bus_lib"
	--sysroot "$sysroot" --trust "$out/trust" --bundle "$out/bundles/hello.qb"
	--bundle "$out/bundles/json-transform.qb" --bundle "$out/bundles/bun-apis.qb"
	--bundle "$out/bundles/bus-server.qb" --bundle "$out/bundles/bus-client.qb"
	--add "$guest_quilt:/bin/quilt")

finish() {
	local status=$1 log=$2
	if [[ $status -eq 0 ]] && grep -q 'reboot: Power down' "$log"; then
		step "guest powered off cleanly (console log: ${log#"$root"/})"
		exit 0
	fi
	step "guest did not power off cleanly (qemu status $status); console log: $log"
	exit 1
}

if [[ -n $board ]]; then
	step "flashable image for $board (quilt image disk)"
	image="$out/$board.img"
	"$quilt" image disk --board "$board" --kernel "$kdir/vmlinuz" \
		--bootloader "$(qemu/fetch-bootloader.sh "$arch")" "${inputs[@]}" --out "$image"
	log="$out/console.log"
	vars="$out/$board.efivars.fd"
	if [[ $arch == aarch64 ]] && "$uboot"; then
		qemu=(qemu-system-aarch64 -M virt -cpu cortex-a57 -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin)
	elif [[ $arch == aarch64 ]]; then
		cp /usr/share/AAVMF/AAVMF_VARS.fd "$vars"
		qemu=(qemu-system-aarch64 -M virt -cpu cortex-a57
			-drive "if=pflash,format=raw,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd"
			-drive "if=pflash,format=raw,file=$vars")
	else
		cp /usr/share/OVMF/OVMF_VARS_4M.fd "$vars"
		qemu=(qemu-system-x86_64 -M q35 -cpu max
			-drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
			-drive "if=pflash,format=raw,file=$vars")
	fi
	step "boot $board: firmware, boot loader, kernel, quilt-init (TCG; the console follows)"
	set +e
	timeout "$timeout_s" "${qemu[@]}" -accel tcg -m 1024 -no-user-config -nodefaults \
		-display none -monitor none -no-reboot -serial stdio \
		-drive "id=disk,file=$image,format=raw,if=none" -device virtio-blk-pci,drive=disk \
		</dev/null | tee "$log"
	status=${PIPESTATUS[0]}
	set -e
	finish "$status" "$log"
fi

step "image"
"$quilt" image initramfs "${inputs[@]}" --out "$out/initrd.cpio"

accel=tcg
if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -e /sys/module/kvm_pvm && -w /dev/kvm ]]; then
	accel=kvm
fi
khz="$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)"
step "boot (accel=$accel; the console follows)"
log="$out/console.log"
set +e
timeout "$timeout_s" qemu-system-x86_64 -M microvm -accel "$accel" -cpu max -m 1024 \
	-no-user-config -display none -monitor none -nic none -no-reboot -serial stdio \
	-kernel "$kdir/vmlinux" -initrd "$out/initrd.cpio" \
	-append "console=ttyS0 quiet panic=-1 tsc_early_khz=$khz" </dev/null | tee "$log"
status=${PIPESTATUS[0]}
set -e
finish "$status" "$log"
