//! EDAC memory controllers: `<root>/devices/system/edac/mc/mc*/` (`ce_count`, `ue_count`,
//! `mc_name`, `size_mb`, and per `dimm*/` `dimm_ce_count`, `dimm_ue_count`, `dimm_label`, or per
//! `csrow*/` `ce_count`, `ue_count` on older drivers).
//!
//! One component `memory/<mcN>`: uncorrectable errors non-zero: `edac_ue` (CRITICAL);
//! correctable errors non-zero: `edac_ce` (WARNING), with `CorrectableErrorsIncreased` /
//! `UncorrectableErrorsIncreased` events on every rise (the counters reset at boot).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::board::Rules;
use crate::collectors::{dir_entries, read_num, read_trim, Collector, CollectorContext};
use crate::model::{ComponentId, ComponentKind, Observation, Reading, Unit};

pub struct EdacCollector {
    interval: Duration,
    mc_dir: PathBuf,
    rules: Rules,
    prev: BTreeMap<String, (f64, f64)>,
}

impl EdacCollector {
    pub fn new(root: &Path, interval: Duration, ctx: &CollectorContext) -> Self {
        EdacCollector {
            interval,
            mc_dir: root.join("devices/system/edac/mc"),
            rules: ctx.board.rules.clone(),
            prev: BTreeMap::new(),
        }
    }
}

impl Collector for EdacCollector {
    fn name(&self) -> &str {
        "edac"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        let mut out = Vec::new();
        for (mc, dir) in dir_entries(&self.mc_dir, "mc") {
            if !dir.is_dir() {
                continue;
            }
            let mut obs = Observation::new(ComponentId::new(ComponentKind::Memory, mc.clone()));
            if let Some(n) = read_trim(&dir.join("mc_name")) {
                obs.attr("mc_name", n);
            }
            if let Some(s) = read_num(&dir.join("size_mb")) {
                obs.reading(Reading::new("size", s * 1024.0 * 1024.0, Unit::Bytes));
            }
            let ce = read_num(&dir.join("ce_count")).unwrap_or(0.0);
            let ue = read_num(&dir.join("ue_count")).unwrap_or(0.0);
            obs.reading(Reading::new("ce_count", ce, Unit::Count));
            obs.reading(Reading::new("ue_count", ue, Unit::Count));
            for (dimm, ddir) in dir_entries(&dir, "dimm") {
                let dce = read_num(&ddir.join("dimm_ce_count"));
                let due = read_num(&ddir.join("dimm_ue_count"));
                if let Some(v) = dce {
                    obs.reading(Reading::new(format!("{dimm}_ce_count"), v, Unit::Count));
                }
                if let Some(v) = due {
                    obs.reading(Reading::new(format!("{dimm}_ue_count"), v, Unit::Count));
                }
                if let Some(l) = read_trim(&ddir.join("dimm_label")).filter(|l| !l.is_empty()) {
                    obs.attr(&format!("{dimm}_label"), l.clone());
                    if dce.unwrap_or(0.0) + due.unwrap_or(0.0) > 0.0 {
                        obs.attr("suspect_dimm", l);
                    }
                }
            }
            for (row, rdir) in dir_entries(&dir, "csrow") {
                if let Some(v) = read_num(&rdir.join("ce_count")) {
                    obs.reading(Reading::new(format!("{row}_ce_count"), v, Unit::Count));
                }
                if let Some(v) = read_num(&rdir.join("ue_count")) {
                    obs.reading(Reading::new(format!("{row}_ue_count"), v, Unit::Count));
                }
            }
            let (pce, pue) = self.prev.get(&mc).copied().unwrap_or((ce, ue));
            if ce > pce {
                obs.events.push("CorrectableErrorsIncreased".into());
            }
            if ue > pue {
                obs.events.push("UncorrectableErrorsIncreased".into());
            }
            if ue > 0.0 {
                obs.raise(
                    self.rules.edac_ue,
                    format!("{ue} uncorrectable memory errors"),
                );
            }
            if ce > 0.0 {
                obs.raise(
                    self.rules.edac_ce,
                    format!("{ce} correctable memory errors"),
                );
            }
            self.prev.insert(mc, (ce, ue));
            out.push(obs);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;

    #[test]
    fn counters_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let mc = dir.path().join("devices/system/edac/mc/mc0");
        std::fs::create_dir_all(mc.join("dimm0")).unwrap();
        let w = |f: &str, v: &str| std::fs::write(mc.join(f), v).unwrap();
        w("ce_count", "0\n");
        w("ue_count", "0\n");
        w("mc_name", "Skylake Socket#0 IMC#0\n");
        w("dimm0/dimm_ce_count", "0\n");
        w("dimm0/dimm_ue_count", "0\n");
        w("dimm0/dimm_label", "CPU_SrcID#0_MC#0_Chan#0_DIMM#0\n");
        let mut c = EdacCollector::new(
            dir.path(),
            Duration::from_secs(60),
            &CollectorContext::default(),
        );
        assert_eq!(c.collect()[0].state, State::Ok);
        w("ce_count", "3\n");
        w("dimm0/dimm_ce_count", "3\n");
        let o = c.collect().remove(0);
        assert_eq!(o.state, State::Warning);
        assert_eq!(o.events, vec!["CorrectableErrorsIncreased"]);
        assert_eq!(
            o.attributes["suspect_dimm"],
            "CPU_SrcID#0_MC#0_Chan#0_DIMM#0"
        );
        w("ue_count", "1\n");
        let o = c.collect().remove(0);
        assert_eq!(o.state, State::Critical);
        assert_eq!(o.events, vec!["UncorrectableErrorsIncreased"]);
    }
}
