//! System.

use std::time::Duration;

use crate::collectors::{Collector, CollectorContext};
use crate::model::Observation;

pub struct SystemCollector {
    interval: Duration,
}

impl SystemCollector {
    pub fn new(interval: Duration, _ctx: &CollectorContext) -> SystemCollector {
        SystemCollector { interval }
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
        Vec::new()
    }
}
