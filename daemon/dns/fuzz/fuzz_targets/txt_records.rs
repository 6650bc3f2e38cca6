//! DNS TXT records come from whoever runs the sender's zone: the SPF (RFC 7208 4.5, 12 with
//! macros), DKIM key (RFC 6376 3.6.1) and DMARC (RFC 7489 6.4) parsers that mail-auth runs on
//! them for Postern must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_dns::mail_auth::common::parse::TxtRecordParser;
use postern_dns::mail_auth::common::verify::DomainKey;
use postern_dns::mail_auth::dmarc::Dmarc;
use postern_dns::mail_auth::spf::{Macro, Spf};

fuzz_target!(|data: &[u8]| {
    let _ = Spf::parse(data);
    let _ = Macro::parse(data);
    let _ = DomainKey::parse(data);
    let _ = Dmarc::parse(data);
});
