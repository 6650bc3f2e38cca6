//! md RAID: `/proc/mdstat`, `/sys/block/md*/md/` and `mdadm --detail --export`.
//!
//! One component `array/<mdN>` per array. Events use mdadm --monitor's names (mdadm(8),
//! MONITOR MODE): `NewArray`, `DegradedArray`, `Fail`, `FailSpare`, `SpareActive`,
//! `RebuildStarted`, `Rebuild20`/`40`/`60`/`80`, `RebuildFinished`, `DeviceDisappeared`.
//!
//! States (board `[rules]` overridable):
//! - failed (inactive or broken, or more members missing than the level tolerates) and
//!   read-only (`array_state` readonly): CRITICAL, storage unsafe (data arrays);
//! - degraded with no redundancy left (RAID1 with one in-sync member, RAID5 or RAID10 missing one,
//!   RAID6 missing two): `array_degraded_no_redundancy` (CRITICAL);
//! - degraded with redundancy left (RAID6 missing one, 3-way mirror missing one):
//!   `array_degraded_redundant` (WARNING);
//! - recovering onto a spare/replacement, resyncing or reshaping: `array_rebuilding` (WARNING):
//!   a degraded array that is rebuilding is WARNING, not CRITICAL, because the operator's
//!   action is under way (a new failure during the rebuild raises Fail and CRITICAL again);
//! - `mismatch_cnt` > 0 when idle: `array_mismatch` (WARNING);
//! - a board array that is missing: CRITICAL (storage unsafe when it is a data array).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::board::{Board, Role};
use crate::collectors::{dir_entries, read_trim, run_command, Collector, CollectorContext};
use crate::config::MdraidConfig;
use crate::model::{ComponentId, ComponentKind, Observation, Reading, State, Unit};

/// One array as /proc/mdstat shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MdstatArray {
    pub name: String,
    pub active: bool,
    /// `(read-only)` or `(auto-read-only)` after `active`.
    pub read_only: Option<String>,
    pub level: String,
    pub members: Vec<MdstatMember>,
    /// `[n/m]`: raid disks, working disks.
    pub raid_disks: Option<u32>,
    pub working: Option<u32>,
    /// `[UU_]`.
    pub status: String,
    pub blocks: Option<u64>,
    /// `recovery`, `resync`, `check`, `reshape`, `repair` with percent, and `resync=DELAYED`
    /// or `PENDING` (percent None).
    pub action: Option<(String, Option<f64>)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MdstatMember {
    pub device: String,
    pub slot: Option<u32>,
    pub faulty: bool,
    pub spare: bool,
    pub write_mostly: bool,
    pub replacement: bool,
}

/// Parses /proc/mdstat (format of drivers/md/md.c `md_seq_show`).
pub fn parse_mdstat(text: &str) -> Vec<MdstatArray> {
    let mut out: Vec<MdstatArray> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty()
            || trimmed.starts_with("Personalities")
            || trimmed.starts_with("unused devices")
        {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some((name, rest)) = line.split_once(" : ") {
                out.push(parse_header(name.trim(), rest));
            }
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if trimmed.contains(" blocks") {
            cur.blocks = trimmed
                .split_whitespace()
                .next()
                .and_then(|b| b.parse().ok());
            for part in trimmed.split_whitespace() {
                if let Some(inner) = part.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
                    if let Some((n, m)) = inner.split_once('/') {
                        cur.raid_disks = n.parse().ok();
                        cur.working = m.parse().ok();
                    } else if inner.chars().all(|c| c == 'U' || c == '_') && !inner.is_empty() {
                        cur.status = inner.to_string();
                    }
                }
            }
        } else {
            for action in ["recovery", "resync", "check", "reshape", "repair"] {
                if let Some(pos) = trimmed.find(action) {
                    let after = trimmed[pos + action.len()..].trim_start();
                    if let Some(rest) = after.strip_prefix('=') {
                        let rest = rest.trim_start();
                        let pct = rest
                            .split('%')
                            .next()
                            .and_then(|p| p.trim().parse::<f64>().ok())
                            .filter(|_| rest.contains('%'));
                        cur.action = Some((action.to_string(), pct));
                        break;
                    }
                }
            }
        }
    }
    out
}

