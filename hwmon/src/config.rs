//! hwmond's configuration file (TOML; every key has a default, unknown keys are errors reported
//! as `file:line:column: message`). `hwmon/hwmond.reference.toml` documents every key and a test
//! checks that it parses to the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::board::Board;
use crate::collectors::ipmi::IpmiConfig;
use crate::sinks::SinksConfig;
use crate::toml_load::{self, LoadError, Locator, Seg};

/// The documented reference configuration.
pub const REFERENCE_TOML: &str = include_str!("../hwmond.reference.toml");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub hwmond: DaemonConfig,
    pub smart: SmartConfig,
    pub mdraid: MdraidConfig,
    pub hwmon: SysfsConfig,
    pub thermal: SysfsConfig,
    pub edac: SysfsConfig,
    pub system: SystemConfig,
    pub filesystem: FilesystemConfig,
    pub ipmi: IpmiConfig,
    pub sinks: SinksConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// The health API socket (newline-delimited JSON).
    pub socket: PathBuf,
    /// Board file (`/etc/postern/board.toml`); empty = no board (discover everything, default
    /// rules). Relative paths resolve against this file's directory.
    pub board: PathBuf,
    /// State changes kept per component.
    pub history: usize,
    /// A level or tracing filter directives.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from("/run/postern/hwmond.sock"),
            board: PathBuf::new(),
            history: 32,
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

/// `[smart]`: smartctl --json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmartConfig {
    pub enable: bool,
    /// Seconds; 0 = the board's or the built-in default (300).
    pub interval_secs: f64,
    /// The smartctl command (argv prefix): `["smartctl"]`, or a script printing recorded JSON
    /// for tests. It gets `--json=c -a [-d TYPE] DEVICE` and `--scan-open --json=c`.
    pub command: Vec<String>,
    /// Devices (`/dev/sda`, or `/dev/sda:sat` with a `-d` type); empty = the board's disks,
    /// else `smartctl --scan-open`.
    pub devices: Vec<String>,
    /// Seconds one smartctl run may take before it is killed.
    pub timeout_secs: f64,
}

impl Default for SmartConfig {
    fn default() -> Self {
        SmartConfig {
            enable: true,
            interval_secs: 0.0,
            command: vec!["smartctl".into()],
            devices: Vec::new(),
            timeout_secs: 30.0,
        }
    }
}

/// `[mdraid]`: /proc/mdstat, /sys/block/md*/md, mdadm --detail --export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MdraidConfig {
    pub enable: bool,
    /// Seconds; 0 = the board's or the built-in default (1: degrade detected within 2 s).
    pub interval_secs: f64,
    /// Directory holding `mdstat` (normally /proc).
    pub proc_root: PathBuf,
    /// Directory holding `block/md*/md` (normally /sys).
    pub sys_root: PathBuf,
    /// mdadm command (argv prefix); empty = do not run mdadm. It gets `--detail --export
    /// /dev/mdN` when an array's state changes and once at start.
    pub command: Vec<String>,
    pub timeout_secs: f64,
}

impl Default for MdraidConfig {
    fn default() -> Self {
        MdraidConfig {
            enable: true,
            interval_secs: 0.0,
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            command: vec!["mdadm".into()],
            timeout_secs: 10.0,
        }
    }
}

/// `[hwmon]`, `[thermal]`, `[edac]`: sysfs readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysfsConfig {
    pub enable: bool,
    /// Seconds; 0 = the board's or the built-in default.
    pub interval_secs: f64,
    /// The sysfs root (normally /sys).
    pub root: PathBuf,
}

impl Default for SysfsConfig {
    fn default() -> Self {
        SysfsConfig {
            enable: true,
            interval_secs: 0.0,
            root: PathBuf::from("/sys"),
        }
    }
}

/// `[system]`: CPU, memory and load through sysinfo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    pub enable: bool,
    pub interval_secs: f64,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            enable: true,
            interval_secs: 0.0,
        }
    }
}

/// `[filesystem]`: space and inodes through statvfs(3) of mount points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    pub enable: bool,
    pub interval_secs: f64,
    /// Mount points (or any directory on the filesystem) to watch; the board's filesystems are
    /// added.
    pub mounts: Vec<PathBuf>,
    /// Which of them hold mail: full (>= rules.fs_critical_percent) makes storage unsafe. The
    /// board's `role = "data"` filesystems are added.
    pub data_mounts: Vec<PathBuf>,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            enable: true,
            interval_secs: 0.0,
            mounts: vec![PathBuf::from("/")],
            data_mounts: Vec::new(),
        }
    }
}

/// Built-in poll intervals (seconds).
pub mod default_interval {
    pub const SMART: f64 = 300.0;
    pub const MDRAID: f64 = 1.0;
    pub const HWMON: f64 = 5.0;
    pub const THERMAL: f64 = 5.0;
    pub const EDAC: f64 = 60.0;
    pub const SYSTEM: f64 = 10.0;
    pub const FILESYSTEM: f64 = 10.0;
    pub const IPMI: f64 = 5.0;
}

