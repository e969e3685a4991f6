#!/usr/bin/env bash
# Build PID 1 (quilt-init), or another binary meant to run inside the guest,
# as a static x86_64 release binary and print its path.
#
# The explicit --target matters: with it, RUSTFLAGS apply only to target
# units, so +crt-static links the binary statically while proc-macros and
# build scripts still build as ordinary host code.
#
# Usage: tools/build-init.sh [-p PACKAGE [--bin BIN]] [extra cargo args...]
#   default: -p quilt-init --bin quilt-init
# Cargo's output goes to stderr; the binary's absolute path is the only line
# on stdout.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target=x86_64-unknown-linux-gnu
cargo="${CARGO:-cargo}"
package=quilt-init
bin=
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
	*) break ;;
	esac
done
bin="${bin:-$package}"

cd "$repo_root"
RUSTFLAGS="-C target-feature=+crt-static" \
	"$cargo" build --release -p "$package" --bin "$bin" --target "$target" "$@" >&2

target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" == /* ]] || target_dir="$repo_root/$target_dir"
out="$target_dir/$target/release/$bin"
[[ -x "$out" ]] || {
	echo "build-init: $out was not produced" >&2
	exit 1
}
echo "$out"