fn parse_header(name: &str, rest: &str) -> MdstatArray {
    let mut a = MdstatArray {
        name: name.to_string(),
        ..MdstatArray::default()
    };
    let mut words = rest.split_whitespace().peekable();
    match words.next() {
        Some("active") => a.active = true,
        Some(_) | None => a.active = false,
    }
    if let Some(w) = words.peek() {
        if w.starts_with('(') {
            a.read_only = Some(w.trim_matches(|c| c == '(' || c == ')').to_string());
            words.next();
        }
    }
    if a.active {
        if let Some(w) = words.peek() {
            if !w.contains('[') {
                a.level = w.to_string();
                words.next();
            }
        }
    }
    for w in words {
        let Some(bracket) = w.find('[') else { continue };
        let device = w[..bracket].to_string();
        let after = &w[bracket + 1..];
        let slot = after.split(']').next().and_then(|s| s.parse().ok());
        let flags = after.split_once(']').map(|x| x.1).unwrap_or("");
        a.members.push(MdstatMember {
            device,
            slot,
            faulty: flags.contains("(F)"),
            spare: flags.contains("(S)"),
            write_mostly: flags.contains("(W)"),
            replacement: flags.contains("(R)"),
        });
    }
    a
}

/// What /sys/block/<md>/md/ says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MdSysfs {
    pub array_state: Option<String>,
    pub level: Option<String>,
    pub degraded: Option<u32>,
    pub raid_disks: Option<u32>,
    pub sync_action: Option<String>,
    /// (done, total) sectors; None when "none".
    pub sync_completed: Option<(u64, u64)>,
    pub mismatch_cnt: Option<u64>,
    /// member device name (sda2) -> state flags (in_sync, faulty, spare...).
    pub members: BTreeMap<String, Vec<String>>,
}

pub fn read_sysfs(md_dir: &Path) -> Option<MdSysfs> {
    if !md_dir.is_dir() {
        return None;
    }
    let num = |f: &str| read_trim(&md_dir.join(f)).and_then(|s| s.parse().ok());
    let sync_completed = read_trim(&md_dir.join("sync_completed")).and_then(|s| {
        let (a, b) = s.split_once('/')?;
        Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
    });
    let mut members = BTreeMap::new();
    for (name, path) in dir_entries(md_dir, "dev-") {
        let state = read_trim(&path.join("state")).unwrap_or_default();
        let flags = state
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        members.insert(name.trim_start_matches("dev-").to_string(), flags);
    }
    Some(MdSysfs {
        array_state: read_trim(&md_dir.join("array_state")),
        level: read_trim(&md_dir.join("level")),
        degraded: num("degraded"),
        raid_disks: num("raid_disks"),
        sync_action: read_trim(&md_dir.join("sync_action")),
        sync_completed,
        mismatch_cnt: read_trim(&md_dir.join("mismatch_cnt")).and_then(|s| s.parse().ok()),
        members,
    })
}

