//! `postern`, the admin CLI. It works on the data directory (accounts under a file lock,
//! the store read-only) and tells a running daemon to reload over the admin socket.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use postern_accounts::AccountStore;
use postern_config::Config;
use rand::distr::{Alphanumeric, SampleString};

#[derive(Parser)]
#[command(name = "postern", version, about = "Postern administration")]
pub struct Cli {
    /// Configuration file of the daemon to administer.
    #[arg(long, short, global = true, conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
    /// Data directory, when there is no configuration file.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Mail domains served by this appliance.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// User accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Aliases (an address delivering to one or more local addresses).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Mailbox contents.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
}

#[derive(Subcommand)]
pub enum DomainCommand {
    Add { domain: String },
    Del { domain: String },
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin when --password is not given.
    Add {
        address: String,
        #[arg(long)]
        password: Option<String>,
    },
    Del {
        address: String,
    },
    /// Set a new password (stdin when --password is not given).
    Passwd {
        address: String,
        #[arg(long)]
        password: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum AliasCommand {
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    Del {
        alias: String,
    },
    List,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file; problems are printed as file:line:column: message.
    Check { path: Option<PathBuf> },
}

#[derive(Subcommand)]
pub enum MailboxCommand {
    /// Export mailboxes as Maildir (DIR/cur/<uid>:2,<flags>, the stored bytes unchanged;
    /// with --all Maildir++ folders) or mboxrd. Goes through posternd's admin socket when
    /// the daemon runs, else reads the store directly.
    Export {
        #[arg(long)]
        user: String,
        /// One mailbox (default INBOX).
        #[arg(long, conflicts_with = "all")]
        mailbox: Option<String>,
        /// Every mailbox of the user.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: MailboxFormat,
    },
    /// Import a Maildir (with Maildir++ subfolders) or an mboxrd file (or a directory of
    /// *.mbox files). Each message is durable when counted; a rerun skips messages already
    /// present with identical bytes.
    Import {
        #[arg(long)]
        user: String,
        /// Target mailbox (default INBOX; subfolders go below it).
        #[arg(long)]
        mailbox: Option<String>,
        #[command(flatten)]
        source: MailboxFormat,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct MailboxFormat {
    /// A Maildir directory.
    #[arg(long)]
    maildir: Option<PathBuf>,
    /// An mbox file (with --all on export: a directory of <mailbox>.mbox files).
    #[arg(long)]
    mbox: Option<PathBuf>,
}

impl MailboxFormat {
    fn format(&self) -> Result<crate::mailbox_io::Format> {
        match (&self.maildir, &self.mbox) {
            (Some(dir), None) => Ok(crate::mailbox_io::Format::Maildir(dir.clone())),
            (None, Some(file)) => Ok(crate::mailbox_io::Format::Mbox(file.clone())),
            _ => bail!("give exactly one of --maildir and --mbox"),
        }
    }
}

const DEFAULT_CONFIG: &str = "/etc/postern/postern.toml";

/// Runs one CLI command; the output goes to stdout, errors are returned.
pub fn run(cli: Cli) -> Result<()> {
    if let Command::Config(ConfigCommand::Check { path }) = &cli.command {
        let path = path
            .clone()
            .or(cli.config.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        return match Config::load(&path) {
            Ok(_) => {
                println!("{}: ok", path.display());
                Ok(())
            }
            Err(error) => bail!("{error}"),
        };
    }
    let config = match (&cli.config, &cli.data_dir) {
        (_, Some(dir)) => {
            let mut config = Config::default();
            config.server.data_dir = dir.clone();
            config
        }
        (Some(path), None) => Config::load(path).map_err(|e| anyhow!("{e}"))?,
        (None, None) => Config::load(Path::new(DEFAULT_CONFIG)).map_err(|e| anyhow!("{e}"))?,
    };
    match cli.command {
        Command::Domain(command) => accounts_command(&config, |accounts| match command {
            DomainCommand::Add { domain } => accounts.add_domain(&domain).map(|()| None),
            DomainCommand::Del { domain } => accounts.del_domain(&domain).map(|()| None),
            DomainCommand::List => Ok(Some(accounts.domains().join("\n"))),
        }),
        Command::User(UserCommand::Add { address, password }) => {
            let password = password_or_stdin(password)?;
            accounts_command(&config, |a| a.add_user(&address, &password).map(|()| None))
        }
        Command::User(UserCommand::Passwd { address, password }) => {
            let password = password_or_stdin(password)?;
            accounts_command(&config, |a| {
                a.set_password(&address, &password).map(|()| None)
            })
        }
        Command::User(UserCommand::Del { address }) => {
            accounts_command(&config, |a| a.del_user(&address).map(|()| None))
        }
        Command::User(UserCommand::List) => {
            accounts_command(&config, |a| Ok(Some(a.users().join("\n"))))
        }
        Command::Alias(command) => accounts_command(&config, |accounts| match command {
            AliasCommand::Add { alias, targets } => {
                accounts.add_alias(&alias, &targets).map(|()| None)
            }
            AliasCommand::Del { alias } => accounts.del_alias(&alias).map(|()| None),
            AliasCommand::List => Ok(Some(
                accounts
                    .aliases()
                    .into_iter()
                    .map(|(alias, targets)| format!("{alias} -> {}", targets.join(", ")))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )),
        }),
        Command::Config(ConfigCommand::Check { .. }) => Ok(()),
        Command::Mailbox(MailboxCommand::Export {
            user,
            mailbox,
            all,
            target,
        }) => {
            let mailbox = match (all, mailbox) {
                (true, _) => None,
                (false, mailbox) => Some(mailbox.unwrap_or_else(|| "INBOX".to_string())),
            };
            crate::mailbox_io::export(&config, &user, &target.format()?, mailbox.as_deref())
        }
        Command::Mailbox(MailboxCommand::Import {
            user,
            mailbox,
            source,
        }) => crate::mailbox_io::import(&config, &user, &source.format()?, mailbox.as_deref()),
    }
}

/// Applies `change` under the accounts lock, prints what it returns, and asks a running
/// daemon to reload (it would notice within a second anyway).
fn accounts_command(
    config: &Config,
    change: impl FnOnce(
        &mut postern_accounts::Accounts,
    ) -> Result<Option<String>, postern_accounts::AccountError>,
) -> Result<()> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let store = AccountStore::open(data_dir)?;
    let output = store.modify(change)?;
    match output {
        Some(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
        }
        None => {
            if let Some(reply) = crate::admin::request(&config.admin_socket_path(), "reload") {
                if reply != "ok" {
                    eprintln!("postern: the daemon answered {reply:?} to reload");
                }
            }
        }
    }
    Ok(())
}

fn password_or_stdin(password: Option<String>) -> Result<String> {
    if let Some(password) = password {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password given (use --password or write it on stdin)");
    }
    Ok(password)
}

pub fn random_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}
