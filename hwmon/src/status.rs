//! `hwmond status`: every component as a table for a person (or JSON for scripts).

use std::fmt::Write;

use crate::model::{Reading, Snapshot, Unit};

/// Renders `snap` as a table.
pub fn render_table(snap: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "overall: {}", snap.overall);
    if snap.storage.safe {
        let _ = writeln!(out, "storage: safe");
    } else {
        let _ = writeln!(out, "storage: UNSAFE");
        for r in &snap.storage.reasons {
            let _ = writeln!(out, "  - {r}");
        }
    }
    let _ = writeln!(out);
    let rows: Vec<[String; 4]> = snap
        .components
        .iter()
        .map(|c| {
            let readings = c
                .readings
                .iter()
                .take(4)
                .map(format_reading)
                .collect::<Vec<_>>()
                .join(" ");
            [
                c.id.to_string(),
                c.state.to_string(),
                readings,
                if c.reason.is_empty() {
                    c.attributes.get("meaning").cloned().unwrap_or_default()
                } else {
                    c.reason.clone()
                },
            ]
        })
        .collect();
    let headers = ["COMPONENT", "STATE", "READINGS", "REASON"];
    let mut widths = headers.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()).take(3) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 4]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 3 {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            } else {
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(headers));
    for r in &rows {
        let _ = writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
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

    #[test]
    fn table_has_every_component_and_the_verdict() {
        let mut h = Health::default();
        let mut a = Observation::new(ComponentId::new(ComponentKind::Array, "md0"));
        a.raise(State::Critical, "array is inactive");
        a.storage_unsafe = Some("array is inactive".into());
        a.reading(Reading::new("degraded", 2.0, Unit::Count));
        let mut f = Observation::new(ComponentId::new(ComponentKind::Filesystem, "root"));
        f.reading(Reading::new(
            "size",
            10.0 * 1024.0 * 1024.0 * 1024.0,
            Unit::Bytes,
        ));
        h.apply_at("x", vec![a, f], 1);
        let t = render_table(&h.snapshot());
        assert!(t.contains("storage: UNSAFE"), "{t}");
        assert!(t.contains("array/md0: array is inactive"), "{t}");
        assert!(t.contains("array/md0"), "{t}");
        assert!(t.contains("CRITICAL"), "{t}");
        assert!(t.contains("size=10.0GiB"), "{t}");
        assert!(t.contains("degraded=2"), "{t}");
    }
}
