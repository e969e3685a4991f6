#!/usr/bin/env bash
# The main job: install prerequisites, build quilt-init and the quilt CLI,
# pack and sign the example Bun tools, assemble the image, boot it in QEMU,
# watch quilt-init run the tools in containers and power itself off.
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
step "host CLI, and the same CLI static for the board"
cargo build --release -q -p quilt
quilt="$root/target/release/quilt"
guest_quilt="$(tools/build-init.sh -p quilt --bin quilt)"
bun="$(tools/fetch-bun.sh x86_64)"
bus_lib="$(tools/build-init.sh -p quilt-bus-ffi --cdylib libquiltbus.so)"

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
for t in hello json-transform bun-apis bus-server bus-client; do
	"$quilt" bundle pack "examples/$t" --out "$out/bundles/$t.qb"
	"$quilt" bundle sign "$out/bundles/$t.qb" --key "$out/keys/demo.key"
done
step "image"
"$quilt" image initramfs --init "$init" --config "$config" \
	--rootfs "$root/rootfs" --rootfs "$root/qemu/demo-rootfs" \
	--modules "$kdir/modules" --busybox /bin/busybox --bun "$bun" --bus-lib "$bus_lib" \
	--trust "$out/trust" --bundle "$out/bundles/hello.qb" \
	--bundle "$out/bundles/json-transform.qb" --bundle "$out/bundles/bun-apis.qb" \
	--bundle "$out/bundles/bus-server.qb" --bundle "$out/bundles/bus-client.qb" \
	--add "$guest_quilt:/bin/quilt" --out "$out/initrd.cpio"

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
if [[ $status -eq 0 ]] && grep -q 'reboot: Power down' "$log"; then
	step "guest powered off cleanly (console log: ${log#"$root"/})"
	exit 0
fi
step "guest did not power off cleanly (qemu status $status); console log: $log"
exit 1
