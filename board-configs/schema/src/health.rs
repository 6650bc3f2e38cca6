//! The vocabulary of hwmond's health model that board files use: component kinds (a sensor maps
//! to a `psu`, `fan` or `sensor`), states (rule overrides name `WARNING`, `CRITICAL`...) and
//! sensor thresholds. hwmond's model (`postern_hwmon::model`) re-exports these, so there is one
//! definition for the board schema and the daemon.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a component is. Serialised in lowercase (`"disk"`), also the prefix of a
/// [`ComponentId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A block device with SMART data (SATA/SAS/NVMe).
    Disk,
    /// An md RAID array.
    Array,
    /// A power supply (IPMI).
    Psu,
    /// A fan (IPMI or hwmon sysfs).
    Fan,
    /// A temperature, voltage, current or power sensor (IPMI, hwmon sysfs, thermal zone).
    Sensor,
    /// A mounted filesystem (space and inodes).
    Filesystem,
    /// Memory: RAM use and EDAC error counters.
    Memory,
    /// CPU use and load average.
    Cpu,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 8] = [
        ComponentKind::Disk,
        ComponentKind::Array,
        ComponentKind::Psu,
        ComponentKind::Fan,
        ComponentKind::Sensor,
        ComponentKind::Filesystem,
        ComponentKind::Memory,
        ComponentKind::Cpu,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Disk => "disk",
            ComponentKind::Array => "array",
            ComponentKind::Psu => "psu",
            ComponentKind::Fan => "fan",
            ComponentKind::Sensor => "sensor",
            ComponentKind::Filesystem => "filesystem",
            ComponentKind::Memory => "memory",
            ComponentKind::Cpu => "cpu",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ComponentKind {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ComponentKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseIdError(s.to_string()))
    }
}

/// Health state. Ordered by severity for [`State::worst`]: Ok < Unknown < Warning < Critical.
/// Serialised as `"OK"`, `"WARNING"`, `"CRITICAL"`, `"UNKNOWN"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// Severity rank: 0 ok, 1 unknown, 2 warning, 3 critical.
    pub fn severity(self) -> u8 {
        match self {
            State::Ok => 0,
            State::Unknown => 1,
            State::Warning => 2,
            State::Critical => 3,
        }
    }

    /// The more severe of two states.
    pub fn worst(self, other: State) -> State {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a component kind (or, in hwmond, not a `kind/name` component id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a component id (kind/name): {0}")]
pub struct ParseIdError(pub String);

/// Thresholds of a reading, named as IPMI does (lower/upper non-critical, critical,
/// non-recoverable). A reading strictly above `upper_critical` (or below `lower_critical`) is
/// CRITICAL under the default sensor rule, beyond a non-critical one WARNING.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_non_recoverable: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_critical: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lower_non_critical: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_non_critical: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_critical: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper_non_recoverable: Option<f64>,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        *self == Thresholds::default()
    }

    /// `other`'s set values replace ours (board overrides over collector values).
    pub fn overlay(&self, other: &Thresholds) -> Thresholds {
        Thresholds {
            lower_non_recoverable: other.lower_non_recoverable.or(self.lower_non_recoverable),
            lower_critical: other.lower_critical.or(self.lower_critical),
            lower_non_critical: other.lower_non_critical.or(self.lower_non_critical),
            upper_non_critical: other.upper_non_critical.or(self.upper_non_critical),
            upper_critical: other.upper_critical.or(self.upper_critical),
            upper_non_recoverable: other.upper_non_recoverable.or(self.upper_non_recoverable),
        }
    }

    /// The ipmi_exporter / node_exporter convention: beyond a critical or non-recoverable
    /// threshold is CRITICAL, beyond a non-critical one WARNING, else OK. Upper thresholds
    /// are exceeded when `value >= threshold` (IPMI asserts "upper critical going high" at
    /// the threshold), lower ones when `value <= threshold`.
    pub fn state_of(&self, value: f64) -> (State, Option<&'static str>) {
        let hi = |t: Option<f64>| t.is_some_and(|t| value >= t);
        let lo = |t: Option<f64>| t.is_some_and(|t| value <= t);
        if hi(self.upper_non_recoverable) {
            (
                State::Critical,
                Some("above upper non-recoverable threshold"),
            )
        } else if hi(self.upper_critical) {
            (State::Critical, Some("above upper critical threshold"))
        } else if lo(self.lower_non_recoverable) {
            (
                State::Critical,
                Some("below lower non-recoverable threshold"),
            )
        } else if lo(self.lower_critical) {
            (State::Critical, Some("below lower critical threshold"))
        } else if hi(self.upper_non_critical) {
            (State::Warning, Some("above upper non-critical threshold"))
        } else if lo(self.lower_non_critical) {
            (State::Warning, Some("below lower non-critical threshold"))
        } else {
            (State::Ok, None)
        }
    }
}
