################################################################################
#
# postern-hwmond
#
################################################################################

# Built from the workspace this tree belongs to (external.mk); the crates it
# depends on are vendored offline by POSTERN_CARGO_VENDOR.
POSTERN_HWMOND_VERSION = $(POSTERN_VERSION)
POSTERN_HWMOND_SITE = $(POSTERN_WORKSPACE)
POSTERN_HWMOND_SITE_METHOD = local
POSTERN_HWMOND_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(POSTERN_RSYNC_EXCLUSIONS)
POSTERN_HWMOND_LICENSE = Apache-2.0
POSTERN_HWMOND_PRE_CONFIGURE_HOOKS += POSTERN_CARGO_VENDOR
POSTERN_HWMOND_CARGO_BUILD_OPTS = --package postern-hwmon --bin hwmond

# /usr/sbin/hwmond as the image contract (image/README.md) says.
define POSTERN_HWMOND_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/$(POSTERN_CARGO_OUT)/hwmond \
		$(TARGET_DIR)/usr/sbin/hwmond
endef

$(eval $(cargo-package))
