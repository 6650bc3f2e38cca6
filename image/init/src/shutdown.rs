//! The end of a boot: reboot(2) and the clean shutdown sequence.

use std::time::Duration;

/// reboot(2) after sync. As PID 1 this does not return; anywhere else (or if the kernel
/// refuses) the init waits forever rather than exit (PID 1 exiting is a kernel panic).
pub fn reboot_now(command: libc::c_int) -> ! {
    // SAFETY: sync and reboot take no pointers.
    unsafe {
        libc::sync();
        libc::reboot(command);
    }
    crate::console::say(&format!(
        "reboot(2) failed: {}; halting here",
        std::io::Error::last_os_error()
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// What the end of a boot does to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reboot,
    Poweroff,
}

impl Action {
    pub fn reboot_command(self) -> libc::c_int {
        match self {
            Action::Reboot => libc::RB_AUTOBOOT,
            Action::Poweroff => libc::RB_POWER_OFF,
        }
    }

    /// Busybox init's signals: SIGTERM reboot, SIGUSR1 halt, SIGUSR2 poweroff; SIGINT is
    /// Ctrl-Alt-Del (reboot).
    pub fn for_signal(signal: i32) -> Option<Action> {
        match signal {
            libc::SIGTERM | libc::SIGINT => Some(Action::Reboot),
            libc::SIGUSR1 | libc::SIGUSR2 => Some(Action::Poweroff),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_signal_conventions() {
        assert_eq!(Action::for_signal(libc::SIGTERM), Some(Action::Reboot));
        assert_eq!(Action::for_signal(libc::SIGUSR2), Some(Action::Poweroff));
        assert_eq!(Action::for_signal(libc::SIGHUP), None);
        assert_eq!(Action::Poweroff.reboot_command(), libc::RB_POWER_OFF);
    }
}
