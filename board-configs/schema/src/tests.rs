//! The schema against the real board files and against broken ones: every error must name the
//! line and column of the offending key.

use std::path::{Path, PathBuf};

use crate::board::{Board, Role, SensorSource};
use crate::health::State;
use crate::toml_load::{Locator, Seg};

fn board_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn board_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(board_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    files
}

/// A small complete board; tests break one thing in it.
const GOOD: &str = r#"[board]
name = "test"

[system_disk]
device = "/dev/sda"

[kernel]
modules = ["ahci", "md-mod", "raid10", "ext4", "erofs", "vfat", "iTCO_wdt"]

[watchdog]
module = "iTCO_wdt"

[[disk]]
name = "sda"
device = "/dev/sda"
role = "system"

[[disk]]
name = "sdb"
device = "/dev/sdb"

[[disk]]
name = "sdc"
device = "/dev/sdc"

[[disk]]
name = "sdd"
device = "/dev/sdd"

[[disk]]
name = "sde"
device = "/dev/sde"

[[array]]
name = "md0"
level = "raid10"
devices = ["/dev/sdb", "/dev/sdc", "/dev/sdd", "/dev/sde"]
"#;

/// Every problem of `text` as `b.toml:line:column: message`.
fn problems(text: &str) -> Vec<String> {
    match Board::parse_all(text, Path::new("b.toml")) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
    }
}

