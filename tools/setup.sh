#!/usr/bin/env bash
# Install what building and booting Quilt under QEMU needs on a fresh Debian
# bookworm machine (CI, a new developer box). Idempotent: installs only what is
# missing, and runs `apt-get update` only then. Needs root (or sudo).
#
# Usage: tools/setup.sh [--arm64]
#   --arm64  also prepare aarch64 builds and boots: add dpkg's arm64
#            architecture (so qemu/fetch-kernel.sh and qemu/fetch-busybox.sh
#            can `apt-get download` the arm64 kernel and busybox), install
#            qemu-system-arm, and the cross toolchain tools/build-init.sh
#            --arch aarch64 uses: Debian's rustc-web/cargo-web with the
#            aarch64 std (libstd-rust-web-dev:arm64; rustup cannot download
#            other targets here), gcc-aarch64-linux-gnu as the linker and the
#            static glibc of libc6-dev-arm64-cross; AAVMF and U-Boot
#            (qemu-efi-aarch64, u-boot-qemu) for the arm64 disk images.
set -euo pipefail

arm64=false
for arg in "$@"; do
	case "$arg" in
	--arm64) arm64=true ;;
	*)
		echo "usage: $0 [--arm64]" >&2
		exit 2
		;;
	esac
done

# probe  Debian package
# A probe "pkg:NAME" asks dpkg whether NAME is installed, a path is checked
# with -e, a bare name with `command -v`.
required=(
	"qemu-system-x86_64 qemu-system-x86" # boots the tests' kernel (TCG/KVM)
	"cpio cpio"                          # tests check our cpio writer against it
	"file file"
	# The harness copies /bin/busybox into images, so it must be the static
	# build: Debian's plain `busybox` package has the same path, dynamic.
	"pkg:busybox-static busybox-static"
	"xz xz-utils"                 # decompress the kernel payload / .ko.xz modules
	"zstd zstd"
	"bzip2 bzip2"
	"depmod kmod"             # qemu/fetch-kernel.sh regenerates modules.dep
	"apt-get apt"             # qemu/fetch-kernel.sh uses `apt-get download`
	"dpkg-deb dpkg"
	"flock util-linux"
	"shellcheck shellcheck"   # lint for our scripts
	"mkfs.vfat dosfstools"    # tests/tests/usb.rs: the FAT stick image
	"mcopy mtools"            # ... and its files, without mounting it
	"mksquashfs squashfs-tools" # tests/tests/ab.rs: the root slot images
	"mkfs.ext4 e2fsprogs"     # ... the data partition and the update medium
	"sfdisk fdisk"            # ... the GPT of the board disk
	"veritysetup cryptsetup-bin" # tools/imagekit: checks its dm-verity trees against cryptsetup's
	# quilt image disk and tests/tests/disk.rs: boot the board images
	# through real firmware and a real boot loader.
	"/usr/lib/systemd/boot/efi/systemd-bootx64.efi systemd-boot-efi"
	"/usr/share/OVMF/OVMF_CODE_4M.fd ovmf"
	"curl curl" # init/quiltd/tests/gateway.rs: a real HTTP client against quiltd
	"promtool prometheus" # ... and `promtool check metrics` on its /metrics
)

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
	sudo_cmd=(sudo)
fi

if "$arm64"; then
	required+=(
		"qemu-system-aarch64 qemu-system-arm"
		# Paths, not names: rustup's rustc/cargo come first on PATH.
		"/usr/bin/rustc rustc-web"
		"/usr/bin/cargo cargo-web"
		"pkg:libstd-rust-web-dev:arm64 libstd-rust-web-dev:arm64"
		"aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu"
		"/usr/aarch64-linux-gnu/lib/libc.a libc6-dev-arm64-cross"
		# UEFI and U-Boot for the arm64 board images (qemu-aarch64-virt);
		# its systemd-boot comes from qemu/fetch-bootloader.sh aarch64.
		"/usr/share/AAVMF/AAVMF_CODE.fd qemu-efi-aarch64"
		"/usr/lib/u-boot/qemu_arm64/u-boot.bin u-boot-qemu"
		"mkimage u-boot-tools" # quilt image disk: boot.scr for U-Boot
	)
fi

need_update=false
if "$arm64" && ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "setup: adding dpkg architecture arm64" >&2
	"${sudo_cmd[@]}" dpkg --add-architecture arm64
	need_update=true
fi

missing=()
for entry in "${required[@]}"; do
	read -r probe pkg <<<"$entry"
	if [[ "$probe" == pkg:* ]]; then
		status="$(dpkg-query -W -f='${Status}' "${probe#pkg:}" 2>/dev/null || true)"
		[[ "$status" == "install ok installed" ]] && continue
	elif [[ "$probe" == /* ]]; then
		[[ -e "$probe" ]] && continue
	else
		command -v "$probe" >/dev/null 2>&1 && continue
	fi
	missing+=("$pkg")
done

if ((${#missing[@]} > 0)) || "$need_update"; then
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]}" apt-get update -q
fi
if ((${#missing[@]} > 0)); then
	echo "setup: installing ${missing[*]}" >&2
	"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "setup: system packages present" >&2
fi

# Rust target for the static PID 1 build (tools/build-init.sh).
if command -v rustup >/dev/null 2>&1; then
	if ! rustup target list --installed | grep -qx x86_64-unknown-linux-gnu; then
		rustup target add x86_64-unknown-linux-gnu
	fi
fi

# --- PyPI packages ------------------------------------------------------------
# openapi-spec-validator checks the OpenAPI document quiltd generates
# (init/quiltd/tests/gateway.rs), with the python3 on PATH.
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
	echo "setup: installing openapi-spec-validator from PyPI" >&2
	if ! python3 -m pip --version >/dev/null 2>&1; then
		export DEBIAN_FRONTEND=noninteractive
		"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends python3-pip
	fi
	python3 -m pip install -q openapi-spec-validator==0.9.0 ||
		python3 -m pip install -q --break-system-packages openapi-spec-validator==0.9.0
fi

# --- npm packages -------------------------------------------------------------
# Bun, the tools' runtime, from its npm package at the version pinned in
# tools/fetch-bun.sh, into .cache/bun/<arch>/ (not installed system-wide: the
# image's runtime layer and the host tests use exactly that binary).
if ! command -v npm >/dev/null 2>&1; then
	echo "setup: installing npm" >&2
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]}" apt-get update -q
	"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends npm
fi
bun="$("$(dirname "${BASH_SOURCE[0]}")/fetch-bun.sh" x86_64 | tail -n 1)"
if "$arm64"; then
	"$(dirname "${BASH_SOURCE[0]}")/fetch-bun.sh" aarch64 >/dev/null
fi
# The tool SDK's one dependency (its JSON Schema validator), from
# init/tool-sdk/bun.lock, for the runtime layer (`quilt image --tool-sdk`).
(cd "$(dirname "${BASH_SOURCE[0]}")/../init/tool-sdk" && "$bun" install --frozen-lockfile >/dev/null)
