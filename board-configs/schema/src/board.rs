//! Board files (`board-configs/*.toml`): one per board (SKU). What the image needs (the system
//! disk, the data array, console, watchdog, partition sizes, kernel modules) and what hwmond
//! needs (disks, arrays, filesystems, what each sensor means, thresholds, poll intervals and
//! rule overrides). `board-configs/README.md` documents every key and who reads it.
//!
//! [`Board::load`] parses, fills the defaults that derive from other keys (a disk's block
//! device, an array's md device, the data array's mount point) and checks the whole file:
//! unknown keys, duplicates and cross-references are `file:line:column: message` errors naming
//! the offending key. [`Board::load_for_image`] also requires what an image cannot do without.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::health::{ComponentKind, State, Thresholds};
use crate::toml_load::{self, LoadError};

/// Where the data array is mounted unless the board says otherwise (the mail store).
pub const DEFAULT_DATA_MOUNT: &str = "/var/lib/postern";

/// A whole board file. Field order is the order of `postern-board show --json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Board {
    pub board: BoardInfo,
    /// The disk the GPT image is written to; `None` only in boards that no image is built for
    /// (hwmond test boards). [`Board::load_for_image`] requires it.
    pub system_disk: Option<SystemDisk>,
    pub image: ImageSizes,
    pub kernel: Kernel,
    pub console: Console,
    pub watchdog: Watchdog,
    #[serde(rename = "disk")]
    pub disks: Vec<BoardDisk>,
    #[serde(rename = "array")]
    pub arrays: Vec<BoardArray>,
    #[serde(rename = "filesystem")]
    pub filesystems: Vec<BoardFilesystem>,
    #[serde(rename = "sensor")]
    pub sensors: Vec<BoardSensor>,
    pub intervals: Intervals,
    pub rules: Rules,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardInfo {
    /// Matches the file name without `.toml` (`qemu-x86_64`); RAUC bundles carry it too.
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub description: String,
}

/// The disk that carries the GPT image (EFI, boot and system A/B, persist).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemDisk {
    /// Its block device: `/dev/vda`, `/dev/nvme0n1`, `/dev/sda`, or a stable
    /// `/dev/disk/by-path/...` name.
    pub device: String,
}

/// Partition sizes of the GPT image in MiB. `boot_mib` and `system_mib` are per slot (A and B
/// each get one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageSizes {
    /// The EFI system partition (GRUB, grub.cfg, grubenv).
    pub efi_mib: u32,
    /// One slot's vfat boot partition (kernel and stage-1 initramfs).
    pub boot_mib: u32,
    /// One slot's EROFS root filesystem.
    pub system_mib: u32,
    /// The ext4 boot-state partition (`/persist`).
    pub persist_mib: u32,
}

impl Default for ImageSizes {
    fn default() -> Self {
        // Room for a Debian kernel with its modules and a release build of the daemons, with
        // headroom for updates that grow: RAUC cannot resize a slot in the field.
        ImageSizes {
            efi_mib: 32,
            boot_mib: 64,
            system_mib: 256,
            persist_mib: 256,
        }
    }
}

/// What the board needs from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kernel {
    /// Modules to load at boot, in this order (their dependencies are resolved by the builder):
    /// storage controllers, md and its RAID personality, filesystems, watchdog, IPMI, NICs.
    /// Names as modprobe takes them (`md-mod` and `md_mod` are the same).
    pub modules: Vec<String>,
    /// Extra kernel command line, appended after the console and the slot arguments.
    pub cmdline: String,
}

/// The serial console: the kernel's `console=`, GRUB's serial terminal and the init's shell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Console {
    /// Kernel console name: `ttyS0`, `ttyS1`, `hvc0` (not a path).
    pub device: String,
    pub baud: u32,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            device: "ttyS0".into(),
            baud: 115_200,
        }
    }
}