/// The effective interval: the config's when set (> 0), else the board's, else `builtin`.
pub fn interval(config_secs: f64, board_secs: Option<f64>, builtin: f64) -> Duration {
    let secs = if config_secs > 0.0 {
        config_secs
    } else {
        board_secs.filter(|s| *s > 0.0).unwrap_or(builtin)
    };
    Duration::from_secs_f64(secs.clamp(0.05, 86_400.0))
}

impl Config {
    /// Reads and validates `path`; relative paths in it resolve against its directory.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, origin: &Path) -> Result<Config, LoadError> {
        let mut config: Config = toml_load::parse_str(text, origin)?;
        let base = origin.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.hwmond.socket);
        resolve(&mut config.hwmond.board);
        resolve(&mut config.mdraid.proc_root);
        resolve(&mut config.mdraid.sys_root);
        resolve(&mut config.hwmon.root);
        resolve(&mut config.thermal.root);
        resolve(&mut config.edac.root);
        for m in config
            .filesystem
            .mounts
            .iter_mut()
            .chain(config.filesystem.data_mounts.iter_mut())
        {
            resolve(m);
        }
        config.check(text, origin)?;
        Ok(config)
    }

    fn check(&self, text: &str, origin: &Path) -> Result<(), LoadError> {
        let err = |key: &str, msg: &str| {
            LoadError::invalid(origin, toml_load::line_of(text, key), 1, msg.to_string())
        };
        for (key, secs) in [
            ("[smart]", self.smart.interval_secs),
            ("[mdraid]", self.mdraid.interval_secs),
            ("[hwmon]", self.hwmon.interval_secs),
            ("[thermal]", self.thermal.interval_secs),
            ("[edac]", self.edac.interval_secs),
            ("[system]", self.system.interval_secs),
            ("[filesystem]", self.filesystem.interval_secs),
        ] {
            if !(0.0..=86_400.0).contains(&secs) {
                return Err(err(
                    key,
                    &format!("{key} interval_secs must be between 0 and 86400"),
                ));
            }
        }
        if self.smart.enable && self.smart.command.is_empty() {
            return Err(err("[smart]", "[smart] command must not be empty"));
        }
        if !matches!(self.hwmond.log_format.as_str(), "text" | "json") {
            return Err(err("log_format", "log_format must be \"text\" or \"json\""));
        }
        if self.hwmond.socket.as_os_str().is_empty() {
            return Err(err("socket", "socket must not be empty"));
        }
        // What the daemon would refuse at start is refused here, at the key, so that
        // `check-config` and `run` agree (issue 13).
        let locator = Locator::new(text);
        // At the offending key; when the file leaves it to its default (an email sink with
        // no `to` at all), at the key that made it matter (`enable`, `interface`).
        let at = |section: &[&str], keys: &[&str], message: String| {
            let mut path: Vec<Seg<'_>> = section.iter().map(|k| Seg::Key(k)).collect();
            let parent = locator.position(&path);
            let mut found = parent;
            for key in keys {
                path.push(Seg::Key(key));
                let pos = locator.position(&path);
                path.pop();
                if pos != parent {
                    found = pos;
                    break;
                }
            }
            LoadError::invalid(origin, found.0, found.1, message)
        };
        check_log_level(&self.hwmond.log_level)
            .map_err(|m| at(&["hwmond"], &["log_level"], format!("log_level: {m}")))?;
        crate::collectors::ipmi::check(&self.ipmi).map_err(|(key, m)| {
            at(
                &["ipmi"],
                &[key, "interface", "enable"],
                format!("[ipmi] {m}"),
            )
        })?;
        crate::sinks::check(&self.sinks).map_err(|p| {
            at(
                &["sinks", p.sink],
                &[p.key, "enable"],
                format!("[sinks.{}] {}", p.sink, p.message),
            )
        })?;
        Ok(())
    }

    /// The board file named by `hwmond.board`, or an empty board.
    pub fn load_board(&self) -> Result<Board, LoadError> {
        if self.hwmond.board.as_os_str().is_empty() {
            Ok(Board::default())
        } else {
            crate::board::load_checked(&self.hwmond.board)
        }
    }
}

