################################################################################
#
# quilt-init
#
################################################################################

# Built from this repository's own init/ sources (the same ones the QEMU
# test images use), for every board and architecture.
QUILT_INIT_VERSION = 0.1.0
QUILT_INIT_SITE = $(BR2_EXTERNAL_QUILT_PATH)/..
QUILT_INIT_SITE_METHOD = local
QUILT_INIT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(QUILT_WS_RSYNC_EXCLUSIONS)
QUILT_INIT_LICENSE = Apache-2.0 or MIT
QUILT_INIT_SUBDIR = init/quilt-init
# host-quilt compiles the boot config; busybox (if any) goes first, so
# that its /sbin/init link is replaced rather than written through.
QUILT_INIT_DEPENDENCIES = host-quilt $(if $(BR2_PACKAGE_BUSYBOX),busybox)

QUILT_INIT_CARGO_BUILD_OPTS = \
	-p quilt-init \
	--bin quilt-init \
	$(QUILT_WS_CARGO_VENDOR_OPTS)

# The workspace's release profile (LTO, one codegen unit, opt-level 3:
# ed25519 verification is ~70x slower at "z"), which Buildroot's cargo
# environment would otherwise override; and a static binary, as PID 1
# must not depend on the root filesystem's libc. +crt-static applies to
# target units only, since cargo builds with an explicit --target. This
# variable replaces the one pkg-cargo.mk sets on 32-bit ARM, so its
# --allow-multiple-definition workaround is repeated here.
QUILT_INIT_RUSTFLAGS = -C target-feature=+crt-static
ifeq ($(NORMALIZED_ARCH),arm)
QUILT_INIT_RUSTFLAGS += -Clink-arg=-Wl,--allow-multiple-definition
endif

QUILT_INIT_CARGO_ENV = \
	CARGO_TARGET_DIR=$(@D)/target \
	CARGO_PROFILE_RELEASE_LTO=true \
	CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
	CARGO_PROFILE_RELEASE_OPT_LEVEL=3 \
	CARGO_TARGET_$(call UPPERCASE,$(RUSTC_TARGET_NAME))_RUSTFLAGS="$(QUILT_INIT_RUSTFLAGS)"

QUILT_INIT_PRE_CONFIGURE_HOOKS += QUILT_WS_CARGO_VENDOR

QUILT_INIT_BIN = \
	$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/quilt-init

# quilt-install does every install for PID 1 (init/installer). A second
# cargo run, not a second -p in the first: built together, cargo would
# unify quilt-bundle's features and link its crypto into PID 1 too.
define QUILT_INIT_BUILD_INSTALLER
	cd $(@D) && $(TARGET_MAKE_ENV) $(TARGET_CONFIGURE_OPTS) $(PKG_CARGO_ENV) \
		$(QUILT_INIT_CARGO_ENV) cargo build --locked \
		$(if $(BR2_ENABLE_DEBUG),,--release) --target $(RUSTC_TARGET_NAME) \
		-p quilt-installer --bin quilt-install $(QUILT_WS_CARGO_VENDOR_OPTS)
endef
QUILT_INIT_POST_BUILD_HOOKS += QUILT_INIT_BUILD_INSTALLER

# quilt-net brings interfaces up (static or DHCPv4) as a service the boot
# config starts (init/netup); PID 1 has no network code.
define QUILT_INIT_BUILD_NET
	cd $(@D) && $(TARGET_MAKE_ENV) $(TARGET_CONFIGURE_OPTS) $(PKG_CARGO_ENV) \
		$(QUILT_INIT_CARGO_ENV) cargo build --locked \
		$(if $(BR2_ENABLE_DEBUG),,--release) --target $(RUSTC_TARGET_NAME) \
		-p quilt-netup --bin quilt-net $(QUILT_WS_CARGO_VENDOR_OPTS)
endef
QUILT_INIT_POST_BUILD_HOOKS += QUILT_INIT_BUILD_NET

QUILT_INIT_BOOT_CONFIG = \
	$(or $(call qstrip,$(BR2_PACKAGE_QUILT_INIT_BOOT_CONFIG)),$(QUILT_WS_DIR)/rootfs/etc/quilt/boot.toml)

# cargo install would put the binary in /usr/bin; PID 1 is /sbin/init.
# A rootfs overlay that ships its own etc/quilt/boot.bin replaces the one
# compiled here.
define QUILT_INIT_INSTALL_TARGET_CMDS
	rm -f $(TARGET_DIR)/sbin/init
	$(INSTALL) -D -m 0755 $(QUILT_INIT_BIN) $(TARGET_DIR)/sbin/init
	$(INSTALL) -D -m 0755 $(dir $(QUILT_INIT_BIN))quilt-install \
		$(TARGET_DIR)/usr/lib/quilt/quilt-install
	$(INSTALL) -D -m 0755 $(dir $(QUILT_INIT_BIN))quilt-net \
		$(TARGET_DIR)/usr/lib/quilt/quilt-net
	mkdir -p $(TARGET_DIR)/etc/quilt
	$(HOST_DIR)/bin/quilt config compile $(QUILT_INIT_BOOT_CONFIG) \
		--out $(TARGET_DIR)/etc/quilt/boot.bin
endef

$(eval $(cargo-package))

# `make source` (fetch everything for an offline build) vendors the
# workspace's crates too.
quilt-init-source: quilt-ws-vendor
