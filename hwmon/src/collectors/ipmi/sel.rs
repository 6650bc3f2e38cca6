//! System Event Log records (IPMI 2.0 section 32): the 16-byte system event record and the
//! names of the event offsets we report (tables 42-2 and 42-3).

use super::sdr::{sensor_type, READING_SENSOR_SPECIFIC, READING_THRESHOLD};

/// One SEL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelRecord {
    pub id: u16,
    pub record_type: u8,
    /// Seconds since the epoch (0 or < 0x20000000: "pre-init" time since BMC start, 37.1).
    pub timestamp: u32,
    pub generator: u16,
    pub sensor_type: u8,
    pub sensor_number: u8,
    pub deassertion: bool,
    pub reading_type: u8,
    pub data: [u8; 3],
}

impl SelRecord {
    /// Parses a 16-byte record (32.1); `None` for other lengths.
    pub fn parse(bytes: &[u8]) -> Option<SelRecord> {
        if bytes.len() < 16 {
            return None;
        }
        Some(SelRecord {
            id: u16::from_le_bytes([bytes[0], bytes[1]]),
            record_type: bytes[2],
            timestamp: u32::from_le_bytes([bytes[3], bytes[4], bytes[5], bytes[6]]),
            generator: u16::from_le_bytes([bytes[7], bytes[8]]),
            sensor_type: bytes[10],
            sensor_number: bytes[11],
            deassertion: bytes[12] & 0x80 != 0,
            reading_type: bytes[12] & 0x7f,
            data: [bytes[13], bytes[14], bytes[15]],
        })
    }

    /// A system event record (type 02h); OEM records (C0h-FFh) have no sensor.
    pub fn is_system_event(&self) -> bool {
        self.record_type == 0x02
    }

    /// Event offset (event data 1, bits 3:0).
    pub fn offset(&self) -> u8 {
        self.data[0] & 0x0f
    }

    /// What happened, in words: "Lower Critical going low", "Failure detected".
    pub fn description(&self) -> String {
        if !self.is_system_event() {
            return format!("OEM record type {:#04x}", self.record_type);
        }
        let offset = self.offset();
        let name = match self.reading_type {
            READING_THRESHOLD => threshold_offset_name(offset).map(str::to_string),
            READING_SENSOR_SPECIFIC => sensor_specific_name(self.sensor_type, offset),
            _ => None,
        };
        name.unwrap_or_else(|| format!("event type {:#04x} offset {offset}", self.reading_type))
    }

    /// Stable event name for the health model: `Sel` + the description in CamelCase +
    /// `Asserted`/`Deasserted` (`SelLowerCriticalGoingLowAsserted`, `SelFailureDetectedAsserted`).
    pub fn event_name(&self) -> String {
        let mut name = String::from("Sel");
        for word in self
            .description()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                name.push(first.to_ascii_uppercase());
                name.extend(chars);
            }
        }
        name.push_str(if self.deassertion {
            "Deasserted"
        } else {
            "Asserted"
        });
        name
    }
}

/// Threshold event offsets (table 42-2, event/reading type 01h).
pub fn threshold_offset_name(offset: u8) -> Option<&'static str> {
    Some(match offset {
        0x0 => "Lower Non-critical going low",
        0x1 => "Lower Non-critical going high",
        0x2 => "Lower Critical going low",
        0x3 => "Lower Critical going high",
        0x4 => "Lower Non-recoverable going low",
        0x5 => "Lower Non-recoverable going high",
        0x6 => "Upper Non-critical going low",
        0x7 => "Upper Non-critical going high",
        0x8 => "Upper Critical going low",
        0x9 => "Upper Critical going high",
        0xa => "Upper Non-recoverable going low",
        0xb => "Upper Non-recoverable going high",
        _ => return None,
    })
}

/// Sensor-specific offsets (table 42-3) of the sensor types we monitor.
pub fn sensor_specific_name(sensor: u8, offset: u8) -> Option<String> {
    let name = match (sensor, offset) {
        (sensor_type::POWER_SUPPLY, 0) => "Presence detected",
        (sensor_type::POWER_SUPPLY, 1) => "Failure detected",
        (sensor_type::POWER_SUPPLY, 2) => "Predictive failure",
        (sensor_type::POWER_SUPPLY, 3) => "Power Supply AC lost",
        (sensor_type::POWER_SUPPLY, 4) => "AC lost or out-of-range",
        (sensor_type::POWER_SUPPLY, 5) => "AC out-of-range but present",
        (sensor_type::POWER_SUPPLY, 6) => "Configuration error",
        (sensor_type::POWER_UNIT, 0) => "Power off",
        (sensor_type::POWER_UNIT, 1) => "Power cycle",
        (sensor_type::POWER_UNIT, 4) => "AC lost",
        (sensor_type::POWER_UNIT, 6) => "Power unit failure detected",
        (sensor_type::POWER_UNIT, 7) => "Predictive failure",
        (0x0c, 0) => "Correctable ECC",
        (0x0c, 1) => "Uncorrectable ECC",
        (0x0d, 0) => "Drive present",
        (0x0d, 1) => "Drive fault",
        (0x0d, 2) => "Predictive failure",
        (0x0d, 7) => "Rebuild in progress",
        (0x0d, 8) => "Rebuild aborted",
        (0x10, 2) => "Log area reset/cleared",
        (0x10, 4) => "SEL full",
        (0x10, 5) => "SEL almost full",
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ipmi_sim_records() {
        // ipmi_sim: FAN1 (0x20) lower critical going low, asserted, reading 0, threshold 10.
        let fan = SelRecord::parse(&[
            0x04, 0x00, 0x02, 0xdc, 0x2f, 0x00, 0x00, 0x20, 0x00, 0x04, 0x04, 0x20, 0x01, 0x52,
            0x00, 0x0a,
        ])
        .unwrap();
        assert_eq!(fan.id, 4);
        assert_eq!(fan.sensor_number, 0x20);
        assert_eq!(fan.description(), "Lower Critical going low");
        assert_eq!(fan.event_name(), "SelLowerCriticalGoingLowAsserted");
        // PSU1 (0x10) failure detected, sensor-specific.
        let psu = SelRecord::parse(&[
            0x05, 0x00, 0x02, 0xdc, 0x2f, 0x00, 0x00, 0x20, 0x00, 0x04, 0x08, 0x10, 0x6f, 0x01,
            0xff, 0xff,
        ])
        .unwrap();
        assert_eq!(psu.description(), "Failure detected");
        assert_eq!(psu.event_name(), "SelFailureDetectedAsserted");
        let mut gone = psu.clone();
        gone.deassertion = true;
        assert_eq!(gone.event_name(), "SelFailureDetectedDeasserted");
        assert!(SelRecord::parse(&[0; 10]).is_none());
    }
}
