//! Filesystems.

use std::time::Duration;

use crate::collectors::{Collector, CollectorContext};
use crate::model::Observation;

pub struct FilesystemCollector {
    interval: Duration,
}

impl FilesystemCollector {
    pub fn new(_config: &crate::config::FilesystemConfig, interval: Duration, _ctx: &CollectorContext) -> FilesystemCollector {
        FilesystemCollector { interval }
    }
}

impl Collector for FilesystemCollector {
    fn name(&self) -> &str {
        "filesystem"
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn collect(&mut self) -> Vec<Observation> {
        Vec::new()
    }
}
