//! mount(2) and friends, partitions by GPT label, and the superblock checks that decide
//! whether a first boot has to make a filesystem.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn cstring(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).context("path with a NUL byte")
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<()> {
    fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let source_c = CString::new(source)?;
    let target_c = cstring(target)?;
    let fstype_c = CString::new(fstype)?;
    let data_c = CString::new(data)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            if fstype.is_empty() {
                std::ptr::null()
            } else {
                fstype_c.as_ptr()
            },
            flags,
            if data.is_empty() {
                std::ptr::null()
            } else {
                data_c.as_ptr().cast()
            },
        )
    };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        bail!("mount {source} on {} ({fstype}): {error}", target.display());
    }
    Ok(())
}

/// A pseudo filesystem that may already be mounted (EBUSY is fine).
pub fn mount_pseudo(fstype: &str, target: &str, data: &str) -> Result<()> {
    if is_mountpoint(Path::new(target)) {
        return Ok(());
    }
    mount(
        fstype,
        Path::new(target),
        fstype,
        // devtmpfs holds device nodes: it must not be nodev.
        if fstype == "devtmpfs" {
            libc::MS_NOSUID
        } else {
            libc::MS_NOSUID | libc::MS_NODEV
        },
        data,
    )
}

pub fn move_mount(from: &Path, to: &Path) -> Result<()> {
    let from_c = cstring(from)?;
    let to_c = cstring(to)?;
    // SAFETY: NUL-terminated strings; MS_MOVE takes no type or data.
    let rc = unsafe {
        libc::mount(
            from_c.as_ptr(),
            to_c.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "moving the mount {} to {}: {}",
            from.display(),
            to.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

pub fn unmount(target: &Path) -> Result<()> {
    let target_c = cstring(target)?;
    // SAFETY: NUL-terminated path.
    if unsafe { libc::umount2(target_c.as_ptr(), 0) } != 0 {
        bail!(
            "unmounting {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Remounts read-only (when a busy filesystem cannot be unmounted at shutdown).
pub fn remount_read_only(target: &Path) -> Result<()> {
    mount("", target, "", libc::MS_REMOUNT | libc::MS_RDONLY, "")
}

/// True when `path` is the root of a mount (its device differs from its parent's).
pub fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Ok(parent)) = (fs::metadata(path), fs::metadata(path.join(".."))) else {
        return false;
    };
    own.dev() != parent.dev() || own.ino() == parent.ino()
}

/// The /dev node of the partition whose GPT label is `label`, from the uevent files under
/// `<sys_root>/class/block/*/uevent` (`PARTNAME=` and `DEVNAME=`).
pub fn find_partition(sys_root: &Path, label: &str) -> Option<PathBuf> {
    let entries = fs::read_dir(sys_root.join("class/block")).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let uevent = fs::read_to_string(e.path().join("uevent")).ok()?;
            let field = |name: &str| {
                uevent
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_string)
            };
            if field("PARTNAME")? != label {
                return None;
            }
            Some(Path::new("/dev").join(field("DEVNAME")?))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Polls for the partition labelled `label` (the disk driver may still be probing).
pub fn wait_for_partition(label: &str, limit: Duration) -> Option<PathBuf> {
    let start = Instant::now();
    loop {
        if let Some(dev) = find_partition(Path::new("/sys"), label) {
            if dev.exists() {
                return Some(dev);
            }
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls until every path exists; the ones still missing at the end.
pub fn wait_for_paths(paths: &[PathBuf], limit: Duration) -> Vec<PathBuf> {
    let start = Instant::now();
    loop {
        let missing: Vec<PathBuf> = paths.iter().filter(|p| !p.exists()).cloned().collect();
        if missing.is_empty() || start.elapsed() >= limit {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ext2/3/4 superblock magic 0xEF53 at byte 1024 + 56.
pub fn has_ext_superblock(device: &Path) -> Result<bool> {
    let mut file =
        fs::File::open(device).with_context(|| format!("opening {}", device.display()))?;
    let mut magic = [0u8; 2];
    file.seek(SeekFrom::Start(1024 + 56))?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(magic == [0x53, 0xEF]),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", device.display())),
    }
}

/// Overwrites the first `bytes` of a device with zeros (what `wipefs` would do for the
/// signatures at its start) and syncs it.
pub fn zero_start(device: &Path, bytes: usize) -> Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .open(device)
        .with_context(|| format!("opening {}", device.display()))?;
    file.write_all(&vec![0u8; bytes])
        .and_then(|()| file.sync_all())
        .with_context(|| format!("zeroing {}", device.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uevent(root: &Path, name: &str, partname: Option<&str>) {
        let dir = root.join("class/block").join(name);
        fs::create_dir_all(&dir).unwrap();
        let mut text = format!("MAJOR=259\nMINOR=1\nDEVNAME={name}\nDEVTYPE=partition\n");
        if let Some(p) = partname {
            text.push_str(&format!("PARTN=3\nPARTNAME={p}\n"));
        }
        fs::write(dir.join("uevent"), text).unwrap();
    }

    #[test]
    fn finds_partition_by_gpt_label() {
        let root = tempfile::tempdir().unwrap();
        uevent(root.path(), "nvme0n1", None);
        uevent(root.path(), "nvme0n1p3", Some("system_a"));
        uevent(root.path(), "nvme0n1p5", Some("system_b"));
        uevent(root.path(), "nvme0n1p6", Some("persist"));
        assert_eq!(
            find_partition(root.path(), "system_b"),
            Some(PathBuf::from("/dev/nvme0n1p5"))
        );
        assert_eq!(find_partition(root.path(), "system"), None);
        assert_eq!(find_partition(&root.path().join("nope"), "persist"), None);
    }

    #[test]
    fn ext_magic_detection() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        fs::write(&image, vec![0u8; 4096]).unwrap();
        assert!(!has_ext_superblock(&image).unwrap());
        let mut bytes = fs::read(&image).unwrap();
        bytes[1080] = 0x53;
        bytes[1081] = 0xEF;
        fs::write(&image, &bytes).unwrap();
        assert!(has_ext_superblock(&image).unwrap());
        fs::write(&image, b"short").unwrap();
        assert!(!has_ext_superblock(&image).unwrap());
        zero_start(&image, 2).unwrap();
        assert_eq!(fs::read(&image).unwrap(), b"\0\0ort");
    }

    #[test]
    fn root_is_a_mountpoint() {
        assert!(is_mountpoint(Path::new("/")));
    }
}
