# Quilt's Buildroot packages build from the Cargo workspace at the root
# of this repository (one copy of init/ and tools/ for every board and
# architecture), not from a downloaded tarball.
QUILT_WS_DIR = $(BR2_EXTERNAL_QUILT_PATH)/..

# What the local (rsync) copy of the workspace leaves out: build outputs
# and caches that can be gigabytes, and an O= directory inside the repo.
QUILT_WS_RSYNC_EXCLUSIONS = \
	--exclude=/target \
	--exclude=/.cache \
	--exclude=/fuzz \
	--exclude=/output \
	--exclude=/buildroot-external \
	--exclude=/kernel-config \
	--exclude=/board

# Vendoring. A local site never goes through Buildroot's download step,
# so the cargo download post-process (which vendors crates into the
# package tarball) does not run for these packages, and cargo-package
# builds with --offline. Instead the crates of Cargo.lock are vendored
# once into DL_DIR, in a directory named after the lock file's hash, and
# every cargo invocation is pointed at it. Only that first vendoring
# needs the network (or a warm $(BR_CARGO_HOME)); later builds, clean or
# not, and builds on a machine given a copy of DL_DIR are offline.
# Override QUILT_WS_VENDOR_DIR to use a directory made elsewhere with
# `cargo vendor --locked`.
QUILT_WS_VENDOR_ID = $(shell sha256sum $(QUILT_WS_DIR)/Cargo.lock | cut -c1-16)
QUILT_WS_VENDOR_DIR ?= $(DL_DIR)/quilt-ws-vendor/$(QUILT_WS_VENDOR_ID)

QUILT_WS_CARGO_VENDOR_OPTS = \
	--config 'source.crates-io.replace-with="quilt-ws-vendored"' \
	--config 'source.quilt-ws-vendored.directory="$(QUILT_WS_VENDOR_DIR)"'

# Runs after host-rustc is built (pre-configure hook, and the
# quilt-ws-vendor target that `make source` reaches). cargo vendor reads
# the workspace in place and writes only QUILT_WS_VENDOR_DIR.
define QUILT_WS_CARGO_VENDOR
	$(Q)if [ ! -e $(QUILT_WS_VENDOR_DIR)/.quilt-ws-vendored ]; then \
		mkdir -p $(BR_CARGO_HOME) $(QUILT_WS_VENDOR_DIR) && \
		$(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --locked --manifest-path $(QUILT_WS_DIR)/Cargo.toml \
			$(QUILT_WS_VENDOR_DIR) > /dev/null && \
		touch $(QUILT_WS_VENDOR_DIR)/.quilt-ws-vendored; \
	fi
endef

.PHONY: quilt-ws-vendor
quilt-ws-vendor: host-rustc
	$(QUILT_WS_CARGO_VENDOR)

include $(sort $(wildcard $(BR2_EXTERNAL_QUILT_PATH)/package/*/*.mk))
