//! Thermal zones.

use std::time::Duration;

use crate::collectors::Collector;
use crate::model::Observation;

pub struct ThermalCollector {
    interval: Duration,
}

impl ThermalCollector {
    pub fn new(_root: &std::path::Path, interval: Duration) -> ThermalCollector {
        ThermalCollector { interval }
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
        Vec::new()
    }
}
