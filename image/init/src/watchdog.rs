//! The hardware watchdog (Linux watchdog API, include/uapi/linux/watchdog.h): opening the
//! device arms it; WDIOC_KEEPALIVE feeds it; writing 'V' before close disarms it ("magic
//! close") where the driver allows it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// _IOR('W', 2, int), _IOR('W', 5, int), _IOWR('W', 6, int).
pub const WDIOC_GETBOOTSTATUS: libc::c_ulong = ioc(2, b'W', 2, 4);
pub const WDIOC_KEEPALIVE: libc::c_ulong = ioc(2, b'W', 5, 4);
pub const WDIOC_SETTIMEOUT: libc::c_ulong = ioc(3, b'W', 6, 4);
/// The last reboot was caused by the watchdog.
pub const WDIOF_CARDRESET: i32 = 0x0020;

/// The asm-generic _IOC encoding (x86, arm64, riscv): dir << 30 | size << 16 | type << 8 | nr.
const fn ioc(dir: u64, kind: u8, nr: u64, size: u64) -> libc::c_ulong {
    (dir << 30) | (size << 16) | ((kind as u64) << 8) | nr
}

pub struct Watchdog {
    file: Option<File>,
    pub timeout_secs: i32,
    pub boot_status: i32,
}

impl Watchdog {
    /// Opens (arms) the watchdog and sets its timeout; reads why the machine last reset.
    pub fn open(device: &Path, timeout_secs: i32) -> Result<Watchdog> {
        let file = OpenOptions::new()
            .write(true)
            .open(device)
            .with_context(|| format!("opening {}", device.display()))?;
        let fd = file.as_raw_fd();
        let mut boot_status: libc::c_int = 0;
        // SAFETY: the ioctl writes one int we own.
        if unsafe { libc::ioctl(fd, WDIOC_GETBOOTSTATUS as _, &mut boot_status) } != 0 {
            boot_status = 0;
        }
        let mut timeout: libc::c_int = timeout_secs;
        // SAFETY: WDIOC_SETTIMEOUT reads and writes back one int (the timeout it set).
        if unsafe { libc::ioctl(fd, WDIOC_SETTIMEOUT as _, &mut timeout) } != 0 {
            let error = std::io::Error::last_os_error();
            crate::console::say(&format!(
                "watchdog {}: cannot set a {timeout_secs} s timeout ({error}); keeping the driver's",
                device.display()
            ));
            timeout = timeout_secs;
        }
        let watchdog = Watchdog {
            file: Some(file),
            timeout_secs: timeout,
            boot_status,
        };
        watchdog.feed()?;
        Ok(watchdog)
    }

    pub fn card_reset(&self) -> bool {
        self.boot_status & WDIOF_CARDRESET != 0
    }

    pub fn feed(&self) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut dummy: libc::c_int = 0;
        // SAFETY: WDIOC_KEEPALIVE takes (and ignores) an int pointer.
        if unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_KEEPALIVE as _, &mut dummy) } != 0 {
            bail!("feeding the watchdog: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Disarms the watchdog (clean shutdown).
    pub fn magic_close(&mut self) -> Result<()> {
        if let Some(mut file) = self.file.take() {
            file.write_all(b"V")
                .context("writing the watchdog's magic close")?;
        }
        Ok(())
    }
}

/// How often to feed: a third of the timeout, at least every second.
pub fn feed_interval_secs(timeout_secs: i32) -> u64 {
    (timeout_secs / 3).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_headers() {
        assert_eq!(WDIOC_GETBOOTSTATUS, 0x8004_5702);
        assert_eq!(WDIOC_KEEPALIVE, 0x8004_5705);
        assert_eq!(WDIOC_SETTIMEOUT, 0xC004_5706);
    }

    #[test]
    fn feed_interval_is_a_third_and_at_least_one_second() {
        assert_eq!(feed_interval_secs(60), 20);
        assert_eq!(feed_interval_secs(2), 1);
        assert_eq!(feed_interval_secs(0), 1);
    }

    #[test]
    fn a_plain_file_is_not_a_watchdog_but_magic_close_writes_v() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        std::fs::write(&path, b"").unwrap();
        let mut wd = Watchdog::open(&path, 30);
        // ioctls on a regular file fail with ENOTTY: feeding reports it.
        assert!(wd.is_err());
        let mut wd2 = Watchdog {
            file: Some(OpenOptions::new().write(true).open(&path).unwrap()),
            timeout_secs: 30,
            boot_status: WDIOF_CARDRESET,
        };
        assert!(wd2.card_reset());
        wd2.magic_close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"V");
        assert!(wd2.feed().is_ok(), "a closed watchdog needs no food");
        if let Ok(w) = wd.as_mut() {
            w.magic_close().unwrap();
        }
    }
}
