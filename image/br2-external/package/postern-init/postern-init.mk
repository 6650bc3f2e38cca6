################################################################################
#
# postern-init
#
################################################################################

# Built from the workspace this tree belongs to (external.mk); the crates it
# depends on are vendored offline by POSTERN_CARGO_VENDOR.
POSTERN_INIT_VERSION = $(POSTERN_VERSION)
POSTERN_INIT_SITE = $(POSTERN_WORKSPACE)
POSTERN_INIT_SITE_METHOD = local
POSTERN_INIT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = $(POSTERN_RSYNC_EXCLUSIONS)
POSTERN_INIT_LICENSE = Apache-2.0
POSTERN_INIT_PRE_CONFIGURE_HOOKS += POSTERN_CARGO_VENDOR
POSTERN_INIT_CARGO_BUILD_OPTS = \
	--package postern-init --bin postern-init \
	--package postern-board --bin postern-board

# Static C runtime: post-image.sh copies this binary as /init into the stage-1
# initramfs, which holds no shared libraries (DESIGN.md 8: crt-static links
# with the gnu target).
POSTERN_INIT_CARGO_ENV = \
	CARGO_TARGET_$(call UPPERCASE,$(RUSTC_TARGET_NAME))_RUSTFLAGS="-C target-feature=+crt-static"

# Paths of the image contract (image/README.md). /sbin/init is pointed at
# postern-init by post-build.sh, after every package (busybox among them) has
# installed what it installs.
define POSTERN_INIT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/$(POSTERN_CARGO_OUT)/postern-init \
		$(TARGET_DIR)/usr/sbin/postern-init
	$(INSTALL) -D -m 0755 $(@D)/$(POSTERN_CARGO_OUT)/postern-board \
		$(TARGET_DIR)/usr/bin/postern-board
endef

$(eval $(cargo-package))
