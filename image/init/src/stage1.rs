//! Stage 1, `/init` in the initramfs: load the board's modules, find `system_<slot>`, mount
//! it (erofs, read-only), move /dev /proc /sys into it, switch root and exec /sbin/init.
//! On failure: a clear message on the console, a pause to read it, then a reboot, so that
//! GRUB's boot counting moves on (the try was already counted).

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cmdline::KernelArgs;
use crate::console::say;
use crate::mounts;
use crate::paths;

/// MODULE_INIT_COMPRESSED_FILE (include/uapi/linux/module.h): the kernel decompresses.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;
const PARTITION_WAIT: Duration = Duration::from_secs(30);
const PAUSE_BEFORE_REBOOT: Duration = Duration::from_secs(10);

/// The module paths of the order file: one a line, relative to /lib/modules/VERSION; blank
/// lines and `#` comments skipped.
pub fn parse_modules_order(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// finit_module(2); an already loaded (or built-in) module is fine.
pub fn load_module(path: &Path) -> Result<()> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let compressed = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("xz" | "zst" | "gz")
    );
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    let params = CString::default();
    use std::os::fd::AsRawFd;
    // SAFETY: finit_module reads the open file and an empty parameter string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EEXIST) {
            bail!("loading {}: {error}", path.display());
        }
    }
    Ok(())
}

pub fn load_modules(order_file: &Path) {
    let Ok(text) = fs::read_to_string(order_file) else {
        say(&format!("no {}: loading no modules", order_file.display()));
        return;
    };
    let base = Path::new("/lib/modules").join(kernel_release());
    for module in parse_modules_order(&text) {
        if let Err(error) = load_module(&base.join(&module)) {
            say(&format!("{error:#}"));
        }
    }
}

/// Deletes the initramfs contents (it stays in memory otherwise), not crossing into other
/// mounts.
fn free_initramfs(dir: &Path, root_dev: u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != root_dev {
            continue;
        }
        if meta.is_dir() {
            free_initramfs(&path, root_dev);
            let _ = fs::remove_dir(&path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
}

/// Only an initramfs (ramfs or tmpfs) root is ever emptied.
fn root_is_in_memory() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    // SAFETY: statfs fills the struct we own; the path is a NUL-terminated literal.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c"/".as_ptr(), &mut stat) } != 0 {
        return false;
    }
    matches!(stat.f_type as i64, RAMFS_MAGIC | TMPFS_MAGIC)
}

fn switch_root(new_root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in ["/dev", "/proc", "/sys", "/run"] {
        let target = new_root.join(dir.trim_start_matches('/'));
        if mounts::is_mountpoint(Path::new(dir)) {
            if !target.is_dir() {
                bail!("{} has no {dir}", new_root.display());
            }
            mounts::move_mount(Path::new(dir), &target)?;
        }
    }
    let root_dev = fs::metadata("/").map(|m| m.dev()).unwrap_or(0);
    std::env::set_current_dir(new_root)
        .with_context(|| format!("entering {}", new_root.display()))?;
    if root_is_in_memory() {
        free_initramfs(Path::new("/"), root_dev);
    }
    mounts::move_mount(Path::new("."), Path::new("/"))?;
    let dot = CString::new(".")?;
    // SAFETY: chroot to the directory we just moved onto /.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        bail!("chroot: {}", std::io::Error::last_os_error());
    }
    std::env::set_current_dir("/").context("chdir /")?;
    Ok(())
}

fn exec(program: &str, argv0: &str) -> anyhow::Error {
    let (Ok(program_c), Ok(argv0_c)) = (CString::new(program), CString::new(argv0)) else {
        return anyhow::anyhow!("bad program name");
    };
    let argv = [argv0_c.as_ptr(), std::ptr::null()];
    // SAFETY: NUL-terminated program and argv; on success this does not return.
    unsafe {
        libc::execv(program_c.as_ptr(), argv.as_ptr());
    }
    anyhow::anyhow!("exec {program}: {}", std::io::Error::last_os_error())
}

fn boot() -> Result<()> {
    mounts::mount_pseudo("proc", "/proc", "")?;
    mounts::mount_pseudo("sysfs", "/sys", "")?;
    mounts::mount_pseudo("devtmpfs", "/dev", "mode=0755")?;
    // The command line is read from /proc, so only after it is mounted.
    let args = KernelArgs::from_proc();
    load_modules(Path::new(paths::MODULES_ORDER));
    let Some(slot) = args.slot else {
        bail!("no postern.slot=A|B on the kernel command line");
    };
    let label = slot.system_label();
    say(&format!(
        "slot {}: waiting for the partition labelled {label}",
        slot.letter()
    ));
    let Some(device) = mounts::wait_for_partition(label, PARTITION_WAIT) else {
        bail!(
            "no partition labelled {label} after {} s",
            PARTITION_WAIT.as_secs()
        );
    };
    let new_root = PathBuf::from(paths::NEW_ROOT);
    mounts::mount(
        &device.display().to_string(),
        &new_root,
        "erofs",
        libc::MS_RDONLY,
        "",
    )?;
    say(&format!(
        "mounted {} (erofs) on {}",
        device.display(),
        new_root.display()
    ));
    if !new_root.join("sbin/init").exists() {
        bail!("{} has no /sbin/init", device.display());
    }
    switch_root(&new_root)?;
    say("switching to the system slot");
    Err(exec("/sbin/init", "/sbin/init"))
}

/// Stage 1 never returns: it execs stage 2 or reboots.
pub fn main() -> ! {
    std::env::set_var("PATH", "/sbin:/bin:/usr/sbin:/usr/bin");
    let error = match boot() {
        Ok(()) => anyhow::anyhow!("stage 2 returned"),
        Err(error) => error,
    };
    say(&format!("BOOT FAILED in stage 1: {error:#}"));
    say(&format!(
        "rebooting in {} s (GRUB counts this try and falls back to the other slot after 3)",
        PAUSE_BEFORE_REBOOT.as_secs()
    ));
    std::thread::sleep(PAUSE_BEFORE_REBOOT);
    crate::shutdown::reboot_now(libc::RB_AUTOBOOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_order_skips_comments_and_blanks() {
        let text = "# written by image/build\nkernel/drivers/md/md-mod.ko\n\n  kernel/drivers/md/raid1.ko.xz \n";
        assert_eq!(
            parse_modules_order(text),
            [
                "kernel/drivers/md/md-mod.ko",
                "kernel/drivers/md/raid1.ko.xz"
            ]
        );
    }

    #[test]
    fn missing_module_file_is_an_error() {
        assert!(load_module(Path::new("/nonexistent/x.ko")).is_err());
    }
}
