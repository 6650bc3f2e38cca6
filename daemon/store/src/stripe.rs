//! md RAID stripe detection through sysfs.
//!
//! Writing less than a full stripe on RAID4/5/6 forces the md driver into a
//! read-modify-write cycle to recompute parity; padding every batch to the full stripe
//! width (chunk size x data disks) and starting segments on a stripe boundary avoids it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Default write alignment when no parity RAID is underneath (page / common block size).
pub const DEFAULT_ALIGNMENT: u64 = 4096;

/// What the store learned about the md device under its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdLayout {
    /// e.g. "raid5"
    pub level: String,
    pub chunk_bytes: u64,
    pub raid_disks: u32,
    pub data_disks: u32,
    /// chunk_bytes * data_disks
    pub stripe_bytes: u64,
}

impl MdLayout {
    /// True for levels that compute parity, where partial-stripe writes cost a
    /// read-modify-write.
    pub fn has_parity(&self) -> bool {
        matches!(self.level.as_str(), "raid4" | "raid5" | "raid6")
    }

    /// The write alignment the store uses on this device.
    pub fn alignment(&self) -> u64 {
        if self.has_parity() && self.stripe_bytes > 0 {
            self.stripe_bytes
        } else {
            DEFAULT_ALIGNMENT
        }
    }
}

/// Data disks for an md level: raid0 n, raid1 1, raid10 n/2 (near-2 layout), raid4/5
/// n-1, raid6 n-2. None for unknown levels (linear, multipath, container...).
pub fn data_disks(level: &str, raid_disks: u32) -> Option<u32> {
    let d = match level {
        "raid0" => raid_disks,
        "raid1" => 1,
        "raid10" => raid_disks / 2,
        "raid4" | "raid5" => raid_disks.checked_sub(1)?,
        "raid6" => raid_disks.checked_sub(2)?,
        _ => return None,
    };
    (d > 0).then_some(d)
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Finds the md layout of the block device holding `root`, reading
/// `<sysfs_root>/dev/block/MAJ:MIN/md/{level,chunk_size,raid_disks}`. For a partition
/// of an md device the parent's `md` directory is used. Returns None when the device
/// is not md or sysfs is unreadable.
pub fn detect(root: &Path, sysfs_root: &Path) -> Option<MdLayout> {
    let dev = std::fs::metadata(root).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let dir = sysfs_root.join(format!("dev/block/{maj}:{min}"));
    let md = if dir.join("md").is_dir() {
        dir.join("md")
    } else if dir.join("partition").exists() && dir.join("../md").is_dir() {
        dir.join("../md")
    } else {
        return None;
    };
    let level = read_trim(&md.join("level"))?;
    let chunk_bytes: u64 = read_trim(&md.join("chunk_size"))?.parse().ok()?;
    let raid_disks: u32 = read_trim(&md.join("raid_disks"))?.parse().ok()?;
    let data = data_disks(&level, raid_disks)?;
    Some(MdLayout {
        level,
        chunk_bytes,
        raid_disks,
        data_disks: data,
        stripe_bytes: chunk_bytes * u64::from(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(level: &str, chunk: u64, disks: u32) -> (tempfile::TempDir, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        let dev = std::fs::metadata(root.path()).unwrap().dev();
        let md = sys.path().join(format!(
            "dev/block/{}:{}/md",
            libc::major(dev),
            libc::minor(dev)
        ));
        std::fs::create_dir_all(&md).unwrap();
        std::fs::write(md.join("level"), format!("{level}\n")).unwrap();
        std::fs::write(md.join("chunk_size"), format!("{chunk}\n")).unwrap();
        std::fs::write(md.join("raid_disks"), format!("{disks}\n")).unwrap();
        (root, sys)
    }

    #[test]
    fn raid5_four_disks_512k_chunk_is_1_5_mib() {
        let (root, sys) = fixture("raid5", 512 * 1024, 4);
        let l = detect(root.path(), sys.path()).unwrap();
        assert_eq!(l.data_disks, 3);
        assert_eq!(l.stripe_bytes, 1536 * 1024);
        assert_eq!(l.alignment(), 1536 * 1024);
    }

    #[test]
    fn raid1_and_raid10_keep_page_alignment() {
        let (root, sys) = fixture("raid1", 65536, 2);
        let l = detect(root.path(), sys.path()).unwrap();
        assert_eq!(l.data_disks, 1);
        assert_eq!(l.alignment(), DEFAULT_ALIGNMENT);
        let (root, sys) = fixture("raid10", 65536, 4);
        let l = detect(root.path(), sys.path()).unwrap();
        assert_eq!((l.data_disks, l.stripe_bytes), (2, 131072));
        assert_eq!(l.alignment(), DEFAULT_ALIGNMENT);
    }

    #[test]
    fn data_disk_table() {
        assert_eq!(data_disks("raid0", 3), Some(3));
        assert_eq!(data_disks("raid1", 3), Some(1));
        assert_eq!(data_disks("raid10", 6), Some(3));
        assert_eq!(data_disks("raid4", 5), Some(4));
        assert_eq!(data_disks("raid6", 6), Some(4));
        assert_eq!(data_disks("raid6", 2), None);
        assert_eq!(data_disks("linear", 2), None);
    }

    #[test]
    fn not_md_gives_none() {
        let root = tempfile::tempdir().unwrap();
        let sys = tempfile::tempdir().unwrap();
        assert_eq!(detect(root.path(), sys.path()), None);
    }
}
