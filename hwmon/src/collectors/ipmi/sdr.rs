//! Sensor Data Records (IPMI 2.0 section 43): the full (type 01h) and compact (type 02h)
//! sensor records, reading conversion (36.3), ID strings (43.15) and the responses of Get
//! Sensor Reading (35.14) and Get Sensor Thresholds (35.9).
//!
//! ipmi-rs 0.6 parses SDRs, but its converted `Value` keeps the number private, threshold
//! bytes are private, negative M/B lose bit 9, and 6-bit packed ID strings are not decoded;
//! so the records are parsed here from the raw bytes that the transport reads.

use crate::model::{Thresholds, Unit};

/// Record type of a full sensor record (43.1).
pub const TYPE_FULL: u8 = 0x01;
/// Record type of a compact sensor record (43.2).
pub const TYPE_COMPACT: u8 = 0x02;

/// Sensor type codes (IPMI 2.0 table 42-3) this collector maps to components.
pub mod sensor_type {
    pub const TEMPERATURE: u8 = 0x01;
    pub const VOLTAGE: u8 = 0x02;
    pub const CURRENT: u8 = 0x03;
    pub const FAN: u8 = 0x04;
    pub const POWER_SUPPLY: u8 = 0x08;
    pub const POWER_UNIT: u8 = 0x09;
}

/// Event/reading type code 01h: threshold-based (table 42-1).
pub const READING_THRESHOLD: u8 = 0x01;
/// Event/reading type code 6Fh: sensor-specific offsets (table 42-3).
pub const READING_SENSOR_SPECIFIC: u8 = 0x6f;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SdrError {
    #[error("SDR record too short ({0} bytes)")]
    Short(usize),
    #[error("SDR record type {0:#04x} is not a sensor record")]
    NotSensor(u8),
}

/// Analog data format of a full record (43.1 byte 21 bits 7:6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnalogFormat {
    Unsigned,
    OnesComplement,
    TwosComplement,
    /// No analog (numeric) reading.
    None,
}

/// The conversion factors of a full record: y = L[(M*x + B*10^K1) * 10^K2] (36.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub format: AnalogFormat,
    /// Linearization code (0 linear, 1 ln, 2 log10, 3 log2, 4 e, 5 exp10, 6 exp2, 7 1/x,
    /// 8 sqr, 9 cube, 10 sqrt, 11 cube^-1; 0x70-0x7f non-linear).
    pub linearization: u8,
    pub m: i16,
    pub b: i16,
    /// K1
    pub b_exp: i8,
    /// K2
    pub r_exp: i8,
}

impl Conversion {
    /// Converts a raw reading byte into units; `None` when the sensor has no analog reading
    /// or uses a non-linear formula that needs Get Sensor Reading Factors.
    pub fn convert(&self, raw: u8) -> Option<f64> {
        let x = match self.format {
            AnalogFormat::Unsigned => f64::from(raw),
            AnalogFormat::OnesComplement => {
                if raw & 0x80 != 0 {
                    -f64::from(!raw)
                } else {
                    f64::from(raw)
                }
            }
            AnalogFormat::TwosComplement => f64::from(raw as i8),
            AnalogFormat::None => return None,
        };
        let y = (f64::from(self.m) * x + f64::from(self.b) * 10f64.powi(i32::from(self.b_exp)))
            * 10f64.powi(i32::from(self.r_exp));
        // 36.3 table 36-2: the linearization function applied to the linear value.
        let v = match self.linearization {
            0 => y,
            1 => y.ln(),
            2 => y.log10(),
            3 => y.log2(),
            4 => y.exp(),
            5 => 10f64.powf(y),
            6 => 2f64.powf(y),
            7 => 1.0 / y,
            8 => y * y,
            9 => y * y * y,
            10 => y.sqrt(),
            11 => y.cbrt(),
            _ => return None,
        };
        v.is_finite().then(|| round_sig(v))
    }
}

