#!/usr/bin/env bash
# Proves that every option of kernel-config/'s fragments survives
# olddefconfig on Debian's linux-source-6.1: for each architecture, and
# for each board fragment on top of its architecture, runs
# `tools/build-kernel.sh --check-only` (unpack, defconfig, merge_config.sh,
# olddefconfig, compare). Configuration only, no compiling: about a minute
# the first time (unpacking the source), seconds after that.
#
# Its own output directories (target/kernel-check/), so a kernel built
# with tools/build-kernel.sh is left alone. The last line is
# "kernel-config: N passed, N failed"; the exit status is non-zero if any
# failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
passed=0
failed=0
for combo in "x86_64" "x86_64 pc_x86_64" "arm64" "arm64 raspberrypi4"; do
	read -r arch board <<<"$combo"
	name=$arch${board:+-$board}
	# shellcheck disable=SC2086 # $board is one word or none
	if "$root/tools/build-kernel.sh" --check-only --out "$root/target/kernel-check/$name" $arch $board; then
		passed=$((passed + 1))
	else
		echo "kernel-config: FAILED: $name" >&2
		failed=$((failed + 1))
	fi
done
echo "kernel-config: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
