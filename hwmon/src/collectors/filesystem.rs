//! Filesystem space and inodes through statvfs(3) of configured mount points, so tests can
//! point it at a small tmpfs or loop filesystem.
//!
//! One component `filesystem/<name>` per mount (`root` for `/`, else the path with `/` -> `-`:
//! `var-lib-postern`). Use is `df`'s: used / (used + available to unprivileged users).
//! At or above `fs_warning_percent` (85): WARNING; at or above `fs_critical_percent` (95):
//! CRITICAL, and a data filesystem makes storage unsafe; a read-only data filesystem: CRITICAL
//! and storage unsafe; a data mount that cannot be read: CRITICAL and storage unsafe.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::board::{Board, Role};
use crate::collectors::{Collector, CollectorContext};
use crate::config::FilesystemConfig;
use crate::model::{ComponentId, ComponentKind, Observation, Reading, State, Thresholds, Unit};

/// What statvfs says about one filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsStat {
    pub size: f64,
    pub avail: f64,
    pub used_percent: f64,
    pub inodes_used_percent: Option<f64>,
    pub read_only: bool,
}

pub fn statvfs(path: &Path) -> std::io::Result<FsStat> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string and `st` a properly sized out-parameter;
    // statvfs writes only into `st`.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as f64;
    let blocks = st.f_blocks as f64;
    let bfree = st.f_bfree as f64;
    let bavail = st.f_bavail as f64;
    let used = blocks - bfree;
    let denom = used + bavail;
    let used_percent = if denom > 0.0 {
        used * 100.0 / denom
    } else {
        0.0
    };
    let inodes_used_percent = (st.f_files > 0)
        .then(|| (st.f_files as f64 - st.f_ffree as f64) * 100.0 / st.f_files as f64);
    Ok(FsStat {
        size: blocks * frsize,
        avail: bavail * frsize,
        used_percent,
        inodes_used_percent,
        read_only: st.f_flag & libc::ST_RDONLY != 0,
    })
}

/// `/` -> `root`, `/var/lib/postern` -> `var-lib-postern`.
pub fn fs_name(mount: &Path) -> String {
    let s = mount.to_string_lossy();
    let t = s.trim_matches('/');
    if t.is_empty() {
        "root".into()
    } else {
        t.replace('/', "-")
    }
}

/// The state a filesystem's fullness (`used` percent of blocks or inodes) puts it in, if any.
/// A read-only system filesystem (the appliance's EROFS slot, a squashfs root) is full by
/// construction and nothing can fill it further, so its fullness is no fault; a read-only data
/// filesystem is judged (and is a fault of its own).
fn fullness_verdict(
    used: f64,
    read_only: bool,
    data: bool,
    warn: f64,
    crit: f64,
) -> Option<(State, String)> {
    if read_only && !data {
        None
    } else if used >= crit {
        Some((
            State::Critical,
            format!("{used:.1}% full (critical at {crit}%)"),
        ))
    } else if used >= warn {
        Some((
            State::Warning,
            format!("{used:.1}% full (warning at {warn}%)"),
        ))
    } else {
        None
    }
}

struct Mount {
    path: PathBuf,
    data: bool,
    warn: f64,
    crit: f64,
}

pub struct FilesystemCollector {
    interval: Duration,
    mounts: Vec<Mount>,
}

impl FilesystemCollector {
    pub fn new(config: &FilesystemConfig, interval: Duration, ctx: &CollectorContext) -> Self {
        let board: &Board = &ctx.board;
        let rules = &board.rules;
        let mut paths: Vec<PathBuf> = config.mounts.clone();
        paths.extend(config.data_mounts.iter().cloned());
        paths.extend(board.filesystems.iter().map(|f| PathBuf::from(&f.mount)));
        let mut seen = std::collections::BTreeSet::new();
        let mounts = paths
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .map(|path| {
                let b = board.filesystem(&path.to_string_lossy());
                Mount {
                    data: config.data_mounts.contains(&path)
                        || b.is_some_and(|b| b.role == Role::Data),
                    warn: b
                        .and_then(|b| b.warning_percent)
                        .unwrap_or(rules.fs_warning_percent),
                    crit: b
                        .and_then(|b| b.critical_percent)
                        .unwrap_or(rules.fs_critical_percent),
                    path,
                }
            })
            .collect();
        FilesystemCollector { interval, mounts }
    }
}

