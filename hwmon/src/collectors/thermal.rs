//! Thermal zones: `<root>/class/thermal/thermal_zone*/` (`type`, `temp` in millidegrees,
//! `trip_point_N_type` / `trip_point_N_temp`).
//!
//! One component `sensor/thermal/<zone>-<type>`; at or above the `critical` trip point:
//! CRITICAL, at or above `hot`: WARNING (passive/active trips are cooling policy, not faults).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::collectors::{dir_entries, read_num, read_trim, Collector};
use crate::model::{ComponentId, ComponentKind, Observation, Reading, State, Thresholds, Unit};

pub struct ThermalCollector {
    interval: Duration,
    class_dir: PathBuf,
}

impl ThermalCollector {
    pub fn new(root: &Path, interval: Duration) -> Self {
        ThermalCollector {
            interval,
            class_dir: root.join("class/thermal"),
        }
    }
}

impl Collector for ThermalCollector {
    fn name(&self) -> &str {
        "thermal"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        let mut out = Vec::new();
        for (entry, dir) in dir_entries(&self.class_dir, "thermal_zone") {
            let zone = entry.trim_start_matches("thermal_");
            let ty = read_trim(&dir.join("type")).unwrap_or_else(|| "unknown".into());
            let mut obs = Observation::new(ComponentId::new(
                ComponentKind::Sensor,
                format!("thermal/{zone}-{ty}"),
            ));
            obs.attr("source", "thermal");
            obs.attr("type", ty.clone());
            let mut t = Thresholds::default();
            for i in 0..32 {
                let Some(kind) = read_trim(&dir.join(format!("trip_point_{i}_type"))) else {
                    break;
                };
                let Some(temp) = read_num(&dir.join(format!("trip_point_{i}_temp"))) else {
                    continue;
                };
                let c = temp / 1000.0;
                match kind.as_str() {
                    "critical" => t.upper_critical = Some(t.upper_critical.map_or(c, |x| x.min(c))),
                    "hot" => {
                        t.upper_non_critical = Some(t.upper_non_critical.map_or(c, |x| x.min(c)))
                    }
                    _ => {}
                }
            }
            match read_num(&dir.join("temp")) {
                Some(m) => {
                    let v = m / 1000.0;
                    obs.reading(Reading::new("temp", v, Unit::Celsius).with_thresholds(t));
                    let (state, why) = t.state_of(v);
                    if let Some(why) = why {
                        obs.raise(state, format!("{ty} {v} °C {why}"));
                    }
                }
                None => obs.raise(State::Unknown, "no reading"),
            }
            out.push(obs);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_trips() {
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("class/thermal/thermal_zone0");
        std::fs::create_dir_all(&z).unwrap();
        let w = |f: &str, v: &str| std::fs::write(z.join(f), v).unwrap();
        w("type", "x86_pkg_temp\n");
        w("temp", "45000\n");
        w("trip_point_0_type", "passive\n");
        w("trip_point_0_temp", "40000\n");
        w("trip_point_1_type", "critical\n");
        w("trip_point_1_temp", "100000\n");
        let mut c = ThermalCollector::new(dir.path(), Duration::from_secs(5));
        let o = c.collect().remove(0);
        assert_eq!(o.component.to_string(), "sensor/thermal/zone0-x86_pkg_temp");
        assert_eq!(o.state, State::Ok);
        w("temp", "100000\n");
        assert_eq!(c.collect()[0].state, State::Critical);
    }
}