/// The only problem of `text`, which must start with `b.toml:<at>: ` and contain `words`.
fn assert_problem(text: &str, at: &str, words: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    let problem = &found[0];
    assert!(
        problem.starts_with(&format!("b.toml:{at}: ")),
        "expected b.toml:{at}: ..., got {problem}"
    );
    assert!(problem.contains(words), "expected {words:?} in {problem}");
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_with(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

#[test]
fn the_test_board_is_good() {
    assert_eq!(problems(GOOD), Vec::<String>::new());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.toml");
    std::fs::write(&path, GOOD).unwrap();
    Board::load_for_image(&path).unwrap();
}

#[test]
fn every_board_config_loads_for_an_image() {
    let files = board_files();
    assert!(
        files.len() >= 5,
        "expected the board files, found {files:?}"
    );
    for path in files {
        let board = Board::load_for_image(&path).unwrap_or_else(|e| panic!("{e}"));
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(board.board.name, stem, "{}", path.display());
        assert!(!board.disks.is_empty(), "{}", path.display());
        assert!(!board.sensors.is_empty(), "{}", path.display());
        let data = board.data_array().unwrap();
        assert_eq!(data.mount, "/var/lib/postern", "{}", path.display());
        for member in &data.devices {
            let disk = board.disk_by_block_device(member).unwrap();
            assert_eq!(disk.role, Role::Data, "{}: {member}", path.display());
        }
        assert!(board.system_disk.is_some(), "{}", path.display());
    }
}

#[test]
fn the_qemu_appliance_board() {
    let board = Board::load_for_image(&board_dir().join("qemu-x86_64.toml")).unwrap();
    assert_eq!(board.system_disk.as_ref().unwrap().device, "/dev/vda");
    let data = board.data_array().unwrap();
    assert_eq!(
        (
            data.name.as_str(),
            data.device.as_str(),
            data.level.as_str()
        ),
        ("md0", "/dev/md0", "raid1")
    );
    assert_eq!(data.devices, ["/dev/nvme0n1", "/dev/nvme1n1"]);
    assert_eq!(data.filesystem, "ext4");
    assert_eq!(
        (board.console.device.as_str(), board.console.baud),
        ("ttyS0", 115_200)
    );
    assert_eq!(board.watchdog.module, "i6300esb");
    for module in [
        "virtio_blk",
        "nvme",
        "md-mod",
        "raid1",
        "ipmi_si",
        "i6300esb",
    ] {
        assert!(board.kernel.modules.iter().any(|m| m == module), "{module}");
    }
    assert!(board.sensor(SensorSource::Ipmi, "PSU1").is_some());
    let sizes = &board.image;
    assert!(sizes.efi_mib + 2 * (sizes.boot_mib + sizes.system_mib) + sizes.persist_mib <= 512);
}

#[test]
fn the_two_skus() {
    let one_u = Board::load_for_image(&board_dir().join("postern-1u-nvme-raid1.toml")).unwrap();
    let data = one_u.data_array().unwrap();
    assert_eq!((data.level.as_str(), data.devices.len()), ("raid1", 2));
    assert!(data.devices.iter().all(|d| d.starts_with("/dev/nvme")));
    assert_eq!(one_u.watchdog.module, "iTCO_wdt");
    assert_eq!(one_u.console.device, "ttyS1");
    let psus = |b: &Board| {
        b.sensors
            .iter()
            .filter(|s| s.kind == crate::health::ComponentKind::Psu)
            .count()
    };
    assert_eq!(psus(&one_u), 2);

    let two_u = Board::load_for_image(&board_dir().join("postern-2u-sata-raid10.toml")).unwrap();
    let data = two_u.data_array().unwrap();
    assert_eq!((data.level.as_str(), data.devices.len()), ("raid10", 6));
    let system = two_u.system_disk.as_ref().unwrap();
    assert!(!data.devices.contains(&system.device));
    assert_eq!(psus(&two_u), 2);
    let fans = |b: &Board| {
        b.sensors
            .iter()
            .filter(|s| s.kind == crate::health::ComponentKind::Fan && !s.ignore)
            .count()
    };
    assert!(fans(&two_u) > fans(&one_u));
}

#[test]
fn unknown_key_is_an_error_with_line() {
    let text = "[board]\nname = \"x\"\n\n[rules]\ndisk_temp_warnin_c = 50\n";
    let e = Board::parse(text, Path::new("b.toml")).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("b.toml:5:1: "), "{s}");
    assert!(s.contains("disk_temp_warnin_c"), "{s}");
}

#[test]
fn unknown_key_in_an_image_section() {
    let text = GOOD.replace(
        "module = \"iTCO_wdt\"",
        "module = \"iTCO_wdt\"\ntimeout = 30",
    );
    let line = line_with(&text, "timeout = 30");
    assert_problem(&text, &format!("{line}:1"), "unknown field `timeout`");
}

#[test]
fn duplicate_disk_names_the_second() {
    let text = GOOD.replace("name = \"sdc\"", "name = \"sdb\"");
    let line = text.match_indices("name = \"sdb\"").nth(1).unwrap().0;
    let line = text[..line].lines().count() + 1;
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&format!("b.toml:{line}:1: duplicate disk `sdb`"))),
        "{found:#?}"
    );
}

#[test]
fn array_member_that_is_no_disk() {
    let text = GOOD.replace("\"/dev/sdd\", \"/dev/sde\"]", "\"/dev/sdd\", \"/dev/sdx\"]");
    let line = line_with(&text, "/dev/sdx");
    let column = text
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("\"/dev/sdx")
        .unwrap()
        + 1;
    assert_problem(
        &text,
        &format!("{line}:{column}"),
        "array md0: /dev/sdx is not the block_device of any [[disk]]",
    );
}

#[test]
fn array_member_with_the_wrong_role() {
    let text = GOOD.replace(
        "name = \"sde\"\ndevice = \"/dev/sde\"",
        "name = \"sde\"\ndevice = \"/dev/sde\"\nrole = \"spare\"",
    );
    let line = line_with(&text, "devices = [");
    let column = text
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("\"/dev/sde")
        .unwrap()
        + 1;
    assert_problem(
        &text,
        &format!("{line}:{column}"),
        "/dev/sde is disk sde with role spare; members of a data array need role data",
    );
}