/// Rounds away float noise (0.06 * 200 = 12.000000000000002) to 6 decimals.
fn round_sig(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// One sensor record (full or compact).
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRecord {
    pub record_id: u16,
    pub record_type: u8,
    /// Sensor owner ID (slave address or software ID).
    pub owner: u8,
    pub owner_lun: u8,
    pub number: u8,
    pub entity_id: u8,
    pub entity_instance: u8,
    pub sensor_type: u8,
    pub reading_type: u8,
    /// Base unit code (table 43-15), with the percentage flag.
    pub base_unit: u8,
    pub percentage: bool,
    /// Full records only.
    pub conversion: Option<Conversion>,
    /// Threshold raw bytes from the record (full records only): lnc, lc, lnr, unc, uc, unr.
    pub sdr_thresholds: Option<RawThresholds>,
    pub id: String,
}

/// Threshold raw values with a readable mask (bit 0 lnc, 1 lc, 2 lnr, 3 unc, 4 uc, 5 unr),
/// the layout of Get Sensor Thresholds (35.9) and of the full record's readable mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawThresholds {
    pub mask: u8,
    /// lnc, lc, lnr, unc, uc, unr
    pub values: [u8; 6],
}

impl RawThresholds {
    /// Parses a Get Sensor Thresholds response body (after the completion code).
    pub fn from_response(data: &[u8]) -> Option<RawThresholds> {
        if data.len() < 7 {
            return None;
        }
        let mut values = [0u8; 6];
        values.copy_from_slice(&data[1..7]);
        Some(RawThresholds {
            mask: data[0] & 0x3f,
            values,
        })
    }

    /// Converts the readable thresholds with the record's conversion.
    pub fn convert(&self, conv: &Conversion) -> Thresholds {
        let get = |bit: usize| -> Option<f64> {
            if self.mask & (1 << bit) != 0 {
                conv.convert(self.values[bit])
            } else {
                None
            }
        };
        Thresholds {
            lower_non_critical: get(0),
            lower_critical: get(1),
            lower_non_recoverable: get(2),
            upper_non_critical: get(3),
            upper_critical: get(4),
            upper_non_recoverable: get(5),
        }
    }
}

impl SensorRecord {
    /// Parses a whole record: the 5-byte header (43: record ID, SDR version, type, length)
    /// followed by the body.
    pub fn parse(bytes: &[u8]) -> Result<SensorRecord, SdrError> {
        if bytes.len() < 5 {
            return Err(SdrError::Short(bytes.len()));
        }
        let record_id = u16::from_le_bytes([bytes[0], bytes[1]]);
        let record_type = bytes[3];
        if record_type != TYPE_FULL && record_type != TYPE_COMPACT {
            return Err(SdrError::NotSensor(record_type));
        }
        // Byte numbers below are those of the spec tables (1-based, header included).
        let at = |n: usize| -> Result<u8, SdrError> {
            bytes
                .get(n - 1)
                .copied()
                .ok_or(SdrError::Short(bytes.len()))
        };
        let owner = at(6)?;
        let owner_lun = at(7)? & 0x03;
        let number = at(8)?;
        let entity_id = at(9)?;
        let entity_instance = at(10)? & 0x7f;
        let sensor_type = at(13)?;
        let reading_type = at(14)?;
        let units1 = at(21)?;
        let base_unit = at(22)?;
        let percentage = units1 & 0x01 != 0;
        let (conversion, sdr_thresholds, id_at) = if record_type == TYPE_FULL {
            let format = match units1 >> 6 {
                0 => AnalogFormat::Unsigned,
                1 => AnalogFormat::OnesComplement,
                2 => AnalogFormat::TwosComplement,
                _ => AnalogFormat::None,
            };
            let linearization = at(24)? & 0x7f;
            // M: 10 bits two's complement, LS 8 bits in byte 25, MS 2 bits in byte 26 [7:6].
            let m = sign_extend(u16::from(at(25)?) | (u16::from(at(26)? >> 6) << 8), 10);
            // B: likewise in bytes 27 and 28 [7:6].
            let b = sign_extend(u16::from(at(27)?) | (u16::from(at(28)? >> 6) << 8), 10);
            // Byte 30: R (K2) exponent [7:4], B (K1) exponent [3:0], 4-bit two's complement.
            let exps = at(30)?;
            let r_exp = sign_extend(u16::from(exps >> 4), 4) as i8;
            let b_exp = sign_extend(u16::from(exps & 0x0f), 4) as i8;
            // Byte 19: readable threshold mask [5:0] for threshold sensors (43.1 "reading
            // mask"); bytes 37..42: unr, uc, unc, lnr, lc, lnc.
            let mask = if reading_type == READING_THRESHOLD {
                at(19)? & 0x3f
            } else {
                0
            };
            let thresholds = RawThresholds {
                mask,
                values: [at(42)?, at(41)?, at(40)?, at(39)?, at(38)?, at(37)?],
            };
            let conv = Conversion {
                format,
                linearization,
                m,
                b,
                b_exp,
                r_exp,
            };
            (Some(conv), Some(thresholds), 48)
        } else {
            (None, None, 32)
        };
        let id = match bytes.get(id_at - 1) {
            Some(&tl) => decode_id_string(tl, bytes.get(id_at..).unwrap_or(&[])),
            None => String::new(),
        };
        Ok(SensorRecord {
            record_id,
            record_type,
            owner,
            owner_lun,
            number,
            entity_id,
            entity_instance,
            sensor_type,
            reading_type,
            base_unit,
            percentage,
            conversion,
            sdr_thresholds,
            id,
        })
    }