impl Collector for FilesystemCollector {
    fn name(&self) -> &str {
        "filesystem"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        let mut out = Vec::new();
        for m in &self.mounts {
            let mut obs = Observation::new(ComponentId::new(
                ComponentKind::Filesystem,
                fs_name(&m.path),
            ));
            obs.attr("mount", m.path.to_string_lossy());
            obs.attr("role", if m.data { "data" } else { "system" });
            match statvfs(&m.path) {
                Ok(st) => {
                    obs.reading(Reading::new("size", st.size, Unit::Bytes));
                    obs.reading(Reading::new("avail", st.avail, Unit::Bytes));
                    obs.reading(
                        Reading::new("used_percent", st.used_percent, Unit::Percent)
                            .with_thresholds(Thresholds {
                                upper_non_critical: Some(m.warn),
                                upper_critical: Some(m.crit),
                                ..Thresholds::default()
                            }),
                    );
                    if let Some(i) = st.inodes_used_percent {
                        obs.reading(Reading::new("inodes_used_percent", i, Unit::Percent));
                    }
                    obs.reading(Reading::new(
                        "read_only",
                        if st.read_only { 1.0 } else { 0.0 },
                        Unit::Bool,
                    ));
                    let used = st.used_percent.max(st.inodes_used_percent.unwrap_or(0.0));
                    match fullness_verdict(used, st.read_only, m.data, m.warn, m.crit) {
                        Some((State::Critical, why)) => {
                            obs.raise(State::Critical, why.clone());
                            if m.data {
                                obs.storage_unsafe = Some(why);
                            }
                        }
                        Some((state, why)) => obs.raise(state, why),
                        None => {}
                    }
                    if st.read_only && m.data {
                        obs.raise(State::Critical, "data filesystem is read-only");
                        obs.storage_unsafe = Some("data filesystem is read-only".into());
                    }
                }
                Err(e) => {
                    let why = format!("statvfs {}: {e}", m.path.display());
                    if m.data {
                        obs.raise(State::Critical, why.clone());
                        obs.storage_unsafe = Some(why);
                    } else {
                        obs.raise(State::Unknown, why);
                    }
                }
            }
            out.push(obs);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_read_only_system_filesystem_is_no_fault() {
        assert_eq!(fullness_verdict(100.0, true, false, 85.0, 95.0), None);
        let (state, why) = fullness_verdict(100.0, true, true, 85.0, 95.0).unwrap();
        assert_eq!(
            (state, why.as_str()),
            (State::Critical, "100.0% full (critical at 95%)")
        );
        let (state, _) = fullness_verdict(90.0, false, false, 85.0, 95.0).unwrap();
        assert_eq!(state, State::Warning);
        assert_eq!(fullness_verdict(50.0, false, true, 85.0, 95.0), None);
    }

    #[test]
    fn names() {
        assert_eq!(fs_name(Path::new("/")), "root");
        assert_eq!(fs_name(Path::new("/var/lib/postern/")), "var-lib-postern");
    }

    #[test]
    fn thresholds_and_storage() {
        let dir = tempfile::tempdir().unwrap();
        let used = statvfs(dir.path()).unwrap().used_percent;
        let config = FilesystemConfig {
            mounts: vec![],
            data_mounts: vec![dir.path().to_path_buf(), PathBuf::from("/nonexistent/x")],
            ..FilesystemConfig::default()
        };
        let mut board = Board::default();
        board.rules.fs_warning_percent = (used - 1.0).max(0.0);
        board.rules.fs_critical_percent = used + 50.0;
        let mut c = FilesystemCollector::new(
            &config,
            Duration::from_secs(10),
            &CollectorContext {
                board: board.clone(),
            },
        );
        let o = c.collect();
        if used >= 1.0 {
            assert_eq!(o[0].state, State::Warning, "{}", o[0].reason);
        }
        assert!(o[0].storage_unsafe.is_none());
        assert_eq!(o[1].state, State::Critical);
        assert!(o[1].storage_unsafe.is_some());
        board.rules.fs_critical_percent = 0.0;
        let mut c = FilesystemCollector::new(
            &config,
            Duration::from_secs(10),
            &CollectorContext { board },
        );
        let o = c.collect();
        assert_eq!(o[0].state, State::Critical);
        assert!(o[0].storage_unsafe.is_some());
    }
}
