//! Linux hwmon sysfs: `<root>/class/hwmon/hwmon*/` (Documentation/hwmon/sysfs-interface.rst):
//! `name`, `temp*_input/_max/_crit/_min/_lcrit/_emergency/_alarm/_fault/_label`, `fan*`,
//! `in*`, `power*`, `curr*`.
//!
//! One component per channel: `sensor/<chip>/<label or channel>` (`fan/<chip>/<label>` for
//! fans), or the board's component when the board maps `<chip>/<label>` (source "hwmon").
//! Chip = the `name` attribute, made unique with the device name when two chips share it.
//!
//! Rules (node_exporter's limits; the board's thresholds replace the chip's): at or beyond
//! `crit`/`lcrit`/`emergency`: CRITICAL; beyond `max`/`min`: WARNING; `_alarm` = 1: at least
//! WARNING; `_fault` = 1: UNKNOWN reading; a fan at 0 RPM with a `fan*_min` > 0 (or mapped by
//! the board): CRITICAL (stall). A sensor the board maps that no chip provides: UNKNOWN.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::board::{Board, SensorSource};
use crate::collectors::{dir_entries, read_num, read_trim, Collector, CollectorContext};
use crate::model::{ComponentId, ComponentKind, Observation, Reading, State, Thresholds, Unit};

pub struct HwmonCollector {
    interval: Duration,
    class_dir: PathBuf,
    board: Board,
}

/// The kinds of channel and how their values scale (sysfs-interface: millidegree, RPM,
/// millivolt, microwatt, milliampere).
const CHANNELS: [(&str, Unit, f64); 5] = [
    ("temp", Unit::Celsius, 1000.0),
    ("fan", Unit::Rpm, 1.0),
    ("in", Unit::Volts, 1000.0),
    ("power", Unit::Watts, 1_000_000.0),
    ("curr", Unit::Amperes, 1000.0),
];

impl HwmonCollector {
    pub fn new(root: &Path, interval: Duration, ctx: &CollectorContext) -> Self {
        HwmonCollector {
            interval,
            class_dir: root.join("class/hwmon"),
            board: ctx.board.clone(),
        }
    }

    fn chips(&self) -> Vec<(String, PathBuf)> {
        let dirs = dir_entries(&self.class_dir, "hwmon");
        let names: Vec<(String, String, PathBuf)> = dirs
            .into_iter()
            .map(|(entry, path)| {
                let name = read_trim(&path.join("name")).unwrap_or_else(|| entry.clone());
                (entry, name, path)
            })
            .collect();
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, n, _) in &names {
            *count.entry(n.as_str()).or_default() += 1;
        }
        names
            .iter()
            .map(|(entry, name, path)| {
                let id = if count.get(name.as_str()).copied().unwrap_or(0) > 1 {
                    let dev = std::fs::read_link(path.join("device"))
                        .ok()
                        .and_then(|l| l.file_name().and_then(|f| f.to_str()).map(String::from));
                    match dev {
                        Some(d) => format!("{name}-{d}"),
                        None => format!("{name}-{entry}"),
                    }
                } else {
                    name.clone()
                };
                (id, path.clone())
            })
            .collect()
    }
}

fn channel_numbers(dir: &Path, prefix: &str) -> Vec<u32> {
    let mut nums: Vec<u32> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let rest = name.strip_prefix(prefix)?;
                    let (num, attr) = rest.split_once('_')?;
                    if attr != "input" && !(prefix == "power" && attr == "average") {
                        return None;
                    }
                    num.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default();
    nums.sort_unstable();
    nums.dedup();
    nums
}

