//! Board files (`board-configs/*.toml`): the schema and its validation live in postern-board,
//! shared with the image builder and the appliance init; re-exported here for hwmond.

pub use postern_board::*;

use std::path::Path;

use crate::model::Thresholds;
use crate::toml_load::{Locator, Seg};

/// [`Board::load`] plus what hwmond's rules need of a board: every warning/critical pair in
/// order (an inverted pair would report a hot disk or a full filesystem as merely WARNING).
/// Both `hwmond run` and `hwmond check-config` load the board through this.
pub fn load_checked(path: &Path) -> Result<Board, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let board = Board::parse(&text, path)?;
    match threshold_problem(&board, &text) {
        Some((line, column, message)) => Err(LoadError::invalid(path, line, column, message)),
        None => Ok(board),
    }
}

/// The first inverted threshold pair of a board, at its critical key (or the warning key when
/// only that one is in the file): `(line, column, message)`.
pub fn threshold_problem(board: &Board, text: &str) -> Option<(usize, usize, String)> {
    let locator = Locator::new(text);
    // The later key of the pair when the file has it, else the earlier one.
    let at = |base: &[Seg<'_>], first: &str, second: &str| -> (usize, usize) {
        let mut path = base.to_vec();
        let parent = locator.position(&path);
        path.push(Seg::Key(second));
        let pos = locator.position(&path);
        if pos != parent {
            return pos;
        }
        path.pop();
        path.push(Seg::Key(first));
        locator.position(&path)
    };
    let rules = &board.rules;
    let pairs = [
        (
            "disk_temp_warning_c",
            rules.disk_temp_warning_c,
            "disk_temp_critical_c",
            rules.disk_temp_critical_c,
        ),
        (
            "fs_warning_percent",
            rules.fs_warning_percent,
            "fs_critical_percent",
            rules.fs_critical_percent,
        ),
    ];
    for (wk, w, ck, c) in pairs {
        if w >= c {
            let (line, column) = at(&[Seg::Key("rules")], wk, ck);
            return Some((
                line,
                column,
                format!("rules: {wk} {w} must be below {ck} {c}"),
            ));
        }
    }
    for (i, disk) in board.disks.iter().enumerate() {
        let w = disk.temp_warning_c.unwrap_or(rules.disk_temp_warning_c);
        let c = disk.temp_critical_c.unwrap_or(rules.disk_temp_critical_c);
        if w >= c {
            let (line, column) = at(
                &[Seg::Key("disk"), Seg::Index(i)],
                "temp_warning_c",
                "temp_critical_c",
            );
            return Some((
                line,
                column,
                format!(
                    "disk {}: temp_warning_c {w} must be below temp_critical_c {c}",
                    disk.name
                ),
            ));
        }
    }
    for (i, fs) in board.filesystems.iter().enumerate() {
        let w = fs.warning_percent.unwrap_or(rules.fs_warning_percent);
        let c = fs.critical_percent.unwrap_or(rules.fs_critical_percent);
        if w >= c {
            let (line, column) = at(
                &[Seg::Key("filesystem"), Seg::Index(i)],
                "warning_percent",
                "critical_percent",
            );
            return Some((
                line,
                column,
                format!(
                    "filesystem {}: warning_percent {w} must be below critical_percent {c}",
                    fs.mount
                ),
            ));
        }
    }
    for (i, sensor) in board.sensors.iter().enumerate() {
        if let Some((first, second, message)) = inverted(&sensor.thresholds) {
            let (line, column) = at(
                &[Seg::Key("sensor"), Seg::Index(i), Seg::Key("thresholds")],
                first,
                second,
            );
            return Some((line, column, format!("sensor {}: {message}", sensor.name)));
        }
    }
    None
}

/// The first pair of thresholds out of order: lower ones must fall (non-critical above
/// critical above non-recoverable), upper ones rise, and every lower one lie below every
/// upper one.
fn inverted(t: &Thresholds) -> Option<(&'static str, &'static str, String)> {
    let order = [
        ("lower_non_recoverable", t.lower_non_recoverable),
        ("lower_critical", t.lower_critical),
        ("lower_non_critical", t.lower_non_critical),
        ("upper_non_critical", t.upper_non_critical),
        ("upper_critical", t.upper_critical),
        ("upper_non_recoverable", t.upper_non_recoverable),
    ];
    for (i, (a, va)) in order.iter().enumerate() {
        for (b, vb) in &order[i + 1..] {
            if let (Some(x), Some(y)) = (va, vb) {
                if x > y {
                    return Some((
                        a,
                        b,
                        format!("thresholds: {a} {x} must not be above {b} {y}"),
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = include_str!("../../board-configs/qemu-test-guest.toml");

    fn problem(text: &str) -> Option<(usize, usize, String)> {
        let board = Board::parse(text, Path::new("b.toml")).unwrap();
        threshold_problem(&board, text)
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text[..text.find(needle).unwrap()].matches('\n').count() + 1
    }

    #[test]
    fn shipped_boards_have_ordered_thresholds() {
        assert_eq!(problem(GUEST), None);
    }

    #[test]
    fn inverted_pairs_are_refused_at_the_key() {
        let text = format!(
            "{GUEST}\n[[sensor]]\nname = \"Extra\"\nkind = \"sensor\"\ncomponent = \"extra\"\n\
             thresholds = {{ upper_non_critical = 90.0, upper_critical = 80.0 }}\n"
        );
        let (line, column, message) = problem(&text).unwrap();
        assert_eq!(line, line_of(&text, "upper_non_critical = 90"));
        assert_eq!(
            column,
            "thresholds = { upper_non_critical = 90.0, ".len() + 1
        );
        assert_eq!(
            message,
            "sensor Extra: thresholds: upper_non_critical 90 must not be above upper_critical 80"
        );
        let text = GUEST.replace(
            "location = \"AHCI port 1\"",
            "location = \"AHCI port 1\"\ntemp_critical_c = 50.0",
        );
        let (line, column, message) = problem(&text).unwrap();
        assert_eq!((line, column), (line_of(&text, "temp_critical_c"), 1));
        assert_eq!(
            message,
            "disk sdb: temp_warning_c 60 must be below temp_critical_c 50"
        );
        let text = format!("{GUEST}\n[rules]\nfs_warning_percent = 96.0\n");
        let (line, column, message) = problem(&text).unwrap();
        assert_eq!((line, column), (line_of(&text, "fs_warning_percent"), 1));
        assert_eq!(
            message,
            "rules: fs_warning_percent 96 must be below fs_critical_percent 95"
        );
    }
}
