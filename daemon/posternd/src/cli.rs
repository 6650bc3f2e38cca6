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
    /// The message store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Bans of client addresses and accounts after failed logins ([auth] ban_*).
    #[command(subcommand)]
    Ban(BanCommand),
    /// Per-user sender allow and block lists of the spam filter ([filter]).
    #[command(subcommand)]
    Filter(FilterCommand),
    /// TLS material.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Appliance: erase all mail, accounts and configuration, then reboot into first-boot
    /// provisioning (asks the init over /run/postern/init.sock). Asks to type the hostname.
    FactoryReset {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum TlsCommand {
    /// Write a self-signed certificate and its key (what posternd generates when none is
    /// configured; the appliance's first boot uses it).
    SelfSigned {
        #[arg(long)]
        hostname: String,
        #[arg(long)]
        certificate: PathBuf,
        #[arg(long)]
        private_key: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum DomainCommand {
    Add { domain: String },
    Del { domain: String },
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from stdin when --password is not given. It must
    /// pass the password policy ([auth] password_*: length, strength, common and breached
    /// passwords).
    Add {
        address: String,
        #[arg(long)]
        password: Option<String>,
    },
    Del {
        address: String,
    },
    /// Set a new password (stdin when --password is not given); the password policy applies.
    Passwd {
        address: String,
        #[arg(long)]
        password: Option<String>,
    },
    List,
    /// Two-factor authentication (TOTP, RFC 6238). While it is on, the account's main
    /// password no longer works for SMTP, IMAP or POP3: mail clients use app passwords.
    #[command(subcommand, name = "2fa")]
    TwoFactor(TwoFactorCommand),
    /// Passwords for one mail client each (per protocol, named, revocable, shown once).
    #[command(subcommand, name = "app-password")]
    AppPassword(AppPasswordCommand),
    /// The account's recent logins (successful, failed, refused by a ban), oldest first,
    /// from the running daemon's memory ([auth] login_history_entries).
    History {
        address: String,
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TwoFactorCommand {
    /// Enrol: prints the otpauth:// URI, its QR code and ten single-use recovery codes.
    Enable { address: String },
    /// Turn 2FA off (the main password works for mail again; app passwords stay).
    Disable { address: String },
    /// Check a current TOTP code or a recovery code (which is then used up).
    Check { address: String, code: String },
}

#[derive(Subcommand)]
pub enum AppPasswordCommand {
    /// Create an app password for one protocol and print it (it cannot be shown again).
    Add {
        address: String,
        /// A name to recognise it by (such as "laptop Thunderbird").
        #[arg(long)]
        name: String,
        /// smtp, imap or pop3.
        #[arg(long)]
        protocol: postern_accounts::Protocol,
    },
    /// The account's app passwords: name, protocol, creation time.
    List { address: String },
    /// Delete an app password: clients using it are refused from now on.
    Revoke {
        address: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum FilterCommand {
    /// Senders always delivered to the user, whatever their spam score.
    #[command(subcommand)]
    Allow(FilterListCommand),
    /// Senders refused (or sent to Junk: [filter] block_action) for the user.
    #[command(subcommand)]
    Block(FilterListCommand),
}

#[derive(Subcommand)]
pub enum FilterListCommand {
    /// Add an entry: an address (bob@example.com), a domain (example.com or @example.com,
    /// subdomains included) or a /regular expression/ matched against the whole address.
    Add {
        entry: String,
        #[arg(long)]
        user: String,
    },
    /// Remove an entry (as listed).
    Remove {
        entry: String,
        #[arg(long)]
        user: String,
    },
    /// The user's entries, one a line.
    List {
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
pub enum BanCommand {
    /// The bans in force: kind (address or account), target, end, failures that caused it.
    /// Asks the running daemon, else reads <data_dir>/bans.json.
    List {
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Lift a ban (and forget the failures counted against it): an address (an IPv6 one
    /// lifts its /64), a network as listed, or an account.
    Remove { target: String },
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
pub enum StoreCommand {
    /// Space use per shard: bytes of valid records, the part mailboxes still refer to, and
    /// the rest (expunged and deleted mail that compaction gives back).
    Stats,
    /// Run one compaction pass now over every sealed segment with dead space (throttled
    /// like the background passes, [store] compact_rate). Through the running daemon, or
    /// on the store directly when it is stopped.
    Compact,
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
    if let Command::Tls(TlsCommand::SelfSigned {
        hostname,
        certificate,
        private_key,
    }) = &cli.command
    {
        return write_self_signed(hostname, certificate, private_key);
    }
    if let Command::FactoryReset { yes } = &cli.command {
        return factory_reset(*yes);
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
            password_policy(&config).check(&password, &address)?;
            accounts_command(&config, |a| a.add_user(&address, &password).map(|()| None))
        }
        Command::User(UserCommand::Passwd { address, password }) => {
            let password = password_or_stdin(password)?;
            password_policy(&config).check(&password, &address)?;
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
        Command::User(UserCommand::TwoFactor(TwoFactorCommand::Enable { address })) => {
            let enrolment = accounts_change(&config, |a| a.enable_2fa(&address))?;
            print_enrolment(&config, &address, &enrolment)
        }
        Command::User(UserCommand::TwoFactor(TwoFactorCommand::Disable { address })) => {
            accounts_change(&config, |a| a.disable_2fa(&address))?;
            println!("two-factor authentication is off for {address}");
            Ok(())
        }
        Command::User(UserCommand::TwoFactor(TwoFactorCommand::Check { address, code })) => {
            let now = crate::login_guard::unix_now();
            if accounts_change(&config, |a| Ok(a.check_second_factor(&address, &code, now)))? {
                println!("ok");
                Ok(())
            } else {
                bail!("code refused for {address}")
            }
        }
        Command::User(UserCommand::AppPassword(AppPasswordCommand::Add {
            address,
            name,
            protocol,
        })) => {
            let password =
                accounts_change(&config, |a| a.add_app_password(&address, &name, protocol))?;
            println!("{password}");
            eprintln!(
                "postern: app password {name:?} for {} created; it is shown only now",
                protocol.name()
            );
            Ok(())
        }
        Command::User(UserCommand::AppPassword(AppPasswordCommand::List { address })) => {
            let accounts = AccountStore::open(config.data_dir())?.load()?;
            let user = accounts
                .user(&address)
                .ok_or_else(|| anyhow!("no such user: {address}"))?;
            for p in &user.app_passwords {
                println!(
                    "{}\t{}\tcreated {}",
                    p.name,
                    p.protocol.name(),
                    crate::mailbox_io::date::rfc3339(p.created)
                );
            }
            Ok(())
        }
        Command::User(UserCommand::AppPassword(AppPasswordCommand::Revoke { address, name })) => {
            accounts_change(&config, |a| a.revoke_app_password(&address, &name))
        }
        Command::User(UserCommand::History { address, json }) => {
            login_history(&config, &address, json)
        }
        Command::Ban(BanCommand::List { json }) => ban_list(&config, json),
        Command::Ban(BanCommand::Remove { target }) => ban_remove(&config, &target),
        Command::Filter(FilterCommand::Allow(c)) => filter_list(&config, true, c),
        Command::Filter(FilterCommand::Block(c)) => filter_list(&config, false, c),
        Command::Config(ConfigCommand::Check { .. })
        | Command::Tls(_)
        | Command::FactoryReset { .. } => Ok(()),
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
        Command::Store(command) => {
            crate::store_admin::run(&config, matches!(command, StoreCommand::Compact))
        }
    }
}

/// Applies `change` under the accounts lock, prints what it returns, and asks a running
/// daemon to reload when it returned nothing (a change; it would notice within a second
/// anyway).
fn accounts_command(
    config: &Config,
    change: impl FnOnce(
        &mut postern_accounts::Accounts,
    ) -> Result<Option<String>, postern_accounts::AccountError>,
) -> Result<()> {
    match apply_to_accounts(config, change)? {
        Some(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
        }
        None => ask_daemon_to_reload(config),
    }
    Ok(())
}

/// Applies `change` under the accounts lock and asks a running daemon to reload, so that
/// what it changed (an enrolment, a revoked app password) applies to the next login.
fn accounts_change<T>(
    config: &Config,
    change: impl FnOnce(&mut postern_accounts::Accounts) -> Result<T, postern_accounts::AccountError>,
) -> Result<T> {
    let out = apply_to_accounts(config, change)?;
    ask_daemon_to_reload(config);
    Ok(out)
}

fn apply_to_accounts<T>(
    config: &Config,
    change: impl FnOnce(&mut postern_accounts::Accounts) -> Result<T, postern_accounts::AccountError>,
) -> Result<T> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    Ok(AccountStore::open(data_dir)?.modify(change)?)
}

fn ask_daemon_to_reload(config: &Config) {
    if let Some(reply) = crate::admin::request(&config.admin_socket_path(), "reload") {
        if reply != "ok" {
            eprintln!("postern: the daemon answered {reply:?} to reload");
        }
    }
}

fn ban_list(config: &Config, json: bool) -> Result<()> {
    use crate::login_guard::{BanFile, BanRecord};
    let now = crate::login_guard::unix_now();
    let records: Vec<BanRecord> =
        match crate::admin::request(&config.admin_socket_path(), "ban-list") {
            Some(reply) => serde_json::from_str(&reply)
                .map_err(|_| anyhow!("the daemon answered {reply:?} to ban-list"))?,
            // No daemon: the file is what the next start will enforce.
            None => {
                let bans = BanFile::new(config.data_dir()).load(now)?;
                let bans: Vec<_> = bans.into_iter().collect();
                serde_json::from_str(&crate::login_guard::bans_json(&bans))?
            }
        };
    if json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(());
    }
    for r in records {
        let until = i64::try_from(r.until).unwrap_or(i64::MAX);
        println!(
            "{}\t{}\tuntil {} ({} s left)\t{} failures",
            r.kind,
            r.target,
            crate::mailbox_io::date::rfc3339(until),
            r.until.saturating_sub(now),
            r.failures
        );
    }
    Ok(())
}

fn ban_remove(config: &Config, target: &str) -> Result<()> {
    use crate::login_guard::{BanFile, Target};
    let parsed = Target::parse(target).map_err(|why| anyhow!(why))?;
    if let Some(reply) =
        crate::admin::request(&config.admin_socket_path(), &format!("ban-remove {parsed}"))
    {
        return match reply.strip_prefix("error ") {
            None if reply == "ok" => Ok(()),
            Some(why) => bail!("{why}"),
            None => bail!("the daemon answered {reply:?} to ban-remove"),
        };
    }
    // No daemon: edit the file it will load at its next start.
    let now = crate::login_guard::unix_now();
    let file = BanFile::new(config.data_dir());
    let mut bans = file.load(now)?;
    if bans.remove(&parsed).is_none() {
        bail!("{parsed} is not banned");
    }
    file.save(&bans, now)
}

/// `postern filter allow|block add|remove|list --user ADDRESS`: through the daemon's admin
/// socket when it runs (it saves the file and uses the change at once), else on
/// `<data_dir>/filter/lists.json` directly.
fn filter_list(config: &Config, allow: bool, command: FilterListCommand) -> Result<()> {
    use postern_filter::lists::ListFile;
    let list = if allow { "allow" } else { "block" };
    let (action, user, entry) = match command {
        FilterListCommand::Add { entry, user } => ("add", user, Some(entry)),
        FilterListCommand::Remove { entry, user } => ("remove", user, Some(entry)),
        FilterListCommand::List { user } => ("list", user, None),
    };
    let user = postern_accounts::normalize_address(&user)?;
    let socket = config.admin_socket_path();
    let path = crate::filter::filter_dir(config.data_dir()).join(crate::filter::LISTS_FILE);
    let Some(entry) = entry else {
        let entries = match crate::admin::request(&socket, &format!("filter-list {user}")) {
            Some(reply) => {
                if let Some(why) = reply.strip_prefix("error ") {
                    bail!("{why}");
                }
                serde_json::from_str::<postern_filter::lists::UserEntries>(&reply)
                    .map_err(|_| anyhow!("the daemon answered {reply:?} to filter-list"))?
            }
            None => ListFile::load(&path)
                .map_err(|e| anyhow!(e))?
                .users
                .get(&user)
                .cloned()
                .unwrap_or_default(),
        };
        for e in if allow { entries.allow } else { entries.block } {
            println!("{e}");
        }
        return Ok(());
    };
    // Checked here too, so that a bad entry is refused with the reason even without a daemon.
    postern_filter::Entry::parse(&entry).map_err(|why| anyhow!(why))?;
    if let Some(reply) = crate::admin::request(
        &socket,
        &format!("filter-edit {list} {action} {user} {entry}"),
    ) {
        return match reply.strip_prefix("error ") {
            None if reply.starts_with("ok") => Ok(()),
            Some(why) => bail!("{why}"),
            None => bail!("the daemon answered {reply:?} to filter-edit"),
        };
    }
    let mut file = ListFile::load(&path).map_err(|e| anyhow!(e))?;
    let changed = if action == "add" {
        file.add(&user, allow, &entry)
    } else {
        file.remove(&user, allow, &entry)
    }
    .map_err(|e| anyhow!(e))?;
    if !changed && action == "remove" {
        bail!("{entry} is not listed");
    }
    file.save(&path).map_err(|e| anyhow!(e))
}

fn login_history(config: &Config, address: &str, json: bool) -> Result<()> {
    let account = postern_accounts::normalize_address(address)?;
    let Some(reply) = crate::admin::request(
        &config.admin_socket_path(),
        &format!("login-history {account}"),
    ) else {
        bail!("posternd is not running: the login history is kept in its memory");
    };
    if let Some(why) = reply.strip_prefix("error ") {
        bail!("{why}");
    }
    let records: Vec<serde_json::Value> = serde_json::from_str(&reply)
        .map_err(|_| anyhow!("the daemon answered {reply:?} to login-history"))?;
    if json {
        println!("{reply}");
        return Ok(());
    }
    for r in records {
        let field = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let time = r.get("time").and_then(|v| v.as_i64()).unwrap_or(0);
        println!(
            "{}\t{}\t{}\t{}\t{}",
            crate::mailbox_io::date::rfc3339(time),
            field("address"),
            field("service"),
            field("mechanism"),
            field("result")
        );
    }
    Ok(())
}

/// `[auth]` password_* as the accounts crate's policy.
fn password_policy(config: &Config) -> postern_accounts::PasswordPolicy {
    let auth = &config.auth;
    postern_accounts::PasswordPolicy {
        min_length: usize::try_from(auth.password_min_length).unwrap_or(usize::MAX),
        min_strength: u8::try_from(auth.password_min_strength).unwrap_or(u8::MAX),
        breached_sha1: (!auth.password_breached_sha1.is_empty())
            .then(|| PathBuf::from(&auth.password_breached_sha1)),
    }
}

/// What `postern user 2fa enable` shows, once: the key URI, its QR code for the terminal
/// and the recovery codes.
fn print_enrolment(
    config: &Config,
    address: &str,
    enrolment: &postern_accounts::Enrolment,
) -> Result<()> {
    use qrcode::render::unicode::Dense1x2;
    let account = postern_accounts::normalize_address(address)?;
    // The host name tells appliances apart in the user's authenticator app.
    let issuer = match config.server.hostname.trim() {
        "" => "Postern".to_string(),
        host => format!("Postern {host}"),
    };
    let uri = postern_accounts::twofactor::otpauth_uri(&issuer, &account, &enrolment.secret);
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| anyhow!("making the QR code: {e}"))?
        .render::<Dense1x2>()
        .quiet_zone(true)
        .build();
    println!("Two-factor authentication is on for {account}.");
    println!("Scan this with an authenticator app, or enter the secret by hand:");
    println!("{qr}");
    println!("{uri}");
    println!("secret: {}", enrolment.secret);
    println!();
    println!("Recovery codes (each works once; they are shown only now):");
    for code in &enrolment.recovery_codes {
        println!("  {code}");
    }
    println!();
    println!("The main password of {account} no longer works for SMTP, IMAP or POP3.");
    println!("Give each mail client its own app password:");
    println!("  postern user app-password add {account} --name NAME --protocol imap|pop3|smtp");
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

/// The same rcgen call posternd makes for its own self-signed pair (tls.rs).
fn write_self_signed(hostname: &str, certificate: &Path, private_key: &Path) -> Result<()> {
    for path in [certificate, private_key] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| anyhow!("generating a self-signed certificate: {e}"))?;
    crate::files::write_private_file(
        private_key,
        generated.signing_key.serialize_pem().as_bytes(),
    )?;
    crate::files::write_private_file(certificate, generated.cert.pem().as_bytes())?;
    Ok(())
}

const INIT_SOCKET: &str = "/run/postern/init.sock";

/// Asks the appliance init (postern-init's control socket) for a factory reset, after the
/// admin typed the hostname (or gave --yes).
fn factory_reset(yes: bool) -> Result<()> {
    use std::io::{Read, Write};
    if !yes {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_string();
        println!("This erases all mail, accounts and configuration of this appliance.");
        print!("Type the hostname ({hostname}) to confirm: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != hostname || hostname.is_empty() {
            bail!("not confirmed; nothing done");
        }
    }
    let mut stream = std::os::unix::net::UnixStream::connect(INIT_SOCKET)
        .with_context(|| format!("connecting to the init at {INIT_SOCKET}"))?;
    stream.write_all(b"factory-reset\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    if !reply.contains("\"ok\":true") {
        bail!("the init refused: {}", reply.trim());
    }
    println!("factory reset requested: the appliance reboots now");
    Ok(())
}

pub fn random_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}
