//! The checks of a board file, after it deserialised (so the types are right and no key is
//! unknown): names, ranges and cross-references. Each problem points at the offending key
//! (`file:line:column`), found again in the text with [`Locator`] because serde keeps no
//! positions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::board::{Board, BoardArray, Role, SensorSource, ARRAY_FILESYSTEMS, RAID_LEVELS};
use crate::health::ComponentKind;
use crate::toml_load::{LoadError, Locator, Seg};

/// Serial speeds the kernel's 8250 driver and GRUB's serial terminal both take.
pub const CONSOLE_BAUDS: [u32; 11] = [
    1200, 2400, 4800, 9600, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
];

/// Collects problems with their position in the file.
struct Problems<'a> {
    origin: &'a Path,
    locator: Locator<'a>,
    found: Vec<LoadError>,
}

impl<'a> Problems<'a> {
    fn new(text: &'a str, origin: &'a Path) -> Problems<'a> {
        Problems {
            origin,
            locator: Locator::new(text),
            found: Vec::new(),
        }
    }

    fn at(&mut self, path: &[Seg<'_>], message: impl Into<String>) {
        let (line, column) = self.locator.position(path);
        self.found
            .push(LoadError::invalid(self.origin, line, column, message));
    }

    /// In file order, so that `check` reads top to bottom.
    fn into_sorted(mut self) -> Vec<LoadError> {
        self.found.sort_by_key(|e| match e {
            LoadError::Invalid { line, column, .. } => (*line, *column),
            LoadError::Io { .. } => (0, 0),
        });
        self.found
    }
}

use Seg::{Index, Key};

/// Every problem of a parsed board, in file order.
pub(crate) fn problems(board: &Board, text: &str, origin: &Path) -> Vec<LoadError> {
    let mut p = Problems::new(text, origin);
    check_info(board, &mut p);
    check_system_disk(board, &mut p);
    check_image_sizes(board, &mut p);
    check_kernel(board, &mut p);
    check_console(board, &mut p);
    check_watchdog(board, &mut p);
    check_disks(board, &mut p);
    check_arrays(board, &mut p);
    check_filesystems(board, &mut p);
    check_sensors(board, &mut p);
    check_intervals(board, &mut p);
    p.into_sorted()
}

/// What an image build needs on top of a valid board.
pub(crate) fn image_problems(board: &Board, text: &str, origin: &Path) -> Vec<LoadError> {
    let mut p = Problems::new(text, origin);
    if board.board.name.is_empty() {
        p.at(
            &[Key("board"), Key("name")],
            "[board] name is required: images, bundles and the RAUC compatible carry it",
        );
    }
    if board.system_disk.is_none() {
        p.at(
            &[],
            "no [system_disk]: the image needs the disk it is written to",
        );
    }
    if board.data_array().is_none() {
        p.at(
            &[Key("array")],
            "no [[array]] with role \"data\": the mail store needs its data array",
        );
    }
    for (module, why) in required_modules(board) {
        if !has_module(board, &module) {
            p.at(
                &[Key("kernel"), Key("modules")],
                format!("[kernel] modules lacks `{module}` ({why})"),
            );
        }
    }
    p.into_sorted()
}

/// Modules an image of this board cannot boot or run without, with the reason.
fn required_modules(board: &Board) -> Vec<(String, String)> {
    let mut required: Vec<(String, String)> = vec![
        ("erofs".into(), "the system slots are EROFS".into()),
        ("vfat".into(), "the EFI and boot partitions are vfat".into()),
        ("ext4".into(), "/persist is ext4".into()),
    ];
    for array in &board.arrays {
        required.push(("md-mod".into(), format!("array {} is md RAID", array.name)));
        let personality = match array.level.as_str() {
            "raid5" | "raid6" => "raid456",
            level => level,
        };
        required.push((
            personality.into(),
            format!("array {} is {}", array.name, array.level),
        ));
        required.push((
            array.filesystem.clone(),
            format!("array {} carries {}", array.name, array.filesystem),
        ));
    }
    if board
        .sensors
        .iter()
        .any(|s| s.source == SensorSource::Ipmi && !s.ignore)
    {
        for module in ["ipmi_si", "ipmi_devintf"] {
            required.push((module.into(), "the board has IPMI sensors".into()));
        }
    }
    let mut seen = BTreeSet::new();
    required.retain(|(m, _)| seen.insert(module_key(m)));
    required
}

/// modprobe treats `-` and `_` in module names alike.
fn module_key(name: &str) -> String {
    name.replace('-', "_")
}

