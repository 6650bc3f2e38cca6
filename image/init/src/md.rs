//! The data array (mdadm) and its filesystem (e2fsprogs): assemble, or create at first boot
//! when no member has an md superblock; check and mount; wipe for a factory reset.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::children::run;
use crate::plan::ArrayPlan;

const MDADM_TIMEOUT: Duration = Duration::from_secs(120);
/// mke2fs and e2fsck of a large array take a while; the watchdog is fed by a thread meanwhile.
const FS_TIMEOUT: Duration = Duration::from_secs(3600);

/// Disks that hold data in one stripe (for the filesystem's stripe-width).
pub fn data_disks(level: &str, members: usize) -> usize {
    match level {
        "raid0" => members,
        "raid5" => members.saturating_sub(1),
        "raid6" => members.saturating_sub(2),
        "raid10" => members / 2,
        _ => 1,
    }
    .max(1)
}

pub fn create_args(plan: &ArrayPlan) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "mdadm".into(),
        "--create".into(),
        plan.md_device.display().to_string(),
        "--run".into(),
        format!("--level={}", plan.level),
        format!("--raid-devices={}", plan.members.len()),
        "--metadata=1.2".into(),
    ];
    if let Some(chunk) = plan.chunk_kib {
        args.push(format!("--chunk={chunk}"));
    }
    args.extend(plan.members.iter().map(|m| m.display().to_string()));
    args
}

pub fn assemble_args(plan: &ArrayPlan, present: &[PathBuf]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "mdadm".into(),
        "--assemble".into(),
        // Degraded arrays start too (the mail must stay readable; hwmond reports it).
        "--run".into(),
        plan.md_device.display().to_string(),
    ];
    args.extend(present.iter().map(|m| m.display().to_string()));
    args
}

/// mke2fs for ext4 aligned to the array: stride = chunk / 4 KiB blocks, stripe-width =
/// stride × data disks.
pub fn mkfs_args(plan: &ArrayPlan) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "mke2fs".into(),
        "-F".into(),
        "-q".into(),
        "-t".into(),
        "ext4".into(),
        "-b".into(),
        "4096".into(),
        "-L".into(),
        "postern-data".into(),
    ];
    if let Some(chunk) = plan.chunk_kib {
        let stride = (chunk / 4).max(1) as usize;
        let width = stride * data_disks(&plan.level, plan.members.len());
        args.push("-E".into());
        args.push(format!("stride={stride},stripe_width={width}"));
    }
    args.push(plan.md_device.display().to_string());
    args
}

fn run_args(args: &[String], limit: Duration) -> Result<crate::children::Output> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&argv, limit)
}

pub fn has_md_superblock(member: &Path) -> bool {
    run(
        &["mdadm", "--examine", &member.display().to_string()],
        MDADM_TIMEOUT,
    )
    .is_ok_and(|out| out.success())
}

/// What `ensure_array` did.
#[derive(Debug, PartialEq, Eq)]
pub enum ArrayState {
    Assembled { degraded_members_missing: usize },
    Created,
}

/// Assembles the array, or creates it when every member is present and none has a
/// superblock. A member set with some superblocks that does not assemble is an error: the
/// init never overwrites a possibly recoverable array.
pub fn ensure_array(plan: &ArrayPlan) -> Result<ArrayState> {
    let missing = crate::mounts::wait_for_paths(&plan.members, Duration::from_secs(30));
    let present: Vec<PathBuf> = plan
        .members
        .iter()
        .filter(|m| !missing.contains(m))
        .cloned()
        .collect();
    if present.is_empty() {
        bail!("no member of {} is present", plan.md_device.display());
    }
    let with_superblock = present.iter().filter(|m| has_md_superblock(m)).count();
    if with_superblock == 0 {
        if !missing.is_empty() {
            bail!(
                "{} members have no md superblock and {} are missing: not creating a degraded new array",
                present.len(),
                missing.len()
            );
        }
        let out = run_args(&create_args(plan), MDADM_TIMEOUT)?;
        if !out.success() {
            bail!("mdadm --create failed: {}", out.message());
        }
        return Ok(ArrayState::Created);
    }
    let out = run_args(&assemble_args(plan, &present), MDADM_TIMEOUT)?;
    if !out.success() {
        bail!("mdadm --assemble failed: {}", out.message());
    }
    Ok(ArrayState::Assembled {
        degraded_members_missing: missing.len(),
    })
}

pub fn make_filesystem(plan: &ArrayPlan) -> Result<()> {
    let out = run_args(&mkfs_args(plan), FS_TIMEOUT)?;
    if !out.success() {
        bail!("mke2fs failed: {}", out.message());
    }
    Ok(())
}

/// What the filesystem check did.
#[derive(Debug, PartialEq, Eq)]
pub enum FsckResult {
    Clean,
    /// `e2fsck -p` fixed something.
    Fixed,
    /// `e2fsck -p` could not; `e2fsck -fy` did (its exit code).
    Repaired(i32),
}

