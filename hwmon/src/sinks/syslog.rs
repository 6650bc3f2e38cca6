//! Syslog (RFC 5424) for every event: to the local syslog socket (`/dev/log`, datagram) or
//! over UDP (RFC 5426) to a configured loopback collector. Structured data carries the
//! component and the states: `[hwmon@32473 component="fan/FAN1" kind="fan" from="OK"
//! to="CRITICAL" seq="12"]` (32473 is the example enterprise number of RFC 5612; a product
//! with its own IANA number sets `enterprise`).

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::smtp;
use super::{config_error, is_loopback, Sink, SinkError};
use crate::model::{Event, Snapshot, State};

/// `[sinks.syslog]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub enable: bool,
    /// Local syslog socket (used when `udp` is empty).
    pub socket: PathBuf,
    /// `127.0.0.1:514`: RFC 5426 UDP to a loopback collector instead of the socket.
    pub udp: String,
    /// Facility number (RFC 5424 6.2.1): 3 daemon, 16..23 local0..local7.
    pub facility: u8,
    /// APP-NAME.
    pub app_name: String,
    /// Private enterprise number for the SD-ID `hwmon@<n>`.
    pub enterprise: u32,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            enable: false,
            socket: PathBuf::from("/dev/log"),
            udp: String::new(),
            facility: 3,
            app_name: "hwmond".into(),
            enterprise: 32473,
        }
    }
}

enum Transport {
    Unix(UnixDatagram, PathBuf),
    Udp(UdpSocket, SocketAddr),
}

/// The syslog sink.
pub struct SyslogSink {
    transport: Transport,
    facility: u8,
    app_name: String,
    enterprise: u32,
    host: String,
    failing: bool,
}

impl SyslogSink {
    /// The UDP collector (`None`: the local socket), or what is wrong with the configuration
    /// (the key and why); the configuration check runs this too, so `check-config` refuses
    /// what `run` would.
    pub fn check(config: &SyslogConfig) -> Result<Option<SocketAddr>, (&'static str, String)> {
        if config.facility > 23 {
            return Err(("facility", "facility: 0..=23".into()));
        }
        if config.udp.is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = config
            .udp
            .parse()
            .map_err(|e| ("udp", format!("udp {}: {e}", config.udp)))?;
        if !is_loopback(&addr) {
            return Err((
                "udp",
                format!("udp {addr}: only loopback collectors are allowed"),
            ));
        }
        Ok(Some(addr))
    }

    pub fn start(config: &SyslogConfig) -> Result<SyslogSink, SinkError> {
        let udp = SyslogSink::check(config).map_err(|(_, m)| config_error("syslog", m))?;
        let io = |source| SinkError::Io {
            sink: "syslog".into(),
            source,
        };
        let transport = if let Some(addr) = udp {
            let bind = if addr.is_ipv6() {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            Transport::Udp(UdpSocket::bind(bind).map_err(io)?, addr)
        } else {
            Transport::Unix(UnixDatagram::unbound().map_err(io)?, config.socket.clone())
        };
        Ok(SyslogSink {
            transport,
            facility: config.facility,
            app_name: sanitize(&config.app_name, 48),
            enterprise: config.enterprise,
            host: sanitize(&smtp::hostname(), 255),
            failing: false,
        })
    }
}

/// RFC 5424 6.2.1 severities: CRITICAL crit (2), WARNING warning (4), UNKNOWN notice (5),
/// OK (a recovery or a new healthy component) info (6).
fn severity(s: State) -> u8 {
    match s {
        State::Critical => 2,
        State::Warning => 4,
        State::Unknown => 5,
        State::Ok => 6,
    }
}

/// PRINTUSASCII without spaces (RFC 5424 6), for header fields; `-` when empty.
fn sanitize(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".into()
    } else {
        v
    }
}

/// RFC 5424 6.3.3: in PARAM-VALUE, `"`, `\` and `]` are escaped with a backslash.
fn sd_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One RFC 5424 message for an event.
pub fn format_event(event: &Event, facility: u8, host: &str, app: &str, enterprise: u32) -> String {
    let pri = u16::from(facility) * 8 + u16::from(severity(event.to));
    let msgid = sanitize(&event.name, 32);
    let sd = format!(
        "[hwmon@{enterprise} component=\"{}\" kind=\"{}\" from=\"{}\" to=\"{}\" seq=\"{}\"]",
        sd_escape(&event.component.to_string()),
        event.component.kind,
        event.from,
        event.to,
        event.seq
    );
    let mut msg = format!(
        "{} {}: {} -> {}",
        event.component, event.name, event.from, event.to
    );
    if !event.reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(&event.reason);
    }
    for r in event.readings.iter().take(8) {
        msg.push_str(&format!(" {}={}", r.name, r.value));
    }
    let msg: String = msg.chars().filter(|c| !c.is_control()).collect();
    format!(
        "<{pri}>1 {} {host} {app} {} {msgid} {sd} {msg}",
        smtp::rfc3339(event.timestamp_ms),
        std::process::id()
    )
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        "syslog"
    }

    fn event(&mut self, event: &Event, _snapshot: &Snapshot) {
        let line = format_event(
            event,
            self.facility,
            &self.host,
            &self.app_name,
            self.enterprise,
        );
        // Datagram sends do not block for long; a missing syslog daemon must not stall us.
        let result = match &self.transport {
            Transport::Unix(sock, path) => sock.send_to(line.as_bytes(), path).map(|_| ()),
            Transport::Udp(sock, addr) => sock.send_to(line.as_bytes(), addr).map(|_| ()),
        };
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    tracing::warn!(event = "hwmon.syslog.error", error = %e, "syslog send failed");
                }
                self.failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Reading, Unit};

    fn event() -> Event {
        Event {
            seq: 12,
            timestamp_ms: 1_795_563_660_123,
            component: "fan/FAN1".parse().unwrap(),
            from: State::Ok,
            to: State::Critical,
            name: "StateChanged".into(),
            reason: "FAN1 stopped (0 RPM) \"x\"]".into(),
            readings: vec![Reading::new("speed", 0.0, Unit::Rpm)],
        }
    }

    #[test]
    fn rfc5424_format() {
        let line = format_event(&event(), 3, "box", "hwmond", 32473);
        let pid = std::process::id();
        assert_eq!(
            line,
            format!(
                "<26>1 2026-11-24T23:41:00.123Z box hwmond {pid} StateChanged \
                 [hwmon@32473 component=\"fan/FAN1\" kind=\"fan\" from=\"OK\" to=\"CRITICAL\" seq=\"12\"] \
                 fan/FAN1 StateChanged: OK -> CRITICAL: FAN1 stopped (0 RPM) \"x\"] speed=0"
            )
        );
        assert_eq!(sd_escape("a\"b]c\\"), "a\\\"b\\]c\\\\");
    }

    #[test]
    fn udp_to_loopback() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut sink = SyslogSink::start(&SyslogConfig {
            enable: true,
            udp: collector.local_addr().unwrap().to_string(),
            ..SyslogConfig::default()
        })
        .unwrap();
        sink.event(&event(), &crate::model::Health::default().snapshot());
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<26>1 "), "{got}");
        assert!(got.contains("to=\"CRITICAL\""));
        assert!(SyslogSink::start(&SyslogConfig {
            enable: true,
            udp: "192.0.2.1:514".into(),
            ..SyslogConfig::default()
        })
        .is_err());
    }
}
