//! IPMI collector (DESIGN.md 3.6): talks to the BMC through ipmi-rs, in-band on the Linux
//! IPMI driver's device (`/dev/ipmi0`) or over RMCP+ to a remote BMC; walks the SDR repository
//! (full and compact sensor records), reads every sensor with its thresholds, and reads new
//! System Event Log entries since the last one seen.
//!
//! Components: Power Supply sensors (type 08h) -> `psu/<name>`, fans -> `fan/<name>`,
//! temperature, voltage, current and power sensors -> `sensor/<name>`, and the BMC itself ->
//! `sensor/ipmi-bmc` (reachability, SEL fill). The board file maps SDR id strings to
//! component names, meanings and threshold overrides, or hides sensors (`ignore`).
//!
//! Rules (ipmi_exporter's state convention): beyond a critical or non-recoverable threshold
//! CRITICAL, beyond a non-critical one WARNING; a fan at 0 RPM CRITICAL; a power supply with
//! failure detected or AC lost CRITICAL, absent CRITICAL (the board has it), predictive
//! failure, input out of range or configuration error WARNING. A sensor whose reading is
//! unavailable is UNKNOWN; when the BMC cannot be reached every IPMI component is UNKNOWN.
//! Each new SEL entry becomes a named event (`SelLowerCriticalGoingLowAsserted`,
//! `SelFailureDetectedAsserted`...) on the component of its sensor. A fault asserted in the
//! SEL that the readings no longer show (it cleared between two polls) is reported as a
//! transition into that state with the SEL's reason, followed by the recovery.

mod conn;
pub mod sdr;
pub mod sel;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::board::BoardSensor;
use crate::collectors::{Collector, CollectorContext, CollectorError};
use crate::config;
use crate::model::{ComponentId, ComponentKind, Observation, Reading, State, Thresholds, Unit};

pub use conn::{Conn, ConnError, SelInfo, Target};
use sdr::{psu_offset, sensor_type, RawReading, RawThresholds, SensorRecord};
use sel::SelRecord;

/// How hwmond reaches the BMC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpmiInterface {
    /// In-band: the Linux IPMI driver's character device (`device`).
    #[default]
    Device,
    /// RMCP+ (IPMI 2.0 LAN) to `host`:`port`.
    Lan,
}

/// The `[ipmi]` section of hwmond's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpmiConfig {
    pub enable: bool,
    /// Seconds between polls; 0 = the board's or the built-in default (5).
    pub interval_secs: f64,
    /// `device` (in-band) or `lan` (RMCP+).
    pub interface: IpmiInterface,
    /// The IPMI device for `interface = "device"`.
    pub device: PathBuf,
    /// The BMC for `interface = "lan"`.
    pub host: String,
    pub port: u16,
    pub username: String,
    /// The password; prefer `password_file` (read once at start, trailing newline removed).
    pub password: String,
    pub password_file: PathBuf,
    /// RMCP+ cipher suite (IPMI 2.0 table 22-20). ipmi-rs 0.6 negotiates suite 3
    /// (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) only; other values are refused.
    pub cipher_suite: u8,
    /// Seconds to wait for each reply.
    pub timeout_secs: f64,
    /// Read new SEL entries every poll.
    pub sel: bool,
    /// Seconds between SDR repository walks (also after every reconnect).
    pub sdr_refresh_secs: f64,
}

impl Default for IpmiConfig {
    fn default() -> Self {
        IpmiConfig {
            enable: false,
            interval_secs: 0.0,
            interface: IpmiInterface::Device,
            device: PathBuf::from("/dev/ipmi0"),
            host: String::new(),
            port: 623,
            username: String::new(),
            password: String::new(),
            password_file: PathBuf::new(),
            cipher_suite: 3,
            timeout_secs: 2.0,
            sel: true,
            sdr_refresh_secs: 600.0,
        }
    }
}

/// The cipher suites ipmi-rs can negotiate.
pub const SUPPORTED_CIPHER_SUITES: &[u8] = &[3];

/// What is wrong with an enabled `[ipmi]` section (the key and why), if anything; the
/// configuration check runs this too, so `check-config` refuses what `run` would.
pub fn check(config: &IpmiConfig) -> Result<(), (&'static str, String)> {
    if !config.enable || config.interface != IpmiInterface::Lan {
        return Ok(());
    }
    if config.host.is_empty() {
        return Err(("host", "interface = \"lan\" needs host".into()));
    }
    if !SUPPORTED_CIPHER_SUITES.contains(&config.cipher_suite) {
        return Err((
            "cipher_suite",
            format!(
                "cipher_suite {} is not supported (ipmi-rs negotiates suite 3: \
                 RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128)",
                config.cipher_suite
            ),
        ));
    }
    if !config.password_file.as_os_str().is_empty() {
        // Read at start by `run`: an unreadable file must fail the check too.
        std::fs::read(&config.password_file).map_err(|e| {
            (
                "password_file",
                format!("{}: {e}", config.password_file.display()),
            )
        })?;
    }
    Ok(())
}