    /// A readable name: the ID string, or `sensor-0xNN` when the record has none.
    pub fn name(&self) -> String {
        if self.id.trim().is_empty() {
            format!("sensor-{:#04x}", self.number)
        } else {
            self.id.trim().to_string()
        }
    }

    /// Our unit for the record's base unit (table 43-15), `None` for units we do not model.
    pub fn unit(&self) -> Option<Unit> {
        if self.percentage {
            return Some(Unit::Percent);
        }
        match self.base_unit {
            1 => Some(Unit::Celsius),
            4 => Some(Unit::Volts),
            5 => Some(Unit::Amperes),
            6 => Some(Unit::Watts),
            18 => Some(Unit::Rpm),
            _ => None,
        }
    }

    /// Unit name as ipmitool and ipmi_exporter print it.
    pub fn unit_name(&self) -> &'static str {
        if self.percentage {
            return "percent";
        }
        match self.base_unit {
            1 => "degrees C",
            2 => "degrees F",
            3 => "degrees K",
            4 => "Volts",
            5 => "Amps",
            6 => "Watts",
            7 => "Joules",
            18 => "RPM",
            19 => "Hz",
            _ => "unspecified",
        }
    }

    /// Sensor type name as ipmi_exporter labels it (`type` label).
    pub fn type_name(&self) -> &'static str {
        match self.sensor_type {
            sensor_type::TEMPERATURE => "Temperature",
            sensor_type::VOLTAGE => "Voltage",
            sensor_type::CURRENT => "Current",
            sensor_type::FAN => "Fan",
            0x05 => "Physical Security",
            0x07 => "Processor",
            sensor_type::POWER_SUPPLY => "Power Supply",
            sensor_type::POWER_UNIT => "Power Unit",
            0x0b => "Other Units-based Sensor",
            0x0c => "Memory",
            0x0d => "Drive Slot",
            0x10 => "Event Logging Disabled",
            0x23 => "Watchdog 2",
            _ => "Other",
        }
    }

    pub fn is_threshold(&self) -> bool {
        self.reading_type == READING_THRESHOLD
    }
}

fn sign_extend(v: u16, bits: u32) -> i16 {
    let shift = 16 - bits;
    ((v << shift) as i16) >> shift
}

