//! md RAID.

use std::time::Duration;

use crate::collectors::{Collector, CollectorContext};
use crate::model::Observation;

pub struct MdraidCollector {
    interval: Duration,
}

impl MdraidCollector {
    pub fn new(_config: &crate::config::MdraidConfig, interval: Duration, _ctx: &CollectorContext) -> MdraidCollector {
        MdraidCollector { interval }
    }
}

impl Collector for MdraidCollector {
    fn name(&self) -> &str {
        "mdraid"
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn collect(&mut self) -> Vec<Observation> {
        Vec::new()
    }
}
