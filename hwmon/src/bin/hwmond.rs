//! hwmond: the hardware monitor daemon (DESIGN.md 3.6).
//!
//! `hwmond [--config FILE] [run]`      run the daemon (collectors, sinks, health API socket)
//! `hwmond [--config FILE] status [--json]`  ask the daemon, or collect once when none runs
//! `hwmond [--config FILE] check-config`     validate the config and the board file

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use postern_hwmon::board::Board;
use postern_hwmon::config::Config;
use postern_hwmon::{api, daemon, status};

const DEFAULT_CONFIG: &str = "/etc/postern/hwmond.toml";

#[derive(Parser)]
#[command(name = "hwmond", about = "Postern hardware monitor", version)]
struct Cli {
    /// Configuration file (default /etc/postern/hwmond.toml; built-in defaults when that
    /// file does not exist).
    #[arg(long, short = 'c', global = true)]
    config: Option<PathBuf>,
    /// Board file; overrides `hwmond.board` of the configuration.
    #[arg(long, global = true)]
    board: Option<PathBuf>,
    /// Health API socket; overrides `hwmond.socket`.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon (the default).
    Run,
    /// Print every component's state: from the running daemon, or by collecting once.
    Status {
        /// JSON (the health API's state object) instead of a table.
        #[arg(long)]
        json: bool,
        /// Collect once in this process even if a daemon runs.
        #[arg(long)]
        once: bool,
    },
    /// Check the configuration and board file; print problems as file:line:column.
    CheckConfig,
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn load(cli: &Cli) -> anyhow::Result<(Config, Board)> {
    let mut config = match &cli.config {
        Some(p) => Config::load(p)?,
        None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
            Config::load(std::path::Path::new(DEFAULT_CONFIG))?
        }
        None => Config::default(),
    };
    if let Some(b) = &cli.board {
        config.hwmond.board = b.clone();
    }
    if let Some(s) = &cli.socket {
        config.hwmond.socket = s.clone();
    }
    let board = config.load_board()?;
    Ok((config, board))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.hwmond.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.hwmond.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(config: Config, board: Board) -> anyhow::Result<()> {
    init_logging(&config);
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    tracing::info!(
        event = "hwmon.starting",
        board = %board.board.name,
        socket = %config.hwmond.socket.display()
    );
    let running = daemon::start(&config, board)?;
    // Serve only once every collector has reported, so the first answer is real.
    if !running.wait_ready(Duration::from_secs(60)) {
        tracing::warn!(
            event = "hwmon.slow_start",
            "not every collector reported within 60 s"
        );
    }
    let server = match api::Server::start(&daemon::socket_path(&config), running.shared.clone()) {
        Ok(s) => s,
        Err(e) => {
            running.shutdown();
            return Err(e.into());
        }
    };
    tracing::info!(event = "hwmon.ready");
    while !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    tracing::info!(event = "hwmon.stopping");
    running.shared.stop();
    server.stop();
    running.shutdown();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, board) = match load(&cli) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Run => run(config, board),
        Cmd::CheckConfig => {
            println!(
                "ok: board {:?}, {} disks, {} arrays, {} sensors",
                board.board.name,
                board.disks.len(),
                board.arrays.len(),
                board.sensors.len()
            );
            Ok(())
        }
        Cmd::Status { json, once } => (|| {
            let from_daemon = if once {
                None
            } else {
                match api::fetch_state(&config.hwmond.socket, Duration::from_secs(10)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("hwmond: no daemon answers ({e}); collecting once");
                        None
                    }
                }
            };
            let snap = match from_daemon {
                Some(s) => s,
                None => daemon::collect_once(&config, board).context("collecting")?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&snap)?);
            } else {
                print!("{}", status::render_table(&snap));
            }
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hwmond: {e:#}");
            ExitCode::FAILURE
        }
    }
}
