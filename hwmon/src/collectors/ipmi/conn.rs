//! The IPMI transports (ipmi-rs): the Linux IPMI driver's device file (in-band, `/dev/ipmi0`)
//! and RMCP+ (IPMI 2.0 LAN, 13.15) to a remote BMC; raw commands with completion codes, and
//! the repository reads ipmi-rs lacks (partial Get SDR reads under a reservation, 33.12).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use ipmi_rs::connection::{IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress};
use ipmi_rs::rmcp::Rmcp;

/// Network function codes (IPMI 2.0 table 5-1), request values.
pub mod netfn {
    pub const SENSOR_EVENT: u8 = 0x04;
    pub const STORAGE: u8 = 0x0a;
}

/// Completion codes we act on (table 5-2).
pub mod cc {
    pub const RESERVATION_CANCELLED: u8 = 0xc5;
    pub const NOT_PRESENT: u8 = 0xcb;
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("opening {path}: {}", io_words(source))]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BMC {addr}: {message}")]
    Activate { addr: String, message: String },
    #[error("{0}")]
    Transport(String),
    #[error("command {netfn:#04x}/{cmd:#04x}: completion code {code:#04x}")]
    Completion { netfn: u8, cmd: u8, code: u8 },
    #[error("command {netfn:#04x}/{cmd:#04x}: response too short ({len} bytes)")]
    Short { netfn: u8, cmd: u8, len: usize },
}

impl ConnError {
    pub fn completion_code(&self) -> Option<u8> {
        match self {
            ConnError::Completion { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Errors after which the session should be re-established.
    pub fn is_transport(&self) -> bool {
        matches!(self, ConnError::Transport(_))
    }
}

/// Where the BMC is.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The Linux IPMI driver's character device.
    Device { path: String },
    /// RMCP+ over UDP.
    Lan {
        host: String,
        port: u16,
        username: String,
        password: Vec<u8>,
    },
}

/// An open connection to a BMC.
pub enum Conn {
    Device(ipmi_rs::File),
    Lan(Box<Rmcp>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Device(_) => f.write_str("Conn::Device"),
            Conn::Lan(_) => f.write_str("Conn::Lan"),
        }
    }
}

/// An I/O error for an operator: what happened, without Rust's `(os error N)`.
pub fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::TimedOut | K::WouldBlock => "timed out".into(),
        K::NotFound => "no such device (is the IPMI driver loaded?)".into(),
        K::PermissionDenied => "permission denied".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// ipmi-rs errors for an operator. They are nested enums with only `Debug` (an I/O error deep
/// inside a session error); their variant and `ErrorKind` names say what happened, and are
/// what this looks for. `timeout`: the reply wait, named in "timed out" (zero: not named).
pub fn in_words(debug: &str, timeout: Duration) -> String {
    let has = |names: &[&str]| names.iter().any(|n| debug.contains(n));
    if has(&["ConnectionRefused"]) {
        return "connection refused (nothing answers IPMI on that port)".into();
    }
    if has(&["WouldBlock", "TimedOut"]) {
        return if timeout.is_zero() {
            "timed out (no reply)".into()
        } else {
            format!("timed out (no reply within {:.1} s)", timeout.as_secs_f64())
        };
    }
    if has(&["HostUnreachable"]) {
        return "host unreachable".into();
    }
    if has(&["NetworkUnreachable"]) {
        return "network unreachable".into();
    }
    if has(&["PermissionDenied"]) {
        return "permission denied".into();
    }
    if has(&[
        "ServerAuthenticationFailed",
        "InvalidIntegrityCheckValue",
        "UnauthorizedName",
        "InvalidNameLength",
        "RakpMessage2Validate",
        "RakpMessage4Validate",
        "PasswordTooLong",
        "UsernameTooLong",
        "InsufficientPrivilege",
    ]) {
        return "authentication failed (wrong user name or password)".into();
    }
    if has(&["IpmiNotSupported", "NoSupportedIpmiLANVersions", "NotIpmi"]) {
        return "the host does not speak IPMI over LAN (RMCP+)".into();
    }
    if has(&["NotActive", "InactiveSessionId"]) {
        return "session no longer active".into();
    }
    // Something else: the outermost variant name is still better than the whole dump.
    let variant: String = debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if variant.is_empty() {
        "protocol error".into()
    } else {
        format!("protocol error ({variant})")
    }
}

impl Conn {
    /// Opens the device or establishes an RMCP+ session (RAKP-HMAC-SHA1, HMAC-SHA1-96,
    /// AES-CBC-128: cipher suite 3, the one ipmi-rs 0.6 negotiates).
    pub fn open(target: &Target, timeout: Duration) -> Result<Conn, ConnError> {
        match target {
            Target::Device { path } => {
                ipmi_rs::File::new(path, timeout)
                    .map(Conn::Device)
                    .map_err(|source| ConnError::Open {
                        path: path.clone(),
                        source,
                    })
            }
            Target::Lan {
                host,
                port,
                username,
                password,
            } => {
                let addr = format!("{host}:{port}");
                let mut rmcp =
                    Rmcp::new(addr.as_str(), timeout).map_err(|e| ConnError::Activate {
                        addr: addr.clone(),
                        message: io_words(&e),
                    })?;
                // ipmi-rs 0.6 unwraps one malformed RAKP 4 reply instead of returning an
                // error; a hostile or broken BMC must not take hwmond down with it.
                let activated = catch_unwind(AssertUnwindSafe(|| {
                    rmcp.activate(true, Some(username.as_str()), Some(password.as_slice()))
                }));
                match activated {
                    Ok(Ok(())) => Ok(Conn::Lan(Box::new(rmcp))),
                    Ok(Err(e)) => Err(ConnError::Activate {
                        addr,
                        message: in_words(&format!("{e:?}"), timeout),
                    }),
                    Err(_) => Err(ConnError::Activate {
                        addr,
                        message: "session activation failed: malformed RAKP reply".into(),
                    }),
                }
            }
        }
    }