/// The IPMI collector when enabled.
pub fn build(
    config: &IpmiConfig,
    ctx: &CollectorContext,
) -> Result<Option<Box<dyn Collector>>, CollectorError> {
    if !config.enable {
        return Ok(None);
    }
    let unavailable = |message: String| CollectorError::Unavailable {
        collector: "ipmi".into(),
        message,
    };
    let target = match config.interface {
        IpmiInterface::Device => Target::Device {
            path: config.device.display().to_string(),
        },
        IpmiInterface::Lan => {
            check(config).map_err(|(_, m)| unavailable(m))?;
            let password = if config.password_file.as_os_str().is_empty() {
                config.password.clone()
            } else {
                std::fs::read_to_string(&config.password_file)
                    .map_err(|e| unavailable(format!("{}: {e}", config.password_file.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string()
            };
            Target::Lan {
                host: config.host.clone(),
                port: config.port,
                username: config.username.clone(),
                password: password.into_bytes(),
            }
        }
    };
    let interval = config::interval(
        config.interval_secs,
        ctx.board.intervals.ipmi_secs,
        config::default_interval::IPMI,
    );
    Ok(Some(Box::new(IpmiCollector::new(
        target,
        interval,
        Duration::from_secs_f64(config.timeout_secs.clamp(0.1, 60.0)),
        config.sel,
        Duration::from_secs_f64(config.sdr_refresh_secs.clamp(1.0, 86_400.0)),
        ctx,
    ))))
}

/// A sensor from the SDR with what we need to poll it.
#[derive(Debug, Clone)]
struct Sensor {
    record: SensorRecord,
    /// Thresholds converted to units (Get Sensor Thresholds, else the SDR's values).
    thresholds: Thresholds,
    mapping: Mapping,
}

/// What a sensor means: its component and the board's overrides.
#[derive(Debug, Clone)]
struct Mapping {
    component: ComponentId,
    meaning: String,
    thresholds: Thresholds,
}

/// The IPMI collector.
pub struct IpmiCollector {
    target: Target,
    interval: Duration,
    timeout: Duration,
    sel_enabled: bool,
    sdr_refresh: Duration,
    board_sensors: HashMap<String, BoardSensor>,
    conn: Option<Conn>,
    sensors: Vec<Sensor>,
    sdr_loaded: Option<Instant>,
    sel: SelCursor,
    last_error: Option<String>,
}

/// Where we are in the SEL.
#[derive(Debug, Clone, Default)]
struct SelCursor {
    /// Set after the first read: entries present at start are history, not news.
    primed: bool,
    last_info: Option<SelInfo>,
    /// The last record id seen.
    last_id: Option<u16>,
}

impl IpmiCollector {
    pub fn new(
        target: Target,
        interval: Duration,
        timeout: Duration,
        sel_enabled: bool,
        sdr_refresh: Duration,
        ctx: &CollectorContext,
    ) -> IpmiCollector {
        let board_sensors = ctx
            .board
            .sensors
            .iter()
            .filter(|s| s.source == crate::board::SensorSource::Ipmi)
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        IpmiCollector {
            target,
            interval,
            timeout,
            sel_enabled,
            sdr_refresh,
            board_sensors,
            conn: None,
            sensors: Vec::new(),
            sdr_loaded: None,
            sel: SelCursor::default(),
            last_error: None,
        }
    }

    /// One poll against an open connection: SDR (when due), readings, SEL.
    fn poll(&mut self) -> Result<Vec<Observation>, ConnError> {
        let now = Instant::now();
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(Conn::open(&self.target, self.timeout)?),
        };
        let due = self
            .sdr_loaded
            .is_none_or(|t| now.duration_since(t) >= self.sdr_refresh);
        if due || self.sensors.is_empty() {
            let records = conn.sdr_repository()?;
            self.sensors = load_sensors(conn, &records, &self.board_sensors)?;
            self.sdr_loaded = Some(now);
            tracing::info!(
                event = "hwmon.ipmi.sdr",
                records = records.len(),
                sensors = self.sensors.len(),
                "SDR repository read"
            );
        }
        // The SEL is read before the sensors: an assertion found there happened before this
        // poll's readings, so a reading that is fine now means the fault cleared in between
        // (and not that it began after the readings, which the next poll will see).
        let sel = if self.sel_enabled {
            read_sel(conn, &mut self.sel)?
        } else {
            Vec::new()
        };
        let mut observations: Vec<Observation> = Vec::with_capacity(self.sensors.len() + 1);
        for sensor in &self.sensors {
            let reading = match conn.sensor_reading(sensor.record.number) {
                Ok(data) => RawReading::parse(&data),
                // 35.14: a sensor that is absent or not scanning answers an error code;
                // that is a state of the sensor, not of the connection.
                Err(e) if !e.is_transport() => None,
                Err(e) => return Err(e),
            };
            observations.push(observe(sensor, reading));
        }
        let mut bmc = Observation::new(bmc_component());
        bmc.readings.push(Reading::new("up", 1.0, Unit::Bool));
        bmc.readings.push(Reading::new(
            "sensors",
            self.sensors.len() as f64,
            Unit::Count,
        ));
        if self.sel_enabled {
            if let Some(info) = self.sel.last_info {
                bmc.readings.push(Reading::new(
                    "sel_entries",
                    f64::from(info.entries),
                    Unit::Count,
                ));
                bmc.readings.push(Reading::new(
                    "sel_free_bytes",
                    f64::from(info.free_bytes),
                    Unit::Bytes,
                ));
                if info.overflow {
                    bmc.state = State::Warning;
                    bmc.reason = "SEL full: new events are being dropped".into();
                }
            }
        }
        attach_bmc_attributes(&mut bmc, &self.target);
        observations.push(bmc);
        // Several SDR records may map to one component (a PSU status and its current sensor
        // under one board name): merge them, worst state wins.
        let observations = merge(observations);
        Ok(apply_sel(observations, &self.sensors, sel))
    }

    /// Every component we reported, UNKNOWN: the BMC cannot be read. Before the first SDR
    /// walk (the BMC down at start) those are the board's IPMI sensors: a board that lists
    /// PSUs and fans shows them as not known to be fine, not as absent.
    fn unreachable(&self, error: &str) -> Vec<Observation> {
        let unknown = |component: ComponentId, meaning: &str| {
            let mut o = Observation::new(component);
            o.state = State::Unknown;
            o.reason = "BMC unreachable".into();
            if !meaning.is_empty() {
                o.attributes.insert("meaning".into(), meaning.to_string());
            }
            o
        };
        let mut out: Vec<Observation> = if self.sensors.is_empty() {
            let mut board: Vec<&BoardSensor> =
                self.board_sensors.values().filter(|b| !b.ignore).collect();
            board.sort_by(|a, b| (a.kind, &a.component).cmp(&(b.kind, &b.component)));
            board
                .into_iter()
                .map(|b| unknown(ComponentId::new(b.kind, b.component.clone()), &b.meaning))
                .collect()
        } else {
            self.sensors
                .iter()
                .map(|s| unknown(s.mapping.component.clone(), &s.mapping.meaning))
                .collect()
        };
        let mut bmc = Observation::new(bmc_component());
        bmc.state = State::Warning;
        bmc.reason = format!("BMC unreachable: {error}");
        bmc.readings.push(Reading::new("up", 0.0, Unit::Bool));
        attach_bmc_attributes(&mut bmc, &self.target);
        out.push(bmc);
        merge(out)
    }
}

impl Collector for IpmiCollector {
    fn name(&self) -> &str {
        "ipmi"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn collect(&mut self) -> Vec<Observation> {
        // One retry with a fresh session: RMCP+ sessions time out on the BMC side and a
        // BMC reset drops them.
        let mut result = self.poll();
        if let Err(e) = &result {
            if e.is_transport() || self.conn.is_none() {
                self.conn = None;
                result = self.poll();
            }
        }
        match result {
            Ok(obs) => {
                if self.last_error.take().is_some() {
                    tracing::info!(event = "hwmon.ipmi.connected", "BMC reachable again");
                }
                obs
            }
            Err(e) => {
                self.conn = None;
                let message = e.to_string();
                if self.last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(event = "hwmon.ipmi.error", error = %message, "IPMI poll failed");
                }
                self.last_error = Some(message.clone());
                self.unreachable(&message)
            }
        }
    }
}

/// The SEL entries of one component in one poll.
#[derive(Default)]
struct SelNews {
    /// Worst fault an assertion reported, with the reasons in SEL order.
    fault: Option<State>,
    reasons: Vec<String>,
    /// Event names in SEL order, each marked when it reported a fault.
    events: Vec<(String, bool)>,
}

/// Attaches new SEL entries to the components of their sensors (the BMC's when the SDR does
/// not describe the sensor). A fault the SEL reports that is worse than the component's
/// reading now asserted and cleared between two polls: the readings alone would never show
/// it, so a transient observation in that state, with the SEL's reason and the assertion
/// events, goes before the current one; the model then emits the transition into the fault
/// and the recovery after it, and the sinks (alert mail included) see both.
fn apply_sel(
    observations: Vec<Observation>,
    sensors: &[Sensor],
    sel: Vec<SelRecord>,
) -> Vec<Observation> {
    let mut news: BTreeMap<ComponentId, SelNews> = BTreeMap::new();
    for record in sel {
        let name = record.event_name();
        let sensor = sensors
            .iter()
            .find(|s| {
                s.record.number == record.sensor_number
                    && record.is_system_event()
                    && u16::from(s.record.owner) == (record.generator & 0xff)
            })
            .or_else(|| {
                sensors
                    .iter()
                    .find(|s| s.record.number == record.sensor_number && record.is_system_event())
            });
        tracing::info!(
            event = "hwmon.ipmi.sel",
            record = record.id,
            sensor = record.sensor_number,
            description = %record.description(),
            deasserted = record.deassertion,
            "new SEL entry"
        );
        let component = sensor.map_or_else(bmc_component, |s| s.mapping.component.clone());
        let entry = news.entry(component).or_default();
        match sel_fault(&record, sensor) {
            Some((state, reason)) => {
                entry.fault = Some(entry.fault.map_or(state, |f| f.worst(state)));
                entry.reasons.push(reason);
                entry.events.push((name, true));
            }
            None => entry.events.push((name, false)),
        }
    }
    let mut out = Vec::with_capacity(observations.len());
    for mut o in observations {
        let Some(n) = news.remove(&o.component) else {
            out.push(o);
            continue;
        };
        match n.fault {
            Some(fault) if fault.severity() > o.state.severity() => {
                let mut transient = o.clone();
                transient.state = fault;
                transient.reason = format!(
                    "{} (BMC event log; cleared before the next reading)",
                    n.reasons.join("; ")
                );
                let (fault_events, other): (Vec<_>, Vec<_>) =
                    n.events.into_iter().partition(|(_, fault)| *fault);
                transient.events = fault_events.into_iter().map(|(e, _)| e).collect();
                // The fault did not outlive the poll: it says nothing about storage now.
                transient.storage_unsafe = None;
                out.push(transient);
                o.events.extend(other.into_iter().map(|(e, _)| e));
            }
            _ => o.events.extend(n.events.into_iter().map(|(e, _)| e)),
        }
        out.push(o);
    }
    out
}

/// The state and reason a SEL entry reports for its sensor's component, when it reports a
/// fault: a threshold crossed outwards (going low on a lower threshold, going high on an
/// upper one), or a power supply failure, AC loss, removal or warning condition.
fn sel_fault(record: &SelRecord, sensor: Option<&Sensor>) -> Option<(State, String)> {
    if !record.is_system_event() {
        return None;
    }
    let offset = record.offset();
    let label = sensor.map_or_else(
        || format!("sensor {:#04x}", record.sensor_number),
        |s| s.record.name(),
    );
    let state = match (record.reading_type, record.sensor_type, record.deassertion) {
        (sdr::READING_THRESHOLD, _, false) => match offset {
            0x0 | 0x7 => State::Warning,
            0x2 | 0x4 | 0x9 | 0xb => State::Critical,
            _ => return None,
        },
        (sdr::READING_SENSOR_SPECIFIC, sensor_type::POWER_SUPPLY, false) => match offset {
            1 | 3 | 4 => State::Critical,
            2 | 5 | 6 => State::Warning,
            _ => return None,
        },
        // Presence detected deasserted: the supply was pulled.
        (sdr::READING_SENSOR_SPECIFIC, sensor_type::POWER_SUPPLY, true) if offset == 0 => {
            return Some((State::Critical, format!("{label}: not present")));
        }
        _ => return None,
    };
    let mut reason = format!("{label}: {}", record.description());
    // 29.7 event data 1 bits 7:6 = 01b: data 2 is the reading that triggered the event.
    if record.reading_type == sdr::READING_THRESHOLD && record.data[0] & 0xc0 == 0x40 {
        if let Some((s, value)) = sensor.and_then(|s| {
            s.record
                .conversion
                .and_then(|c| c.convert(record.data[1]))
                .map(|v| (s, v))
        }) {
            let unit = s.record.unit().unwrap_or(Unit::Number);
            reason = format!("{reason} at {value} {}", unit.suffix())
                .trim_end()
                .to_string();
        }
    }
    Some((state, reason))
}

fn bmc_component() -> ComponentId {
    ComponentId::new(ComponentKind::Sensor, "ipmi-bmc")
}

fn attach_bmc_attributes(bmc: &mut Observation, target: &Target) {
    let (interface, address) = match target {
        Target::Device { path } => ("device", path.clone()),
        Target::Lan { host, port, .. } => ("lan", format!("{host}:{port}")),
    };
    bmc.attributes.insert("interface".into(), interface.into());
    bmc.attributes.insert("address".into(), address);
    bmc.attributes.insert("ipmi".into(), "bmc".into());
}

/// Parses the sensor records, keeps those we monitor and reads their thresholds.
fn load_sensors(
    conn: &mut Conn,
    records: &[Vec<u8>],
    board: &HashMap<String, BoardSensor>,
) -> Result<Vec<Sensor>, ConnError> {
    let mut sensors = Vec::new();
    for bytes in records {
        let Ok(record) = SensorRecord::parse(bytes) else {
            continue;
        };
        let board_entry = board.get(&record.name());
        if board_entry.is_some_and(|b| b.ignore) {
            continue;
        }
        let Some(mapping) = map_sensor(&record, board_entry) else {
            continue;
        };
        let mut thresholds = Thresholds::default();
        if let Some(conv) = record.conversion.filter(|_| record.is_threshold()) {
            // 35.9 Get Sensor Thresholds gives the live values; the SDR's are the defaults.
            let raw = match conn.sensor_thresholds(record.number) {
                Ok(data) => RawThresholds::from_response(&data),
                Err(e) if e.is_transport() => return Err(e),
                Err(_) => None,
            };
            let raw = raw.or(record.sdr_thresholds);
            if let Some(raw) = raw {
                thresholds = raw.convert(&conv);
            }
        }
        sensors.push(Sensor {
            record,
            thresholds,
            mapping,
        });
    }
    Ok(sensors)
}

/// The component of a sensor: the board's mapping, else by sensor type and unit. Sensors of
/// types we do not monitor (watchdog, buttons, OEM) are skipped unless the board names them.
fn map_sensor(record: &SensorRecord, board: Option<&BoardSensor>) -> Option<Mapping> {
    if let Some(b) = board {
        return Some(Mapping {
            component: ComponentId::new(b.kind, b.component.clone()),
            meaning: b.meaning.clone(),
            thresholds: b.thresholds,
        });
    }
    let name = record.name();
    let kind = match record.sensor_type {
        sensor_type::POWER_SUPPLY => ComponentKind::Psu,
        sensor_type::FAN => ComponentKind::Fan,
        sensor_type::TEMPERATURE | sensor_type::VOLTAGE | sensor_type::CURRENT => {
            ComponentKind::Sensor
        }
        _ if record.is_threshold() && record.unit().is_some() => match record.unit() {
            Some(Unit::Rpm) => ComponentKind::Fan,
            _ => ComponentKind::Sensor,
        },
        _ => return None,
    };
    let component = match kind {
        ComponentKind::Sensor => slug(&name),
        _ => name.replace(char::is_whitespace, "-"),
    };
    Some(Mapping {
        component: ComponentId::new(kind, component),
        meaning: String::new(),
        thresholds: Thresholds::default(),
    })
}

/// `CPU Temp` -> `cpu-temp`, `3.3V` -> `3-3v`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Reading name by quantity (stable within a component).
fn quantity_name(record: &SensorRecord) -> &'static str {
    match record.unit() {
        Some(Unit::Celsius) => "temperature",
        Some(Unit::Volts) => "voltage",
        Some(Unit::Amperes) => "current",
        Some(Unit::Watts) => "power",
        Some(Unit::Rpm) => "speed",
        Some(Unit::Percent) => "percent",
        _ => "value",
    }
}

/// One sensor's observation from its reading.
fn observe(sensor: &Sensor, reading: Option<RawReading>) -> Observation {
    let record = &sensor.record;
    let mut o = Observation::new(sensor.mapping.component.clone());
    o.attributes.insert("ipmi".into(), "sensor".into());
    o.attributes.insert("ipmi_name".into(), record.name());
    o.attributes
        .insert("ipmi_id".into(), record.record_id.to_string());
    o.attributes
        .insert("ipmi_number".into(), format!("{:#04x}", record.number));
    o.attributes
        .insert("ipmi_type".into(), record.type_name().to_string());
    if !sensor.mapping.meaning.is_empty() {
        o.attributes
            .insert("meaning".into(), sensor.mapping.meaning.clone());
    }
    let Some(reading) = reading.filter(|r| !r.unavailable) else {
        o.state = State::Unknown;
        o.reason = "reading unavailable".into();
        return o;
    };
    if record.sensor_type == sensor_type::POWER_SUPPLY && !record.is_threshold() {
        observe_psu(&mut o, reading.states);
        return o;
    }
    if record.is_threshold() {
        let Some(value) = record.conversion.and_then(|c| c.convert(reading.raw)) else {
            o.state = State::Unknown;
            o.reason = "no analog reading".into();
            return o;
        };
        let unit = record.unit().unwrap_or(Unit::Number);
        let thresholds = sensor.thresholds.overlay(&sensor.mapping.thresholds);
        let label = record.name();
        let (mut state, why) = thresholds.state_of(value);
        let mut reason = why
            .map(|w| format!("{label} {value} {} {w}", unit.suffix()))
            .unwrap_or_default();
        if thresholds.is_empty() && sensor.mapping.thresholds.is_empty() {
            // No readable thresholds: trust the BMC's own comparison (35.14 byte 3).
            let s = reading.states;
            if s & 0b10_0110 != 0 {
                state = State::Critical;
                reason = format!(
                    "{label} {value} {}: BMC reports a critical threshold",
                    unit.suffix()
                );
            } else if s & 0b00_1001 != 0 {
                state = State::Warning;
                reason = format!(
                    "{label} {value} {}: BMC reports a non-critical threshold",
                    unit.suffix()
                );
            }
        }
        if unit == Unit::Rpm && value <= 0.0 {
            state = State::Critical;
            reason = format!("{label} stopped (0 RPM)");
        }
        o.state = state;
        o.reason = reason.replace("  ", " ");
        o.readings
            .push(Reading::new(quantity_name(record), value, unit).with_thresholds(thresholds));
        o.attributes
            .insert("ipmi_unit".into(), record.unit_name().to_string());
        return o;
    }
    // Other discrete sensors the board names: the state bits, OK.
    o.readings.push(Reading::new(
        "states",
        f64::from(reading.states),
        Unit::Number,
    ));
    o
}

/// Power Supply sensor-specific states (table 42-3, sensor type 08h).
fn observe_psu(o: &mut Observation, states: u16) {
    let bit = |b: u16| if states & b != 0 { 1.0 } else { 0.0 };
    o.readings.push(Reading::new(
        "presence",
        bit(psu_offset::PRESENCE),
        Unit::Bool,
    ));
    o.readings.push(Reading::new(
        "failure",
        bit(psu_offset::FAILURE),
        Unit::Bool,
    ));
    o.readings.push(Reading::new(
        "predictive_failure",
        bit(psu_offset::PREDICTIVE_FAILURE),
        Unit::Bool,
    ));
    o.readings.push(Reading::new(
        "ac_lost",
        bit(psu_offset::AC_LOST | psu_offset::INPUT_LOST_OR_OUT_OF_RANGE),
        Unit::Bool,
    ));
    o.readings
        .push(Reading::new("states", f64::from(states), Unit::Number));
    let mut state = State::Ok;
    let mut reasons = Vec::new();
    let mut flag = |cond: bool, s: State, why: &str| {
        if cond {
            state = state.worst(s);
            reasons.push(why.to_string());
        }
    };
    flag(
        states & psu_offset::PRESENCE == 0,
        State::Critical,
        "not present",
    );
    flag(
        states & psu_offset::FAILURE != 0,
        State::Critical,
        "failure detected",
    );
    flag(
        states & psu_offset::AC_LOST != 0,
        State::Critical,
        "AC lost",
    );
    flag(
        states & psu_offset::INPUT_LOST_OR_OUT_OF_RANGE != 0,
        State::Critical,
        "AC lost or out of range",
    );
    flag(
        states & psu_offset::PREDICTIVE_FAILURE != 0,
        State::Warning,
        "predictive failure",
    );
    flag(
        states & psu_offset::INPUT_OUT_OF_RANGE != 0,
        State::Warning,
        "input out of range",
    );
    flag(
        states & psu_offset::CONFIG_ERROR != 0,
        State::Warning,
        "configuration error",
    );
    o.state = state;
    o.reason = reasons.join(", ");
}

/// Merges observations of the same component (board mappings may point several records at
/// one component): readings and events concatenated, worst state, reasons joined.
fn merge(observations: Vec<Observation>) -> Vec<Observation> {
    let mut order: Vec<ComponentId> = Vec::new();
    let mut by_id: BTreeMap<ComponentId, Observation> = BTreeMap::new();
    for o in observations {
        match by_id.get_mut(&o.component) {
            None => {
                order.push(o.component.clone());
                by_id.insert(o.component.clone(), o);
            }
            Some(existing) => {
                if o.state.severity() > existing.state.severity() {
                    existing.state = o.state;
                }
                if !o.reason.is_empty() {
                    if !existing.reason.is_empty() {
                        existing.reason.push_str("; ");
                    }
                    existing.reason.push_str(&o.reason);
                }
                for mut r in o.readings {
                    if existing.readings.iter().any(|e| e.name == r.name) {
                        if let Some(n) = o.attributes.get("ipmi_name") {
                            r.name = format!("{}:{}", r.name, slug(n));
                        }
                    }
                    existing.readings.push(r);
                }
                existing.events.extend(o.events);
                for (k, v) in o.attributes {
                    existing.attributes.entry(k).or_insert(v);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

/// New SEL entries since the cursor. The first call only positions the cursor at the end.
fn read_sel(conn: &mut Conn, cursor: &mut SelCursor) -> Result<Vec<SelRecord>, ConnError> {
    let info = match conn.sel_info() {
        Ok(info) => info,
        Err(e) if e.is_transport() => return Err(e),
        // No SEL on this BMC.
        Err(_) => return Ok(Vec::new()),
    };
    let changed = cursor.last_info.is_none_or(|prev| {
        prev.last_add != info.last_add
            || prev.entries != info.entries
            || prev.last_erase != info.last_erase
    });
    let cleared = cursor
        .last_info
        .is_some_and(|prev| prev.last_erase != info.last_erase || info.entries < prev.entries);
    cursor.last_info = Some(info);
    if !changed {
        return Ok(Vec::new());
    }
    if cleared {
        cursor.last_id = None;
    }
    let mut out = Vec::new();
    // Start after the last record seen, or at the first one (0000h).
    let mut next = match cursor.last_id {
        Some(last) => match conn.sel_entry(last) {
            Ok((next, _)) => next,
            // The record is gone (SEL cleared or wrapped): read from the start.
            Err(e) if e.completion_code() == Some(conn::cc::NOT_PRESENT) => 0x0000,
            Err(e) => return Err(e),
        },
        None => 0x0000,
    };
    // Bounded: a SEL holds at most a few thousand entries.
    for _ in 0..4096 {
        if next == 0xffff {
            break;
        }
        let (following, bytes) = match conn.sel_entry(next) {
            Ok(v) => v,
            Err(e) if e.completion_code() == Some(conn::cc::NOT_PRESENT) => break,
            Err(e) => return Err(e),
        };
        if let Some(record) = SelRecord::parse(&bytes) {
            cursor.last_id = Some(record.id);
            if cursor.primed {
                out.push(record);
            }
        }
        if following == next {
            break;
        }
        next = following;
    }
    cursor.primed = true;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fan_record() -> SensorRecord {
        SensorRecord {
            record_id: 4,
            record_type: sdr::TYPE_FULL,
            owner: 0x20,
            owner_lun: 0,
            number: 0x20,
            entity_id: 0x1d,
            entity_instance: 1,
            sensor_type: sensor_type::FAN,
            reading_type: sdr::READING_THRESHOLD,
            base_unit: 18,
            percentage: false,
            conversion: Some(sdr::Conversion {
                format: sdr::AnalogFormat::Unsigned,
                linearization: 0,
                m: 60,
                b: 0,
                b_exp: 0,
                r_exp: 0,
            }),
            sdr_thresholds: Some(RawThresholds {
                mask: 0x03,
                values: [20, 10, 0, 0, 0, 0],
            }),
            id: "FAN1".into(),
        }
    }

    fn sensor(record: SensorRecord) -> Sensor {
        let conv = record.conversion.unwrap();
        let thresholds = record.sdr_thresholds.unwrap().convert(&conv);
        let mapping = map_sensor(&record, None).unwrap();
        Sensor {
            record,
            thresholds,
            mapping,
        }
    }

    fn reading(raw: u8, states: u16) -> Option<RawReading> {
        Some(RawReading {
            raw,
            scanning: true,
            unavailable: false,
            states,
        })
    }

    #[test]
    fn fan_states() {
        let s = sensor(fan_record());
        assert_eq!(s.mapping.component.to_string(), "fan/FAN1");
        let ok = observe(&s, reading(90, 0));
        assert_eq!(ok.state, State::Ok);
        assert_eq!(ok.readings[0].value, 5400.0);
        assert_eq!(ok.readings[0].thresholds.lower_critical, Some(600.0));
        let low = observe(&s, reading(15, 0x01));
        assert_eq!(low.state, State::Warning);
        let crit = observe(&s, reading(10, 0x03));
        assert_eq!(crit.state, State::Critical);
        let stopped = observe(&s, reading(0, 0x03));
        assert_eq!(stopped.state, State::Critical);
        assert_eq!(stopped.reason, "FAN1 stopped (0 RPM)");
        let gone = observe(&s, None);
        assert_eq!(gone.state, State::Unknown);
    }

    #[test]
    fn board_thresholds_override_and_bmc_bits_without_thresholds() {
        let mut s = sensor(fan_record());
        s.mapping.thresholds.lower_critical = Some(3000.0);
        assert_eq!(observe(&s, reading(40, 0)).state, State::Critical);
        let mut bare = sensor(fan_record());
        bare.thresholds = Thresholds::default();
        assert_eq!(observe(&bare, reading(40, 0x02)).state, State::Critical);
        assert_eq!(observe(&bare, reading(40, 0x01)).state, State::Warning);
        assert_eq!(observe(&bare, reading(40, 0)).state, State::Ok);
    }

    #[test]
    fn psu_bits() {
        let mut o = Observation::new(ComponentId::new(ComponentKind::Psu, "PSU1"));
        observe_psu(&mut o, 0x01);
        assert_eq!(o.state, State::Ok);
        observe_psu(&mut o, 0x03);
        assert_eq!(o.state, State::Critical);
        assert_eq!(o.reason, "failure detected");
        let mut o = Observation::new(ComponentId::new(ComponentKind::Psu, "PSU1"));
        observe_psu(&mut o, 0x09);
        assert_eq!(o.state, State::Critical);
        assert_eq!(o.reason, "AC lost");
        let mut o = Observation::new(ComponentId::new(ComponentKind::Psu, "PSU1"));
        observe_psu(&mut o, 0x00);
        assert_eq!(o.reason, "not present");
        let mut o = Observation::new(ComponentId::new(ComponentKind::Psu, "PSU1"));
        observe_psu(&mut o, 0x05);
        assert_eq!(o.state, State::Warning);
    }

    #[test]
    fn board_mapping_and_slugs() {
        let r = fan_record();
        let b = BoardSensor {
            name: "FAN1".into(),
            source: crate::board::SensorSource::Ipmi,
            kind: ComponentKind::Fan,
            component: "front-left".into(),
            meaning: "front fan, left".into(),
            thresholds: Thresholds::default(),
            ignore: false,
        };
        let m = map_sensor(&r, Some(&b)).unwrap();
        assert_eq!(m.component.to_string(), "fan/front-left");
        assert_eq!(slug("CPU Temp"), "cpu-temp");
        assert_eq!(slug("3.3V"), "3-3v");
        let mut watchdog = fan_record();
        watchdog.sensor_type = 0x23;
        watchdog.reading_type = 0x6f;
        assert!(map_sensor(&watchdog, None).is_none());
    }

    #[test]
    fn merge_keeps_worst_state() {
        let id = ComponentId::new(ComponentKind::Psu, "PSU1");
        let mut a = Observation::new(id.clone());
        a.readings.push(Reading::new("presence", 1.0, Unit::Bool));
        let mut b = Observation::new(id.clone());
        b.state = State::Critical;
        b.reason = "failure detected".into();
        b.events.push("SelFailureDetectedAsserted".into());
        let merged = merge(vec![a, b]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].state, State::Critical);
        assert_eq!(merged[0].events.len(), 1);
    }

    fn fan_sel(deassertion: bool, offset: u8) -> SelRecord {
        SelRecord {
            id: 7,
            record_type: 0x02,
            timestamp: 0,
            generator: 0x20,
            sensor_type: sensor_type::FAN,
            sensor_number: 0x20,
            deassertion,
            reading_type: sdr::READING_THRESHOLD,
            data: [0x50 | offset, 0x00, 0x0a],
        }
    }

    #[test]
    fn a_fault_only_the_sel_saw_becomes_a_transition_and_a_recovery() {
        let s = sensor(fan_record());
        let now_ok = merge(vec![observe(&s, reading(90, 0))]);
        let sel = vec![fan_sel(false, 0x2), fan_sel(true, 0x2), fan_sel(false, 0x3)];
        let out = apply_sel(now_ok, std::slice::from_ref(&s), sel);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].state, State::Critical);
        assert_eq!(
            out[0].reason,
            "FAN1: Lower Critical going low at 0 RPM (BMC event log; cleared before the next \
             reading)"
        );
        assert_eq!(out[0].events, vec!["SelLowerCriticalGoingLowAsserted"]);
        assert_eq!(out[1].state, State::Ok);
        assert_eq!(
            out[1].events,
            vec![
                "SelLowerCriticalGoingLowDeasserted",
                "SelLowerCriticalGoingHighAsserted"
            ]
        );
        // Through the model: OK -> CRITICAL with the reason, then the recovery.
        let mut h = crate::model::Health::default();
        h.apply_at("ipmi", merge(vec![observe(&s, reading(90, 0))]), 1);
        let ev = h.apply_at("ipmi", out, 2);
        let changes: Vec<_> = ev
            .iter()
            .filter(|e| e.name == "StateChanged")
            .map(|e| (e.from, e.to, e.reason.is_empty()))
            .collect();
        assert_eq!(
            changes,
            vec![
                (State::Ok, State::Critical, false),
                (State::Critical, State::Ok, true)
            ]
        );
        assert_eq!(ev[0].name, "SelLowerCriticalGoingLowAsserted");
        assert_eq!((ev[0].from, ev[0].to), (State::Ok, State::Critical));
    }

    #[test]
    fn a_fault_the_reading_still_shows_is_not_doubled() {
        let s = sensor(fan_record());
        let now = merge(vec![observe(&s, reading(0, 0x03))]);
        let sel = vec![fan_sel(false, 0x2), fan_sel(true, 0x2), fan_sel(false, 0x0)];
        let out = apply_sel(now, std::slice::from_ref(&s), sel);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, "FAN1 stopped (0 RPM)");
        // In SEL order.
        assert_eq!(
            out[0].events,
            vec![
                "SelLowerCriticalGoingLowAsserted",
                "SelLowerCriticalGoingLowDeasserted",
                "SelLowerNonCriticalGoingLowAsserted"
            ]
        );
        // A PSU failure on a supply the SDR does not describe lands on the BMC component.
        let bmc = vec![Observation::new(bmc_component())];
        let mut psu = fan_sel(false, 1);
        psu.sensor_type = sensor_type::POWER_SUPPLY;
        psu.reading_type = sdr::READING_SENSOR_SPECIFIC;
        psu.sensor_number = 0x77;
        psu.data = [0x01, 0xff, 0xff];
        let out = apply_sel(bmc, &[s], vec![psu]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].state, State::Critical);
        assert!(out[0].reason.starts_with("sensor 0x77: Failure detected"));
    }

    #[test]
    fn board_sensors_are_unknown_when_the_bmc_is_down_at_start() {
        let board_sensor = |name: &str, kind, component: &str, ignore| BoardSensor {
            name: name.into(),
            source: crate::board::SensorSource::Ipmi,
            kind,
            component: component.into(),
            meaning: format!("{name} meaning"),
            thresholds: Thresholds::default(),
            ignore,
        };
        let mut ctx = CollectorContext::default();
        ctx.board.sensors = vec![
            board_sensor("PSU1", ComponentKind::Psu, "PSU1", false),
            board_sensor("FAN1", ComponentKind::Fan, "FAN1", false),
            board_sensor("FAN4", ComponentKind::Fan, "FAN4", true),
        ];
        let c = IpmiCollector::new(
            Target::Device {
                path: "/nonexistent/ipmi0".into(),
            },
            Duration::from_secs(5),
            Duration::from_secs(1),
            true,
            Duration::from_secs(600),
            &ctx,
        );
        let mut c = c;
        let out = c.collect();
        let ids: Vec<String> = out.iter().map(|o| o.component.to_string()).collect();
        assert_eq!(ids, vec!["psu/PSU1", "fan/FAN1", "sensor/ipmi-bmc"]);
        assert!(out[..2].iter().all(|o| o.state == State::Unknown));
        assert_eq!(out[0].attributes["meaning"], "PSU1 meaning");
        assert_eq!(out[2].state, State::Warning);
        assert_eq!(
            out[2].reason,
            "BMC unreachable: opening /nonexistent/ipmi0: no such device (is the IPMI driver \
             loaded?)"
        );
    }

    #[test]
    fn config_refuses_unsupported_cipher_suites() {
        let cfg = IpmiConfig {
            enable: true,
            interface: IpmiInterface::Lan,
            host: "127.0.0.1".into(),
            cipher_suite: 17,
            ..IpmiConfig::default()
        };
        let err = build(&cfg, &CollectorContext::default()).err().unwrap();
        assert!(err.to_string().contains("cipher_suite 17"));
        let no_host = IpmiConfig {
            enable: true,
            interface: IpmiInterface::Lan,
            ..IpmiConfig::default()
        };
        assert!(build(&no_host, &CollectorContext::default()).is_err());
        assert!(build(&IpmiConfig::default(), &CollectorContext::default())
            .unwrap()
            .is_none());
    }
}
