//! The health model: components, their state, readings, observations from collectors, and
//! events on every transition (DESIGN.md 3.6).
//!
//! Collectors produce [`Observation`]s; [`Health::apply`] folds one collector's batch into the
//! current state of every component, keeps a bounded history per component and returns the
//! [`Event`]s: one for every state transition (with the raw readings) and one for every named
//! event a collector reported (mdadm --monitor names such as `DegradedArray`, `Rebuild40`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

// Component kinds, states and thresholds are also the board schema's vocabulary: defined once
// in postern-board, re-exported here so `model::State` etc. keep working.
pub use postern_board::health::{ComponentKind, ParseIdError, State, Thresholds};

/// A component's identity: kind + stable name, written `kind/name` (`disk/nvme0n1`,
/// `array/md0`, `psu/PSU1`, `fan/FAN1`, `sensor/coretemp.temp1`, `filesystem/var-lib-postern`).
/// Serialised as that string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    pub kind: ComponentKind,
    pub name: String,
}

impl ComponentId {
    pub fn new(kind: ComponentKind, name: impl Into<String>) -> ComponentId {
        ComponentId {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

impl FromStr for ComponentId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once('/').ok_or_else(|| ParseIdError(s.into()))?;
        if name.is_empty() {
            return Err(ParseIdError(s.into()));
        }
        let kind = kind.parse().map_err(|_| ParseIdError(s.into()))?;
        Ok(ComponentId::new(kind, name))
    }
}

impl Serialize for ComponentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComponentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Unit of a [`Reading`]. Serialised in snake_case (`"celsius"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Celsius,
    Rpm,
    Volts,
    Amperes,
    Watts,
    /// 0..=100.
    Percent,
    Bytes,
    /// A counter or a count of things (sectors, errors, log entries).
    Count,
    Hours,
    Seconds,
    /// A dimensionless number (load average, ratio, bit field).
    Number,
    /// 1 = true / present / asserted, 0 = false.
    Bool,
}

impl Unit {
    /// Short suffix for tables (`°C`, `RPM`, `V`).
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Celsius => "°C",
            Unit::Rpm => "RPM",
            Unit::Volts => "V",
            Unit::Amperes => "A",
            Unit::Watts => "W",
            Unit::Percent => "%",
            Unit::Bytes => "B",
            Unit::Count => "",
            Unit::Hours => "h",
            Unit::Seconds => "s",
            Unit::Number => "",
            Unit::Bool => "",
        }
    }
}

/// One measured value of a component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Stable within the component: `temperature`, `reallocated_sectors`, `fan1`, `in0`, ...
    pub name: String,
    pub value: f64,
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Thresholds::is_empty")]
    pub thresholds: Thresholds,
}

impl Reading {
    pub fn new(name: impl Into<String>, value: f64, unit: Unit) -> Reading {
        Reading {
            name: name.into(),
            value,
            unit,
            thresholds: Thresholds::default(),
        }
    }

    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Reading {
        self.thresholds = thresholds;
        self
    }
}

/// What one collector saw of one component in one poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub component: ComponentId,
    /// The state the collector's rules give this component now.
    pub state: State,
    /// Why (empty when OK): `"reallocated sectors rose 0 -> 8"`, `"1 of 2 devices failed"`.
    pub reason: String,
    pub readings: Vec<Reading>,
    /// Named events seen in this poll (mdadm --monitor names: `DegradedArray`, `Fail`,
    /// `FailSpare`, `SpareActive`, `RebuildStarted`, `Rebuild20`..`Rebuild80`,
    /// `RebuildFinished`, `DeviceDisappeared`, `NewArray`; SMART and sensor collectors may add
    /// their own). Each becomes an [`Event`], transition or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Descriptive attributes: model, serial, firmware, device path, level, meaning...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Set when this component means storage cannot keep mail safe now (failed or read-only
    /// array, data filesystem full, data disk at critical temperature): the reason. Feeds the
    /// storage verdict of [`Snapshot`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_unsafe: Option<String>,
}

impl Observation {
    pub fn new(component: ComponentId) -> Observation {
        Observation {
            component,
            state: State::Ok,
            reason: String::new(),
            readings: Vec::new(),
            events: Vec::new(),
            attributes: BTreeMap::new(),
            storage_unsafe: None,
        }
    }

    /// Raises the state to at least `state`, appending `reason` (joined with "; ").
    pub fn raise(&mut self, state: State, reason: impl Into<String>) {
        let reason = reason.into();
        self.state = self.state.worst(state);
        if !reason.is_empty() {
            if !self.reason.is_empty() {
                self.reason.push_str("; ");
            }
            self.reason.push_str(&reason);
        }
    }

    pub fn reading(&mut self, reading: Reading) {
        self.readings.push(reading);
    }

    pub fn attr(&mut self, key: &str, value: impl Into<String>) {
        self.attributes.insert(key.to_string(), value.into());
    }

    pub fn get_reading(&self, name: &str) -> Option<&Reading> {
        self.readings.iter().find(|r| r.name == name)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A transition of a component's state, or a named event a collector reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing per daemon run.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    pub component: ComponentId,
    pub from: State,
    pub to: State,
    /// `StateChanged` for a plain transition, `Discovered` for a new component that is not OK,
    /// `Disappeared` for a component its collector stopped reporting, or the collector's named
    /// event (`DegradedArray`, `Rebuild40`...).
    pub name: String,
    pub reason: String,
    /// The raw readings at the time of the event.
    pub readings: Vec<Reading>,
}

/// One entry of a component's bounded history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub timestamp_ms: u64,
    pub state: State,
    pub reason: String,
}

/// The current status of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub id: ComponentId,
    pub state: State,
    pub reason: String,
    /// The collector that reports this component.
    pub collector: String,
    /// When the current state began.
    pub since_ms: u64,
    /// Last observation.
    pub updated_ms: u64,
    pub readings: Vec<Reading>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_unsafe: Option<String>,
    /// State changes, oldest first, at most [`Health::history_len`] entries.
    pub history: VecDeque<HistoryEntry>,
}

/// "Can storage keep mail safe now?" with the reasons when not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageVerdict {
    pub safe: bool,
    pub reasons: Vec<String>,
}

/// A point-in-time copy of the whole model: what the health API's `{"get":"state"}` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub timestamp_ms: u64,
    /// The worst state of all components (OK when there are none).
    pub overall: State,
    pub components: Vec<ComponentStatus>,
    pub storage: StorageVerdict,
}

impl Snapshot {
    pub fn component(&self, id: &str) -> Option<&ComponentStatus> {
        self.components.iter().find(|c| c.id.to_string() == id)
    }
}

/// The current state of all components, their bounded histories, and transition detection.
#[derive(Debug, Clone)]
pub struct Health {
    components: BTreeMap<ComponentId, ComponentStatus>,
    /// Components each collector reported in its last batch.
    owned: BTreeMap<String, BTreeSet<ComponentId>>,
    history_len: usize,
    next_seq: u64,
}

impl Default for Health {
    fn default() -> Self {
        Health::new(32)
    }
}

impl Health {
    /// `history_len`: state changes kept per component (at least 1).
    pub fn new(history_len: usize) -> Health {
        Health {
            components: BTreeMap::new(),
            owned: BTreeMap::new(),
            history_len: history_len.max(1),
            next_seq: 1,
        }
    }

    pub fn history_len(&self) -> usize {
        self.history_len
    }

    pub fn get(&self, id: &ComponentId) -> Option<&ComponentStatus> {
        self.components.get(id)
    }

    pub fn components(&self) -> impl Iterator<Item = &ComponentStatus> {
        self.components.values()
    }

    /// Folds one poll of `collector` into the model at the current time.
    pub fn apply(&mut self, collector: &str, observations: Vec<Observation>) -> Vec<Event> {
        self.apply_at(collector, observations, now_ms())
    }

    /// Folds one poll of `collector` into the model at time `now` (ms since the epoch) and
    /// returns the events, in order: for each observation its named events, then its
    /// transition (if any); then `Disappeared` for components this collector reported last
    /// time and not now (their state becomes UNKNOWN).
    pub fn apply_at(
        &mut self,
        collector: &str,
        observations: Vec<Observation>,
        now: u64,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let mut seen = BTreeSet::new();
        for obs in observations {
            seen.insert(obs.component.clone());
            let previous = self.components.get(&obs.component).map(|c| c.state);
            for name in &obs.events {
                let from = previous.unwrap_or(State::Unknown);
                events.push(self.event(&obs, from, name, now));
            }
            match previous {
                None if obs.state != State::Ok => {
                    events.push(self.event(&obs, State::Unknown, "Discovered", now));
                }
                Some(prev) if prev != obs.state => {
                    events.push(self.event(&obs, prev, "StateChanged", now));
                }
                _ => {}
            }
            let history_len = self.history_len;
            let status = self
                .components
                .entry(obs.component.clone())
                .or_insert_with(|| ComponentStatus {
                    id: obs.component.clone(),
                    state: obs.state,
                    reason: String::new(),
                    collector: collector.to_string(),
                    since_ms: now,
                    updated_ms: now,
                    readings: Vec::new(),
                    attributes: BTreeMap::new(),
                    storage_unsafe: None,
                    history: VecDeque::new(),
                });
            if previous.is_none() || previous != Some(obs.state) {
                status.since_ms = now;
                push_history(
                    &mut status.history,
                    history_len,
                    HistoryEntry {
                        timestamp_ms: now,
                        state: obs.state,
                        reason: obs.reason.clone(),
                    },
                );
            }
            status.state = obs.state;
            status.reason = obs.reason;
            status.collector = collector.to_string();
            status.updated_ms = now;
            status.readings = obs.readings;
            status.attributes = obs.attributes;
            status.storage_unsafe = obs.storage_unsafe;
        }
        let before = self
            .owned
            .insert(collector.to_string(), seen.clone())
            .unwrap_or_default();
        for gone in before.difference(&seen) {
            let Some(status) = self.components.get(gone) else {
                continue;
            };
            if status.collector != collector {
                // Another collector reports it now.
                continue;
            }
            let from = status.state;
            let readings = status.readings.clone();
            let reason = format!("no longer reported by the {collector} collector");
            if from != State::Unknown {
                let seq = self.next_seq;
                self.next_seq += 1;
                events.push(Event {
                    seq,
                    timestamp_ms: now,
                    component: gone.clone(),
                    from,
                    to: State::Unknown,
                    name: "Disappeared".into(),
                    reason: reason.clone(),
                    readings,
                });
            }
            let history_len = self.history_len;
            if let Some(status) = self.components.get_mut(gone) {
                if status.state != State::Unknown {
                    status.since_ms = now;
                    push_history(
                        &mut status.history,
                        history_len,
                        HistoryEntry {
                            timestamp_ms: now,
                            state: State::Unknown,
                            reason: reason.clone(),
                        },
                    );
                }
                status.state = State::Unknown;
                status.reason = reason;
                status.storage_unsafe = None;
            }
        }
        events
    }

    fn event(&mut self, obs: &Observation, from: State, name: &str, now: u64) -> Event {
        let seq = self.next_seq;
        self.next_seq += 1;
        Event {
            seq,
            timestamp_ms: now,
            component: obs.component.clone(),
            from,
            to: obs.state,
            name: name.to_string(),
            reason: obs.reason.clone(),
            readings: obs.readings.clone(),
        }
    }

    /// Removes components that have been UNKNOWN (no longer reported) for longer than
    /// `max_age_ms`, so a disk that was replaced does not stay in the table forever.
    pub fn expire(&mut self, now: u64, max_age_ms: u64) {
        self.components.retain(|_, c| {
            !(c.state == State::Unknown && now.saturating_sub(c.updated_ms) > max_age_ms)
        });
    }

    /// The storage verdict: unsafe while any component carries a `storage_unsafe` reason.
    pub fn storage_verdict(&self) -> StorageVerdict {
        let reasons: Vec<String> = self
            .components
            .values()
            .filter_map(|c| c.storage_unsafe.as_ref().map(|r| format!("{}: {r}", c.id)))
            .collect();
        StorageVerdict {
            safe: reasons.is_empty(),
            reasons,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let overall = self
            .components
            .values()
            .fold(State::Ok, |acc, c| acc.worst(c.state));
        Snapshot {
            timestamp_ms: now_ms(),
            overall,
            components: self.components.values().cloned().collect(),
            storage: self.storage_verdict(),
        }
    }
}

fn push_history(history: &mut VecDeque<HistoryEntry>, max: usize, entry: HistoryEntry) {
    while history.len() >= max {
        history.pop_front();
    }
    history.push_back(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(name: &str, state: State) -> Observation {
        let mut o = Observation::new(ComponentId::new(ComponentKind::Array, name));
        o.state = state;
        o.readings.push(Reading::new("degraded", 1.0, Unit::Count));
        o
    }

    #[test]
    fn id_round_trip() {
        let id: ComponentId = "disk/nvme0n1".parse().unwrap();
        assert_eq!(id, ComponentId::new(ComponentKind::Disk, "nvme0n1"));
        assert_eq!(id.to_string(), "disk/nvme0n1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"disk/nvme0n1\"");
        let name_with_slash: ComponentId = "sensor/a/b".parse().unwrap();
        assert_eq!(name_with_slash.name, "a/b");
        assert!("bogus/x".parse::<ComponentId>().is_err());
        assert!("disk/".parse::<ComponentId>().is_err());
        assert!("disk".parse::<ComponentId>().is_err());
    }

    #[test]
    fn state_order_and_serde() {
        assert_eq!(State::Ok.worst(State::Warning), State::Warning);
        assert_eq!(State::Critical.worst(State::Warning), State::Critical);
        assert_eq!(State::Ok.worst(State::Unknown), State::Unknown);
        assert_eq!(
            serde_json::to_string(&State::Critical).unwrap(),
            "\"CRITICAL\""
        );
    }

    #[test]
    fn thresholds_follow_ipmi_conventions() {
        let t = Thresholds {
            lower_critical: Some(300.0),
            upper_non_critical: Some(70.0),
            upper_critical: Some(80.0),
            ..Thresholds::default()
        };
        // 50 is below lower_critical 300 (a fan in RPM with mixed thresholds): CRITICAL.
        assert_eq!(t.state_of(50.0).0, State::Critical);
        assert_eq!(t.state_of(400.0).0, State::Critical);
        assert_eq!(t.state_of(0.0).0, State::Critical);
        let temp = Thresholds {
            upper_non_critical: Some(70.0),
            upper_critical: Some(80.0),
            ..Thresholds::default()
        };
        assert_eq!(temp.state_of(50.0).0, State::Ok);
        assert_eq!(temp.state_of(75.0).0, State::Warning);
        assert_eq!(temp.state_of(80.0).0, State::Critical);
    }

    #[test]
    fn transitions_produce_events_with_readings() {
        let mut h = Health::new(3);
        assert!(h.apply_at("md", vec![obs("md0", State::Ok)], 1).is_empty());
        let ev = h.apply_at("md", vec![obs("md0", State::Ok)], 2);
        assert!(ev.is_empty());
        let mut o = obs("md0", State::Critical);
        o.events.push("DegradedArray".into());
        o.reason = "1 of 2 devices failed".into();
        let ev = h.apply_at("md", vec![o], 3);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].name, "DegradedArray");
        assert_eq!(ev[1].name, "StateChanged");
        assert_eq!((ev[1].from, ev[1].to), (State::Ok, State::Critical));
        assert_eq!(ev[1].readings[0].name, "degraded");
        assert!(ev[0].seq < ev[1].seq);
        let st = h.get(&"array/md0".parse().unwrap()).unwrap();
        assert_eq!(st.since_ms, 3);
        assert_eq!(st.history.len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let mut h = Health::new(3);
        for i in 0..10u64 {
            let s = if i % 2 == 0 {
                State::Ok
            } else {
                State::Warning
            };
            h.apply_at("md", vec![obs("md0", s)], i);
        }
        let st = h.get(&"array/md0".parse().unwrap()).unwrap();
        assert_eq!(st.history.len(), 3);
        assert_eq!(st.history.back().unwrap().timestamp_ms, 9);
    }

    #[test]
    fn new_component_not_ok_is_discovered_and_missing_one_disappears() {
        let mut h = Health::default();
        let ev = h.apply_at(
            "md",
            vec![obs("md0", State::Warning), obs("md1", State::Ok)],
            1,
        );
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].name, "Discovered");
        let ev = h.apply_at("md", vec![obs("md0", State::Warning)], 2);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].name, "Disappeared");
        assert_eq!(ev[0].component.to_string(), "array/md1");
        assert_eq!(ev[0].to, State::Unknown);
        // Other collectors' components are untouched.
        let ev = h.apply_at("smart", vec![], 3);
        assert!(ev.is_empty());
        h.expire(10_000, 1000);
        assert!(h.get(&"array/md1".parse().unwrap()).is_none());
        assert!(h.get(&"array/md0".parse().unwrap()).is_some());
    }

    #[test]
    fn storage_verdict_collects_reasons() {
        let mut h = Health::default();
        let mut o = obs("md0", State::Critical);
        o.storage_unsafe = Some("array failed".into());
        h.apply_at("md", vec![o, obs("md1", State::Ok)], 1);
        let s = h.snapshot();
        assert!(!s.storage.safe);
        assert_eq!(
            s.storage.reasons,
            vec!["array/md0: array failed".to_string()]
        );
        assert_eq!(s.overall, State::Critical);
        h.apply_at("md", vec![obs("md0", State::Ok), obs("md1", State::Ok)], 2);
        assert!(h.snapshot().storage.safe);
    }
}
