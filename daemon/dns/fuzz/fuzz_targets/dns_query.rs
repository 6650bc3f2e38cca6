//! The DNS bridge parses queries from its loopback socket (RFC 1035 4.1): any bytes must give
//! a well-formed reply or none, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern_dns::{bridge, MemoryResolver, Rdata};

fn setup() -> &'static (tokio::runtime::Runtime, MemoryResolver) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, MemoryResolver)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let zone = MemoryResolver::new();
        zone.txt("example.org", "v=spf1 -all")
            .add("example.org", Rdata::A("192.0.2.1".parse().unwrap()))
            .fail("down.example.org");
        (runtime, zone)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, zone) = setup();
    for udp in [true, false] {
        let _ = runtime.block_on(bridge::answer(zone, data, udp));
    }
});