/// Decodes an ID string from its type/length byte (43.15): bits 7:6 the type (00 Unicode,
/// 01 BCD plus, 10 6-bit packed ASCII, 11 8-bit ASCII + Latin-1), bits 4:0 the length in
/// bytes.
pub fn decode_id_string(type_length: u8, data: &[u8]) -> String {
    let len = usize::from(type_length & 0x1f).min(data.len());
    let data = &data[..len];
    match type_length >> 6 {
        // 8-bit ASCII + Latin-1: each byte is the code point.
        3 => data
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| char::from(b))
            .collect(),
        // 6-bit packed ASCII (43.15): characters 0x20..0x5f, four per three bytes, LSB first.
        2 => {
            let mut out = String::new();
            let mut acc: u32 = 0;
            let mut nbits = 0;
            for &b in data {
                acc |= u32::from(b) << nbits;
                nbits += 8;
                while nbits >= 6 {
                    out.push(char::from(((acc & 0x3f) as u8) + 0x20));
                    acc >>= 6;
                    nbits -= 6;
                }
            }
            out.trim_end().to_string()
        }
        // BCD plus: 0-9, space, '-', '.', ':', ',', '_' in nibbles, low nibble first.
        1 => {
            const DIGITS: &[u8; 16] = b"0123456789 -.:,_";
            let mut out = String::new();
            for &b in data {
                out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
                out.push(char::from(DIGITS[usize::from(b >> 4)]));
            }
            out.trim_end().to_string()
        }
        // "Unicode": in practice ASCII; keep printable bytes.
        _ => data
            .iter()
            .filter(|b| b.is_ascii_graphic() || **b == b' ')
            .map(|&b| char::from(b))
            .collect(),
    }
}

/// A Get Sensor Reading response (35.14), after the completion code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawReading {
    pub raw: u8,
    pub scanning: bool,
    /// "reading/state unavailable" (bit 5 of byte 2).
    pub unavailable: bool,
    /// Byte 3 (threshold comparison status, or discrete states 0-7) and byte 4 (discrete
    /// states 8-14) as one mask.
    pub states: u16,
}

impl RawReading {
    pub fn parse(data: &[u8]) -> Option<RawReading> {
        if data.len() < 2 {
            return None;
        }
        let b3 = data.get(2).copied().unwrap_or(0);
        let b4 = data.get(3).copied().unwrap_or(0) & 0x7f;
        Some(RawReading {
            raw: data[0],
            scanning: data[1] & 0x40 != 0,
            unavailable: data[1] & 0x20 != 0,
            states: u16::from(b3) | (u16::from(b4) << 8),
        })
    }
}

/// Power Supply sensor-specific offsets (table 42-3, sensor type 08h).
pub mod psu_offset {
    pub const PRESENCE: u16 = 1 << 0;
    pub const FAILURE: u16 = 1 << 1;
    pub const PREDICTIVE_FAILURE: u16 = 1 << 2;
    pub const AC_LOST: u16 = 1 << 3;
    pub const INPUT_LOST_OR_OUT_OF_RANGE: u16 = 1 << 4;
    pub const INPUT_OUT_OF_RANGE: u16 = 1 << 5;
    pub const CONFIG_ERROR: u16 = 1 << 6;
}

#[cfg(test)]
mod tests {
    use super::*;

    // Records as ipmi_sim returns them for tests/hwmon/ipmi/postern.sdrs (Get SDR, whole
    // record), captured with the probe in the test setup.
    const FAN1: [u8; 51] = [
        0x04, 0x00, 0x51, 0x01, 0x2e, 0x20, 0x00, 0x20, 0x1d, 0x01, 0x67, 0x04, 0x04, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x12, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x01, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x14, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x84, 0x66, 0xe8, 0x46,
    ];
    const TWELVE_V: [u8; 51] = [
        0x08, 0x00, 0x51, 0x01, 0x2e, 0x20, 0x00, 0x40, 0x07, 0x01, 0x67, 0x04, 0x02, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x04, 0x00, 0x00, 0x06, 0x00, 0x00, 0x01, 0x01, 0xe0,
        0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0xdc, 0xd2, 0x00, 0xb4, 0xbe, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x83, 0x91, 0x64, 0x03,
    ];
    const PSU1: [u8; 35] = [
        0x02, 0x00, 0x51, 0x02, 0x1e, 0x20, 0x00, 0x10, 0x0a, 0x01, 0x67, 0x00, 0x08, 0x6f, 0x0b,
        0x00, 0x0b, 0x00, 0x0b, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x84, 0xf0, 0x5c, 0x47,
    ];

