//! Boot-attempt records on /persist: one JSON file per boot (`/persist/boot/NNNNNNNN.json`),
//! rewritten and fsync'ed at every milestone so that a boot that hangs, panics or is reset
//! by the watchdog stays readable by the next one. The last `KEEP` records are kept.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Records kept on /persist (older ones are deleted when a boot starts).
pub const KEEP: usize = 32;

/// The milestone written just before the init stops feeding the watchdog on purpose (test
/// switch): the next boot reads a reset after it as a watchdog reset.
pub const WATCHDOG_STOP_TEST: &str = "watchdog-stop-test";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    pub name: String,
    /// Seconds since the Unix epoch (wall clock; may be 1970 on a board without an RTC).
    pub time: f64,
    /// Seconds since the kernel started (CLOCK_BOOTTIME), comparable within one boot.
    pub uptime: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How a boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Still running (or it ended without the init writing an end: see `inferred_cause`).
    Running,
    /// Clean power-off or reboot requested by the admin, the power button or a signal.
    CleanShutdown,
    /// The init gave up (health check timeout, no system partition...) and rebooted.
    Failed,
    /// A factory reset was requested; the init rebooted to carry it out.
    FactoryReset,
    /// The next boot found no end: the watchdog reset the machine.
    WatchdogReset,
    /// The next boot found no end and no sign of the watchdog: power loss, kernel crash, hang.
    PowerLossOrCrash,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    /// Increases by one every boot (the file name).
    pub boot: u64,
    /// The kernel's boot id (/proc/sys/kernel/random/boot_id).
    pub boot_id: String,
    pub slot: String,
    pub start_time: f64,
    pub cmdline: String,
    pub milestones: Vec<Milestone>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl BootRecord {
    pub fn ended(&self) -> bool {
        self.outcome != Outcome::Running
    }

    pub fn last_milestone(&self) -> Option<&str> {
        self.milestones.last().map(|m| m.name.as_str())
    }
}

/// Why a boot that wrote no end ended: a watchdog reset when the watchdog says it reset the
/// card (WDIOF_CARDRESET in WDIOC_GETBOOTSTATUS) or the boot had stopped feeding it on
/// purpose; otherwise power loss or a crash.
pub fn inferred_cause(record: &BootRecord, watchdog_card_reset: bool) -> (Outcome, String) {
    if watchdog_card_reset {
        (
            Outcome::WatchdogReset,
            "the watchdog reports it reset the machine (WDIOF_CARDRESET)".into(),
        )
    } else if record.last_milestone() == Some(WATCHDOG_STOP_TEST) {
        (
            Outcome::WatchdogReset,
            "the boot stopped feeding the watchdog (test switch) and never ended".into(),
        )
    } else {
        let last = record.last_milestone().unwrap_or("none");
        (
            Outcome::PowerLossOrCrash,
            format!("no clean end recorded (last milestone: {last})"),
        )
    }
}

pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seconds since boot (CLOCK_BOOTTIME).
pub fn uptime() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The records directory and the record of the current boot.
pub struct Recorder {
    dir: PathBuf,
    pub record: BootRecord,
}

fn record_path(dir: &Path, boot: u64) -> PathBuf {
    dir.join(format!("{boot:08}.json"))
}

/// All records in `dir`, oldest first (unreadable files are skipped: a torn record must not
/// stop the boot).
pub fn load_all(dir: &Path) -> Vec<BootRecord> {
    let mut numbered: Vec<(u64, PathBuf)> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let number = name.strip_suffix(".json")?.parse::<u64>().ok()?;
                Some((number, e.path()))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    numbered.sort();
    numbered
        .into_iter()
        .filter_map(|(_, path)| serde_json::from_slice(&fs::read(path).ok()?).ok())
        .collect()
}