/// Levels a log directive may name (tracing's `LevelFilter` names).
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// `log_level`: a level, or tracing filter directives whose levels are all known. A bare word
/// that is not a level would be taken by tracing as a target name and silently log
/// everything of nothing, so it is refused (`target=level` names a target).
pub fn check_log_level(spec: &str) -> Result<(), String> {
    if spec.trim().is_empty() {
        return Err("empty; one of error, warn, info, debug, trace".into());
    }
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.contains('[') => continue,
            None => directive,
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unknown level `{level}`; one of error, warn, info, debug, trace, off \
                 (or target=level directives)"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(spec)
        .map(|_| ())
        .map_err(|e| format!("{spec:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_parses_to_defaults() {
        // [ipmi] and [sinks] belong to hwmon-ipmi's modules, which test their own defaults.
        let mut c = Config::parse(REFERENCE_TOML, Path::new("/etc/postern/hwmond.toml")).unwrap();
        c.ipmi = IpmiConfig::default();
        c.sinks = SinksConfig::default();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn empty_file_is_defaults() {
        let c = Config::parse("", Path::new("/x/hwmond.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_key_reports_file_line() {
        let text = "[hwmond]\nhistory = 8\n\n[mdraid]\nintervall_secs = 2\n";
        let e = Config::parse(text, Path::new("h.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.toml:5:1:"), "{e}");
        assert!(e.contains("intervall_secs"), "{e}");
        let e = Config::parse("[nosuch]\n", Path::new("h.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.toml:1:"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let text = "[hwmond]\nboard = \"boards/x.toml\"\n[mdraid]\nproc_root = \"fx/proc\"\n";
        let c = Config::parse(text, Path::new("/etc/h/hwmond.toml")).unwrap();
        assert_eq!(c.hwmond.board, PathBuf::from("/etc/h/boards/x.toml"));
        assert_eq!(c.mdraid.proc_root, PathBuf::from("/etc/h/fx/proc"));
    }

    #[test]
    fn bad_values_are_errors() {
        let e = Config::parse("[mdraid]\ninterval_secs = -1\n", Path::new("h.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("interval_secs"), "{e}");
        let e = Config::parse("[hwmond]\nhistory = \"x\"\n", Path::new("h.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.toml:2:"), "{e}");
    }

    fn error_of(text: &str) -> String {
        Config::parse(text, Path::new("h.toml"))
            .unwrap_err()
            .to_string()
    }

    /// What `hwmond run` refuses at start is refused by the shared check, at the key.
    #[test]
    fn start_time_refusals_are_config_errors_at_the_key() {
        let e = error_of("[hwmond]\nlog_level = \"verbose\"\n");
        assert!(
            e.starts_with("h.toml:2:1: log_level: unknown level `verbose`"),
            "{e}"
        );
        let e = error_of("[hwmond]\nlog_level = \"info,postern_hwmon=loud\"\n");
        assert!(
            e.starts_with("h.toml:2:1: log_level: unknown level `loud`"),
            "{e}"
        );
        for good in ["info", "DEBUG", "warn,postern_hwmon=trace", "off"] {
            assert!(check_log_level(good).is_ok(), "{good}");
        }
        let e = error_of("\n[sinks.metrics]\nenable = true\n  listen = \"0.0.0.0:9188\"\n");
        assert_eq!(
            e,
            "h.toml:4:3: [sinks.metrics] listen 0.0.0.0:9188: only loopback addresses are allowed"
        );
        let e = error_of("[sinks.metrics]\nenable = true\nlisten = \"localhost\"\n");
        assert!(
            e.starts_with("h.toml:3:1: [sinks.metrics] listen localhost: "),
            "{e}"
        );
        // A disabled sink is not checked (run does not start it).
        assert!(Config::parse(
            "[sinks.metrics]\nlisten = \"0.0.0.0:1\"\n",
            Path::new("h.toml")
        )
        .is_ok());
        let e = error_of("[ipmi]\nenable = true\ninterface = \"lan\"\n");
        assert_eq!(e, "h.toml:3:1: [ipmi] interface = \"lan\" needs host");
        let e = error_of(
            "[ipmi]\nenable = true\ninterface = \"lan\"\nhost = \"b\"\ncipher_suite = 17\n",
        );
        assert!(e.starts_with("h.toml:5:1: [ipmi] cipher_suite 17"), "{e}");
        let e = error_of(
            "[ipmi]\nenable = true\ninterface = \"lan\"\nhost = \"b\"\n\
             password_file = \"/nonexistent/pw\"\n",
        );
        assert!(e.starts_with("h.toml:5:1: [ipmi] /nonexistent/pw: "), "{e}");
        let e = error_of("[sinks.email]\nenable = true\nfrom = \"a@b.test\"\n");
        assert_eq!(e, "h.toml:2:1: [sinks.email] to: no recipient");
        let e = error_of("[sinks.email]\nenable = true\nto = []\n");
        assert_eq!(e, "h.toml:3:1: [sinks.email] to: no recipient");
        let e = error_of("[sinks.syslog]\nenable = true\nudp = \"192.0.2.1:514\"\n");
        assert!(
            e.starts_with("h.toml:3:1: [sinks.syslog] udp 192.0.2.1:514: only loopback"),
            "{e}"
        );
        let e = error_of("[sinks.webhook]\nenable = true\nurl = \"ftp://x\"\n");
        assert!(e.starts_with("h.toml:3:1: [sinks.webhook] "), "{e}");
    }

    #[test]
    fn interval_precedence() {
        assert_eq!(interval(2.0, Some(3.0), 4.0), Duration::from_secs(2));
        assert_eq!(interval(0.0, Some(3.0), 4.0), Duration::from_secs(3));
        assert_eq!(interval(0.0, None, 4.0), Duration::from_secs(4));
    }
}