    #[test]
    fn full_record_conversion_and_packed_id() {
        let r = SensorRecord::parse(&FAN1).unwrap();
        assert_eq!(r.number, 0x20);
        assert_eq!(r.sensor_type, sensor_type::FAN);
        assert_eq!(r.unit(), Some(Unit::Rpm));
        let conv = r.conversion.unwrap();
        assert_eq!(conv.m, 60);
        assert_eq!(conv.convert(90), Some(5400.0));
        let t = r.sdr_thresholds.unwrap().convert(&conv);
        assert_eq!(t.lower_critical, Some(600.0));
        assert_eq!(t.lower_non_critical, Some(1200.0));
        assert_eq!(t.upper_critical, None);
        assert_eq!(r.id, "FAN1");

        let v = SensorRecord::parse(&TWELVE_V).unwrap();
        assert_eq!(v.id, "12V");
        assert_eq!(v.unit(), Some(Unit::Volts));
        let conv = v.conversion.unwrap();
        assert_eq!((conv.m, conv.r_exp), (6, -2));
        assert_eq!(conv.convert(200), Some(12.0));
        let t = v.sdr_thresholds.unwrap().convert(&conv);
        assert_eq!(t.lower_critical, Some(10.8));
        assert_eq!(t.upper_critical, Some(13.2));
        assert_eq!(t.upper_non_recoverable, None);

        let p = SensorRecord::parse(&PSU1).unwrap();
        assert_eq!(p.record_type, TYPE_COMPACT);
        assert_eq!(p.sensor_type, sensor_type::POWER_SUPPLY);
        assert_eq!(p.reading_type, READING_SENSOR_SPECIFIC);
        assert_eq!(p.id, "PSU1");
        assert!(p.conversion.is_none());
    }

    #[test]
    fn negative_m_b_and_exponents() {
        let conv = Conversion {
            format: AnalogFormat::TwosComplement,
            linearization: 0,
            m: sign_extend(0x3ff, 10),
            b: sign_extend(0x200, 10),
            b_exp: sign_extend(0x0f, 4) as i8,
            r_exp: sign_extend(0x0e, 4) as i8,
        };
        assert_eq!(conv.m, -1);
        assert_eq!(conv.b, -512);
        assert_eq!(conv.b_exp, -1);
        assert_eq!(conv.r_exp, -2);
        // (-1 * -10 + -512 * 0.1) * 0.01 = -0.412
        assert_eq!(conv.convert(0xf6), Some(-0.412));
        let v = Conversion {
            format: AnalogFormat::Unsigned,
            linearization: 0,
            m: 6,
            b: 0,
            b_exp: 0,
            r_exp: -2,
        };
        assert_eq!(v.convert(200), Some(12.0));
        let none = Conversion {
            format: AnalogFormat::None,
            ..v
        };
        assert_eq!(none.convert(1), None);
    }

    #[test]
    fn id_string_encodings() {
        assert_eq!(decode_id_string(0xc8, b"CPU Temp"), "CPU Temp");
        // "3.3V" packed in 6 bits (0x13 0x0e 0x13 0x36), as sdrcomp writes it: 4 chars, 3 bytes.
        assert_eq!(decode_id_string(0x84, &[0x93, 0x33, 0xd9]), "3.3V");
        assert_eq!(decode_id_string(0x42, &[0x21, 0x3c]), "12.3");
        assert_eq!(decode_id_string(0xc0, b""), "");
    }

    #[test]
    fn reading_and_thresholds_responses() {
        let r = RawReading::parse(&[0x00, 0xc0, 0x03, 0x00]).unwrap();
        assert_eq!(r.states & psu_offset::FAILURE, psu_offset::FAILURE);
        assert!(!r.unavailable);
        let t = RawThresholds::from_response(&[0x03, 20, 10, 0, 0, 0, 0]).unwrap();
        assert_eq!(t.mask, 3);
        assert_eq!(t.values[1], 10);
        assert!(RawThresholds::from_response(&[1]).is_none());
    }
}