fn has_module(board: &Board, name: &str) -> bool {
    let key = module_key(name);
    board.kernel.modules.iter().any(|m| module_key(m) == key)
}

fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_device_path(path: &str) -> bool {
    path.starts_with("/dev/") && path.len() > "/dev/".len() && !path.contains("/../")
}

fn check_info(board: &Board, p: &mut Problems<'_>) {
    let name = &board.board.name;
    // It becomes file names, a RAUC compatible and GPT/UUID seeds.
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        p.at(
            &[Key("board"), Key("name")],
            format!("board name `{name}` may only have letters, digits, `-`, `_` and `.`"),
        );
    }
}

fn check_system_disk(board: &Board, p: &mut Problems<'_>) {
    let Some(system) = &board.system_disk else {
        return;
    };
    let at = [Key("system_disk"), Key("device")];
    if !is_device_path(&system.device) {
        p.at(
            &at,
            format!(
                "system disk `{}` must be a device path (/dev/...)",
                system.device
            ),
        );
        return;
    }
    if let Some(disk) = board.disk_by_block_device(&system.device) {
        if disk.role != Role::System {
            p.at(
                &at,
                format!(
                    "system disk {} is [[disk]] {} with role {}; it must have role system",
                    system.device,
                    disk.name,
                    disk.role.as_str()
                ),
            );
        }
    }
    for array in &board.arrays {
        if array.devices.contains(&system.device) || array.spares.contains(&system.device) {
            p.at(
                &at,
                format!(
                    "system disk {} is also a member of array {}",
                    system.device, array.name
                ),
            );
        }
    }
}

fn check_image_sizes(board: &Board, p: &mut Problems<'_>) {
    let sizes = &board.image;
    for (key, mib) in [
        ("efi_mib", sizes.efi_mib),
        ("boot_mib", sizes.boot_mib),
        ("system_mib", sizes.system_mib),
        ("persist_mib", sizes.persist_mib),
    ] {
        if mib == 0 {
            p.at(
                &[Key("image"), Key(key)],
                format!("[image] {key} must be more than 0"),
            );
        }
    }
}

fn check_kernel(board: &Board, p: &mut Problems<'_>) {
    let mut seen = BTreeSet::new();
    for (i, module) in board.kernel.modules.iter().enumerate() {
        let at = [Key("kernel"), Key("modules"), Index(i)];
        if !is_module_name(module) {
            p.at(&at, format!("`{module}` is not a kernel module name"));
        } else if !seen.insert(module_key(module)) {
            p.at(&at, format!("module `{module}` is listed twice"));
        }
    }
    // GRUB sets the slot from grubenv; a fixed one would defeat A/B fallback.
    if board
        .kernel
        .cmdline
        .split_whitespace()
        .any(|arg| arg.starts_with("postern.slot="))
    {
        p.at(
            &[Key("kernel"), Key("cmdline")],
            "[kernel] cmdline must not set postern.slot (GRUB chooses the slot)",
        );
    }
}

fn check_console(board: &Board, p: &mut Problems<'_>) {
    let console = &board.console;
    let digits = console
        .device
        .trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let prefix = &console.device[..console.device.len() - digits.len()];
    let known_prefix = ["ttyS", "ttyAMA", "ttyUSB", "hvc", "tty"].contains(&prefix);
    if !known_prefix || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        p.at(
            &[Key("console"), Key("device")],
            format!(
                "console device `{}` must be a kernel console name such as ttyS0 or hvc0 (no /dev/)",
                console.device
            ),
        );
    }
    if !CONSOLE_BAUDS.contains(&console.baud) {
        p.at(
            &[Key("console"), Key("baud")],
            format!(
                "console baud {} is not a standard serial speed ({})",
                console.baud,
                CONSOLE_BAUDS.map(|b| b.to_string()).join(", ")
            ),
        );
    }
}

