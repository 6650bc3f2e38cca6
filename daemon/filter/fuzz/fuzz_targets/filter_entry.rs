//! Allow/block list entries (address, domain, /regex/) from arbitrary text: parsing never
//! panics, a parsed entry prints as text that parses back to the same entry, and matching
//! arbitrary addresses never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::lists::Entry;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (entry, address) = text.split_once('\n').unwrap_or((text, "a@b.example"));
    if let Ok(parsed) = Entry::parse(entry) {
        let shown = parsed.to_string();
        let again = Entry::parse(&shown).expect("a printed entry parses");
        assert_eq!(again.to_string(), shown);
        let _ = parsed.matches(address);
    }
});
