# Common make logic of the Postern packages (posternd, postern-hwmond,
# postern-init), then the packages themselves. The definitions come first
# because the package .mk files use them when they are evaluated.

# The tree lives at image/br2-external of the Postern workspace: the crates are
# built from the workspace it came with, so a Buildroot build always ships the
# same commit as the Debian-based image/build.
POSTERN_WORKSPACE = $(abspath $(BR2_EXTERNAL_POSTERN_PATH)/../..)
POSTERN_VERSION = $(shell sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' \
	$(POSTERN_WORKSPACE)/Cargo.toml)
POSTERN_BOARD = $(call qstrip,$(BR2_POSTERN_BOARD))

# What rsync leaves out of the copy of the workspace: build outputs of the
# developer's own cargo runs (gigabytes, and for the wrong target) and test
# artefacts. Anchored patterns are relative to the workspace root.
POSTERN_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /postern-dev --exclude /bench-results \
	--exclude '/**/fuzz/target' --exclude '/**/fuzz/corpus' \
	--exclude '/**/fuzz/artifacts' --exclude __pycache__ \
	--exclude /VENDOR --exclude /.cargo

POSTERN_CARGO_PROFILE_DIR = $(if $(BR2_ENABLE_DEBUG),debug,release)
POSTERN_CARGO_OUT = target/$(RUSTC_TARGET_NAME)/$(POSTERN_CARGO_PROFILE_DIR)

# Offline vendoring for a local source. Buildroot vendors the crates of a
# downloaded cargo package in its download post-process
# (support/download/cargo-post-process), but a <pkg>_SITE_METHOD = local
# package is rsynced, never downloaded, so that step does not run. This hook
# does the same thing on the rsynced copy before the configure step (host-rustc
# is built by then): "cargo vendor --locked" into VENDOR/ from Buildroot's
# crate cache $(BR_CARGO_HOME) under the same lock, and the source replacement
# it prints goes to .cargo/config.toml, where the cargo-package build step
# ("cargo build --offline --locked", run from $(@D)) finds it. With
# BR2_POSTERN_CARGO_OFFLINE cargo never touches the network: every crate must
# already be in the cache (make postern-cargo-fetch, or a copied DL_DIR).
POSTERN_CARGO_VENDOR_OPTS = --locked --versioned-dirs \
	$(if $(BR2_POSTERN_CARGO_OFFLINE),--offline)

define POSTERN_CARGO_VENDOR
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor $(POSTERN_CARGO_VENDOR_OPTS) VENDOR \
		> $(@D)/.cargo/config.toml
endef

# Fills $(BR_CARGO_HOME) with every crate of the workspace's Cargo.lock, so that
# later builds (here, or wherever this DL_DIR is copied) vendor offline.
.PHONY: postern-cargo-fetch
postern-cargo-fetch: host-rustc
	mkdir -p $(BR_CARGO_HOME)
	cd $(POSTERN_WORKSPACE) && $(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		flock $(BR_CARGO_HOME)/.br-lock cargo fetch --locked

include $(sort $(wildcard $(BR2_EXTERNAL_POSTERN_PATH)/package/*/*.mk))