fn check_watchdog(board: &Board, p: &mut Problems<'_>) {
    let watchdog = &board.watchdog;
    if !is_device_path(&watchdog.device) {
        p.at(
            &[Key("watchdog"), Key("device")],
            format!(
                "watchdog device `{}` must be a device path (/dev/...)",
                watchdog.device
            ),
        );
    }
    if !watchdog.module.is_empty() {
        let at = [Key("watchdog"), Key("module")];
        if !is_module_name(&watchdog.module) {
            p.at(
                &at,
                format!("`{}` is not a kernel module name", watchdog.module),
            );
        } else if !has_module(board, &watchdog.module) {
            p.at(
                &at,
                format!(
                    "watchdog module `{}` is not in [kernel] modules",
                    watchdog.module
                ),
            );
        }
    }
    if watchdog.timeout_secs == 0 {
        p.at(
            &[Key("watchdog"), Key("timeout_secs")],
            "[watchdog] timeout_secs must be more than 0",
        );
    }
    if watchdog.feed_interval_secs == 0
        || u64::from(watchdog.feed_interval_secs) * 2 > u64::from(watchdog.timeout_secs)
    {
        p.at(
            &[Key("watchdog"), Key("feed_interval_secs")],
            format!(
                "[watchdog] feed_interval_secs must be between 1 and half of timeout_secs ({})",
                watchdog.timeout_secs / 2
            ),
        );
    }
}

fn check_disks(board: &Board, p: &mut Problems<'_>) {
    let mut names = BTreeSet::new();
    let mut block_devices = BTreeSet::new();
    for (i, disk) in board.disks.iter().enumerate() {
        if disk.name.is_empty() || disk.device.is_empty() {
            p.at(&[Key("disk"), Index(i)], "[[disk]] needs name and device");
            continue;
        }
        if disk.name.contains('/') {
            p.at(
                &[Key("disk"), Index(i), Key("name")],
                format!(
                    "disk name `{}` is a kernel name (sda, nvme0n1), not a path",
                    disk.name
                ),
            );
        }
        if !names.insert(disk.name.as_str()) {
            p.at(
                &[Key("disk"), Index(i), Key("name")],
                format!("duplicate disk `{}`", disk.name),
            );
        }
        if !is_device_path(&disk.block_device) {
            p.at(
                &[Key("disk"), Index(i), Key("block_device")],
                format!(
                    "disk {}: block_device `{}` must be a device path (/dev/...)",
                    disk.name, disk.block_device
                ),
            );
        } else if !block_devices.insert(disk.block_device.as_str()) {
            p.at(
                &[Key("disk"), Index(i), Key("block_device")],
                format!(
                    "disk {}: block device {} belongs to another [[disk]] too",
                    disk.name, disk.block_device
                ),
            );
        }
    }
}

fn check_arrays(board: &Board, p: &mut Problems<'_>) {
    let mut names = BTreeSet::new();
    // Block device -> the array that already uses it.
    let mut used: BTreeMap<&str, &str> = BTreeMap::new();
    let mut data_arrays = 0;
    for (i, array) in board.arrays.iter().enumerate() {
        let here = |key| [Key("array"), Index(i), Key(key)];
        if array.name.is_empty() {
            p.at(&[Key("array"), Index(i)], "[[array]] needs a name");
            continue;
        }
        if !names.insert(array.name.as_str()) {
            p.at(&here("name"), format!("duplicate array `{}`", array.name));
        }
        if !is_device_path(&array.device) {
            p.at(
                &here("device"),
                format!(
                    "array {}: device `{}` must be a device path (/dev/md...)",
                    array.name, array.device
                ),
            );
        }
        if array.role == Role::Data {
            data_arrays += 1;
            if data_arrays > 1 {
                p.at(
                    &here("role"),
                    format!(
                        "array {}: a board has one data array (the mail store)",
                        array.name
                    ),
                );
            }
        }
        check_array_members(board, i, array, &mut used, p);
        match array.min_members() {
            None => p.at(
                &here("level"),
                format!(
                    "array {}: level `{}` is not one of {}",
                    array.name,
                    array.level,
                    RAID_LEVELS.map(|(l, _)| l).join(", ")
                ),
            ),
            Some(min) if array.devices.len() < min => p.at(
                &here("devices"),
                format!(
                    "array {}: {} needs at least {min} members, devices lists {}",
                    array.name,
                    array.level,
                    array.devices.len()
                ),
            ),
            // Near-2 RAID10 mirrors members in pairs; an odd count leaves one member's copy
            // spread over two others, which the degraded-array rules do not model.
            Some(_) if array.level == "raid10" && array.devices.len() % 2 != 0 => p.at(
                &here("devices"),
                format!(
                    "array {}: raid10 needs an even number of members, devices lists {}",
                    array.name,
                    array.devices.len()
                ),
            ),
            Some(_) => {}
        }
        if let Some(chunk) = array.chunk_kib {
            if array.level == "raid1" {
                p.at(
                    &here("chunk_kib"),
                    format!("array {}: raid1 has no chunk size", array.name),
                );
            } else if chunk < 4 || !chunk.is_power_of_two() {
                p.at(
                    &here("chunk_kib"),
                    format!(
                        "array {}: chunk_kib {chunk} must be a power of two of at least 4",
                        array.name
                    ),
                );
            }
        }
        if !ARRAY_FILESYSTEMS.contains(&array.filesystem.as_str()) {
            p.at(
                &here("filesystem"),
                format!(
                    "array {}: filesystem `{}` is not one of {}",
                    array.name,
                    array.filesystem,
                    ARRAY_FILESYSTEMS.join(", ")
                ),
            );
        }
        if !array.mount.is_empty() && !array.mount.starts_with('/') {
            p.at(
                &here("mount"),
                format!(
                    "array {}: mount `{}` must be absolute",
                    array.name, array.mount
                ),
            );
        }
    }
}

