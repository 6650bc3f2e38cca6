//! Prometheus metrics on `/metrics` (text exposition format 0.0.4) from the health model,
//! named as the exporters that existing dashboards and alert rules already use:
//!
//! - node_exporter: `node_hwmon_temp_celsius{chip,sensor}`, `node_hwmon_fan_rpm`,
//!   `node_hwmon_in_volts`, `node_hwmon_curr_amps`, `node_hwmon_power_watt` (hwmon sysfs);
//!   `node_md_disks{device,state}`, `node_md_disks_required{device}`,
//!   `node_md_state{device,state}` (md RAID).
//! - smartctl_exporter: `smartctl_device{device,model_name,serial_number,firmware_version}`,
//!   `smartctl_device_smart_status`, `smartctl_device_temperature{temperature_type}`,
//!   `smartctl_device_power_on_seconds`, `smartctl_device_critical_warning`,
//!   `smartctl_device_media_errors`, `smartctl_device_percentage_used`,
//!   `smartctl_device_available_spare`, `smartctl_device_available_spare_threshold`,
//!   `smartctl_device_num_err_log_entries`, `smartctl_device_attribute{attribute_name,...}`.
//! - ipmi_exporter: `ipmi_up{collector}`, `ipmi_temperature_celsius{id,name}` (+`_state`),
//!   `ipmi_fan_speed_rpm` (+`_state`), `ipmi_voltage_volts` (+`_state`),
//!   `ipmi_current_amperes` (+`_state`), `ipmi_power_watts` (+`_state`),
//!   `ipmi_sensor_value{id,name,type}` and `ipmi_sensor_state` for the other sensors,
//!   `ipmi_sel_logs_count`, `ipmi_sel_free_space_bytes`. States: 0 nominal, 1 warning,
//!   2 critical (ipmi_exporter's convention); NaN while the reading is unavailable.
//! - ours: `postern_hwmon_component_state{component,kind}` (0 OK, 1 WARNING, 2 CRITICAL,
//!   3 UNKNOWN), `postern_hwmon_storage_safe`, `postern_hwmon_events_total`.
//!
//! The listener is a small HTTP/1.1 server on its own thread (loopback only); each scrape
//! gets the text rendered after the last collector poll.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{config_error, is_loopback, Sink, SinkError};
use crate::model::{ComponentKind, ComponentStatus, Event, Snapshot, State, Unit};

/// `[sinks.metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enable: bool,
    /// Listen address (loopback only; a reverse proxy or the console exposes it further).
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enable: false,
            listen: "127.0.0.1:9188".into(),
        }
    }
}

/// The metrics sink: renders on snapshot, serves on its own thread.
pub struct MetricsSink {
    page: Arc<Mutex<String>>,
    events_total: BTreeMap<(String, String), u64>,
    local_addr: SocketAddr,
}

impl MetricsSink {
    /// The listen address, or what is wrong with the configuration (the key and why); the
    /// configuration check runs this too, so `check-config` refuses what `run` would.
    pub fn check(config: &MetricsConfig) -> Result<SocketAddr, (&'static str, String)> {
        let addr: SocketAddr = config
            .listen
            .parse()
            .map_err(|e| ("listen", format!("listen {}: {e}", config.listen)))?;
        if !is_loopback(&addr) {
            return Err((
                "listen",
                format!("listen {addr}: only loopback addresses are allowed"),
            ));
        }
        Ok(addr)
    }

