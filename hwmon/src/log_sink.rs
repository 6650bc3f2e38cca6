//! The structured-log sink: one tracing event per health event (`event = "hwmon.event"`).

use crate::model::{Event, Snapshot, State};
use crate::sinks::Sink;

#[derive(Debug, Default)]
pub struct LogSink;

impl Sink for LogSink {
    fn name(&self) -> &str {
        "log"
    }

    fn event(&mut self, event: &Event, _snapshot: &Snapshot) {
        let readings = serde_json::to_string(&event.readings).unwrap_or_default();
        let component = event.component.to_string();
        match event.to {
            State::Critical => {
                tracing::error!(event = "hwmon.event", component, name = %event.name, from = %event.from, to = %event.to, reason = %event.reason, readings, "{} {}", event.component, event.name)
            }
            State::Warning | State::Unknown => {
                tracing::warn!(event = "hwmon.event", component, name = %event.name, from = %event.from, to = %event.to, reason = %event.reason, readings, "{} {}", event.component, event.name)
            }
            State::Ok => {
                tracing::info!(event = "hwmon.event", component, name = %event.name, from = %event.from, to = %event.to, reason = %event.reason, readings, "{} {}", event.component, event.name)
            }
        }
    }
}