/// Parses `mdadm --detail --export` (KEY=VALUE lines).
pub fn parse_detail_export(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// How many members a level may lose and keep its data (guaranteed, whatever the positions).
fn tolerable_failures(level: &str, raid_disks: u32) -> u32 {
    match level {
        "raid1" => raid_disks.saturating_sub(1),
        "raid4" | "raid5" => 1,
        "raid6" => 2,
        // RAID10 near-2: one member per mirror pair; only 1 is guaranteed.
        "raid10" => 1,
        _ => 0,
    }
}

/// What the collector remembers of an array between polls.
#[derive(Debug, Clone, Default)]
struct Prev {
    degraded: u32,
    members: BTreeMap<String, MemberState>,
    syncing: Option<String>,
    bucket: u32,
    detail: BTreeMap<String, String>,
    array_state: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    InSync,
    Faulty,
    Spare,
    /// Has a slot but is not in sync: being rebuilt onto.
    Rebuilding,
}

pub struct MdraidCollector {
    interval: Duration,
    mdstat: PathBuf,
    sys_block: PathBuf,
    command: Vec<String>,
    timeout: Duration,
    board: Board,
    prev: BTreeMap<String, Prev>,
    first: bool,
}

impl MdraidCollector {
    pub fn new(config: &MdraidConfig, interval: Duration, ctx: &CollectorContext) -> Self {
        MdraidCollector {
            interval,
            mdstat: config.proc_root.join("mdstat"),
            sys_block: config.sys_root.join("block"),
            command: config.command.clone(),
            timeout: Duration::from_secs_f64(config.timeout_secs.clamp(0.1, 600.0)),
            board: ctx.board.clone(),
            prev: BTreeMap::new(),
            first: true,
        }
    }

    fn detail(&self, name: &str) -> Option<BTreeMap<String, String>> {
        if self.command.is_empty() {
            return None;
        }
        let mut argv = self.command.clone();
        argv.extend(["--detail".into(), "--export".into(), format!("/dev/{name}")]);
        match run_command(&argv, self.timeout) {
            Ok(out) if out.status == Some(0) => {
                Some(parse_detail_export(&String::from_utf8_lossy(&out.stdout)))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(event = "hwmon.mdadm_failed", array = name, error = %e);
                None
            }
        }
    }

    fn observe(&mut self, a: &MdstatArray) -> Observation {
        let rules = self.board.rules.clone();
        let id = ComponentId::new(ComponentKind::Array, a.name.clone());
        let mut obs = Observation::new(id);
        let sys = read_sysfs(&self.sys_block.join(&a.name).join("md"));
        let is_new = !self.prev.contains_key(&a.name);
        let prev = self.prev.get(&a.name).cloned().unwrap_or_default();
        let role = self
            .board
            .array(&a.name)
            .map(|b| b.role)
            .unwrap_or(Role::Data);

        let level = sys
            .as_ref()
            .and_then(|s| s.level.clone())
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| a.level.clone());
        let array_state = sys
            .as_ref()
            .and_then(|s| s.array_state.clone())
            .unwrap_or_else(|| match (&a.read_only, a.active) {
                (_, false) => "inactive".into(),
                (Some(r), true) if r == "read-only" => "readonly".into(),
                (Some(r), true) if r == "auto-read-only" => "read-auto".into(),
                _ => "active".into(),
            });
        let raid_disks = sys
            .as_ref()
            .and_then(|s| s.raid_disks)
            .or(a.raid_disks)
            .unwrap_or(a.members.len() as u32);
        // Member states: sysfs when present, else mdstat flags.
        let mut members: BTreeMap<String, MemberState> = BTreeMap::new();
        match sys.as_ref().filter(|s| !s.members.is_empty()) {
            Some(s) => {
                for (dev, flags) in &s.members {
                    let has = |f: &str| flags.iter().any(|x| x == f);
                    let st = if has("faulty") {
                        MemberState::Faulty
                    } else if has("in_sync") {
                        MemberState::InSync
                    } else if has("spare") {
                        // A spare with a slot assigned is being rebuilt onto; sysfs shows
                        // "spare" until recovery finishes.
                        if a.members.iter().any(|m| m.device == *dev && !m.spare)
                            && a.action.as_ref().is_some_and(|x| x.0 == "recovery")
                        {
                            MemberState::Rebuilding
                        } else {
                            MemberState::Spare
                        }
                    } else {
                        MemberState::Rebuilding
                    };
                    members.insert(dev.clone(), st);
                }
            }
            None => {
                // mdstat's [n] is the descriptor number, not the role: when fewer members work
                // than are listed, the newest descriptors (highest numbers) are the ones being
                // rebuilt onto.
                let mut listed: Vec<&MdstatMember> =
                    a.members.iter().filter(|m| !m.faulty && !m.spare).collect();
                listed.sort_by_key(|m| std::cmp::Reverse(m.slot.unwrap_or(0)));
                let working = a.working.map(|w| w as usize).unwrap_or(listed.len());
                let extra = listed.len().saturating_sub(working);
                let rebuilding: BTreeSet<&str> = listed
                    .iter()
                    .take(extra)
                    .map(|m| m.device.as_str())
                    .collect();
                for m in &a.members {
                    let st = if m.faulty {
                        MemberState::Faulty
                    } else if m.spare {
                        MemberState::Spare
                    } else if rebuilding.contains(m.device.as_str()) {
                        MemberState::Rebuilding
                    } else {
                        MemberState::InSync
                    };
                    members.insert(m.device.clone(), st);
                }
            }
        }
        let count = |s: MemberState| members.values().filter(|m| **m == s).count() as u32;
        let in_sync = count(MemberState::InSync);
        let faulty = count(MemberState::Faulty);
        let spares = count(MemberState::Spare);
        let rebuilding = count(MemberState::Rebuilding);
        let degraded = sys
            .as_ref()
            .and_then(|s| s.degraded)
            .or_else(|| Some(a.raid_disks?.saturating_sub(a.working?)))
            .unwrap_or_else(|| raid_disks.saturating_sub(in_sync));

        // sysfs when it has sync_action (it is the kernel's current word), else mdstat.
        let sync_action = match sys.as_ref().and_then(|s| s.sync_action.clone()) {
            Some(action) => Some(action).filter(|s| s != "idle" && s != "frozen"),
            // resync=PENDING / DELAYED (no percentage) is not running yet.
            None => a
                .action
                .as_ref()
                .filter(|(_, pct)| pct.is_some())
                .map(|(x, _)| match x.as_str() {
                    "recovery" => "recover".to_string(),
                    other => other.to_string(),
                }),
        }
        // An auto-read-only array has not been written since assembly: nothing runs.
        .filter(|_| array_state != "read-auto");
        let percent = sys
            .as_ref()
            .and_then(|s| s.sync_completed)
            .filter(|(_, total)| *total > 0)
            .map(|(done, total)| done as f64 * 100.0 / total as f64)
            .or_else(|| a.action.as_ref().and_then(|x| x.1));
        let mismatch = sys.as_ref().and_then(|s| s.mismatch_cnt).unwrap_or(0);

        // Readings (node_exporter node_md_* names map onto these); most telling first, as
        // `hwmond status` shows the first few.
        obs.reading(Reading::new("degraded", degraded as f64, Unit::Count));
        if let Some(p) = percent {
            obs.reading(Reading::new("sync_percent", p, Unit::Percent));
        }
        obs.reading(Reading::new("disks_active", in_sync as f64, Unit::Count));
        obs.reading(Reading::new(
            "disks_required",
            raid_disks as f64,
            Unit::Count,
        ));
        obs.reading(Reading::new("disks_failed", faulty as f64, Unit::Count));
        obs.reading(Reading::new("disks_spare", spares as f64, Unit::Count));
        obs.reading(Reading::new(
            "disks_rebuilding",
            rebuilding as f64,
            Unit::Count,
        ));
        if let Some(b) = a.blocks {
            obs.reading(Reading::new("blocks", b as f64, Unit::Count));
        }
        obs.reading(Reading::new("mismatch_cnt", mismatch as f64, Unit::Count));
        obs.attr("level", level.clone());
        obs.attr("array_state", array_state.clone());
        obs.attr(
            "sync_action",
            sync_action.clone().unwrap_or_else(|| "idle".into()),
        );
        obs.attr(
            "members",
            members
                .iter()
                .map(|(d, s)| format!("{d}:{}", member_str(*s)))
                .collect::<Vec<_>>()
                .join(","),
        );
        obs.attr(
            "role",
            match role {
                Role::Data => "data",
                Role::System => "system",
                Role::Spare => "spare",
            },
        );

        // mdadm --detail --export: on first sight and whenever the array changes.
        let changed = is_new || prev.degraded != degraded || prev.array_state != array_state;
        let detail = if changed {
            self.detail(&a.name).unwrap_or_default()
        } else {
            prev.detail.clone()
        };
        for (k, v) in &detail {
            match k.as_str() {
                "MD_UUID" => obs.attr("uuid", v.clone()),
                "MD_METADATA" => obs.attr("metadata", v.clone()),
                "MD_NAME" => obs.attr("name", v.clone()),
                "MD_DEVNAME" => obs.attr("devname", v.clone()),
                _ => {}
            }
        }

        // State.
        let tolerable = tolerable_failures(&level, raid_disks);
        let failed_state = matches!(
            array_state.as_str(),
            "inactive" | "broken" | "clear" | "suspended"
        ) || (!a.active)
            || (raid_disks > 0 && degraded > tolerable && tolerable_is_exact(&level))
            || (raid_disks > 0 && in_sync == 0 && level != "raid0" && level != "linear");
        if failed_state {
            let why = if !a.active || array_state == "inactive" {
                "array is inactive".to_string()
            } else {
                format!("array failed ({degraded} of {raid_disks} members missing, state {array_state})")
            };
            obs.raise(State::Critical, why.clone());
            if role == Role::Data {
                obs.storage_unsafe = Some(why);
            }
        } else {
            if array_state == "readonly" {
                obs.raise(State::Critical, "array is read-only");
                if role == Role::Data {
                    obs.storage_unsafe = Some("array is read-only".into());
                }
            }
            let recovering = matches!(
                sync_action.as_deref(),
                Some("recover") | Some("resync") | Some("reshape")
            );
            if degraded > 0 {
                let left = tolerable.saturating_sub(degraded);
                let why = format!("degraded: {degraded} of {raid_disks} members missing");
                if recovering {
                    obs.raise(rules.array_rebuilding, format!("{why}, rebuilding"));
                } else if left == 0 {
                    obs.raise(
                        rules.array_degraded_no_redundancy,
                        format!("{why}, no redundancy left"),
                    );
                } else {
                    obs.raise(rules.array_degraded_redundant, why);
                }
            } else if recovering {
                obs.raise(
                    rules.array_rebuilding,
                    format!("{} in progress", sync_action.clone().unwrap_or_default()),
                );
            }
            if mismatch > 0 && sync_action.is_none() {
                obs.raise(
                    rules.array_mismatch,
                    format!("mismatch_cnt {mismatch} after check"),
                );
            }
            if faulty > 0 && degraded == 0 {
                obs.raise(
                    State::Warning,
                    format!("{faulty} faulty member(s) not yet removed"),
                );
            }
        }

        // Events, mdadm --monitor style.
        if is_new && !self.first {
            obs.events.push("NewArray".into());
        }
        if degraded > 0 && (is_new || degraded > prev.degraded) {
            obs.events.push("DegradedArray".into());
        }
        let syncing = sync_action.clone().filter(|s| s != "idle");
        let mut bucket = 0;
        match (&prev.syncing, &syncing) {
            (None, Some(_)) if !(is_new && self.first && percent.unwrap_or(0.0) > 0.0) => {
                obs.events.push("RebuildStarted".into());
            }
            (Some(_), None) => obs.events.push("RebuildFinished".into()),
            _ => {}
        }
        if syncing.is_some() {
            bucket = ((percent.unwrap_or(0.0) / 20.0).floor() as u32).min(4);
            let from = if prev.syncing.is_some() {
                prev.bucket
            } else if is_new && self.first {
                bucket
            } else {
                0
            };
            for b in (from + 1)..=bucket {
                obs.events.push(format!("Rebuild{}", b * 20));
            }
        }
        // Member changes after the sync ones (mdadm reports RebuildFinished, then SpareActive).
        if !is_new {
            for (dev, st) in &members {
                let before = prev.members.get(dev).copied();
                match (before, st) {
                    (Some(MemberState::Rebuilding), MemberState::Faulty) => {
                        obs.events.push("FailSpare".into())
                    }
                    (Some(b), MemberState::Faulty) if b != MemberState::Faulty => {
                        obs.events.push("Fail".into())
                    }
                    (Some(MemberState::Rebuilding | MemberState::Spare), MemberState::InSync) => {
                        obs.events.push("SpareActive".into())
                    }
                    _ => {}
                }
            }
            // A member that vanished while it was faulty or in sync (hot-removed disk).
            for (dev, st) in &prev.members {
                if !members.contains_key(dev) && *st == MemberState::InSync {
                    obs.events.push("Fail".into());
                }
            }
        }
        obs.events.dedup();

        self.prev.insert(
            a.name.clone(),
            Prev {
                degraded,
                members,
                syncing,
                bucket,
                detail,
                array_state,
            },
        );
        obs
    }
}