/// Reads one chip directory into observations (one per channel).
pub fn read_chip(chip: &str, dir: &Path, board: &Board) -> Vec<Observation> {
    let mut out = Vec::new();
    for (prefix, unit, scale) in CHANNELS {
        for n in channel_numbers(dir, prefix) {
            let base = format!("{prefix}{n}");
            let attr = |a: &str| dir.join(format!("{base}_{a}"));
            let value = read_num(&attr("input")).or_else(|| {
                (prefix == "power")
                    .then(|| read_num(&attr("average")))
                    .flatten()
            });
            let label = read_trim(&attr("label")).filter(|l| !l.is_empty());
            let channel_name = label.clone().unwrap_or_else(|| base.clone());
            let key = format!("{chip}/{channel_name}");
            let mapped = board.sensor(SensorSource::Hwmon, &key);
            if mapped.is_some_and(|m| m.ignore) {
                continue;
            }
            let kind = match (mapped, prefix) {
                (Some(m), _) => m.kind,
                (None, "fan") => ComponentKind::Fan,
                _ => ComponentKind::Sensor,
            };
            let name = mapped.map(|m| m.component.clone()).unwrap_or(key.clone());
            let mut obs = Observation::new(ComponentId::new(kind, name));
            obs.attr("source", "hwmon");
            obs.attr("chip", chip);
            obs.attr("channel", base.clone());
            if let Some(l) = &label {
                obs.attr("label", l.clone());
            }
            if let Some(m) = mapped {
                if !m.meaning.is_empty() {
                    obs.attr("meaning", m.meaning.clone());
                }
            }
            let lim = |a: &str| read_num(&attr(a)).map(|v| v / scale);
            let mut t = match prefix {
                "fan" => Thresholds {
                    lower_critical: lim("min").filter(|m| *m > 0.0),
                    upper_non_critical: lim("max").filter(|m| *m > 0.0),
                    ..Thresholds::default()
                },
                _ => Thresholds {
                    lower_non_recoverable: None,
                    lower_critical: lim("lcrit"),
                    lower_non_critical: lim("min").filter(|m| prefix != "temp" || *m > -273.0),
                    upper_non_critical: lim("max"),
                    upper_critical: lim("crit"),
                    upper_non_recoverable: lim("emergency"),
                },
            };
            if let Some(m) = mapped {
                t = t.overlay(&m.thresholds);
            }
            let fault = read_num(&attr("fault")).is_some_and(|f| f != 0.0);
            let Some(raw) = value.filter(|_| !fault) else {
                obs.raise(
                    State::Unknown,
                    if fault { "sensor fault" } else { "no reading" },
                );
                out.push(obs);
                continue;
            };
            let v = raw / scale;
            obs.reading(Reading::new(base.clone(), v, unit).with_thresholds(t));
            let (state, why) = t.state_of(v);
            if let Some(why) = why {
                obs.raise(state, format!("{channel_name} {v}{} {why}", unit.suffix()));
            }
            if prefix == "fan" && v == 0.0 && (t.lower_critical.is_some() || mapped.is_some()) {
                obs.raise(State::Critical, format!("{channel_name} stalled (0 RPM)"));
            }
            if read_num(&attr("alarm")).is_some_and(|a| a != 0.0) {
                obs.raise(State::Warning, format!("{channel_name} alarm"));
            }
            out.push(obs);
        }
    }
    out
}

