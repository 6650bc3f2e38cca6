//! `select`: SELECT latency on the mailbox, repeated on one connection (re-selecting closes
//! the previous selection, RFC 9051 6.3.2). Then, when the server offers them, SELECT with the
//! CONDSTORE parameter (RFC 7162 3.1.8) and, on a fresh connection after ENABLE QRESYNC, SELECT
//! with QRESYNC (UIDVALIDITY, HIGHESTMODSEQ known; RFC 7162 3.2.5), the resync a client with a
//! cache does.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::client::{quote, Response, Status};
use crate::stats::{text_table, Stats};
use crate::Common;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// SELECTs of each kind.
    #[arg(long, default_value_t = 50)]
    count: usize,
}

pub async fn run(args: Args) -> Result<bool> {
    let ep = args.common.endpoint().await?;
    let mbox = quote(&args.common.mailbox);
    let mut stats = Stats::default();
    let started = Instant::now();
    let mut c = args.common.session(&ep).await?;
    let mut exists = None;
    let timed = |stats: &mut Stats, name: &'static str, t: Instant, r: &Response| {
        if r.status == Status::Ok {
            stats.ok(name, t.elapsed(), r.len(), r.exists().unwrap_or(0) as usize);
        } else {
            stats.error(name, format!("{:?} {}", r.status, r.text));
        }
    };
    let t = Instant::now();
    let r = c.command(&format!("SELECT {mbox}")).await?;
    timed(&mut stats, "select_first", t, &r);
    exists = exists.or(r.exists());
    for _ in 0..args.count {
        let t = Instant::now();
        let r = c.command(&format!("SELECT {mbox}")).await?;
        timed(&mut stats, "select", t, &r);
    }
    let condstore = c.has_cap("CONDSTORE");
    if condstore {
        for _ in 0..args.count {
            let t = Instant::now();
            let r = c.command(&format!("SELECT {mbox} (CONDSTORE)")).await?;
            timed(&mut stats, "select_condstore", t, &r);
        }
    }
    let qresync = c.has_cap("QRESYNC");
    c.logout().await;
    if qresync {
        let mut c = args.common.session(&ep).await?;
        c.command("ENABLE QRESYNC").await?.ok("ENABLE QRESYNC")?;
        let r = c.command(&format!("SELECT {mbox}")).await?.ok("SELECT")?;
        let validity = code_number(&r, "UIDVALIDITY");
        let modseq = code_number(&r, "HIGHESTMODSEQ");
        if let (Some(v), Some(m)) = (validity, modseq) {
            for _ in 0..args.count {
                let t = Instant::now();
                let r = c
                    .command(&format!("SELECT {mbox} (QRESYNC ({v} {m}))"))
                    .await?;
                timed(&mut stats, "select_qresync", t, &r);
            }
        } else {
            stats.error(
                "select_qresync",
                "no UIDVALIDITY or HIGHESTMODSEQ in SELECT".into(),
            );
        }
        c.logout().await;
    }
    let mut report = stats.report(started.elapsed());
    report["mode"] = json!("select");
    report["target"] = json!(args.common.target);
    report["messages"] = json!(exists);
    report["condstore"] = json!(condstore);
    report["qresync"] = json!(qresync);
    if args.common.json {
        println!("{report}");
    } else {
        print!("{}", text_table(&report));
    }
    Ok(stats.total_errors() == 0)
}

/// The number in a "* OK [NAME n]" response code.
fn code_number(r: &Response, name: &str) -> Option<u64> {
    let pat = format!("[{name} ");
    r.untagged().find_map(|l| {
        let s = std::str::from_utf8(l).ok()?;
        let at = s.find(&pat)? + pat.len();
        let rest = &s[at..];
        rest[..rest.find(']')?].trim().parse().ok()
    })
}