/// For levels where exceeding `tolerable_failures` certainly loses data. RAID10 can survive
/// more failures when they hit different mirror pairs; md then keeps the array active, so the
/// array state decides.
fn tolerable_is_exact(level: &str) -> bool {
    matches!(level, "raid1" | "raid4" | "raid5" | "raid6")
}

fn member_str(s: MemberState) -> &'static str {
    match s {
        MemberState::InSync => "in_sync",
        MemberState::Faulty => "faulty",
        MemberState::Spare => "spare",
        MemberState::Rebuilding => "rebuilding",
    }
}

impl Collector for MdraidCollector {
    fn name(&self) -> &str {
        "mdraid"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        let text = std::fs::read_to_string(&self.mdstat).unwrap_or_default();
        let arrays = parse_mdstat(&text);
        let mut out = Vec::new();
        let mut present = BTreeSet::new();
        for a in &arrays {
            present.insert(a.name.clone());
            out.push(self.observe(a));
        }
        // Arrays seen before (or promised by the board) that are gone.
        let gone: Vec<String> = self
            .prev
            .keys()
            .filter(|n| !present.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            let mut obs = Observation::new(ComponentId::new(ComponentKind::Array, name.clone()));
            obs.raise(State::Critical, "array no longer present in /proc/mdstat");
            obs.events.push("DeviceDisappeared".into());
            if self
                .board
                .array(&name)
                .map(|b| b.role)
                .unwrap_or(Role::Data)
                == Role::Data
            {
                obs.storage_unsafe = Some("array no longer present".into());
            }
            self.prev.remove(&name);
            if self.board.array(&name).is_some() {
                // Reported below as missing from now on.
                continue;
            }
            out.push(obs);
        }
        for b in &self.board.arrays {
            if present.contains(&b.name) {
                continue;
            }
            let mut obs = Observation::new(ComponentId::new(ComponentKind::Array, b.name.clone()));
            obs.raise(State::Critical, "board array is not assembled");
            obs.attr("level", b.level.clone());
            if b.role == Role::Data {
                obs.storage_unsafe = Some("data array is not assembled".into());
            }
            out.push(obs);
        }
        self.first = false;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MDSTAT: &str = "Personalities : [raid1] [raid10] [raid6] [raid5] [raid4]
md1 : active raid1 sdb3[2](F) sda3[0]
      2094080 blocks super 1.2 [2/1] [U_]
      
md0 : active raid1 sdb2[1] sda2[0]
      1046528 blocks super 1.2 [2/2] [UU]
      
md2 : active raid1 sdd1[2] sdc1[0]
      1046528 blocks super 1.2 [2/1] [U_]
      [====>................]  recovery = 23.5% (246016/1046528) finish=0.6min speed=20501K/sec
      
md3 : inactive sde1[0](S)
      1046528 blocks super 1.2
       
md4 : active (auto-read-only) raid10 sdf1[3] sdg1[2] sdh1[1] sdi1[0]
      2093056 blocks super 1.2 512K chunks 2 near-copies [4/4] [UUUU]
      	resync=PENDING
      
unused devices: <none>
";

    #[test]
    fn parses_mdstat() {
        let a = parse_mdstat(MDSTAT);
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].name, "md1");
        assert_eq!(a[0].level, "raid1");
        assert!(a[0].members[0].faulty);
        assert_eq!(a[0].members[0].slot, Some(2));
        assert_eq!((a[0].raid_disks, a[0].working), (Some(2), Some(1)));
        assert_eq!(a[0].status, "U_");
        assert_eq!(a[2].action, Some(("recovery".into(), Some(23.5))));
        assert!(!a[3].active);
        assert!(a[3].members[0].spare);
        assert_eq!(a[4].read_only.as_deref(), Some("auto-read-only"));
        assert_eq!(a[4].level, "raid10");
        assert_eq!(a[4].action, Some(("resync".into(), None)));
        assert_eq!(a[1].blocks, Some(1046528));
    }

    fn collector(dir: &Path) -> MdraidCollector {
        let config = MdraidConfig {
            proc_root: dir.to_path_buf(),
            sys_root: dir.join("sys"),
            command: Vec::new(),
            ..MdraidConfig::default()
        };
        MdraidCollector::new(
            &config,
            Duration::from_secs(1),
            &CollectorContext::default(),
        )
    }

    #[test]
    fn states_from_mdstat_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mdstat"), MDSTAT).unwrap();
        let mut c = collector(dir.path());
        let obs = c.collect();
        let by = |n: &str| obs.iter().find(|o| o.component.name == n).unwrap();
        assert_eq!(by("md0").state, State::Ok);
        assert_eq!(by("md1").state, State::Critical);
        assert!(by("md1").events.contains(&"DegradedArray".to_string()));
        assert!(by("md1").storage_unsafe.is_none());
        assert_eq!(by("md2").state, State::Warning, "{}", by("md2").reason);
        assert_eq!(by("md3").state, State::Critical);
        assert!(by("md3").storage_unsafe.is_some());
        assert_eq!(by("md4").state, State::Ok, "{}", by("md4").reason);
    }

    #[test]
    fn rebuild_events_every_20_percent() {
        let dir = tempfile::tempdir().unwrap();
        let base =
            "md0 : active raid1 sdb2[2] sda2[0]\n      1046528 blocks super 1.2 [2/1] [U_]\n";
        std::fs::write(dir.path().join("mdstat"), format!("{base}\n")).unwrap();
        let mut c = collector(dir.path());
        let o = c.collect();
        assert_eq!(o[0].events, vec!["DegradedArray"]);
        let mut all = Vec::new();
        for pct in ["5.0", "21.0", "65.2", "99.9"] {
            std::fs::write(
                dir.path().join("mdstat"),
                format!("{base}      [>....]  recovery = {pct}% (1/2) finish=1min speed=1K/sec\n"),
            )
            .unwrap();
            all.extend(c.collect().remove(0).events);
        }
        std::fs::write(
            dir.path().join("mdstat"),
            "md0 : active raid1 sdb2[2] sda2[0]\n      1046528 blocks super 1.2 [2/2] [UU]\n",
        )
        .unwrap();
        let last = c.collect().remove(0);
        all.extend(last.events.clone());
        assert_eq!(
            all,
            vec![
                "RebuildStarted",
                "Rebuild20",
                "Rebuild40",
                "Rebuild60",
                "Rebuild80",
                "RebuildFinished",
                "SpareActive"
            ]
        );
        assert_eq!(last.state, State::Ok);
    }

    #[test]
    fn disappearing_array() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mdstat"),
            "md0 : active raid1 sdb2[1] sda2[0]\n      10 blocks super 1.2 [2/2] [UU]\n",
        )
        .unwrap();
        let mut c = collector(dir.path());
        assert_eq!(c.collect()[0].state, State::Ok);
        std::fs::write(
            dir.path().join("mdstat"),
            "Personalities : \nunused devices: <none>\n",
        )
        .unwrap();
        let o = c.collect();
        assert_eq!(o[0].events, vec!["DeviceDisappeared"]);
        assert_eq!(o[0].state, State::Critical);
        assert!(c.collect().is_empty());
    }

    #[test]
    fn redundancy_by_level() {
        let dir = tempfile::tempdir().unwrap();
        let text = "Personalities : [raid6] [raid5] [raid4] [raid10]
md0 : active raid6 sdd1[3] sdc1[2] sdb1[1]
      2093056 blocks super 1.2 level 6, 512k chunk, algorithm 2 [4/3] [_UUU]

md1 : active raid10 sdh1[3] sdg1[2] sdf1[1]
      2093056 blocks super 1.2 512K chunks 2 near-copies [4/3] [_UUU]

md2 : active raid5 sdk1[2]
      2093056 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/1] [__U]