    pub fn start(config: &MetricsConfig) -> Result<MetricsSink, SinkError> {
        let addr = MetricsSink::check(config).map_err(|(_, m)| config_error("metrics", m))?;
        let listener = TcpListener::bind(addr).map_err(|source| SinkError::Io {
            sink: "metrics".into(),
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| SinkError::Io {
            sink: "metrics".into(),
            source,
        })?;
        let page = Arc::new(Mutex::new(String::new()));
        let served = Arc::clone(&page);
        std::thread::Builder::new()
            .name("hwmon-metrics".into())
            .spawn(move || serve(listener, served))
            .map_err(|source| SinkError::Io {
                sink: "metrics".into(),
                source,
            })?;
        tracing::info!(event = "hwmon.metrics.listen", addr = %local_addr, "metrics listener");
        Ok(MetricsSink {
            page,
            events_total: BTreeMap::new(),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Sink for MetricsSink {
    fn name(&self) -> &str {
        "metrics"
    }

    fn event(&mut self, event: &Event, snapshot: &Snapshot) {
        *self
            .events_total
            .entry((event.component.kind.to_string(), event.name.clone()))
            .or_insert(0) += 1;
        self.snapshot(snapshot);
    }

    fn snapshot(&mut self, snapshot: &Snapshot) {
        let text = render(snapshot, &self.events_total);
        if let Ok(mut page) = self.page.lock() {
            *page = text;
        }
    }
}

fn serve(listener: TcpListener, page: Arc<Mutex<String>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let page = Arc::clone(&page);
        // One short-lived thread per scrape; a slow client cannot stall the next one.
        let _ = std::thread::Builder::new()
            .name("hwmon-scrape".into())
            .spawn(move || {
                if let Err(e) = answer(stream, &page) {
                    tracing::debug!(event = "hwmon.metrics.scrape_error", error = %e);
                }
            });
    }
}

fn answer(stream: TcpStream, page: &Mutex<String>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Skip the headers (bounded).
    for _ in 0..100 {
        let mut line = String::new();
        let n = reader.by_ref().take(8192).read_line(&mut line)?;
        if n == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let mut out = stream;
    // RFC 9110 15: 200 for /metrics, 404 elsewhere, 405 for methods other than GET/HEAD.
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET" | "HEAD", "/metrics") => {
            ("200 OK", page.lock().map(|p| p.clone()).unwrap_or_default())
        }
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n".to_string()),
        _ => ("405 Method Not Allowed", "method not allowed\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()
}

/// Prometheus text format label value escaping (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Families in output order: name -> (help, type, samples).
#[derive(Default)]
struct Families {
    order: Vec<String>,
    by_name: BTreeMap<String, (String, String, Vec<String>)>,
}

impl Families {
    fn add(&mut self, name: &str, help: &str, kind: &str, labels: &[(&str, &str)], value: f64) {
        let entry = self.by_name.entry(name.to_string()).or_insert_with(|| {
            self.order.push(name.to_string());
            (help.to_string(), kind.to_string(), Vec::new())
        });
        let mut sample = name.to_string();
        if !labels.is_empty() {
            sample.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    sample.push(',');
                }
                let _ = write!(sample, "{k}=\"{}\"", esc(v));
            }
            sample.push('}');
        }
        let _ = write!(sample, " {}", num(value));
        entry.2.push(sample);
    }

    fn render(self) -> String {
        let mut out = String::new();
        let mut by_name = self.by_name;
        for name in self.order {
            if let Some((help, kind, samples)) = by_name.remove(&name) {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for s in samples {
                    out.push_str(&s);
                    out.push('\n');
                }
            }
        }
        out
    }
}

fn state_code(s: State) -> f64 {
    match s {
        State::Ok => 0.0,
        State::Warning => 1.0,
        State::Critical => 2.0,
        State::Unknown => 3.0,
    }
}

/// ipmi_exporter's state values: 0 nominal, 1 warning, 2 critical; NaN when unknown.
fn ipmi_state(s: State) -> f64 {
    match s {
        State::Ok => 0.0,
        State::Warning => 1.0,
        State::Critical => 2.0,
        State::Unknown => f64::NAN,
    }
}

/// Renders the whole model.
pub fn render(snapshot: &Snapshot, events_total: &BTreeMap<(String, String), u64>) -> String {
    let mut f = Families::default();
    for c in &snapshot.components {
        let id = c.id.to_string();
        f.add(
            "postern_hwmon_component_state",
            "Component health: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
            "gauge",
            &[("component", &id), ("kind", c.id.kind.as_str())],
            state_code(c.state),
        );
    }
    f.add(
        "postern_hwmon_storage_safe",
        "1 when storage can keep mail safe (the health gate's verdict), else 0.",
        "gauge",
        &[],
        if snapshot.storage.safe { 1.0 } else { 0.0 },
    );
    for ((kind, name), n) in events_total {
        f.add(
            "postern_hwmon_events_total",
            "Health events since hwmond started, by component kind and event name.",
            "counter",
            &[("kind", kind), ("event", name)],
            *n as f64,
        );
    }
    for c in &snapshot.components {
        match c.attributes.get("ipmi").map(String::as_str) {
            Some("sensor") => ipmi_sensor(&mut f, c),
            Some("bmc") => ipmi_bmc(&mut f, c),
            _ => {}
        }
        match (c.collector.as_str(), c.id.kind) {
            ("hwmon", _) => node_hwmon(&mut f, c),
            (_, ComponentKind::Array) => node_md(&mut f, c),
            (_, ComponentKind::Disk) => smartctl(&mut f, c),
            _ => {}
        }
    }
    f.render()
}

fn ipmi_sensor(f: &mut Families, c: &ComponentStatus) {
    let a = |k: &str| c.attributes.get(k).cloned().unwrap_or_default();
    let (id, name, ty) = (a("ipmi_id"), a("ipmi_name"), a("ipmi_type"));
    let typed = c.readings.iter().find(|r| {
        matches!(
            r.unit,
            Unit::Celsius | Unit::Rpm | Unit::Volts | Unit::Amperes | Unit::Watts
        )
    });
    let labels = [("id", id.as_str()), ("name", name.as_str())];
    match typed {
        Some(r) => {
            let (metric, help, state_metric) = match r.unit {
                Unit::Celsius => (
                    "ipmi_temperature_celsius",
                    "Temperature reading in degree Celsius.",
                    "ipmi_temperature_state",
                ),
                Unit::Rpm => (
                    "ipmi_fan_speed_rpm",
                    "Fan speed in rotations per minute.",
                    "ipmi_fan_speed_state",
                ),
                Unit::Volts => (
                    "ipmi_voltage_volts",
                    "Voltage reading in Volts.",
                    "ipmi_voltage_state",
                ),
                Unit::Amperes => (
                    "ipmi_current_amperes",
                    "Current reading in Amperes.",
                    "ipmi_current_state",
                ),
                _ => (
                    "ipmi_power_watts",
                    "Power reading in Watts.",
                    "ipmi_power_state",
                ),
            };
            f.add(metric, help, "gauge", &labels, r.value);
            f.add(
                state_metric,
                "Reported state of a sensor (0=nominal, 1=warning, 2=critical).",
                "gauge",
                &labels,
                ipmi_state(c.state),
            );
        }
        None => {
            let labels = [
                ("id", id.as_str()),
                ("name", name.as_str()),
                ("type", ty.as_str()),
            ];
            // Discrete sensors have no value (NaN in ipmi_exporter).
            let value = c
                .readings
                .iter()
                .find(|r| r.name == "value")
                .map(|r| r.value)
                .unwrap_or(f64::NAN);
            f.add(
                "ipmi_sensor_value",
                "Generic data read from an IPMI sensor of unknown type, relying on labels for context.",
                "gauge",
                &labels,
                value,
            );
            f.add(
                "ipmi_sensor_state",
                "Indicates the severity of the state reported by an IPMI sensor (0=nominal, 1=warning, 2=critical).",
                "gauge",
                &labels,
                ipmi_state(c.state),
            );
        }
    }
}

fn ipmi_bmc(f: &mut Families, c: &ComponentStatus) {
    let get = |n: &str| c.readings.iter().find(|r| r.name == n).map(|r| r.value);
    f.add(
        "ipmi_up",
        "'1' if a scrape of the IPMI device was successful, '0' otherwise.",
        "gauge",
        &[("collector", "ipmi")],
        get("up").unwrap_or(0.0),
    );
    if let Some(n) = get("sel_entries") {
        f.add(
            "ipmi_sel_logs_count",
            "Current number of log entries in the SEL.",
            "gauge",
            &[],
            n,
        );
    }
    if let Some(n) = get("sel_free_bytes") {
        f.add(
            "ipmi_sel_free_space_bytes",
            "Current free space remaining for new SEL entries.",
            "gauge",
            &[],
            n,
        );
    }
}

fn node_hwmon(f: &mut Families, c: &ComponentStatus) {
    let chip = c
        .attributes
        .get("chip")
        .cloned()
        .unwrap_or_else(|| c.id.name.clone());
    for r in &c.readings {
        let (metric, help) = match r.unit {
            Unit::Celsius => (
                "node_hwmon_temp_celsius",
                "Hardware monitor for temperature (input)",
            ),
            Unit::Rpm => (
                "node_hwmon_fan_rpm",
                "Hardware monitor for fan revolutions per minute (input)",
            ),
            Unit::Volts => (
                "node_hwmon_in_volts",
                "Hardware monitor for voltage (input)",
            ),
            Unit::Amperes => (
                "node_hwmon_curr_amps",
                "Hardware monitor for current (input)",
            ),
            Unit::Watts => (
                "node_hwmon_power_watt",
                "Hardware monitor for power (input)",
            ),
            _ => continue,
        };
        f.add(
            metric,
            help,
            "gauge",
            &[("chip", &chip), ("sensor", &r.name)],
            r.value,
        );
    }
}

fn node_md(f: &mut Families, c: &ComponentStatus) {
    let device = c.id.name.as_str();
    let get = |n: &str| c.readings.iter().find(|r| r.name == n).map(|r| r.value);
    for (state, reading) in [
        ("active", "disks_active"),
        ("failed", "disks_failed"),
        ("spare", "disks_spare"),
    ] {
        if let Some(v) = get(reading) {
            f.add(
                "node_md_disks",
                "Number of active/failed/spare disks of device.",
                "gauge",
                &[("device", device), ("state", state)],
                v,
            );
        }
    }
    if let Some(v) = get("disks_required") {
        f.add(
            "node_md_disks_required",
            "Total number of disks of device.",
            "gauge",
            &[("device", device)],
            v,
        );
    }
    // node_exporter: one sample per state, 1 for the current one.
    let array_state = c
        .attributes
        .get("array_state")
        .map(String::as_str)
        .unwrap_or("");
    let sync = c
        .attributes
        .get("sync_action")
        .map(String::as_str)
        .unwrap_or("idle");
    let current = if array_state == "inactive" {
        "inactive"
    } else {
        match sync {
            "recover" => "recovering",
            "resync" => "resync",
            "check" | "repair" => "check",
            _ => "active",
        }
    };
    for s in ["active", "inactive", "recovering", "resync", "check"] {
        f.add(
            "node_md_state",
            "Indicates the state of md-device.",
            "gauge",
            &[("device", device), ("state", s)],
            if s == current { 1.0 } else { 0.0 },
        );
    }
}

fn smartctl(f: &mut Families, c: &ComponentStatus) {
    let device = c.id.name.as_str();
    let a = |k: &str| c.attributes.get(k).cloned().unwrap_or_default();
    let get = |n: &str| c.readings.iter().find(|r| r.name == n).map(|r| r.value);
    let labels = [("device", device)];
    f.add(
        "smartctl_device",
        "Device info",
        "gauge",
        &[
            ("device", device),
            ("model_name", &a("model")),
            ("serial_number", &a("serial")),
            ("firmware_version", &a("firmware")),
            ("protocol", &a("protocol")),
        ],
        1.0,
    );
    if let Some(v) = get("smart_passed") {
        f.add(
            "smartctl_device_smart_status",
            "General smart status",
            "gauge",
            &labels,
            v,
        );
    }
    if let Some(v) = get("temperature") {
        f.add(
            "smartctl_device_temperature",
            "Device temperature celsius",
            "gauge",
            &[("device", device), ("temperature_type", "current")],
            v,
        );
    }
    if let Some(v) = get("power_on_hours") {
        f.add(
            "smartctl_device_power_on_seconds",
            "Device power on seconds",
            "counter",
            &labels,
            v * 3600.0,
        );
    }
    for (reading, metric, help) in [
        ("critical_warning", "smartctl_device_critical_warning", "Critical warning counter"),
        ("media_errors", "smartctl_device_media_errors", "Media errors counter"),
        ("percentage_used", "smartctl_device_percentage_used", "Device write percentage used"),
        ("available_spare", "smartctl_device_available_spare", "Normalized percentage (0 to 100%) of the remaining spare capacity available"),
        ("available_spare_threshold", "smartctl_device_available_spare_threshold", "When the Available Spare falls below the threshold indicated in this field, an asynchronous event completion may occur."),
        ("error_log_count", "smartctl_device_num_err_log_entries", "Device SMART error log entry count"),
    ] {
        if let Some(v) = get(reading) {
            f.add(metric, help, "gauge", &labels, v);
        }
    }
    for (reading, id, name) in [
        ("reallocated_sectors", "5", "Reallocated_Sector_Ct"),
        ("pending_sectors", "197", "Current_Pending_Sector"),
        ("offline_uncorrectable", "198", "Offline_Uncorrectable"),
    ] {
        if let Some(v) = get(reading) {
            f.add(
                "smartctl_device_attribute",
                "Device attributes",
                "gauge",
                &[
                    ("device", device),
                    ("attribute_name", name),
                    ("attribute_id", id),
                    ("attribute_value_type", "raw"),
                ],
                v,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ComponentId, Health, Observation, Reading, Thresholds};

    fn sample() -> Snapshot {
        let mut h = Health::default();
        let mut fan = Observation::new(ComponentId::new(ComponentKind::Fan, "FAN1"));
        fan.state = State::Critical;
        fan.readings.push(
            Reading::new("speed", 0.0, Unit::Rpm).with_thresholds(Thresholds {
                lower_critical: Some(600.0),
                ..Thresholds::default()
            }),
        );
        for (k, v) in [
            ("ipmi", "sensor"),
            ("ipmi_id", "4"),
            ("ipmi_name", "FAN1"),
            ("ipmi_type", "Fan"),
        ] {
            fan.attributes.insert(k.into(), v.into());
        }
        let mut psu = Observation::new(ComponentId::new(ComponentKind::Psu, "PSU1"));
        for (k, v) in [
            ("ipmi", "sensor"),
            ("ipmi_id", "2"),
            ("ipmi_name", "PSU1"),
            ("ipmi_type", "Power Supply"),
        ] {
            psu.attributes.insert(k.into(), v.into());
        }
        psu.readings.push(Reading::new("presence", 1.0, Unit::Bool));
        let mut bmc = Observation::new(ComponentId::new(ComponentKind::Sensor, "ipmi-bmc"));
        bmc.attributes.insert("ipmi".into(), "bmc".into());
        bmc.readings.push(Reading::new("up", 1.0, Unit::Bool));
        bmc.readings
            .push(Reading::new("sel_entries", 3.0, Unit::Count));
        h.apply("ipmi", vec![fan, psu, bmc]);
        let mut md = Observation::new(ComponentId::new(ComponentKind::Array, "md0"));
        md.state = State::Critical;
        md.readings
            .push(Reading::new("disks_required", 2.0, Unit::Count));
        md.readings
            .push(Reading::new("disks_active", 1.0, Unit::Count));
        md.readings
            .push(Reading::new("disks_failed", 1.0, Unit::Count));
        md.attributes.insert("array_state".into(), "clean".into());
        md.attributes.insert("sync_action".into(), "idle".into());
        md.storage_unsafe = Some("degraded".into());
        h.apply("mdraid", vec![md]);
        let mut t = Observation::new(ComponentId::new(ComponentKind::Sensor, "coretemp/temp1"));
        t.attributes.insert("chip".into(), "coretemp".into());
        t.readings.push(Reading::new("temp1", 41.5, Unit::Celsius));
        h.apply("hwmon", vec![t]);
        let mut d = Observation::new(ComponentId::new(ComponentKind::Disk, "nvme0n1"));
        d.attributes.insert("model".into(), "QEMU NVMe Ctrl".into());
        d.readings
            .push(Reading::new("smart_passed", 1.0, Unit::Bool));
        d.readings
            .push(Reading::new("temperature", 31.0, Unit::Celsius));
        d.readings
            .push(Reading::new("power_on_hours", 2.0, Unit::Hours));
        h.apply("smart", vec![d]);
        h.snapshot()
    }

    #[test]
    fn exporter_compatible_names() {
        let mut events = BTreeMap::new();
        events.insert(("fan".to_string(), "StateChanged".to_string()), 2u64);
        let text = render(&sample(), &events);
        for line in [
            "postern_hwmon_component_state{component=\"fan/FAN1\",kind=\"fan\"} 2",
            "postern_hwmon_storage_safe 0",
            "postern_hwmon_events_total{kind=\"fan\",event=\"StateChanged\"} 2",
            "ipmi_fan_speed_rpm{id=\"4\",name=\"FAN1\"} 0",
            "ipmi_fan_speed_state{id=\"4\",name=\"FAN1\"} 2",
            "ipmi_sensor_state{id=\"2\",name=\"PSU1\",type=\"Power Supply\"} 0",
            "ipmi_sensor_value{id=\"2\",name=\"PSU1\",type=\"Power Supply\"} NaN",
            "ipmi_up{collector=\"ipmi\"} 1",
            "ipmi_sel_logs_count 3",
            "node_md_disks{device=\"md0\",state=\"failed\"} 1",
            "node_md_disks_required{device=\"md0\"} 2",
            "node_md_state{device=\"md0\",state=\"active\"} 1",
            "node_hwmon_temp_celsius{chip=\"coretemp\",sensor=\"temp1\"} 41.5",
            "smartctl_device_smart_status{device=\"nvme0n1\"} 1",
            "smartctl_device_power_on_seconds{device=\"nvme0n1\"} 7200",
            "smartctl_device_temperature{device=\"nvme0n1\",temperature_type=\"current\"} 31",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        // One HELP/TYPE per family.
        assert_eq!(
            text.matches("# TYPE postern_hwmon_component_state ")
                .count(),
            1
        );
        assert!(text.contains("# TYPE ipmi_up gauge"));
    }

    #[test]
    fn serves_over_http_on_loopback_only() {
        assert!(MetricsSink::start(&MetricsConfig {
            enable: true,
            listen: "0.0.0.0:0".into(),
        })
        .is_err());
        let mut sink = MetricsSink::start(&MetricsConfig {
            enable: true,
            listen: "127.0.0.1:0".into(),
        })
        .unwrap();
        sink.snapshot(&sample());
        let get = |path: &str| {
            let mut s = TcpStream::connect(sink.local_addr()).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.contains("ipmi_up{collector=\"ipmi\"} 1"));
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
    }
}