/// The hardware watchdog the init feeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Watchdog {
    pub device: String,
    /// The driver (`i6300esb`, `iTCO_wdt`, `softdog`); empty when it is built into the kernel.
    /// Must be one of `[kernel] modules`.
    pub module: String,
    /// Seconds without a feed before the board resets.
    pub timeout_secs: u32,
    /// Seconds between feeds; at most half the timeout, so one late feed is not a reset.
    pub feed_interval_secs: u32,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            device: "/dev/watchdog".into(),
            module: String::new(),
            timeout_secs: 60,
            feed_interval_secs: 10,
        }
    }
}

/// Poll intervals in seconds; `None` = hwmond's default. hwmond's own config wins over these.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intervals {
    pub smart_secs: Option<f64>,
    pub mdraid_secs: Option<f64>,
    pub hwmon_secs: Option<f64>,
    pub thermal_secs: Option<f64>,
    pub edac_secs: Option<f64>,
    pub system_secs: Option<f64>,
    pub filesystem_secs: Option<f64>,
    pub ipmi_secs: Option<f64>,
}

/// What a disk, array or filesystem is for. Only `data` ones enter the storage verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the mail store (or is part of the array that does).
    #[default]
    Data,
    /// Boot/system media.
    System,
    /// A hot spare.
    Spare,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::System => "system",
            Role::Spare => "spare",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardDisk {
    /// Component name, the kernel's block device name (`sda`, `nvme0n1`): `disk/<name>`.
    pub name: String,
    /// Device path for smartctl (`/dev/sda`, `/dev/nvme0`, `/dev/disk/by-path/...`).
    pub device: String,
    /// The whole-disk block device arrays and the system disk name it by; default
    /// `/dev/<name>`.
    pub block_device: String,
    /// smartctl `-d` type (`sat`, `nvme`, `scsi`, `megaraid,0`); empty = smartctl's choice.
    pub smart_type: String,
    pub role: Role,
    /// Where it sits (`front bay 0`, `M.2 slot 1`), for the person replacing it.
    pub location: String,
    /// Overrides of the temperature rule for this disk (°C).
    pub temp_warning_c: Option<f64>,
    pub temp_critical_c: Option<f64>,
}

/// RAID levels an array may have, with the fewest members each works with.
pub const RAID_LEVELS: [(&str, usize); 4] =
    [("raid1", 2), ("raid10", 4), ("raid5", 3), ("raid6", 4)];

/// Filesystems the data array may carry.
pub const ARRAY_FILESYSTEMS: [&str; 2] = ["ext4", "xfs"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardArray {
    /// `md0`, or the name under /dev/md/ (`data`): `array/<name>`.
    pub name: String,
    /// The md device; default `/dev/<name>` for `mdN`, else `/dev/md/<name>`.
    pub device: String,
    /// `raid1`, `raid10`, `raid5`, `raid6`.
    pub level: String,
    /// Member whole disks by block device (`/dev/nvme0n1`): each is a `[[disk]]`'s
    /// `block_device` with the array's role.
    pub devices: Vec<String>,
    /// Hot spares, the same way; each a `[[disk]]` with role `spare`.
    pub spares: Vec<String>,
    pub role: Role,
    /// Chunk size in KiB for raid10/5/6 (a power of two, at least 4); `None` = mdadm's (512).
    pub chunk_kib: Option<u32>,
    /// The filesystem first boot makes on it: `ext4` or `xfs`.
    pub filesystem: String,
    /// Where its filesystem is mounted; the data array's defaults to `/var/lib/postern`.
    pub mount: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardFilesystem {
    pub mount: String,
    pub role: Role,
    /// Overrides of `rules.fs_warning_percent` / `rules.fs_critical_percent`.
    pub warning_percent: Option<f64>,
    pub critical_percent: Option<f64>,
}

/// Where a sensor is read from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SensorSource {
    #[default]
    Ipmi,
    /// Linux hwmon sysfs; `name` is `<chip>/<label or tempN>` (`coretemp/Package id 0`).
    Hwmon,
}

/// One sensor of the board: its name at the source -> what it means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardSensor {
    /// The name at the source: the IPMI SDR id string (`PSU1 Status`, `FAN1`, `CPU Temp`).
    pub name: String,
    #[serde(default)]
    pub source: SensorSource,
    /// `psu`, `fan` or `sensor`.
    pub kind: ComponentKind,
    /// Component name (`PSU1`, `FAN1`, `cpu-temp`): `<kind>/<component>`.
    pub component: String,
    /// What it measures, for people: `CPU package temperature`, `rear PSU, left`.
    #[serde(default)]
    pub meaning: String,
    /// Thresholds replacing those the sensor reports.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// The board has no such part (an empty fan header): the reading is ignored.
    #[serde(default)]
    pub ignore: bool,
}