#[test]
fn raid10_with_three_disks_is_refused() {
    let text = GOOD.replace(", \"/dev/sde\"]", "]");
    let line = line_with(&text, "devices = [");
    assert_problem(
        &text,
        &format!("{line}:1"),
        "raid10 needs at least 4 members, devices lists 3",
    );
}

#[test]
fn raid10_with_an_odd_count_is_refused() {
    let text = GOOD
        .replace(
            "[[array]]",
            "[[disk]]\nname = \"sdf\"\ndevice = \"/dev/sdf\"\n\n[[array]]",
        )
        .replace("\"/dev/sde\"]", "\"/dev/sde\", \"/dev/sdf\"]");
    let line = line_with(&text, "devices = [");
    assert_problem(&text, &format!("{line}:1"), "raid10 needs an even number");
}

#[test]
fn raid1_with_one_member_and_unknown_levels_are_refused() {
    let text = GOOD
        .replace("level = \"raid10\"", "level = \"raid1\"")
        .replace("\"/dev/sdc\", \"/dev/sdd\", \"/dev/sde\"", "");
    let line = line_with(&text, "devices = [");
    let found = problems(&text);
    assert!(
        found[0].starts_with(&format!(
            "b.toml:{line}:1: array md0: raid1 needs at least 2"
        )),
        "{found:#?}"
    );
    let text = GOOD.replace("level = \"raid10\"", "level = \"raid0\"");
    let line = line_with(&text, "level = ");
    assert_problem(
        &text,
        &format!("{line}:1"),
        "level `raid0` is not one of raid1, raid10, raid5, raid6",
    );
}

#[test]
fn chunk_size_checks() {
    let text = GOOD.replace("level = \"raid10\"", "level = \"raid10\"\nchunk_kib = 100");
    let line = line_with(&text, "chunk_kib");
    assert_problem(&text, &format!("{line}:1"), "power of two");
    let text = GOOD
        .replace("level = \"raid10\"", "level = \"raid1\"\nchunk_kib = 64")
        .replace(", \"/dev/sdd\", \"/dev/sde\"", "");
    let line = line_with(&text, "chunk_kib");
    assert_problem(&text, &format!("{line}:1"), "raid1 has no chunk size");
}

#[test]
fn one_data_array_per_board() {
    let text = GOOD.replace("\"/dev/sdd\", \"/dev/sde\"]", "]\n") + "\n[[array]]\nname = \"md1\"\nlevel = \"raid1\"\ndevices = [\"/dev/sdd\", \"/dev/sde\"]\nrole = \"data\"\n";
    let found = problems(&text);
    let line = line_with(&text, "role = \"data\"");
    assert!(
        found.iter().any(|p| p.starts_with(&format!(
            "b.toml:{line}:1: array md1: a board has one data array"
        ))),
        "{found:#?}"
    );
}

#[test]
fn a_disk_in_two_arrays_is_refused() {
    let text = GOOD.to_string()
        + "\n[[array]]\nname = \"md1\"\nlevel = \"raid1\"\nrole = \"system\"\ndevices = [\"/dev/sda\", \"/dev/sdb\"]\n";
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.contains("array md1: /dev/sdb is already used by array md0")),
        "{found:#?}"
    );
    // And the system disk is not an array member.
    assert!(
        found
            .iter()
            .any(|p| p.contains("system disk /dev/sda is also a member of array md1")),
        "{found:#?}"
    );
}

#[test]
fn system_disk_must_be_a_system_disk() {
    let text = GOOD.replace(
        "device = \"/dev/sda\"\n\n[kernel]",
        "device = \"/dev/sdb\"\n\n[kernel]",
    );
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p
                .starts_with("b.toml:5:1: system disk /dev/sdb is [[disk]] sdb with role data")),
        "{found:#?}"
    );
    let text = GOOD.replace(
        "device = \"/dev/sda\"\n\n[kernel]",
        "device = \"sda\"\n\n[kernel]",
    );
    assert_problem(&text, "5:1", "must be a device path");
}

