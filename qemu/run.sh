#!/usr/bin/env bash
# The main job: install prerequisites, build quilt-init and the host CLI,
# assemble the image, boot it in QEMU and watch the demo power itself off.
#
# Usage: qemu/run.sh [--config FILE.toml] [--timeout S]
#   --config     boot config to use (default: qemu/demo.toml)
#   --timeout S  give up after S seconds (default 300)
# Exit status 0 only if the guest powered off cleanly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="$root/qemu/demo.toml"
timeout_s=300
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
	-h | --help)
		sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
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

step "prerequisites (tools/setup.sh)"
tools/setup.sh
step "kernel (qemu/fetch-kernel.sh)"
qemu/fetch-kernel.sh x86_64
kdir="$root/.cache/kernel/x86_64"
step "quilt-init, static (tools/build-init.sh)"
init="$(tools/build-init.sh)"
step "host CLI"
cargo build --release -q -p quilt
quilt="$root/target/release/quilt"

out="$root/target/qemu"
mkdir -p "$out"
step "image"
"$quilt" image initramfs --init "$init" --config "$config" \
	--rootfs "$root/rootfs" --rootfs "$root/qemu/demo-rootfs" \
	--modules "$kdir/modules" --busybox /bin/busybox --out "$out/initrd.cpio"

accel=tcg
if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -e /sys/module/kvm_pvm && -w /dev/kvm ]]; then
	accel=kvm
fi
khz="$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)"
step "boot (accel=$accel; the console follows)"
log="$out/console.log"
set +e
timeout "$timeout_s" qemu-system-x86_64 -M microvm -accel "$accel" -cpu max -m 512 \
	-no-user-config -display none -monitor none -nic none -no-reboot -serial stdio \
	-kernel "$kdir/vmlinux" -initrd "$out/initrd.cpio" \
	-append "console=ttyS0 quiet panic=-1 tsc_early_khz=$khz" </dev/null | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [[ $status -eq 0 ]] && grep -q 'reboot: Power down' "$log"; then
	step "guest powered off cleanly (console log: ${log#"$root"/})"
	exit 0
fi
step "guest did not power off cleanly (qemu status $status); console log: $log"
exit 1