/// Rule parameters. Defaults follow smartd, mdadm --monitor and ipmi_exporter (see the
/// "hwmon model as built" section of docs and README): every key is overridable per board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Drive temperature (°C) for WARNING when the drive reports no limit of its own
    /// (NVMe `wctemp`, SCSI trip, ATA SCT limits are used when present).
    pub disk_temp_warning_c: f64,
    /// Drive temperature (°C) for CRITICAL when the drive reports no critical limit.
    pub disk_temp_critical_c: f64,
    /// State when SMART overall health is FAILED (smartd `-H`).
    pub smart_failed: State,
    /// State when reallocated (5), pending (197) or offline-uncorrectable (198) sectors rise
    /// (smartd `-R 5! -C 197+ -U 198+`) or are non-zero at first sight.
    pub sector_increase: State,
    /// State when NVMe media errors rise or are non-zero.
    pub media_errors: State,
    /// State when any NVMe critical_warning bit is set.
    pub nvme_critical_warning: State,
    /// State when available spare < available spare threshold.
    pub spare_below_threshold: State,
    /// NVMe percentage used (endurance) at or above which the disk is WARNING.
    pub percentage_used_warning: f64,
    /// A degraded array that still has redundancy (RAID6 missing one, 3-way mirror missing
    /// one).
    pub array_degraded_redundant: State,
    /// A degraded array with no redundancy left (2-way RAID1, RAID5 or RAID10 missing one
    /// member: for RAID10 the pair of the missing member has no copy left).
    pub array_degraded_no_redundancy: State,
    /// Any array state while recovering/resyncing onto a new member (mdadm RebuildStarted).
    pub array_rebuilding: State,
    /// `mismatch_cnt > 0` after a check.
    pub array_mismatch: State,
    pub fs_warning_percent: f64,
    /// Data filesystem at or above this use makes the storage verdict unsafe.
    pub fs_critical_percent: f64,
    /// Memory use (percent) for WARNING.
    pub memory_warning_percent: f64,
    /// EDAC correctable errors rising: state.
    pub edac_ce: State,
    /// EDAC uncorrectable errors non-zero: state.
    pub edac_ue: State,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            disk_temp_warning_c: 60.0,
            disk_temp_critical_c: 70.0,
            smart_failed: State::Critical,
            sector_increase: State::Warning,
            media_errors: State::Warning,
            nvme_critical_warning: State::Critical,
            spare_below_threshold: State::Critical,
            percentage_used_warning: 90.0,
            array_degraded_redundant: State::Warning,
            array_degraded_no_redundancy: State::Critical,
            array_rebuilding: State::Warning,
            array_mismatch: State::Warning,
            fs_warning_percent: 85.0,
            fs_critical_percent: 95.0,
            memory_warning_percent: 95.0,
            edac_ce: State::Warning,
            edac_ue: State::Critical,
        }
    }
}

impl Board {
    /// Reads, parses and checks a board file.
    pub fn load(path: &Path) -> Result<Board, LoadError> {
        Board::parse(&read(path)?, path)
    }

    /// Parses and checks a board file: the first problem, see [`Board::problems`] for all.
    pub fn parse(text: &str, origin: &Path) -> Result<Board, LoadError> {
        Board::parse_all(text, origin).map_err(|problems| first(problems, origin))
    }

