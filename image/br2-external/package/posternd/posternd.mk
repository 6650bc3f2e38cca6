################################################################################
#
# posternd
#
################################################################################

# Built from the workspace this tree belongs to (external.mk); the crates it
# depends on are vendored offline by POSTERN_CARGO_VENDOR.
POSTERND_VERSION = $(POSTERN_VERSION)
POSTERND_SITE = $(POSTERN_WORKSPACE)
POSTERND_SITE_METHOD = local
POSTERND_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(POSTERN_RSYNC_EXCLUSIONS)
POSTERND_LICENSE = Apache-2.0
POSTERND_PRE_CONFIGURE_HOOKS += POSTERN_CARGO_VENDOR
POSTERND_CARGO_BUILD_OPTS = --package posternd --bins

# The image contract (image/README.md) puts both binaries in /usr/sbin, where
# "cargo install" (the default install step) would use /usr/bin.
define POSTERND_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/$(POSTERN_CARGO_OUT)/posternd \
		$(TARGET_DIR)/usr/sbin/posternd
	$(INSTALL) -D -m 0755 $(@D)/$(POSTERN_CARGO_OUT)/postern \
		$(TARGET_DIR)/usr/sbin/postern
endef

$(eval $(cargo-package))
