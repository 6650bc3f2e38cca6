//! SMART through smartctl --json.

use std::time::Duration;

use crate::collectors::{Collector, CollectorContext};
use crate::model::Observation;

pub struct SmartCollector {
    interval: Duration,
}

impl SmartCollector {
    pub fn new(_config: &crate::config::SmartConfig, interval: Duration, _ctx: &CollectorContext) -> SmartCollector {
        SmartCollector { interval }
    }
}

impl Collector for SmartCollector {
    fn name(&self) -> &str {
        "smart"
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn collect(&mut self) -> Vec<Observation> {
        Vec::new()
    }
}
