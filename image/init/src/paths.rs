//! Where things live on the appliance (image/README.md "Rootfs paths" and "Boot").

pub const PERSIST: &str = "/persist";
pub const BOOT_RECORDS: &str = "/persist/boot";
pub const LOG_RING: &str = "/persist/log";
/// Writable configuration (posternd, hwmond, TLS) lives here; /etc/postern on the read-only
/// slot keeps board.toml and build.json.
pub const PERSIST_ETC: &str = "/persist/etc/postern";
/// First-boot provisioning done (removed by a factory reset).
pub const PROVISIONED_MARKER: &str = "/persist/etc/postern/provisioned";
/// A factory reset requested from the control socket, carried out at the next boot.
pub const FACTORY_RESET_MARKER: &str = "/persist/factory-reset-requested";
pub const BOARD_FILE: &str = "/etc/postern/board.toml";
pub const DATA_MOUNT: &str = "/var/lib/postern";
pub const RUN_DIR: &str = "/run/postern";
pub const CONTROL_SOCKET: &str = "/run/postern/init.sock";
pub const HWMOND_SOCKET: &str = "/run/postern/hwmond.sock";
pub const ESP_MOUNT: &str = "/run/postern/esp";
pub const GRUBENV_ON_ESP: &str = "EFI/BOOT/grubenv";
pub const POSTERND: &str = "/usr/sbin/posternd";
pub const POSTERN_CLI: &str = "/usr/sbin/postern";
pub const HWMOND: &str = "/usr/sbin/hwmond";
pub const POSTERND_CONFIG: &str = "/persist/etc/postern/postern.toml";
pub const HWMOND_CONFIG: &str = "/persist/etc/postern/hwmond.toml";
pub const TLS_DIR: &str = "/persist/etc/postern/tls";
/// Stage 1: the builder's ordered module list (paths relative to /lib/modules/VERSION).
pub const MODULES_ORDER: &str = "/etc/postern/modules.order";
pub const NEW_ROOT: &str = "/sysroot";
pub const CMD_PORT_NAME: &str = "org.postern.cmd";
