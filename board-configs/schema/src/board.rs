//! Board configurations (`board-configs/*.toml`): which disks, arrays, filesystems and sensors a
//! board has, what each sensor means, thresholds, poll intervals and rule overrides. Shared with
//! the image build, which takes the disk and array layout from the same file.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::health::{ComponentKind, State, Thresholds};
use crate::toml_load::{self, LoadError};

/// A whole board file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Board {
    pub board: BoardInfo,
    pub intervals: Intervals,
    pub rules: Rules,
    #[serde(rename = "disk")]
    pub disks: Vec<BoardDisk>,
    #[serde(rename = "array")]
    pub arrays: Vec<BoardArray>,
    #[serde(rename = "filesystem")]
    pub filesystems: Vec<BoardFilesystem>,
    #[serde(rename = "sensor")]
    pub sensors: Vec<BoardSensor>,
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

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardDisk {
    /// Component name (`sda`, `nvme0n1`): `disk/<name>`.
    pub name: String,
    /// Device path for smartctl (`/dev/sda`, `/dev/nvme0`, `/dev/disk/by-path/...`).
    pub device: String,
    /// smartctl `-d` type (`sat`, `nvme`, `scsi`, `megaraid,0`); empty = smartctl's choice.
    pub smart_type: String,
    pub role: Role,
    /// Where it sits (`front bay 0`, `M.2 slot 1`), for the person replacing it.
    pub location: String,
    /// Overrides of the temperature rule for this disk (°C).
    pub temp_warning_c: Option<f64>,
    pub temp_critical_c: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoardArray {
    /// `md0`, or the name under /dev/md/ (`data`).
    pub name: String,
    /// `raid1`, `raid10`, `raid5`, `raid6`.
    pub level: String,
    /// Member partitions (`sda2`, `sdb2`).
    pub devices: Vec<String>,
    pub role: Role,
    /// Where its filesystem is mounted, if anywhere.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn load(path: &Path) -> Result<Board, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Board::parse(&text, path)
    }

    /// Parses and checks a board file (unknown keys, duplicate names, empty names).
    pub fn parse(text: &str, origin: &Path) -> Result<Board, LoadError> {
        let board: Board = toml_load::parse_str(text, origin)?;
        board.check(text, origin)?;
        Ok(board)
    }

    fn check(&self, text: &str, origin: &Path) -> Result<(), LoadError> {
        let err = |needle: &str, msg: String| {
            LoadError::invalid(origin, toml_load::line_of(text, needle), 1, msg)
        };
        let mut seen = std::collections::BTreeSet::new();
        for d in &self.disks {
            if d.name.is_empty() || d.device.is_empty() {
                return Err(err("[[disk]]", "[[disk]] needs name and device".into()));
            }
            if !seen.insert(("disk", d.name.clone())) {
                return Err(err(&d.name, format!("duplicate disk `{}`", d.name)));
            }
        }
        for a in &self.arrays {
            if a.name.is_empty() {
                return Err(err("[[array]]", "[[array]] needs a name".into()));
            }
            if !seen.insert(("array", a.name.clone())) {
                return Err(err(&a.name, format!("duplicate array `{}`", a.name)));
            }
        }
        for f in &self.filesystems {
            if !f.mount.starts_with('/') {
                return Err(err(
                    "[[filesystem]]",
                    format!("filesystem mount `{}` must be absolute", f.mount),
                ));
            }
        }
        for s in &self.sensors {
            if !matches!(
                s.kind,
                ComponentKind::Psu | ComponentKind::Fan | ComponentKind::Sensor
            ) {
                return Err(err(
                    &s.name,
                    format!("sensor `{}`: kind must be psu, fan or sensor", s.name),
                ));
            }
            if s.name.is_empty() || s.component.is_empty() {
                return Err(err(
                    "[[sensor]]",
                    "[[sensor]] needs name and component".into(),
                ));
            }
            if !seen.insert(("sensor", format!("{:?}/{}", s.source, s.name))) {
                return Err(err(&s.name, format!("duplicate sensor `{}`", s.name)));
            }
        }
        Ok(())
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

    pub fn array(&self, name: &str) -> Option<&BoardArray> {
        self.arrays.iter().find(|a| a.name == name)
    }

    pub fn filesystem(&self, mount: &str) -> Option<&BoardFilesystem> {
        self.filesystems.iter().find(|f| f.mount == mount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn board_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn every_board_config_loads() {
        let mut n = 0;
        for entry in std::fs::read_dir(board_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let board = Board::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert_eq!(board.board.name, stem, "{}", path.display());
            assert!(!board.disks.is_empty(), "{}", path.display());
            assert!(!board.sensors.is_empty(), "{}", path.display());
            for a in &board.arrays {
                for d in &a.devices {
                    let disk = d.trim_end_matches(|c: char| c.is_ascii_digit());
                    let disk = disk.strip_suffix('p').unwrap_or(disk);
                    assert!(
                        board.disk(disk).is_some()
                            || board.disks.iter().any(|x| d.starts_with(&x.name)),
                        "{}: array {} member {d} is not a board disk",
                        path.display(),
                        a.name
                    );
                }
            }
            n += 1;
        }
        assert!(n >= 2, "expected at least two board configs");
    }

    #[test]
    fn unknown_key_is_an_error_with_line() {
        let text = "[board]\nname = \"x\"\n\n[rules]\ndisk_temp_warnin_c = 50\n";
        let e = Board::parse(text, Path::new("b.toml")).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("b.toml:5:"), "{s}");
        assert!(s.contains("disk_temp_warnin_c"), "{s}");
    }

    #[test]
    fn duplicate_disk_is_an_error() {
        let text = "[[disk]]\nname = \"sda\"\ndevice = \"/dev/sda\"\n[[disk]]\nname = \"sda\"\ndevice = \"/dev/sdb\"\n";
        let e = Board::parse(text, Path::new("b.toml")).unwrap_err();
        assert!(e.to_string().contains("duplicate disk"), "{e}");
    }

    #[test]
    fn rules_override() {
        let text = "[rules]\narray_rebuilding = \"OK\"\npercentage_used_warning = 80\n";
        let b = Board::parse(text, Path::new("b.toml")).unwrap();
        assert_eq!(b.rules.array_rebuilding, State::Ok);
        assert_eq!(b.rules.percentage_used_warning, 80.0);
        assert_eq!(b.rules.smart_failed, State::Critical);
    }
}