/// Writes `data` to `path` durably: a temporary file, fsync, rename, fsync of the directory.
pub fn write_durably(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

impl Recorder {
    /// Starts this boot's record: closes the previous one when it has no end (its cause
    /// inferred), deletes records beyond `KEEP`, writes the new one.
    pub fn start(
        dir: &Path,
        boot_id: &str,
        slot: &str,
        cmdline: &str,
        watchdog_card_reset: bool,
    ) -> Result<(Recorder, Option<BootRecord>)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut records = load_all(dir);
        let mut previous = records.pop();
        if let Some(prev) = previous.as_mut() {
            if !prev.ended() {
                let (outcome, reason) = inferred_cause(prev, watchdog_card_reset);
                prev.outcome = outcome;
                prev.reason = reason;
                write_durably(
                    &record_path(dir, prev.boot),
                    &serde_json::to_vec_pretty(prev)?,
                )?;
            }
        }
        let boot = previous.as_ref().map(|p| p.boot + 1).unwrap_or(1);
        // Keep KEEP records including the new one.
        for old in records
            .iter()
            .rev()
            .skip(KEEP.saturating_sub(2))
            .map(|r| r.boot)
        {
            let _ = fs::remove_file(record_path(dir, old));
        }
        let recorder = Recorder {
            dir: dir.to_path_buf(),
            record: BootRecord {
                boot,
                boot_id: boot_id.to_string(),
                slot: slot.to_string(),
                start_time: now_epoch(),
                cmdline: cmdline.to_string(),
                milestones: Vec::new(),
                outcome: Outcome::Running,
                reason: String::new(),
            },
        };
        recorder.save()?;
        Ok((recorder, previous))
    }

    pub fn path(&self) -> PathBuf {
        record_path(&self.dir, self.record.boot)
    }

    fn save(&self) -> Result<()> {
        write_durably(&self.path(), &serde_json::to_vec_pretty(&self.record)?)
    }

    pub fn milestone(&mut self, name: &str, detail: &str) -> Result<()> {
        self.record.milestones.push(Milestone {
            name: name.to_string(),
            time: now_epoch(),
            uptime: uptime(),
            detail: detail.to_string(),
        });
        self.save()
    }

    pub fn end(&mut self, outcome: Outcome, reason: &str) -> Result<()> {
        self.record.outcome = outcome;
        self.record.reason = reason.to_string();
        self.save()
    }
}

/// One line per record, for `postern-init records`.
pub fn describe(record: &BootRecord) -> String {
    let outcome = serde_json::to_value(record.outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let milestones: Vec<String> = record
        .milestones
        .iter()
        .map(|m| format!("{}@{:.1}", m.name, m.uptime))
        .collect();
    let mut line = format!(
        "boot {} slot {} {outcome}: {}",
        record.boot,
        record.slot,
        milestones.join(" ")
    );
    if !record.reason.is_empty() {
        line.push_str(&format!(" ({})", record.reason));
    }
    line
}

/// `postern-init records [--json] [DIR]` (DIR defaults to /persist/boot).
pub fn command(args: &[String]) -> Result<()> {
    let json = args.iter().any(|a| a == "--json");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::paths::BOOT_RECORDS));
    for record in load_all(&dir) {
        if json {
            println!("{}", serde_json::to_string(&record)?);
        } else {
            println!("{}", describe(&record));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_without_end_is_closed_by_the_next_with_an_inferred_cause() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, previous) =
            Recorder::start(dir.path(), "id-1", "A", "postern.slot=A", false).unwrap();
        assert!(previous.is_none());
        first.milestone("persist-mounted", "").unwrap();
        // Power cut: no end written.
        let (mut second, previous) =
            Recorder::start(dir.path(), "id-2", "A", "postern.slot=A", false).unwrap();
        let previous = previous.unwrap();
        assert_eq!(previous.outcome, Outcome::PowerLossOrCrash);
        assert!(previous.reason.contains("persist-mounted"));
        assert_eq!(second.record.boot, 2);
        second.milestone(WATCHDOG_STOP_TEST, "").unwrap();
        let (third, previous) = Recorder::start(dir.path(), "id-3", "B", "", false).unwrap();
        assert_eq!(previous.unwrap().outcome, Outcome::WatchdogReset);
        assert_eq!(third.record.boot, 3);
        let all = load_all(dir.path());
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].outcome, Outcome::PowerLossOrCrash);
        assert_eq!(all[2].outcome, Outcome::Running);
    }

    #[test]
    fn card_reset_flag_means_watchdog_and_clean_end_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut first, _) = Recorder::start(dir.path(), "a", "A", "", false).unwrap();
        first.end(Outcome::CleanShutdown, "power button").unwrap();
        let (_, previous) = Recorder::start(dir.path(), "b", "A", "", true).unwrap();
        // Already ended: the watchdog flag does not rewrite it.
        assert_eq!(previous.unwrap().outcome, Outcome::CleanShutdown);
        let (_, previous) = Recorder::start(dir.path(), "c", "A", "", true).unwrap();
        assert_eq!(previous.unwrap().outcome, Outcome::WatchdogReset);
    }

    #[test]
    fn keeps_only_the_last_records_and_skips_torn_files() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..(KEEP + 5) {
            let (mut r, _) = Recorder::start(dir.path(), &i.to_string(), "A", "", false).unwrap();
            r.end(Outcome::CleanShutdown, "").unwrap();
        }
        fs::write(dir.path().join("99999999.json"), b"{\"boot\": 4").unwrap();
        let all = load_all(dir.path());
        assert_eq!(all.len(), KEEP);
        assert_eq!(all.last().unwrap().boot, (KEEP + 5) as u64);
        let line = describe(all.last().unwrap());
        assert!(line.starts_with(&format!("boot {} slot A clean-shutdown", KEEP + 5)));
    }
}
