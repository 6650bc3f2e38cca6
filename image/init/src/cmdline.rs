//! The kernel command line (`/proc/cmdline`): the `postern.*` arguments the init reads.

use std::time::Duration;

/// Which system slot GRUB booted (`postern.slot=A|B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "A" | "a" => Some(Slot::A),
            "B" | "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// "A" or "B": the prefix of the slot's grubenv variables (`A_OK`, `A_TRY`).
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    /// The GPT label of the slot's root filesystem.
    pub fn system_label(self) -> &'static str {
        match self {
            Slot::A => "system_a",
            Slot::B => "system_b",
        }
    }
}

/// What the init takes from the kernel command line.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelArgs {
    /// The whole command line, kept in the boot record.
    pub raw: String,
    pub slot: Option<Slot>,
    /// `postern.test=1`: the test command channel and test-only switches.
    pub test: bool,
    /// `postern.factory_reset=1`.
    pub factory_reset: bool,
    /// `postern.health_timeout=SECS`: how long posternd has to pass its health check.
    pub health_timeout: Duration,
    /// `postern.cmd_timeout=SECS`: bound of one test-channel command (as qemu/guest/init).
    pub cmd_timeout: Duration,
    /// `postern.shell=1`: a shell on the console (test images).
    pub shell: bool,
}

pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_CMD_TIMEOUT: Duration = Duration::from_secs(120);

impl KernelArgs {
    pub fn parse(raw: &str) -> KernelArgs {
        let mut args = KernelArgs {
            raw: raw.trim().to_string(),
            slot: None,
            test: false,
            factory_reset: false,
            health_timeout: DEFAULT_HEALTH_TIMEOUT,
            cmd_timeout: DEFAULT_CMD_TIMEOUT,
            shell: false,
        };
        for word in raw.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let seconds = || value.parse::<u64>().ok().map(Duration::from_secs);
            match key {
                "postern.slot" => args.slot = Slot::parse(value),
                "postern.test" => args.test = value == "1",
                "postern.factory_reset" => args.factory_reset = value == "1",
                "postern.shell" => args.shell = value == "1",
                "postern.health_timeout" => {
                    args.health_timeout = seconds().unwrap_or(args.health_timeout)
                }
                "postern.cmd_timeout" => args.cmd_timeout = seconds().unwrap_or(args.cmd_timeout),
                _ => {}
            }
        }
        args
    }

    /// Reads `/proc/cmdline` (empty when it cannot be read: every argument has a default).
    pub fn from_proc() -> KernelArgs {
        KernelArgs::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }
}

/// `text` with every `word` removed (whitespace-separated), for clearing a one-shot argument
/// such as `postern.factory_reset=1` out of grubenv's EXTRA_CMDLINE.
pub fn without_word(text: &str, word: &str) -> String {
    text.split_whitespace()
        .filter(|w| *w != word)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postern_arguments_and_keeps_defaults_for_bad_values() {
        let args = KernelArgs::parse(
            "BOOT_IMAGE=/bzImage console=ttyS0 postern.slot=B postern.test=1 \
             postern.health_timeout=30 postern.cmd_timeout=oops quiet\n",
        );
        assert_eq!(args.slot, Some(Slot::B));
        assert!(args.test);
        assert!(!args.factory_reset);
        assert_eq!(args.health_timeout, Duration::from_secs(30));
        assert_eq!(args.cmd_timeout, DEFAULT_CMD_TIMEOUT);
        assert!(args.raw.ends_with("quiet"));
    }

    #[test]
    fn test_switch_needs_exactly_one() {
        assert!(!KernelArgs::parse("postern.test=0 postern.test").test);
        assert!(!KernelArgs::parse("postern.testing=1").test);
        assert!(KernelArgs::parse("postern.factory_reset=1").factory_reset);
    }

    #[test]
    fn unknown_slot_is_none() {
        assert_eq!(KernelArgs::parse("postern.slot=C").slot, None);
        assert_eq!(Slot::A.system_label(), "system_a");
        assert_eq!(Slot::B.letter(), "B");
    }

    #[test]
    fn removes_one_shot_word() {
        assert_eq!(
            without_word(
                "quiet postern.factory_reset=1 x=2",
                "postern.factory_reset=1"
            ),
            "quiet x=2"
        );
    }
}
