//! What this boot has to set up, taken from the board file (/etc/postern/board.toml, crate
//! postern-board) with the appliance defaults for what the board leaves out.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use postern_board::{Board, Role};

pub const DEFAULT_DOMAIN: &str = "postern.internal";
pub const DEFAULT_HOSTNAME: &str = "postern";
pub const DEFAULT_WATCHDOG: &str = "/dev/watchdog";
pub const DEFAULT_WATCHDOG_TIMEOUT_SECS: i32 = 60;
/// mdadm's own default chunk for striped levels.
pub const DEFAULT_CHUNK_KIB: u32 = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct ArrayPlan {
    pub name: String,
    /// /dev/md0, or /dev/md/NAME.
    pub md_device: PathBuf,
    /// raid0, raid1, raid5, raid6, raid10.
    pub level: String,
    pub members: Vec<PathBuf>,
    /// None for raid1 (no chunk).
    pub chunk_kib: Option<u32>,
    pub mount: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogPlan {
    pub device: PathBuf,
    pub timeout_secs: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InitPlan {
    pub board_name: String,
    pub hostname: String,
    pub domain: String,
    pub data_array: Option<ArrayPlan>,
    pub watchdog: Option<WatchdogPlan>,
    /// The board has IPMI sensors (hwmond's IPMI collector is turned on).
    pub ipmi: bool,
}

fn device_path(name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new("/dev").join(name)
    }
}

fn md_device(name: &str) -> PathBuf {
    let is_numbered = name
        .strip_prefix("md")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if name.starts_with('/') {
        PathBuf::from(name)
    } else if is_numbered {
        Path::new("/dev").join(name)
    } else {
        Path::new("/dev/md").join(name)
    }
}

impl InitPlan {
    pub fn from_board(board: &Board) -> Result<InitPlan> {
        let data_array = board
            .arrays
            .iter()
            .find(|a| a.role == Role::Data)
            .map(|a| -> Result<ArrayPlan> {
                let level = a.level.to_ascii_lowercase();
                if !["raid0", "raid1", "raid5", "raid6", "raid10"].contains(&level.as_str()) {
                    return Err(anyhow!("array {}: unsupported level {:?}", a.name, a.level));
                }
                if a.devices.is_empty() {
                    return Err(anyhow!("array {}: no member devices", a.name));
                }
                if !(a.filesystem.is_empty() || a.filesystem == "ext4") {
                    return Err(anyhow!(
                        "array {}: postern-init makes only ext4, not {:?}",
                        a.name,
                        a.filesystem
                    ));
                }
                Ok(ArrayPlan {
                    name: a.name.clone(),
                    md_device: if a.device.is_empty() {
                        md_device(&a.name)
                    } else {
                        PathBuf::from(&a.device)
                    },
                    chunk_kib: (level != "raid1")
                        .then_some(a.chunk_kib.unwrap_or(DEFAULT_CHUNK_KIB)),
                    level,
                    members: a.devices.iter().map(|d| device_path(d)).collect(),
                    mount: PathBuf::from(if a.mount.is_empty() {
                        crate::paths::DATA_MOUNT
                    } else {
                        &a.mount
                    }),
                })
            })
            .transpose()?;
        Ok(InitPlan {
            board_name: board.board.name.clone(),
            hostname: DEFAULT_HOSTNAME.to_string(),
            domain: DEFAULT_DOMAIN.to_string(),
            data_array,
            watchdog: (!board.watchdog.device.is_empty()).then(|| WatchdogPlan {
                device: PathBuf::from(&board.watchdog.device),
                timeout_secs: i32::try_from(board.watchdog.timeout_secs)
                    .ok()
                    .filter(|t| *t > 0)
                    .unwrap_or(DEFAULT_WATCHDOG_TIMEOUT_SECS),
            }),
            ipmi: board
                .sensors
                .iter()
                .any(|s| s.source == postern_board::SensorSource::Ipmi && !s.ignore),
        })
    }

    pub fn load(path: &Path) -> Result<InitPlan> {
        let board = Board::load(path).map_err(|e| anyhow!("{e}"))?;
        InitPlan::from_board(&board)
    }

    /// No board file: no data array (the store goes on /persist's filesystem is not an
    /// option either), so the init reports it and runs without one.
    pub fn without_board() -> InitPlan {
        InitPlan {
            board_name: String::new(),
            hostname: DEFAULT_HOSTNAME.to_string(),
            domain: DEFAULT_DOMAIN.to_string(),
            data_array: None,
            watchdog: Some(WatchdogPlan {
                device: PathBuf::from(DEFAULT_WATCHDOG),
                timeout_secs: DEFAULT_WATCHDOG_TIMEOUT_SECS,
            }),
            ipmi: false,
        }
    }

    /// The name posternd greets with and its certificate carries.
    pub fn mail_hostname(&self) -> String {
        format!("mail.{}", self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_board_gives_a_raid1_data_array() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board-configs/qemu-x86_64.toml");
        let plan = InitPlan::load(&path).unwrap();
        let array = plan.data_array.unwrap();
        assert_eq!(array.level, "raid1");
        assert_eq!(array.md_device, PathBuf::from("/dev/md0"));
        assert_eq!(array.chunk_kib, None);
        assert_eq!(array.members.len(), 2);
        assert!(array.members.iter().all(|m| m.starts_with("/dev")));
        assert_eq!(array.mount, PathBuf::from("/var/lib/postern"));
        assert!(plan.ipmi);
    }

    #[test]
    fn device_names() {
        assert_eq!(md_device("md127"), PathBuf::from("/dev/md127"));
        assert_eq!(md_device("data"), PathBuf::from("/dev/md/data"));
        assert_eq!(md_device("md"), PathBuf::from("/dev/md/md"));
        assert_eq!(
            device_path("/dev/disk/by-id/x"),
            PathBuf::from("/dev/disk/by-id/x")
        );
    }
}
