//! Asks Postern's production resolver, as posternd would:
//! `cargo run -p postern-dns --example lookup -- NAME[,NAME...] TYPE [NAMESERVER:PORT [TRUST_ANCHOR]]`
//! (TYPE: A, AAAA, MX, TXT, PTR, TLSA). Several names are asked at once, on one resolver
//! (posternd asks its block lists and sender-authentication names concurrently). Prints
//! each answer with its DNSSEC status.

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
    let resolver = std::sync::Arc::new(HickoryResolver::new(&settings)?);
    let asks: Vec<_> = name
        .split(',')
        .map(|n| {
            let (resolver, n) = (resolver.clone(), n.to_string());
            tokio::spawn(async move {
                let answer = resolver.lookup(&n, rtype).await;
                (n, answer)
            })
        })
        .collect();
    for ask in asks {
        let (n, answer) = ask.await.map_err(|e| e.to_string())?;
        println!("{n}: {answer:#?}");
    }
    Ok(())
}
