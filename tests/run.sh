#!/usr/bin/env bash
# Every test: installs what it needs, then hygiene checks (rustfmt, clippy
# and a shell linter), unit and property tests, and the system tests that boot the
# real kernel in QEMU with quilt-init as PID 1. .ci/run calls this.
#
# Usage: tests/run.sh [cargo test args...]   e.g. tests/run.sh -p quilt-init
# The last line is "tests: N passed, N failed".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n==> %s\n' "$*" >&2; }

step "prerequisites"
# --arm64: the aarch64 cross toolchain and qemu-system-arm (tests/tests/aarch64.rs).
tools/setup.sh --arm64
qemu/fetch-kernel.sh x86_64
qemu/fetch-kernel.sh aarch64
# A kernel from Debian's linux-source-6.1 and kernel-config/ (tests/tests/kernel.rs
# boots it with no modules); make redoes only what changed (~25 min from scratch).
tools/build-kernel.sh x86_64 >/dev/null

step "format, lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
mapfile -t scripts < <(git ls-files '*.sh' '.ci/run' 'buildroot-external/**/*.sh' 'board/**/*.sh' | sort -u)
shellcheck "${scripts[@]}"

step "kernel config fragments survive olddefconfig; Buildroot tree (when BUILDROOT_SRC is set)"
tests/kernel-config.sh
tools/check-buildroot.sh --if-available

step "tests (unit, property, CLI, QEMU system tests)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo
awk '/^test result:/ {
	for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
} END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