/// e2fsck's exit code is a bit mask: 4 = errors left uncorrected, 8 = operational error.
pub fn fsck_left_errors(code: i32) -> bool {
    code & !3 != 0
}

pub fn check_filesystem(device: &Path) -> Result<FsckResult> {
    let dev = device.display().to_string();
    let out = run(&["e2fsck", "-p", &dev], FS_TIMEOUT)?;
    match out.code {
        0 => return Ok(FsckResult::Clean),
        code if !fsck_left_errors(code) => return Ok(FsckResult::Fixed),
        _ => {}
    }
    crate::console::say(&format!(
        "e2fsck -p {dev} could not fix it (code {}): running e2fsck -fy",
        out.code
    ));
    let out = run(&["e2fsck", "-fy", &dev], FS_TIMEOUT)?;
    if fsck_left_errors(out.code) {
        bail!(
            "e2fsck -fy {dev} failed (code {}): {}",
            out.code,
            out.message()
        );
    }
    Ok(FsckResult::Repaired(out.code))
}

/// Factory reset: stop the array and remove every trace that would let it assemble again.
pub fn wipe(plan: &ArrayPlan) -> Result<()> {
    let md = plan.md_device.display().to_string();
    if plan.md_device.exists() {
        let _ = crate::mounts::zero_start(&plan.md_device, 1 << 20);
    }
    let _ = run(&["mdadm", "--stop", &md], MDADM_TIMEOUT);
    let mut failures = Vec::new();
    for member in &plan.members {
        if !member.exists() {
            continue;
        }
        let name = member.display().to_string();
        let _ = run(&["mdadm", "--zero-superblock", &name], MDADM_TIMEOUT);
        let wiped = run(&["wipefs", "-a", &name], MDADM_TIMEOUT).is_ok_and(|o| o.success());
        if !wiped {
            if let Err(error) = crate::mounts::zero_start(member, 1 << 20) {
                failures.push(format!("{error:#}"));
            }
        }
    }
    if !failures.is_empty() {
        bail!("wiping the data array: {}", failures.join("; "));
    }
    Ok(())
}

pub fn stop(plan: &ArrayPlan) {
    let _ = run(
        &["mdadm", "--stop", &plan.md_device.display().to_string()],
        MDADM_TIMEOUT,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(level: &str, members: usize, chunk: Option<u32>) -> ArrayPlan {
        ArrayPlan {
            name: "md0".into(),
            md_device: "/dev/md0".into(),
            level: level.into(),
            members: (0..members)
                .map(|i| PathBuf::from(format!("/dev/vd{}", (b'b' + i as u8) as char)))
                .collect(),
            chunk_kib: chunk,
            mount: "/var/lib/postern".into(),
        }
    }

    #[test]
    fn create_command_for_raid5_with_chunk_and_no_assume_clean() {
        let args = create_args(&plan("raid5", 3, Some(64)));
        assert_eq!(
            args.join(" "),
            "mdadm --create /dev/md0 --run --level=raid5 --raid-devices=3 --metadata=1.2 \
             --chunk=64 /dev/vdb /dev/vdc /dev/vdd"
        );
        assert!(!args.iter().any(|a| a == "--assume-clean"));
        assert!(!create_args(&plan("raid1", 2, None))
            .iter()
            .any(|a| a.starts_with("--chunk")));
    }

    #[test]
    fn mkfs_aligns_to_the_stripe() {
        let args = mkfs_args(&plan("raid5", 3, Some(64))).join(" ");
        assert!(args.contains("-E stride=16,stripe_width=32"), "{args}");
        let args = mkfs_args(&plan("raid6", 6, Some(512))).join(" ");
        assert!(args.contains("stride=128,stripe_width=512"), "{args}");
        let args = mkfs_args(&plan("raid1", 2, None)).join(" ");
        assert!(!args.contains("stride"));
        assert!(args.ends_with("/dev/md0"));
    }

    #[test]
    fn data_disks_per_level() {
        assert_eq!(data_disks("raid10", 4), 2);
        assert_eq!(data_disks("raid0", 3), 3);
        assert_eq!(data_disks("raid1", 2), 1);
        assert_eq!(data_disks("raid5", 1), 1);
    }

    #[test]
    fn assemble_runs_degraded_with_present_members() {
        let p = plan("raid1", 2, None);
        let args = assemble_args(&p, &p.members[..1]);
        assert_eq!(args.join(" "), "mdadm --assemble --run /dev/md0 /dev/vdb");
    }

    #[test]
    fn fsck_codes() {
        assert!(!fsck_left_errors(0));
        assert!(!fsck_left_errors(1));
        assert!(!fsck_left_errors(2));
        assert!(fsck_left_errors(4));
        assert!(fsck_left_errors(8));
        assert!(fsck_left_errors(12));
    }
}
