//! The ACPI power button: the evdev device named "Power Button" (drivers/acpi/button.c),
//! whose KEY_POWER press asks for a clean shutdown.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const EV_KEY: u16 = 1;
pub const KEY_POWER: u16 = 116;
/// struct input_event on 64-bit: struct timeval (16 bytes), type u16, code u16, value s32.
pub const EVENT_SIZE: usize = 24;

/// /dev/input/eventN of every input device named `name` (ACPI may register two: the fixed
/// feature button and the PNP0C0C device).
pub fn find_devices(sys_root: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(sys_root.join("class/input")) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let node = e.file_name().into_string().ok()?;
            if !node.starts_with("event") {
                return None;
            }
            let device_name = fs::read_to_string(e.path().join("device/name")).ok()?;
            (device_name.trim() == name).then(|| Path::new("/dev/input").join(node))
        })
        .collect();
    found.sort();
    found
}

/// True for a KEY_POWER press (value 1; 0 is the release, 2 autorepeat).
pub fn is_power_press(event: &[u8; EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Reads events from `device` until a power press, then calls `pressed` (again for every
/// later press). Returns when the device goes away.
pub fn watch(device: &Path, mut pressed: impl FnMut()) {
    let Ok(mut file) = fs::File::open(device) else {
        crate::console::say(&format!("cannot open {}", device.display()));
        return;
    };
    let mut event = [0u8; EVENT_SIZE];
    while file.read_exact(&mut event).is_ok() {
        if is_power_press(&event) {
            pressed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
        let mut e = [0u8; EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!is_power_press(&event(EV_KEY, 115, 1)));
        assert!(!is_power_press(&event(0, 0, 0)));
    }

    #[test]
    fn finds_the_power_button_by_name() {
        let root = tempfile::tempdir().unwrap();
        for (node, name) in [
            ("event0", "Power Button"),
            ("event1", "AT Translated Set 2 keyboard"),
            ("event2", "Power Button"),
            ("input0", "Power Button"),
        ] {
            let dir = root.path().join("class/input").join(node).join("device");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            find_devices(root.path(), "Power Button"),
            vec![
                PathBuf::from("/dev/input/event0"),
                PathBuf::from("/dev/input/event2")
            ]
        );
    }

    #[test]
    fn watch_reads_events_from_a_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let mut bytes = event(EV_KEY, 115, 1).to_vec();
        bytes.extend(event(EV_KEY, KEY_POWER, 1));
        bytes.extend(event(EV_KEY, KEY_POWER, 0));
        fs::write(&path, bytes).unwrap();
        let mut presses = 0;
        watch(&path, || presses += 1);
        assert_eq!(presses, 1);
    }
}
