//! hwmon sysfs.

use std::time::Duration;

use crate::collectors::{Collector, CollectorContext};
use crate::model::Observation;

pub struct HwmonCollector {
    interval: Duration,
}

impl HwmonCollector {
    pub fn new(_root: &std::path::Path, interval: Duration, _ctx: &CollectorContext) -> HwmonCollector {
        HwmonCollector { interval }
    }
}

impl Collector for HwmonCollector {
    fn name(&self) -> &str {
        "hwmon"
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn collect(&mut self) -> Vec<Observation> {
        Vec::new()
    }
}
