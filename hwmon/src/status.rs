//! `hwmond status`: every component as a table for a person (or JSON for scripts).

use std::fmt::Write;

use crate::model::{ComponentStatus, Reading, Snapshot, State, Unit};

/// The table fits a 100-column terminal (and a mail or ticket pasted from it).
pub const WIDTH: usize = 100;
/// A component id longer than this gets a line of its own.
const ID_MAX: usize = 30;
const STATE_W: usize = 8;
/// `MM-DD HH:MM`, UTC.
const SINCE_W: usize = 11;

/// Renders `snap` as a table for an operator: the worst components first, each with the time
/// its state began, why (before the readings, which follow on their own lines), wrapped to
/// [`WIDTH`] columns.
pub fn render_table(snap: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "overall: {}", snap.overall);
    if snap.storage.safe {
        let _ = writeln!(out, "storage: safe");
    } else {
        let _ = writeln!(out, "storage: UNSAFE");
        for r in &snap.storage.reasons {
            for (i, l) in wrap(r, WIDTH - 4).iter().enumerate() {
                let _ = writeln!(out, "{}{l}", if i == 0 { "  - " } else { "    " });
            }
        }
    }
    let _ = writeln!(out);
    let mut rows: Vec<&ComponentStatus> = snap.components.iter().collect();
    rows.sort_by(|a, b| {
        rank(b.state)
            .cmp(&rank(a.state))
            .then_with(|| a.id.cmp(&b.id))
    });
    let id_w = rows
        .iter()
        .map(|c| c.id.to_string().chars().count())
        .filter(|n| *n <= ID_MAX)
        .max()
        .unwrap_or(0)
        .max("COMPONENT".len());
    let detail_col = id_w + 2 + STATE_W + 2 + SINCE_W + 2;
    let detail_w = WIDTH - detail_col;
    let _ = writeln!(
        out,
        "{:id_w$}  {:STATE_W$}  {:SINCE_W$}  REASON / READINGS",
        "COMPONENT", "STATE", "SINCE"
    );
    for c in rows {
        let id = c.id.to_string();
        let state = c.state.to_string();
        let since = since(c.since_ms);
        let reason = if c.reason.is_empty() {
            c.attributes.get("meaning").cloned().unwrap_or_default()
        } else {
            c.reason.clone()
        };
        let readings = c
            .readings
            .iter()
            .map(format_reading)
            .collect::<Vec<_>>()
            .join(" ");
        let mut detail = wrap(&reason, detail_w);
        detail.extend(wrap(&readings, detail_w));
        let mut detail = detail.into_iter();
        let first = detail.next().unwrap_or_default();
        let head = if id.chars().count() > id_w {
            // Too long to align: its own line, the row below it.
            let _ = writeln!(out, "{id}");
            format!("{:id_w$}  {state:STATE_W$}  {since:SINCE_W$}  {first}", "")
        } else {
            format!("{id:id_w$}  {state:STATE_W$}  {since:SINCE_W$}  {first}")
        };
        let _ = writeln!(out, "{}", head.trim_end());
        for line in detail {
            let _ = writeln!(out, "{:detail_col$}{line}", "");
        }
    }
    out
}

/// Worst first: CRITICAL, WARNING, UNKNOWN (not known to be fine), OK.
fn rank(s: State) -> u8 {
    s.severity()
}

/// When a state began, `MM-DD HH:MM` UTC (the appliance's clock); `-` when unknown.
fn since(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let t = crate::sinks::smtp::rfc3339(ms);
    // 2026-12-07T06:42:10.201Z -> 12-07 06:42
    t.get(5..16).map_or(t.clone(), |s| s.replacen('T', " ", 1))
}

/// Word-wraps `text` to `width` columns; a word longer than that is cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: String = word.to_string();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A single word wider than the column: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn format_reading(r: &Reading) -> String {
    let v = match r.unit {
        Unit::Bytes => human_bytes(r.value),
        Unit::Bool => (if r.value != 0.0 { "yes" } else { "no" }).to_string(),
        _ => {
            let v = if r.value.fract() == 0.0 && r.value.abs() < 1e15 {
                format!("{}", r.value as i64)
            } else {
                format!("{:.2}", r.value)
            };
            format!("{v}{}", r.unit.suffix())
        }
    };
    format!("{}={v}", r.name)
}