md3 : active raid1 sdn1[2] sdm1[1] sdl1[0]
      1046528 blocks super 1.2 [3/2] [UU_]

unused devices: <none>
";
        std::fs::write(dir.path().join("mdstat"), text).unwrap();
        let mut c = collector(dir.path());
        let obs = c.collect();
        let by = |n: &str| obs.iter().find(|o| o.component.name == n).unwrap();
        // RAID6 missing one still survives another failure.
        assert_eq!(by("md0").state, State::Warning, "{}", by("md0").reason);
        // RAID10 missing one: that mirror pair has no copy left.
        assert_eq!(by("md1").state, State::Critical);
        assert!(by("md1").storage_unsafe.is_none());
        // RAID5 missing two: data lost.
        assert_eq!(by("md2").state, State::Critical);
        assert!(by("md2").storage_unsafe.is_some());
        // 3-way mirror missing one.
        assert_eq!(by("md3").state, State::Warning);
    }

    #[test]
    fn read_only_array_is_unsafe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mdstat"),
            "md0 : active (read-only) raid1 sdb2[1] sda2[0]\n      10 blocks super 1.2 [2/2] [UU]\n",
        )
        .unwrap();
        let o = collector(dir.path()).collect().remove(0);
        assert_eq!(o.state, State::Critical);
        assert_eq!(o.storage_unsafe.as_deref(), Some("array is read-only"));
    }

    #[test]
    fn detail_export() {
        let d = parse_detail_export("MD_LEVEL=raid1\nMD_DEVICES=2\nMD_UUID=a:b:c:d\n");
        assert_eq!(d["MD_LEVEL"], "raid1");
        assert_eq!(d["MD_UUID"], "a:b:c:d");
    }
}