/// Members and spares: listed whole disks of the right role, each in one array once.
fn check_array_members<'b>(
    board: &'b Board,
    i: usize,
    array: &'b BoardArray,
    used: &mut BTreeMap<&'b str, &'b str>,
    p: &mut Problems<'_>,
) {
    for (key, list, role) in [
        ("devices", &array.devices, array.role),
        ("spares", &array.spares, Role::Spare),
    ] {
        for (j, device) in list.iter().enumerate() {
            let at = [Key("array"), Index(i), Key(key), Index(j)];
            let Some(disk) = board.disk_by_block_device(device) else {
                p.at(
                    &at,
                    format!(
                        "array {}: {device} is not the block_device of any [[disk]]",
                        array.name
                    ),
                );
                continue;
            };
            if disk.role != role {
                p.at(
                    &at,
                    format!(
                        "array {}: {device} is disk {} with role {}; {} of a {} array need role {}",
                        array.name,
                        disk.name,
                        disk.role.as_str(),
                        if key == "spares" { "spares" } else { "members" },
                        array.role.as_str(),
                        role.as_str()
                    ),
                );
            }
            if let Some(other) = used.insert(device.as_str(), array.name.as_str()) {
                p.at(
                    &at,
                    format!(
                        "array {}: {device} is already used by array {other}",
                        array.name
                    ),
                );
            }
        }
    }
}

fn check_filesystems(board: &Board, p: &mut Problems<'_>) {
    let mut mounts = BTreeSet::new();
    for (i, fs) in board.filesystems.iter().enumerate() {
        let at = [Key("filesystem"), Index(i), Key("mount")];
        if !fs.mount.starts_with('/') {
            p.at(
                &at,
                format!("filesystem mount `{}` must be absolute", fs.mount),
            );
        } else if !mounts.insert(fs.mount.as_str()) {
            p.at(&at, format!("duplicate filesystem `{}`", fs.mount));
        }
    }
}

fn check_sensors(board: &Board, p: &mut Problems<'_>) {
    let mut seen = BTreeSet::new();
    for (i, sensor) in board.sensors.iter().enumerate() {
        let here = |key| [Key("sensor"), Index(i), Key(key)];
        if !matches!(
            sensor.kind,
            ComponentKind::Psu | ComponentKind::Fan | ComponentKind::Sensor
        ) {
            p.at(
                &here("kind"),
                format!("sensor `{}`: kind must be psu, fan or sensor", sensor.name),
            );
        }
        if sensor.name.is_empty() || sensor.component.is_empty() {
            p.at(
                &[Key("sensor"), Index(i)],
                "[[sensor]] needs name and component",
            );
            continue;
        }
        if !seen.insert((sensor.source, sensor.name.as_str())) {
            p.at(&here("name"), format!("duplicate sensor `{}`", sensor.name));
        }
    }
}

fn check_intervals(board: &Board, p: &mut Problems<'_>) {
    let i = &board.intervals;
    for (key, secs) in [
        ("smart_secs", i.smart_secs),
        ("mdraid_secs", i.mdraid_secs),
        ("hwmon_secs", i.hwmon_secs),
        ("thermal_secs", i.thermal_secs),
        ("edac_secs", i.edac_secs),
        ("system_secs", i.system_secs),
        ("filesystem_secs", i.filesystem_secs),
        ("ipmi_secs", i.ipmi_secs),
    ] {
        if let Some(secs) = secs {
            if !(secs.is_finite() && secs > 0.0) {
                p.at(
                    &[Key("intervals"), Key(key)],
                    format!("[intervals] {key} must be more than 0"),
                );
            }
        }
    }
}
