#!/usr/bin/env bash
# Post-build script of every Quilt defconfig (BR2_ROOTFS_POST_BUILD_SCRIPT):
# finishes the root filesystem that becomes the read-only squashfs of a
# root slot (board/README.md).
#
# Buildroot runs it with the target directory as $1 and TARGET_DIR,
# BR2_CONFIG, BINARIES_DIR and BR2_EXTERNAL_QUILT_PATH in the environment.
#
# QUILT_BUN_LAYER (optional, from the environment of `make`): a Bun
# runtime layer directory (docs/bun-runtime.md) copied to
# /usr/lib/quilt/runtime/bun, where the boot config's `[bundles] runtime`
# expects it.
set -euo pipefail

target=${1:-${TARGET_DIR:?TARGET_DIR not set}}

# quilt-init must be PID 1: the "quilt" init choice installs it as
# /sbin/init, replacing BusyBox's link.
if [ ! -x "${target}/sbin/init" ] || [ -L "${target}/sbin/init" ]; then
	echo "post-build: ${target}/sbin/init is not quilt-init (select BR2_INIT_QUILT)" >&2
	exit 1
fi
if [ ! -f "${target}/etc/quilt/boot.bin" ]; then
	echo "post-build: ${target}/etc/quilt/boot.bin missing (quilt-init compiles it)" >&2
	exit 1
fi

# The overlay's developer notes (rootfs/README.md) stay out of the image.
rm -f "${target}/README.md"

# Mount points: the root slot is read-only squashfs, so every directory
# something is mounted on at run time must exist in the image.
#   /var/lib/quilt: the data partition (ext4, GPT name "data"): the
#                   bundle store (/var/lib/quilt/store) and the random seed.
#   /usr/lib/quilt/runtime/bun: the Bun runtime layer, the root of every
#                   tool container (filled below or by a later layer).
mkdir -p "${target}/var/lib/quilt" "${target}/usr/lib/quilt/runtime/bun"

# The trust store must be a directory, even if it holds no key yet (then
# every bundle is refused: docs/trust.md).
mkdir -p "${target}/etc/quilt/trust"

if [ -n "${QUILT_BUN_LAYER:-}" ]; then
	if [ ! -x "${QUILT_BUN_LAYER}/bin/bun" ]; then
		echo "post-build: QUILT_BUN_LAYER=${QUILT_BUN_LAYER} has no bin/bun" >&2
		exit 1
	fi
	rsync -a --delete "${QUILT_BUN_LAYER}/" "${target}/usr/lib/quilt/runtime/bun/"
fi
