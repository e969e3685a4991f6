#!/usr/bin/env bash
# Build PID 1 (quilt-init), or another binary meant to run inside the guest,
# as a static release binary and print its path.
#
# The explicit --target matters: with it, RUSTFLAGS apply only to target
# units, so +crt-static links the binary statically while proc-macros and
# build scripts still build as ordinary host code.
#
# x86_64 (default) uses the rustup toolchain on PATH. aarch64 uses Debian's
# rustc-web/cargo-web (/usr/bin/rustc, /usr/bin/cargo; the aarch64 std comes
# from libstd-rust-web-dev:arm64, because rustup here cannot download other
# targets) with aarch64-linux-gnu-gcc as the linker and the static glibc of
# libc6-dev-arm64-cross; `tools/setup.sh --arm64` installs them. That build
# has its own target dir (target/debian-rustc/) so the two compilers never
# invalidate each other's artifacts.
#
# Usage: tools/build-init.sh [--arch x86_64|aarch64 | --target TRIPLE]
#                            [-p PACKAGE [--bin BIN | --cdylib FILE]] [extra cargo args...]
#   default: --arch x86_64 -p quilt-init --bin quilt-init
#   --cdylib FILE: the package's shared library instead (e.g.
#   -p quilt-bus-ffi --cdylib libquiltbus.so), dynamically linked against
#   the target's glibc, for the Bun runtime layer.
# Cargo's output goes to stderr; the binary's absolute path is the only line
# on stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=x86_64-unknown-linux-gnu
cargo="${CARGO:-cargo}"
package=quilt-init
bin=
cdylib=
while (($# > 0)); do
	case "$1" in
	-p | --package)
		package="$2"
		shift 2
		;;
	--bin)
		bin="$2"
		shift 2
		;;
	--cdylib)
		cdylib="$2"
		shift 2
		;;
	--arch)
		target="$2-unknown-linux-gnu"
		shift 2
		;;
	--target)
		target="$2"
		shift 2
		;;
	*) break ;;
	esac
done
bin="${bin:-$package}"
# What to build: a static binary, or a shared library (no +crt-static).
if [[ -n "$cdylib" ]]; then
	what=(--lib)
	static=
else
	what=(--bin "$bin")
	static="-C target-feature=+crt-static"
fi
# PID 1 never installs anything itself: quilt-install (init/installer) does,
# and every image that carries quilt-init carries it beside it, so building
# one builds both (same target dir: it lands next to quilt-init). Two cargo
# runs, not one: built together, cargo would unify quilt-bundle's features
# and link its SHA3 and ed25519 code into PID 1 too. Nor does PID 1 touch
# the network: quilt-net (init/netup) brings interfaces up as a service,
# and is built beside it for the same reason.
builds=("-p $package ${what[*]}")
if [[ $package == quilt-init && $bin == quilt-init ]]; then
	builds+=("-p quilt-installer --bin quilt-install" "-p quilt-netup --bin quilt-net")
fi

cd "$repo_root"
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" == /* ]] || target_dir="$repo_root/$target_dir"
# Other RUSTFLAGS, other artifacts: keep them apart so neither build
# invalidates the other's.
[[ -z "$cdylib" ]] || target_dir="$target_dir/cdylib"

case "$target" in
x86_64-unknown-linux-gnu)
	for b in "${builds[@]}"; do
		# shellcheck disable=SC2086 # $b is "-p PACKAGE --bin BIN", split on purpose
		CARGO_TARGET_DIR="$target_dir" RUSTFLAGS="$static" \
			"$cargo" build --release $b --target "$target" "$@" >&2
	done
	;;
aarch64-unknown-linux-gnu)
	debian_cargo="${QUILT_DEBIAN_CARGO:-/usr/bin/cargo}"
	debian_rustc="${QUILT_DEBIAN_RUSTC:-/usr/bin/rustc}"
	linker=aarch64-linux-gnu-gcc
	for tool in "$debian_cargo" "$debian_rustc"; do
		[[ -x "$tool" ]] || {
			echo "build-init: $tool missing (Debian's cargo-web/rustc-web); run 'tools/setup.sh --arm64'" >&2
			exit 1
		}
	done
	command -v "$linker" >/dev/null || {
		echo "build-init: $linker missing (gcc-aarch64-linux-gnu); run 'tools/setup.sh --arm64'" >&2
		exit 1
	}
	target_dir="$target_dir/debian-rustc"
	# rustup's proxies and toolchain variables must not leak into the
	# Debian cargo (RUSTUP_TOOLCHAIN would make a `rustc` on PATH the rustup
	# one for build scripts); RUSTC pins the compiler explicitly.
	for b in "${builds[@]}"; do
		# shellcheck disable=SC2086 # $b is "-p PACKAGE --bin BIN", split on purpose
		env -u RUSTUP_TOOLCHAIN -u RUSTUP_HOME -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTC \
			RUSTC="$debian_rustc" RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR="$target_dir" \
			RUSTFLAGS="$static" \
			CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$linker" \
			"$debian_cargo" build --release $b --target "$target" "$@" >&2
	done
	;;
*)
	echo "build-init: unsupported target '$target' (x86_64-unknown-linux-gnu, aarch64-unknown-linux-gnu)" >&2
	exit 2
	;;
esac

out="$target_dir/$target/release/${cdylib:-$bin}"
[[ -f "$out" ]] || {
	echo "build-init: $out was not produced" >&2
	exit 1
}
echo "$out"