    /// Sends one request to the BMC (LUN 0) and returns the response data after the
    /// completion code, or the completion code as an error.
    pub fn raw(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, ConnError> {
        let mut request = Request::new(
            Message::new_raw(netfn, cmd, data.to_vec()),
            RequestTargetAddress::Bmc(LogicalUnit::Zero),
        );
        let response = match self {
            Conn::Device(file) => file
                .send_recv(&mut request)
                .map_err(|e| ConnError::Transport(in_words(&format!("{e:?}"), Duration::ZERO)))?,
            Conn::Lan(rmcp) => rmcp
                .send_recv(&mut request)
                .map_err(|e| ConnError::Transport(in_words(&format!("{e:?}"), Duration::ZERO)))?,
        };
        if response.cmd() != cmd {
            return Err(ConnError::Transport(format!(
                "response to command {:#04x} for {cmd:#04x}",
                response.cmd()
            )));
        }
        if response.cc() != 0 {
            return Err(ConnError::Completion {
                netfn,
                cmd,
                code: response.cc(),
            });
        }
        Ok(response.data().to_vec())
    }

    /// Walks the SDR repository (33.12 Get SDR): each record read in parts small enough for
    /// any transport (header, then 16-byte pieces), under a reservation that is renewed when
    /// the BMC cancels it. Returns the raw records (header included).
    pub fn sdr_repository(&mut self) -> Result<Vec<Vec<u8>>, ConnError> {
        const PIECE: usize = 16;
        let mut records = Vec::new();
        let mut reservation = self.reserve(netfn::STORAGE, 0x22)?;
        let mut id: u16 = 0x0000;
        let mut retries = 0;
        // A repository holds at most 0xfffe records; bound the walk anyway.
        for _ in 0..4096 {
            let result = (|| -> Result<(u16, Vec<u8>), ConnError> {
                let header = self.get_sdr(reservation, id, 0, 5)?;
                let next = u16::from_le_bytes([header[0], header[1]]);
                let mut record = header[2..].to_vec();
                if record.len() < 5 {
                    return Err(ConnError::Short {
                        netfn: netfn::STORAGE,
                        cmd: 0x23,
                        len: record.len(),
                    });
                }
                let total = 5 + usize::from(record[4]);
                while record.len() < total {
                    let n = (total - record.len()).min(PIECE);
                    // The offset is one byte (33.12); a record longer than that is cut.
                    let Ok(offset) = u8::try_from(record.len()) else {
                        break;
                    };
                    let part = self.get_sdr(reservation, id, offset, n as u8)?;
                    if part.len() <= 2 {
                        break;
                    }
                    record.extend_from_slice(&part[2..]);
                }
                Ok((next, record))
            })();
            match result {
                Ok((next, record)) => {
                    records.push(record);
                    if next == 0xffff || next == id {
                        return Ok(records);
                    }
                    id = next;
                }
                // 33.12: the reservation was cancelled (the repository changed): renew it
                // and read the record again.
                Err(e) if e.completion_code() == Some(cc::RESERVATION_CANCELLED) && retries < 3 => {
                    retries += 1;
                    reservation = self.reserve(netfn::STORAGE, 0x22)?;
                }
                Err(e) if e.completion_code() == Some(cc::NOT_PRESENT) && id == 0 => {
                    // An empty repository.
                    return Ok(records);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(records)
    }

    fn get_sdr(
        &mut self,
        reservation: [u8; 2],
        id: u16,
        offset: u8,
        len: u8,
    ) -> Result<Vec<u8>, ConnError> {
        let [lo, hi] = id.to_le_bytes();
        let data = self.raw(
            netfn::STORAGE,
            0x23,
            &[reservation[0], reservation[1], lo, hi, offset, len],
        )?;
        if data.len() < 2 {
            return Err(ConnError::Short {
                netfn: netfn::STORAGE,
                cmd: 0x23,
                len: data.len(),
            });
        }
        Ok(data)
    }

    fn reserve(&mut self, netfn: u8, cmd: u8) -> Result<[u8; 2], ConnError> {
        let data = self.raw(netfn, cmd, &[])?;
        match data.as_slice() {
            [a, b, ..] => Ok([*a, *b]),
            _ => Err(ConnError::Short {
                netfn,
                cmd,
                len: data.len(),
            }),
        }
    }

    /// Get Sensor Reading (35.14).
    pub fn sensor_reading(&mut self, number: u8) -> Result<Vec<u8>, ConnError> {
        self.raw(netfn::SENSOR_EVENT, 0x2d, &[number])
    }

    /// Get Sensor Thresholds (35.9).
    pub fn sensor_thresholds(&mut self, number: u8) -> Result<Vec<u8>, ConnError> {
        self.raw(netfn::SENSOR_EVENT, 0x27, &[number])
    }

    /// Get SEL Info (31.2): (entries, last add timestamp, free bytes).
    pub fn sel_info(&mut self) -> Result<SelInfo, ConnError> {
        let d = self.raw(netfn::STORAGE, 0x40, &[])?;
        if d.len() < 14 {
            return Err(ConnError::Short {
                netfn: netfn::STORAGE,
                cmd: 0x40,
                len: d.len(),
            });
        }
        Ok(SelInfo {
            entries: u16::from_le_bytes([d[1], d[2]]),
            free_bytes: u16::from_le_bytes([d[3], d[4]]),
            last_add: u32::from_le_bytes([d[5], d[6], d[7], d[8]]),
            last_erase: u32::from_le_bytes([d[9], d[10], d[11], d[12]]),
            overflow: d[13] & 0x80 != 0,
        })
    }

    /// Get SEL Entry (31.5): (next record id, the 16-byte record). Reading a whole entry
    /// from offset 0 needs no reservation.
    pub fn sel_entry(&mut self, id: u16) -> Result<(u16, Vec<u8>), ConnError> {
        let [lo, hi] = id.to_le_bytes();
        let d = self.raw(netfn::STORAGE, 0x43, &[0, 0, lo, hi, 0, 0xff])?;
        if d.len() < 2 + 16 {
            return Err(ConnError::Short {
                netfn: netfn::STORAGE,
                cmd: 0x43,
                len: d.len(),
            });
        }
        Ok((u16::from_le_bytes([d[0], d[1]]), d[2..18].to_vec()))
    }
}

/// Get SEL Info, the parts we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelInfo {
    pub entries: u16,
    pub free_bytes: u16,
    pub last_add: u32,
    pub last_erase: u32,
    pub overflow: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_words() {
        let refused = r#"PongReceive(Os { code: 111, kind: ConnectionRefused, message: "Connection refused" })"#;
        assert_eq!(
            in_words(refused, Duration::from_secs(2)),
            "connection refused (nothing answers IPMI on that port)"
        );
        let timeout = r#"PongReceive(Os { code: 11, kind: WouldBlock, message: "Resource temporarily unavailable" })"#;
        assert_eq!(
            in_words(timeout, Duration::from_millis(500)),
            "timed out (no reply within 0.5 s)"
        );
        assert_eq!(
            in_words(
                "V2_0(RakpMessage2Validate(InvalidKeyExchangeAuthCode))",
                Duration::ZERO
            ),
            "authentication failed (wrong user name or password)"
        );
        assert_eq!(
            in_words("V2_0(RakpMessage2Parse(NotEnoughData))", Duration::ZERO),
            "protocol error (V2_0)"
        );
        let e = ConnError::Open {
            path: "/dev/ipmi0".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            e.to_string(),
            "opening /dev/ipmi0: no such device (is the IPMI driver loaded?)"
        );
    }
}