#[test]
fn sizes_must_be_more_than_zero() {
    let text = GOOD.replace(
        "[kernel]",
        "[image]\nefi_mib = 16\nsystem_mib = 0\n\n[kernel]",
    );
    let line = line_with(&text, "system_mib");
    assert_problem(
        &text,
        &format!("{line}:1"),
        "[image] system_mib must be more than 0",
    );
    let text = GOOD.replace("[kernel]", "[image]\nboot_mib = -1\n\n[kernel]");
    let line = line_with(&text, "boot_mib");
    let found = problems(&text);
    assert!(
        found[0].starts_with(&format!("b.toml:{line}:12: ")),
        "{found:#?}"
    );
}

#[test]
fn console_checks() {
    let text = GOOD.replace(
        "[kernel]",
        "[console]\ndevice = \"ttyS1\"\nbaud = 115201\n\n[kernel]",
    );
    let line = line_with(&text, "baud");
    assert_problem(
        &text,
        &format!("{line}:1"),
        "console baud 115201 is not a standard",
    );
    let text = GOOD.replace("[kernel]", "[console]\ndevice = \"/dev/ttyS0\"\n\n[kernel]");
    let line = line_with(&text, "/dev/ttyS0");
    assert_problem(&text, &format!("{line}:1"), "kernel console name");
}

#[test]
fn watchdog_checks() {
    let text = GOOD.replace("\"vfat\", \"iTCO_wdt\"", "\"vfat\"");
    let line = line_with(&text, "module = \"iTCO_wdt\"");
    assert_problem(
        &text,
        &format!("{line}:1"),
        "watchdog module `iTCO_wdt` is not in [kernel] modules",
    );
    let text = GOOD.replace(
        "module = \"iTCO_wdt\"",
        "module = \"itco-wdt\"\ntimeout_secs = 30\nfeed_interval_secs = 20",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("`itco-wdt` is not in [kernel] modules"));
    let line = line_with(&text, "feed_interval_secs");
    assert!(
        found[1].starts_with(&format!("b.toml:{line}:1: [watchdog] feed_interval_secs")),
        "{found:#?}"
    );
}

#[test]
fn module_names_and_duplicates() {
    let text = GOOD.replace("\"ahci\", ", "\"ahci\", \"md_mod\", \"bad name\", ");
    let found = problems(&text);
    let line = line_with(&text, "modules = [");
    let column = |needle: &str| text.lines().nth(line - 1).unwrap().find(needle).unwrap() + 1;
    assert_eq!(
        found,
        [
            format!(
                "b.toml:{line}:{}: `bad name` is not a kernel module name",
                column("\"bad name")
            ),
            // modprobe's names: md_mod and md-mod are one module.
            format!(
                "b.toml:{line}:{}: module `md-mod` is listed twice",
                column("\"md-mod")
            ),
        ]
    );
}

#[test]
fn problems_come_in_file_order() {
    let text = GOOD
        .replace("[kernel]", "[image]\nefi_mib = 0\n\n[kernel]")
        .replace(", \"/dev/sde\"]", "]");
    let found = problems(&text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].contains("efi_mib"), "{found:#?}");
    assert!(found[1].contains("raid10 needs at least 4"), "{found:#?}");
}

