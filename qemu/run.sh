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
#   --serve PORT  boot a board that serves the gateway (quiltd: HTTPS API
#                 and MCP, docs/gateway.md; config qemu/serve.toml) on
#                 127.0.0.1:PORT, with a demo client key authorized as
#                 operator (made here in target/qemu/keys, never
#                 committed). Prints one line
#                   ready: url=https://127.0.0.1:PORT board-key=FP client-key=PATH
#                 once the gateway answers, then stays up (console in
#                 target/qemu/console.log) until interrupted (^C), and then
#                 powers the board off in order. Then, e.g.:
#                   quilt mcp --board URL --key PATH --board-key FP
# Exit status 0 only if the guest powered off cleanly.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config="$root/qemu/demo.toml"
timeout_s=300
board=
uboot=false
serve=
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
	--serve)
		serve="$2"
		if [[ ! $serve =~ ^[0-9]+$ ]] || ((serve < 1 || serve > 65535)); then
			echo "run.sh: --serve takes a TCP port (1-65535), not ${serve@Q}" >&2
			exit 2
		fi
		[[ $config == "$root/qemu/demo.toml" ]] && config="$root/qemu/serve.toml"
		shift 2
		;;
	-h | --help)
		sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "run.sh: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
done
cd "$root"
if [[ -n $serve && -n $board ]]; then
	echo "run.sh: --serve boots the initramfs board; it does not combine with --disk yet" >&2
	exit 2
fi

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
for t in hello json-transform text-tools bun-apis bus-server bus-client; do
	if [[ -f examples/$t/package.json ]]; then
		"$quilt" build "examples/$t" --bun "$host_bun" --out "$out/bundles/$t.qb"
	else
		"$quilt" bundle pack "examples/$t" --out "$out/bundles/$t.qb"
	fi
	"$quilt" bundle sign "$out/bundles/$t.qb" --key "$out/keys/demo.key"
done
# The gateway's demo client: an operator key made here (never committed),
# listed in the trust dir's authorized-clients for --serve only.
rm -f "$out/trust/authorized-clients"
if [[ -n $serve ]]; then
	step "gateway: quiltd for the board, a demo operator key"
	quiltd="$(tools/build-init.sh --arch "$arch" -p quiltd --bin quiltd)"
	client_key="$out/keys/operator.key"
	if [[ ! -f $client_key ]]; then
		"$quilt" key gen --client --out "$out/keys/operator" >/dev/null
	fi
	printf 'operator demo %s\n' "$(cat "$out/keys/operator.pub")" >"$out/trust/authorized-clients"
fi
inputs=(--init "$init" --config "$config"
	--rootfs "$root/rootfs" --rootfs "$root/qemu/demo-rootfs"
	--modules "$kdir/modules" --busybox "$busybox" --bun "$bun" --bus-lib "$bus_lib"
	--sysroot "$sysroot" --trust "$out/trust" --bundle "$out/bundles/hello.qb"
	--bundle "$out/bundles/json-transform.qb" --bundle "$out/bundles/text-tools.qb"
	--bundle "$out/bundles/bun-apis.qb"
	--bundle "$out/bundles/bus-server.qb" --bundle "$out/bundles/bus-client.qb"
	--add "$guest_quilt:/bin/quilt")
[[ -n $serve ]] && inputs+=(--add "$quiltd:/usr/bin/quiltd")

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

# --serve's ^C (a trap): ask the board for an orderly power-off, once.
stopping=false
# shellcheck disable=SC2317 # called by the trap in serve_board
power_off() {
	"$stopping" && return
	stopping=true
	step "powering the board off"
	echo poweroff >"$out/power.in"
}

# --serve: boot in the background with the gateway's port forwarded, say
# `ready:` once it answers a signed request, power off in order on ^C.
serve_board() {
	local log="$out/console.log" power="$out/power" url="https://127.0.0.1:$serve"
	if (exec 3<>"/dev/tcp/127.0.0.1/$serve") 2>/dev/null; then
		step "127.0.0.1:$serve is in use on this machine; pick another --serve port"
		exit 1
	fi
	# A fresh log: the key is read from this boot's line, not a stale one.
	rm -f "$power.in" "$power.out" "$log"
	mkfifo "$power.in" "$power.out"
	step "boot the board (accel=$accel; console in ${log#"$root"/}); ^C powers it off"
	# Its own session: ^C goes to this script, which powers the board off
	# in order, not to QEMU, which would just stop.
	setsid qemu-system-x86_64 -M microvm -accel "$accel" -cpu max -m 1024 \
		-no-user-config -display none -monitor none -no-reboot \
		-serial "file:$log" \
		-chardev "pipe,id=power,path=$power" -device isa-serial,chardev=power,iobase=0x2f8,irq=3 \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$serve-:8443" -device virtio-net-device,netdev=n0 \
		-kernel "$kdir/vmlinux" -initrd "$out/initrd.cpio" \
		-append "console=ttyS0 quiet panic=-1 tsc_early_khz=$khz" </dev/null &
	local qemu_pid=$!
	# What the guest echoes on its power line goes nowhere.
	cat "$power.out" >/dev/null &
	local fp="" deadline=$((SECONDS + timeout_s))
	while [[ -z $fp ]]; do
		if ! kill -0 "$qemu_pid" 2>/dev/null; then
			step "QEMU exited before quiltd listened; console log: $log"
			exit 1
		fi
		if ((SECONDS > deadline)); then
			step "quiltd did not start within ${timeout_s}s; console log: $log"
			kill "$qemu_pid"
			exit 1
		fi
		fp="$(grep -ao 'event=listening .*board-key=SHA256:[A-Za-z0-9+/=]*' "$log" 2>/dev/null |
			tail -n1 | sed 's/.*board-key=//')" || true
		sleep 1
	done
	until "$quilt" call --board "$url" --key "$client_key" --board-key "$fp" GET /v1/bundles >/dev/null 2>&1; do
		if ((SECONDS > deadline)) || ! kill -0 "$qemu_pid" 2>/dev/null; then
			step "the gateway did not answer at $url; console log: $log"
			kill "$qemu_pid" 2>/dev/null || true
			exit 1
		fi
		sleep 1
	done
	echo "ready: url=$url board-key=$fp client-key=$client_key"
	trap power_off INT TERM
	# A trapped signal interrupts `wait` (status 128+N): wait again, for
	# QEMU's own status.
	local status=0
	while kill -0 "$qemu_pid" 2>/dev/null; do
		status=0
		wait "$qemu_pid" || status=$?
	done
	trap - INT TERM
	"$stopping" || status=1
	finish "$status" "$log"
}

step "image"
"$quilt" image initramfs "${inputs[@]}" --out "$out/initrd.cpio"

accel=tcg
if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -e /sys/module/kvm_pvm && -w /dev/kvm ]]; then
	accel=kvm
fi
khz="$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)"

if [[ -n $serve ]]; then
	serve_board
fi
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