impl Collector for HwmonCollector {
    fn name(&self) -> &str {
        "hwmon"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        let mut out = Vec::new();
        for (chip, dir) in self.chips() {
            out.extend(read_chip(&chip, &dir, &self.board));
        }
        // A sensor the board lists that no chip provides (its driver not loaded, sysfs not
        // mounted) is not known to be fine: UNKNOWN, rather than missing from the table.
        for s in &self.board.sensors {
            if s.source != SensorSource::Hwmon || s.ignore {
                continue;
            }
            let id = ComponentId::new(s.kind, s.component.clone());
            if out.iter().any(|o| o.component == id) {
                continue;
            }
            let mut obs = Observation::new(id);
            obs.attr("source", "hwmon");
            if !s.meaning.is_empty() {
                obs.attr("meaning", s.meaning.clone());
            }
            let chip = s.name.split('/').next().unwrap_or(&s.name);
            obs.raise(
                State::Unknown,
                format!(
                    "{} not in hwmon sysfs (is the {chip} driver loaded?)",
                    s.name
                ),
            );
            out.push(obs);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/hwmon/fixtures/recorded/hwmon/sys")
    }

    #[test]
    fn recorded_nvme_composite() {
        let mut c = HwmonCollector::new(
            &recorded_root(),
            Duration::from_secs(5),
            &CollectorContext::default(),
        );
        let obs = c.collect();
        let o = obs
            .iter()
            .find(|o| o.component.to_string() == "sensor/nvme/Composite")
            .unwrap();
        assert_eq!(o.state, State::Ok);
        let r = o.get_reading("temp1").unwrap();
        assert!((r.value - 49.85).abs() < 1e-9);
        assert_eq!(r.thresholds.upper_critical, Some(99.85));
        assert_eq!(r.thresholds.upper_non_critical, Some(69.85));
        assert_eq!(r.thresholds.lower_non_critical, None);
    }

    #[test]
    fn limits_fans_and_board_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let chip = dir.path().join("class/hwmon/hwmon3");
        std::fs::create_dir_all(&chip).unwrap();
        let w = |f: &str, v: &str| std::fs::write(chip.join(f), v).unwrap();
        w("name", "nct6775\n");
        w("temp1_input", "85000\n");
        w("temp1_max", "80000\n");
        w("temp1_crit", "95000\n");
        w("temp1_label", "SYSTIN\n");
        w("fan1_input", "0\n");
        w("fan1_min", "300\n");
        w("fan2_input", "0\n");
        w("in0_input", "1200\n");
        w("in0_min", "1100\n");
        w("in0_max", "1300\n");
        w("power1_average", "15000000\n");
        let board = crate::board::Board::parse(
            "[[sensor]]\nname = \"nct6775/fan2\"\nsource = \"hwmon\"\nkind = \"fan\"\ncomponent = \"FAN2\"\n",
            Path::new("b.toml"),
        )
        .unwrap();
        let mut c = HwmonCollector::new(
            dir.path(),
            Duration::from_secs(5),
            &CollectorContext { board },
        );
        let obs = c.collect();
        let by = |id: &str| obs.iter().find(|o| o.component.to_string() == id).unwrap();
        assert_eq!(by("sensor/nct6775/SYSTIN").state, State::Warning);
        assert_eq!(by("fan/nct6775/fan1").state, State::Critical);
        assert_eq!(by("fan/FAN2").state, State::Critical, "mapped fan at 0 RPM");
        assert_eq!(by("sensor/nct6775/in0").state, State::Ok);
        assert_eq!(
            by("sensor/nct6775/power1")
                .get_reading("power1")
                .unwrap()
                .value,
            15.0
        );
        w("temp1_input", "96000\n");
        let obs = c.collect();
        assert_eq!(
            obs.iter()
                .find(|o| o.component.name == "nct6775/SYSTIN")
                .unwrap()
                .state,
            State::Critical
        );
    }

    #[test]
    fn board_sensors_without_a_chip_are_unknown() {
        let mut ctx = CollectorContext::default();
        ctx.board.sensors = vec![crate::board::BoardSensor {
            name: "coretemp/Package id 0".into(),
            source: SensorSource::Hwmon,
            kind: ComponentKind::Sensor,
            component: "cpu-package".into(),
            meaning: "CPU package temperature (coretemp)".into(),
            thresholds: Thresholds::default(),
            ignore: false,
        }];
        let empty = tempfile::tempdir().unwrap();
        let mut c = HwmonCollector::new(empty.path(), Duration::from_secs(5), &ctx);
        let out = c.collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].component.to_string(), "sensor/cpu-package");
        assert_eq!(out[0].state, State::Unknown);
        assert_eq!(
            out[0].reason,
            "coretemp/Package id 0 not in hwmon sysfs (is the coretemp driver loaded?)"
        );
        assert_eq!(
            out[0].attributes["meaning"],
            "CPU package temperature (coretemp)"
        );
    }
}