fn human_bytes(b: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0}{}", units[i])
    } else {
        format!("{v:.1}{}", units[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ComponentId, ComponentKind, Health, Observation, Reading, State};

    const T0: u64 = 1_796_625_720_000; // 2026-12-07T06:42:00Z

    fn table() -> String {
        let mut h = Health::default();
        let mut fan = Observation::new(ComponentId::new(ComponentKind::Fan, "FAN1"));
        fan.reading(Reading::new("speed", 5400.0, Unit::Rpm));
        let mut root = Observation::new(ComponentId::new(ComponentKind::Filesystem, "root"));
        root.reading(Reading::new(
            "size",
            10.0 * 1024.0 * 1024.0 * 1024.0,
            Unit::Bytes,
        ));
        h.apply_at("x", vec![fan, root], T0);
        let mut a = Observation::new(ComponentId::new(ComponentKind::Array, "md0"));
        a.raise(
            State::Critical,
            "array is inactive: 2 of 2 members failed, data cannot be read until a member \
             returns or the array is rebuilt from backup",
        );
        a.storage_unsafe = Some("array is inactive".into());
        for (n, v) in [("degraded", 2.0), ("raid_disks", 2.0), ("in_sync", 0.0)] {
            a.reading(Reading::new(n, v, Unit::Count));
        }
        let mut bmc = Observation::new(ComponentId::new(ComponentKind::Sensor, "ipmi-bmc"));
        bmc.raise(
            State::Warning,
            "BMC unreachable: BMC 127.0.0.1:623: connection refused",
        );
        let mut psu = Observation::new(ComponentId::new(ComponentKind::Psu, "PSU1"));
        psu.raise(State::Unknown, "BMC unreachable");
        let long = Observation::new(ComponentId::new(
            ComponentKind::Filesystem,
            "var-lib-postern-spool-incoming-large",
        ));
        h.apply_at("y", vec![a, bmc, psu, long], T0 + 3_600_000);
        render_table(&h.snapshot())
    }

    #[test]
    fn worst_first_with_since_reason_then_readings_in_100_columns() {
        let t = table();
        for line in t.lines() {
            assert!(
                line.chars().count() <= WIDTH,
                "{} > {WIDTH}: {line}",
                line.len()
            );
        }
        assert!(t.contains("storage: UNSAFE"), "{t}");
        assert!(t.contains("  - array/md0: array is inactive"), "{t}");
        let rows: Vec<&str> = t
            .lines()
            .skip_while(|l| !l.starts_with("COMPONENT"))
            .skip(1)
            .filter(|l| !l.starts_with(' '))
            .collect();
        let order: Vec<&str> = rows
            .iter()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(
            order,
            vec![
                "array/md0",
                "sensor/ipmi-bmc",
                "psu/PSU1",
                "fan/FAN1",
                "filesystem/root",
                // Too long to align: its own line, then the row.
                "filesystem/var-lib-postern-spool-incoming-large",
            ],
            "{t}"
        );
        let md = rows[0];
        assert!(
            md.starts_with("array/md0        CRITICAL  12-07 07:42  array is inactive: 2 of 2"),
            "{t}"
        );
        // The reason wraps under itself, then the readings follow it.
        let lines: Vec<&str> = t.lines().collect();
        let at = lines.iter().position(|l| *l == md).unwrap();
        let col = md.find("array is inactive").unwrap();
        assert!(lines[at + 1][..col].trim().is_empty(), "{t}");
        let reason_end = lines.iter().position(|l| l.ends_with("backup")).unwrap();
        let readings = lines.iter().position(|l| l.contains("degraded=2")).unwrap();
        assert_eq!(readings, reason_end + 1, "{t}");
        assert_eq!(&lines[readings][col..], "degraded=2 raid_disks=2 in_sync=0");
        assert!(
            t.contains("fan/FAN1         OK        12-07 06:42  speed=5400RPM"),
            "{t}"
        );
        assert!(t.contains("size=10.0GiB"), "{t}");
        let long = lines
            .iter()
            .position(|l| *l == "filesystem/var-lib-postern-spool-incoming-large")
            .unwrap();
        assert!(lines[long + 1].trim_start().starts_with("OK"), "{t}");
    }

    #[test]
    fn wrap_cuts_only_words_wider_than_the_column() {
        assert_eq!(wrap("a bb ccc", 10), vec!["a bb ccc"]);
        assert_eq!(wrap("aaaa bbbb cccc", 10), vec!["aaaa bbbb", "cccc"]);
        assert_eq!(wrap(&"x".repeat(25), 10).len(), 3);
        assert!(wrap("", 10).is_empty());
    }
}
