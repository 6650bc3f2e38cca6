//! Asks Postern's production resolver one question, as posternd would:
//! `cargo run -p postern-dns --example lookup -- NAME TYPE [NAMESERVER:PORT [TRUST_ANCHOR]]`
//! (TYPE: A, AAAA, MX, TXT, PTR, TLSA). Prints the answer with its DNSSEC status.

use postern_dns::{HickoryResolver, RecordType, Resolver, ResolverSettings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(rtype)) = (args.first(), args.get(1)) else {
        return Err("usage: lookup NAME TYPE [NAMESERVER:PORT [TRUST_ANCHOR]]".into());
    };
    let rtype = match rtype.to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::Aaaa,
        "MX" => RecordType::Mx,
        "TXT" => RecordType::Txt,
        "PTR" => RecordType::Ptr,
        "TLSA" => RecordType::Tlsa,
        other => return Err(format!("unknown type {other}")),
    };
    let mut settings = ResolverSettings::default();
    if let Some(ns) = args.get(2) {
        settings.nameservers = vec![ns.parse().map_err(|e| format!("{ns}: {e}"))?];
    }
    settings.trust_anchor = args.get(3).map(Into::into);
    let resolver = HickoryResolver::new(&settings)?;
    println!("{:#?}", resolver.lookup(name, rtype).await);
    Ok(())
}
