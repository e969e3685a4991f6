################################################################################
#
# quilt
#
################################################################################

# The quilt CLI from this repository's tools/quilt, for the target (the
# control-socket client) and for the host (host-quilt compiles boot
# configs during the image build).
QUILT_VERSION = 0.1.0
QUILT_SITE = $(BR2_EXTERNAL_QUILT_PATH)/..
QUILT_SITE_METHOD = local
QUILT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(QUILT_WS_RSYNC_EXCLUSIONS)
HOST_QUILT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(QUILT_WS_RSYNC_EXCLUSIONS)
QUILT_LICENSE = Apache-2.0 or MIT
QUILT_SUBDIR = tools/quilt

QUILT_CARGO_BUILD_OPTS = -p quilt --bin quilt $(QUILT_WS_CARGO_VENDOR_OPTS)
QUILT_CARGO_ENV = CARGO_TARGET_DIR=$(@D)/target
HOST_QUILT_CARGO_BUILD_OPTS = $(QUILT_CARGO_BUILD_OPTS)
HOST_QUILT_CARGO_ENV = CARGO_TARGET_DIR=$(@D)/target

QUILT_PRE_CONFIGURE_HOOKS += QUILT_WS_CARGO_VENDOR
HOST_QUILT_PRE_CONFIGURE_HOOKS += QUILT_WS_CARGO_VENDOR

define QUILT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/quilt \
		$(TARGET_DIR)/usr/bin/quilt
endef

define HOST_QUILT_INSTALL_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/release/quilt $(HOST_DIR)/bin/quilt
endef

$(eval $(cargo-package))
$(eval $(host-cargo-package))

quilt-source: quilt-ws-vendor
