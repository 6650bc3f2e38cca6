//! Collectors: each reads one source (a command, procfs, sysfs) from a configurable root or
//! command, and turns what it sees into [`Observation`]s with the board's rules applied.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::board::Board;
use crate::config::{self, Config};
use crate::model::Observation;

pub mod edac;
pub mod filesystem;
pub mod hwmon;
pub mod ipmi;
pub mod mdraid;
pub mod smart;
pub mod system;
pub mod thermal;

/// A source of observations. `collect` is blocking; the daemon runs each collector on its own
/// thread at its own interval and folds every batch into the health model. A collector
/// reports every component it knows in every batch (the model marks missing ones UNKNOWN).
pub trait Collector: Send {
    /// Stable name: `smart`, `mdraid`, `hwmon`, `thermal`, `edac`, `system`, `filesystem`,
    /// `ipmi`.
    fn name(&self) -> &str;
    fn interval(&self) -> Duration;
    fn collect(&mut self) -> Vec<Observation>;
}

/// What every collector gets besides its own config section.
#[derive(Debug, Clone, Default)]
pub struct CollectorContext {
    /// The board file (empty when none is configured); `board.rules` are the rules.
    pub board: Board,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("{collector}: {message}")]
    Unavailable { collector: String, message: String },
}

/// Every collector the configuration enables.
pub fn build(
    config: &Config,
    ctx: &CollectorContext,
) -> Result<Vec<Box<dyn Collector>>, CollectorError> {
    use config::default_interval as d;
    let iv = &ctx.board.intervals;
    let mut out: Vec<Box<dyn Collector>> = Vec::new();
    if config.mdraid.enable {
        let interval = config::interval(config.mdraid.interval_secs, iv.mdraid_secs, d::MDRAID);
        out.push(Box::new(mdraid::MdraidCollector::new(
            &config.mdraid,
            interval,
            ctx,
        )));
    }
    if config.smart.enable {
        let interval = config::interval(config.smart.interval_secs, iv.smart_secs, d::SMART);
        out.push(Box::new(smart::SmartCollector::new(
            &config.smart,
            interval,
            ctx,
        )));
    }
    if config.hwmon.enable {
        let interval = config::interval(config.hwmon.interval_secs, iv.hwmon_secs, d::HWMON);
        out.push(Box::new(hwmon::HwmonCollector::new(
            &config.hwmon.root,
            interval,
            ctx,
        )));
    }
    if config.thermal.enable {
        let interval = config::interval(config.thermal.interval_secs, iv.thermal_secs, d::THERMAL);
        out.push(Box::new(thermal::ThermalCollector::new(
            &config.thermal.root,
            interval,
        )));
    }
    if config.edac.enable {
        let interval = config::interval(config.edac.interval_secs, iv.edac_secs, d::EDAC);
        out.push(Box::new(edac::EdacCollector::new(
            &config.edac.root,
            interval,
            ctx,
        )));
    }
    if config.system.enable {
        let interval = config::interval(config.system.interval_secs, iv.system_secs, d::SYSTEM);
        out.push(Box::new(system::SystemCollector::new(interval, ctx)));
    }
    if config.filesystem.enable {
        let interval = config::interval(
            config.filesystem.interval_secs,
            iv.filesystem_secs,
            d::FILESYSTEM,
        );
        out.push(Box::new(filesystem::FilesystemCollector::new(
            &config.filesystem,
            interval,
            ctx,
        )));
    }
    if let Some(c) = ipmi::build(&config.ipmi, ctx)? {
        out.push(c);
    }
    Ok(out)
}

/// Output of a command run by a collector.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    /// Kept (bounded) so that a tool failing outside its JSON can say why in the reason.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// The tool's own complaint: the last non-empty stderr line, else the `=======>` line
    /// smartctl prints on stdout for a bad command line; `None` when it said nothing.
    pub fn complaint(&self) -> Option<String> {
        let last = |bytes: &[u8]| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(String::from)
        };
        let message = last(&self.stderr).or_else(|| {
            String::from_utf8_lossy(&self.stdout).lines().find_map(|l| {
                l.trim()
                    .strip_prefix("=======>")
                    .map(|m| m.trim().to_string())
            })
        })?;
        // A reason is one line of a status table or a mail subject, not a log dump.
        Some(message.chars().take(300).collect())
    }
}

/// Runs `argv` (program + arguments) with stdin closed, stdout and stderr captured, and kills
/// it after `timeout`. Nonzero exit is not an error (smartctl encodes findings in its exit
/// bits).
pub fn run_command(argv: &[String], timeout: Duration) -> std::io::Result<CommandOutput> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "empty command",
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(out) = stdout.as_mut() {
            // Bounded: no tool we run prints more than a few hundred KiB.
            let _ = out.take(16 << 20).read_to_end(&mut buf);
        }
        buf
    });
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(err) = stderr.as_mut() {
            // Keep the head, drain the rest so the child never blocks on a full pipe.
            let _ = err.take(64 << 10).read_to_end(&mut buf);
            let _ = std::io::copy(err, &mut std::io::sink());
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{program} did not finish in {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(CommandOutput {
        status: status.code(),
        stdout,
        stderr,
    })
}

/// Reads a sysfs/procfs attribute, trimmed; `None` when absent or unreadable.
pub fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Reads a sysfs attribute as a number.
pub fn read_num(path: &Path) -> Option<f64> {
    read_trim(path)?.parse().ok()
}

/// Sorted directory entries whose names start with `prefix`, as (name, path).
pub fn dir_entries(dir: &Path, prefix: &str) -> Vec<(String, std::path::PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.starts_with(prefix).then(|| (name, e.path()))
        })
        .collect();
    out.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    out
}

/// Orders `hwmon2` before `hwmon10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| {
        let i = s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (head, tail) = s.split_at(i);
        (head.to_string(), tail.parse::<u64>().unwrap_or(0))
    };
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_output_and_timeout() {
        let out = run_command(
            &["sh".into(), "-c".into(), "echo hi; exit 3".into()],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.status, Some(3));
        assert_eq!(out.complaint(), None);
        let out = run_command(
            &[
                "sh".into(),
                "-c".into(),
                "echo '{}'; echo 'first' >&2; echo 'smartctl: Permission denied' >&2; exit 2"
                    .into(),
            ],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            out.complaint().as_deref(),
            Some("smartctl: Permission denied")
        );
        let e = run_command(&["sleep".into(), "5".into()], Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(run_command(&[], Duration::from_secs(1)).is_err());
        assert!(run_command(&["/nonexistent/x".into()], Duration::from_secs(1)).is_err());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["hwmon10", "hwmon2", "hwmon1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["hwmon1", "hwmon2", "hwmon10"]);
    }
}
