//! posternd: the Postern mail daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use postern_accounts::AccountStore;
use postern_config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "posternd", version, about = "Postern mail daemon")]
struct Args {
    /// Configuration file (TOML; see daemon/config/reference.toml).
    #[arg(
        long,
        short,
        default_value = "/etc/postern/postern.toml",
        conflicts_with = "dev"
    )]
    config: PathBuf,
    /// Development profile: data under ./postern-dev, unprivileged ports, self-signed TLS,
    /// a demo domain and account printed on the console.
    #[arg(long)]
    dev: bool,
}

/// Argon2id needs 19 MiB per password check. glibc raises its mmap threshold after the
/// first such buffer is freed, so later ones come from the checking thread's heap arena and
/// stay there: every blocking thread that ever verified a login would keep 19 MiB, which
/// dominated the memory of idle IMAP connections. A fixed threshold (setting it turns the
/// dynamic adjustment off) keeps large buffers in mmap, returned to the system on free.
fn keep_large_allocations_in_mmap() {
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn main() -> ExitCode {
    keep_large_allocations_in_mmap();
    let args = Args::parse();
    let config = if args.dev {
        Config::dev()
    } else {
        match Config::load(&args.config) {
            Ok(config) => config,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(2);
            }
        }
    };
    init_logging(&config);
    let result = if args.dev {
        prepare_dev(&config)
    } else {
        Ok(())
    }
    .and_then(|()| posternd::server::run(config));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(event = "server.failed", error = %format!("{error:#}"));
            eprintln!("posternd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    use posternd::peer_noise;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // DESIGN.md 6: records a peer causes are counted and summarised, not printed.
    let printed = filter_fn(|meta| !peer_noise::is_peer_caused(meta));
    // The counter has its own filter: with per-layer filters, an event reaches only the
    // layers whose filter enabled it.
    let counted = filter_fn(peer_noise::is_peer_caused);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(peer_noise::Counter.with_filter(counted));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => registry.with(fmt.json().with_filter(printed)).init(),
        LogFormat::Text => registry.with(fmt.with_filter(printed)).init(),
    }
}

/// First start of the dev profile: a demo domain and account, credentials printed (and kept
/// in the data directory, mode 0600, so later starts can print them again).
fn prepare_dev(config: &Config) -> Result<()> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(data_dir)?;
    let credentials_file = data_dir.join("dev-credentials.txt");
    let accounts = AccountStore::open(data_dir)?;
    if accounts.load()?.domains().is_empty() {
        let password = posternd::cli::random_password();
        accounts.modify(|a| {
            a.add_domain("example.test")?;
            a.add_user("demo@example.test", &password)
        })?;
        posternd::files::write_private_file(
            &credentials_file,
            format!("user demo@example.test\npassword {password}\n").as_bytes(),
        )?;
    }
    let credentials = std::fs::read_to_string(&credentials_file)
        .with_context(|| format!("reading {}", credentials_file.display()))
        .unwrap_or_else(|_| "(credentials file missing: use `postern user passwd`)".into());
    println!("Postern development profile");
    println!("  data directory: {}", data_dir.display());
    for listener in &config.listeners {
        for address in &listener.bind {
            println!(
                "  {:<12} {address}",
                format!("{:?}", listener.kind).to_lowercase()
            );
        }
    }
    if let Some(metrics) = config.metrics.bind {
        println!("  metrics      http://{metrics}/metrics");
    }
    println!("  demo account (self-signed TLS; AUTH needs STARTTLS on submission):");
    for line in credentials.lines() {
        println!("    {line}");
    }
    Ok(())
}