#[test]
fn what_an_image_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.toml");
    let text = GOOD.replace("[system_disk]\ndevice = \"/dev/sda\"\n", "");
    std::fs::write(&path, &text).unwrap();
    // A board without a system disk is fine for hwmond...
    Board::load(&path).unwrap();
    // ...but not for an image.
    let e = Board::load_for_image(&path).unwrap_err().to_string();
    assert!(
        e.ends_with("b.toml:1:1: no [system_disk]: the image needs the disk it is written to"),
        "{e}"
    );

    let text = GOOD.replace("\"raid10\", ", "");
    std::fs::write(&path, &text).unwrap();
    let line = line_with(&text, "modules = [");
    let e = Board::load_for_image(&path).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "b.toml:{line}:1: [kernel] modules lacks `raid10` (array md0 is raid10)"
        )),
        "{e}"
    );

    let text = GOOD.replace(
        "role = \"system\"",
        "role = \"system\"\n\n[[sensor]]\nname = \"FAN1\"\nkind = \"fan\"\ncomponent = \"FAN1\"",
    );
    std::fs::write(&path, &text).unwrap();
    let problems = Board::load_for_image_all(&path).unwrap_err();
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(
        text[0].contains("lacks `ipmi_si` (the board has IPMI sensors)"),
        "{text:#?}"
    );
}

#[test]
fn defaults_that_follow_from_other_keys() {
    let text = GOOD.replace("name = \"md0\"", "name = \"data\"");
    let board = Board::parse(&text, Path::new("b.toml")).unwrap();
    let data = board.data_array().unwrap();
    assert_eq!(data.device, "/dev/md/data");
    assert_eq!(data.mount, "/var/lib/postern");
    assert_eq!(data.filesystem, "ext4");
    assert_eq!(board.disk("sdb").unwrap().block_device, "/dev/sdb");
    assert_eq!(board.console.device, "ttyS0");
    assert_eq!(board.watchdog.device, "/dev/watchdog");
    assert_eq!(board.watchdog.timeout_secs, 60);
}

#[test]
fn a_stable_block_device_name() {
    let text = GOOD
        .replace(
            "name = \"sde\"\ndevice = \"/dev/sde\"",
            "name = \"bay3\"\ndevice = \"/dev/disk/by-path/pci-0000:00:17.0-ata-4\"\nblock_device = \"/dev/disk/by-path/pci-0000:00:17.0-ata-4\"",
        )
        .replace("\"/dev/sde\"]", "\"/dev/disk/by-path/pci-0000:00:17.0-ata-4\"]");
    assert_eq!(problems(&text), Vec::<String>::new());
}

#[test]
fn hwmond_snippets_still_parse() {
    // hwmond's own tests write boards with only the parts they need.
    let text = "[rules]\narray_rebuilding = \"OK\"\npercentage_used_warning = 80\n";
    let b = Board::parse(text, Path::new("b.toml")).unwrap();
    assert_eq!(b.rules.array_rebuilding, State::Ok);
    assert_eq!(b.rules.percentage_used_warning, 80.0);
    assert_eq!(b.rules.smart_failed, State::Critical);
    assert!(b.system_disk.is_none());
    // And the error hwmond's tests expect for a bad role: the line of the value.
    let text = "[board]\nname = \"x\"\n[[disk]]\nname = \"sda\"\ndevice = \"/dev/sda\"\nrole = \"primary\"\n";
    let e = Board::parse(text, Path::new("b.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("b.toml:6:"), "{e}");
}

#[test]
fn locator_positions() {
    let text = "[board]\nname = \"x\"\n\n[[array]]\nname = \"md0\"\ndevices = [\"/dev/a\",\n  \"/dev/b\"]\n\n[[array]]\nname = \"md1\"\n";
    let locator = Locator::new(text);
    use Seg::{Index, Key};
    assert_eq!(locator.position(&[Key("board"), Key("name")]), (2, 1));
    assert_eq!(locator.position(&[Key("array"), Index(1)]), (9, 1));
    assert_eq!(
        locator.position(&[Key("array"), Index(1), Key("name")]),
        (10, 1)
    );
    assert_eq!(
        locator.position(&[Key("array"), Index(0), Key("devices"), Index(1)]),
        (7, 3)
    );
    // Not in the file: the nearest ancestor that is, or the top.
    assert_eq!(
        locator.position(&[Key("array"), Index(1), Key("level")]),
        (9, 1)
    );
    assert_eq!(locator.position(&[Key("image"), Key("efi_mib")]), (1, 1));
}
