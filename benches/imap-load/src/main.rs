//! imap-load: an IMAP load generator for benchmarking Postern against Dovecot (DESIGN.md
//! section 5: "FETCH/SEARCH/SELECT/APPEND mix on 100k-message mailboxes", "10k IMAP IDLE
//! connections").
//!
//! Modes:
//! - `load`: APPEND generated messages (deterministic by seed and index, so two servers get the
//!   same mailbox) with C connections, pipelined with LITERAL+ when the server has it.
//! - `mix`: C clients run a weighted operation mix for D seconds; ops/s and p50/p99 per op.
//! - `select`: SELECT latency on the mailbox (plain, CONDSTORE and QRESYNC when offered).
//! - `idle`: K connections in IDLE, held until SIGTERM/SIGINT.
//! - `logins`: C clients reconnecting in a loop (connect, TLS, LOGIN, SELECT, FETCH, LOGOUT).
//!
//! Certificates are never verified: the tool talks to loopback servers with self-signed
//! certificates. Handshake signatures are still checked, so the TLS work is the real one.

mod client;
mod idle;
mod load;
mod logins;
mod maildir;
mod message;
mod mix;
mod select;
mod stats;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::client::{Endpoint, Security};

#[derive(Parser, Debug)]
#[command(
    name = "imap-load",
    about = "IMAP load generator: populate, mix, select, idle"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// APPEND --count generated messages (numbers --start..) into --mailbox.
    Load(load::Args),
    /// Run the weighted operation mix on the mailbox for --duration seconds.
    Mix(mix::Args),
    /// SELECT latency on the mailbox (and SELECT with CONDSTORE / QRESYNC when offered).
    Select(select::Args),
    /// C clients reconnecting in a loop: connect, LOGIN, SELECT, FETCH, LOGOUT.
    Logins(logins::Args),
    /// Open --connections sessions in IDLE; print "ready" and hold them until killed.
    Idle(idle::Args),
    /// Write the messages `load` would APPEND as a Maildir (for offline import / indexing).
    Maildir(maildir::Args),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TlsMode {
    /// No TLS.
    Plain,
    /// TLS from the first byte (imaps).
    Implicit,
    /// STARTTLS after the greeting.
    Starttls,
}

/// Options every mode that talks to a server shares.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Server, HOST:PORT.
    #[arg(long)]
    pub target: String,
    #[arg(long, value_enum, default_value_t = TlsMode::Plain)]
    pub tls: TlsMode,
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub password: String,
    /// The mailbox to load, or to run on.
    #[arg(long, default_value = "INBOX")]
    pub mailbox: String,
    /// Seconds to wait for any one reply (a slower reply counts as an error).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Tokio worker threads (0 = one per CPU core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Common {
    pub async fn endpoint(&self) -> Result<Endpoint> {
        let addr: SocketAddr = tokio::net::lookup_host(&self.target)
            .await
            .with_context(|| format!("resolving {}", self.target))?
            .next()
            .with_context(|| format!("{} resolves to no address", self.target))?;
        let host = self
            .target
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or("localhost");
        let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
            .or_else(|_| rustls::pki_types::ServerName::try_from("localhost".to_string()))
            .context("building the TLS server name")?;
        let security = match self.tls {
            TlsMode::Plain => Security::Plain,
            TlsMode::Implicit => Security::Implicit(tls::connector()?),
            TlsMode::Starttls => Security::StartTls(tls::connector()?),
        };
        Ok(Endpoint {
            addr,
            server_name,
            security,
            timeout: Duration::from_secs(self.timeout.max(1)),
        })
    }

    /// Connects and logs in.
    pub async fn session(&self, ep: &Endpoint) -> Result<client::Client> {
        let mut c = client::Client::connect(ep, None, client::DEFAULT_BUFFER).await?;
        c.login(&self.user, &self.password).await?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.mode {
        Mode::Load(a) => a.common.threads,
        Mode::Mix(a) => a.common.threads,
        Mode::Select(a) => a.common.threads,
        Mode::Idle(a) => a.common.threads,
        Mode::Logins(a) => a.common.threads,
        Mode::Maildir(_) => 1,
    };
    match run(cli, threads) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imap-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli, threads: usize) -> Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    let rt = builder.build().context("starting the tokio runtime")?;
    let ok = rt.block_on(async {
        match cli.mode {
            Mode::Load(a) => load::run(a).await,
            Mode::Mix(a) => mix::run(a).await,
            Mode::Select(a) => select::run(a).await,
            Mode::Idle(a) => idle::run(a).await,
            Mode::Logins(a) => logins::run(a).await,
            Mode::Maildir(a) => maildir::run(a),
        }
    })?;
    // Idle connections and in-flight tasks are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Parses "name=weight,name=weight".
pub fn parse_weights(s: &str, names: &[&str]) -> Result<Vec<u32>> {
    let mut w = vec![0u32; names.len()];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            bail!("weight {part:?} is not name=number");
        };
        let Some(i) = names.iter().position(|n| *n == k.trim()) else {
            bail!("unknown operation {k:?} (known: {})", names.join(", "));
        };
        w[i] = v.trim().parse().with_context(|| format!("weight of {k}"))?;
    }
    if w.iter().all(|&x| x == 0) {
        bail!("all weights are zero");
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        let names = ["a", "b", "c"];
        assert_eq!(parse_weights("a=1, c=3", &names).unwrap(), vec![1, 0, 3]);
        assert!(parse_weights("d=1", &names).is_err());
        assert!(parse_weights("a=0", &names).is_err());
        assert!(parse_weights("a", &names).is_err());
    }
}