    /// [`Board::load`], and the board must have what an image is built from: a system disk,
    /// a data array and the kernel modules they and the image's filesystems need.
    pub fn load_for_image(path: &Path) -> Result<Board, LoadError> {
        Board::load_for_image_all(path).map_err(|problems| first(problems, path))
    }

    /// [`Board::load_for_image`] with every problem, in file order (for `postern-board check`).
    pub fn load_for_image_all(path: &Path) -> Result<Board, Vec<LoadError>> {
        let text = read(path).map_err(|e| vec![e])?;
        let board = Board::parse_all(&text, path)?;
        let problems = crate::check::image_problems(&board, &text, path);
        if problems.is_empty() {
            Ok(board)
        } else {
            Err(problems)
        }
    }

    /// Parses, fills derived defaults and checks; every problem found, in file order.
    pub fn parse_all(text: &str, origin: &Path) -> Result<Board, Vec<LoadError>> {
        let mut board: Board = toml_load::parse_str(text, origin).map_err(|e| vec![e])?;
        board.fill_derived_defaults();
        let problems = crate::check::problems(&board, text, origin);
        if problems.is_empty() {
            Ok(board)
        } else {
            Err(problems)
        }
    }

    /// Defaults that follow from other keys; filled before the checks so that cross-references
    /// compare what the init and the builder will use.
    fn fill_derived_defaults(&mut self) {
        for disk in &mut self.disks {
            if disk.block_device.is_empty() && !disk.name.is_empty() {
                disk.block_device = format!("/dev/{}", disk.name);
            }
        }
        for array in &mut self.arrays {
            if array.device.is_empty() && !array.name.is_empty() {
                array.device = md_device(&array.name);
            }
            if array.filesystem.is_empty() {
                array.filesystem = "ext4".into();
            }
            if array.mount.is_empty() && array.role == Role::Data {
                array.mount = DEFAULT_DATA_MOUNT.into();
            }
        }
    }

    /// The data array (the mail store): the `[[array]]` with role `data`. The checks allow one.
    pub fn data_array(&self) -> Option<&BoardArray> {
        self.arrays.iter().find(|a| a.role == Role::Data)
    }

    /// The board's mapping for a sensor named `name` at `source`.
    pub fn sensor(&self, source: SensorSource, name: &str) -> Option<&BoardSensor> {
        self.sensors
            .iter()
            .find(|s| s.source == source && s.name == name)
    }

    pub fn disk(&self, name: &str) -> Option<&BoardDisk> {
        self.disks.iter().find(|d| d.name == name)
    }

    /// The `[[disk]]` whose whole-disk block device is `path`.
    pub fn disk_by_block_device(&self, path: &str) -> Option<&BoardDisk> {
        self.disks.iter().find(|d| d.block_device == path)
    }

    pub fn array(&self, name: &str) -> Option<&BoardArray> {
        self.arrays.iter().find(|a| a.name == name)
    }

    pub fn filesystem(&self, mount: &str) -> Option<&BoardFilesystem> {
        self.filesystems.iter().find(|f| f.mount == mount)
    }
}

impl BoardArray {
    /// The fewest members its level works with; `None` for an unknown level.
    pub fn min_members(&self) -> Option<usize> {
        RAID_LEVELS
            .iter()
            .find(|(level, _)| *level == self.level)
            .map(|(_, n)| *n)
    }
}

/// `/dev/mdN` for the numbered names, `/dev/md/<name>` for named arrays (mdadm's convention).
pub fn md_device(name: &str) -> String {
    let numbered = name
        .strip_prefix("md")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if numbered {
        format!("/dev/{name}")
    } else {
        format!("/dev/md/{name}")
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn first(problems: Vec<LoadError>, origin: &Path) -> LoadError {
    problems
        .into_iter()
        .next()
        .unwrap_or_else(|| LoadError::invalid(origin, 1, 1, "invalid board file"))
}
