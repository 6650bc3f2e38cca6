//! What hwmond parses comes from the kernel, from tools and, for IPMI, from a BMC over the
//! network: /proc/mdstat, `mdadm --detail --export`, SDR records, sensor readings and SEL
//! entries must never panic on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_hwmon::collectors::ipmi::{sdr, sel};
use postern_hwmon::collectors::mdraid;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = mdraid::parse_mdstat(&text);
    let _ = mdraid::parse_detail_export(&text);
    if let Ok(record) = sdr::SensorRecord::parse(data) {
        let _ = record.name();
        let _ = record.unit_name();
        let _ = record.type_name();
        let _ = record.is_threshold();
        if let Some(conversion) = &record.conversion {
            if let Some(thresholds) = sdr::RawThresholds::from_response(data) {
                let _ = thresholds.convert(conversion);
            }
            for raw in data.iter().take(4) {
                let _ = conversion.convert(*raw);
            }
        }
    }
    let _ = sdr::RawReading::parse(data);
    let _ = sel::SelRecord::parse(data);
    if let Some((&first, rest)) = data.split_first() {
        let _ = sdr::decode_id_string(first, rest);
    }
});
