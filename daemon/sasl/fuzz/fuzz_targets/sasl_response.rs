//! Client SASL responses are hostile input: base64 decoding, cancel detection and PLAIN
//! message parsing must never panic, and a decoded response re-encodes to what was decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = postern_sasl::is_cancel(data);
    let _ = postern_sasl::decode_text(data);
    let _ = postern_sasl::parse_plain(data);
    let _ = postern_sasl::parse_plain_message(data);
    if let Ok(decoded) = postern_sasl::decode_response(data) {
        let _ = postern_sasl::parse_plain(&decoded);
        let again = postern_sasl::decode_response(postern_sasl::encode(&decoded).as_bytes());
        if !decoded.is_empty() {
            assert_eq!(again.ok().as_deref(), Some(&decoded[..]));
        }
    }
});
