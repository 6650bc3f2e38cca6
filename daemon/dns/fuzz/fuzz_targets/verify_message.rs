//! A whole received message through the verifier's entry point: header parsing, DKIM-Signature
//! and ARC tag lists (RFC 6376 3.5, RFC 8617 4), DMARC From extraction, against an in-memory
//! zone with a DKIM key, an SPF and a DMARC record. Never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use postern_dns::auth::{LocalPolicy, Request, Verifier};
use postern_dns::{bridge, MemoryResolver};

struct World {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let zone = Arc::new(MemoryResolver::new());
        zone.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
            .txt("_dmarc.example.org", "v=DMARC1; p=reject")
            .txt(
                "s._domainkey.example.org",
                "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
            );
        let addrs = runtime.block_on(bridge::spawn(zone)).unwrap();
        let verifier = Verifier::new(
            addrs,
            Duration::from_secs(2),
            "mx.example.net",
            LocalPolicy::default(),
        );
        World { runtime, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let outcome = world.runtime.block_on(world.verifier.verify(&Request {
        ip: "192.0.2.1".parse().unwrap(),
        helo: "mail.example.org",
        mail_from: "a@example.org",
        message: data,
    }));
    assert!(outcome.header.starts_with("Authentication-Results: mx.example.net"));
});
