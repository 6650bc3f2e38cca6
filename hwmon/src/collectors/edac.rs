//! EDAC.

use std::time::Duration;

use crate::collectors::{Collector, CollectorContext};
use crate::model::Observation;

pub struct EdacCollector {
    interval: Duration,
}

impl EdacCollector {
    pub fn new(_root: &std::path::Path, interval: Duration, _ctx: &CollectorContext) -> EdacCollector {
        EdacCollector { interval }
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
        Vec::new()
    }
}
