//! CPU use, load average and memory through sysinfo.
//!
//! Components `cpu/cpu` (use %, load averages, cores; always OK: load is information, not a
//! fault) and `memory/ram` (use %, WARNING at or above `memory_warning_percent`).

use std::time::Duration;

use sysinfo::System;

use crate::board::Rules;
use crate::collectors::{Collector, CollectorContext};
use crate::model::{ComponentId, ComponentKind, Observation, Reading, State, Thresholds, Unit};

pub struct SystemCollector {
    interval: Duration,
    rules: Rules,
    sys: Option<System>,
}

impl SystemCollector {
    pub fn new(interval: Duration, ctx: &CollectorContext) -> Self {
        SystemCollector {
            interval,
            rules: ctx.board.rules.clone(),
            sys: None,
        }
    }
}

impl Collector for SystemCollector {
    fn name(&self) -> &str {
        "system"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        let mut cpu = Observation::new(ComponentId::new(ComponentKind::Cpu, "cpu"));
        let mut mem = Observation::new(ComponentId::new(ComponentKind::Memory, "ram"));
        if self.sys.is_none() {
            match System::new() {
                Ok(mut s) => {
                    // The first CPU sample is the baseline; use is the delta to the next one.
                    s.refresh_cpu_usage();
                    self.sys = Some(s);
                }
                Err(e) => {
                    cpu.raise(State::Unknown, format!("sysinfo: {e}"));
                    mem.raise(State::Unknown, format!("sysinfo: {e}"));
                    return vec![cpu, mem];
                }
            }
        }
        let Some(sys) = self.sys.as_mut() else {
            return Vec::new();
        };
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        cpu.reading(Reading::new(
            "usage",
            f64::from(sys.global_cpu_usage()),
            Unit::Percent,
        ));
        cpu.reading(Reading::new("cores", sys.cpus().len() as f64, Unit::Count));
        if let Ok(l) = System::load_average() {
            cpu.reading(Reading::new("load1", l.one, Unit::Number));
            cpu.reading(Reading::new("load5", l.five, Unit::Number));
            cpu.reading(Reading::new("load15", l.fifteen, Unit::Number));
        }
        let total = sys.total_memory() as f64;
        let avail = sys.available_memory() as f64;
        mem.reading(Reading::new("total", total, Unit::Bytes));
        mem.reading(Reading::new("available", avail, Unit::Bytes));
        mem.reading(Reading::new(
            "swap_total",
            sys.total_swap() as f64,
            Unit::Bytes,
        ));
        mem.reading(Reading::new(
            "swap_used",
            sys.used_swap() as f64,
            Unit::Bytes,
        ));
        if total > 0.0 {
            let used = (total - avail) * 100.0 / total;
            mem.reading(
                Reading::new("used_percent", used, Unit::Percent).with_thresholds(Thresholds {
                    upper_non_critical: Some(self.rules.memory_warning_percent),
                    ..Thresholds::default()
                }),
            );
            if used >= self.rules.memory_warning_percent {
                mem.raise(State::Warning, format!("memory {used:.1}% used"));
            }
        }
        vec![cpu, mem]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let mut c = SystemCollector::new(Duration::from_secs(10), &CollectorContext::default());
        let obs = c.collect();
        assert_eq!(obs.len(), 2);
        let mem = &obs[1];
        assert!(mem.get_reading("total").unwrap().value > 0.0);
        assert!(obs[0].get_reading("cores").unwrap().value >= 1.0);
    }
}
