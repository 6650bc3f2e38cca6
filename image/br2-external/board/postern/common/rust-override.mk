################################################################################
#
# rust-override
#
################################################################################

# Buildroot 2026.02.3 ships Rust 1.88.0; the Postern workspace needs 1.95
# (rust-version in Cargo.toml; sysinfo 0.40 needs exactly 1.95). The
# defconfigs name this file as BR2_PACKAGE_OVERRIDE_FILE, the only makefile
# Buildroot includes before the package .mk files, so the pre-built compiler
# (host-rust-bin) can be moved to 1.95.0 here; "override" keeps the assignment
# in package/rust-bin/rust-bin.mk from winning. The hashes of the 1.95.0
# archives are in patches/rust-bin/1.95.0/rust-bin.hash, found through
# BR2_GLOBAL_PATCH_DIR.
override RUST_BIN_VERSION = 1.95.0

# A vendor's own override file (the default BR2_PACKAGE_OVERRIDE_FILE, for
# <pkg>_OVERRIDE_SRCDIR settings) still applies.
-include $(CONFIG_DIR)/local.mk
