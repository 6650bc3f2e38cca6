//! posternd's process layout (DESIGN.md 3.4): one worker thread per core, each with its own
//! current-thread tokio runtime, its own SO_REUSEPORT listener sockets and its own store
//! shard; a control thread for metrics, the admin socket, reloads and signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use postern_config::{Config, ListenerKind as ConfiguredKind, StoreBackend};
use postern_smtp::{Limits, ListenerKind};
use postern_store::{BackendChoice, Store, StoreOptions};
use tokio::net::TcpListener;

use crate::connection_limits::ConnectionLimits;
use crate::directory::{Directory, Inboxes};
use crate::metrics::Metrics;
use crate::tls::ReloadingCertificate;

/// The SMTP connection class of MX listeners in [`Shared::connection_limits`].
pub const SMTP_MX: usize = 0;
/// The SMTP connection class of submission listeners (587 and 465).
pub const SMTP_SUBMISSION: usize = 1;

/// State every worker shares (read-mostly).
pub struct Shared {
    pub config: Config,
    pub store: Store,
    pub directory: Arc<Directory>,
    pub inboxes: Inboxes,
    pub metrics: Arc<Metrics>,
    pub tls: Arc<rustls::ServerConfig>,
    pub smtp_limits: Limits,
    pub connection_limits: Arc<ConnectionLimits>,
    /// Hourly message and recipient allowances (`[smtp]` *_per_hour keys).
    pub rate_limits: Arc<crate::connection_limits::RateLimits>,
    /// Session limits of submission listeners: [`Shared::smtp_limits`] with
    /// `[smtp] submission_recipients_per_message` as the recipient limit.
    pub submission_limits: Limits,
    /// POP3 limits, connection slots and maildrop locks.
    pub pop3: crate::pop3::Pop3State,
    /// The storage gate (hwmond's verdict); see `crate::health_gate`.
    pub health_gate: Arc<crate::health_gate::HealthGate>,
    /// Header fields of searched messages, shared by every IMAP session.
    pub header_cache: Arc<crate::imap::HeaderCache>,
    /// Failed-login counts, bans and login histories of every service.
    pub login_guard: Arc<crate::login_guard::LoginGuard>,
    /// The spam filter and sender lists (`[filter]`).
    pub filter: Arc<crate::filter::SpamFilter>,
    /// Sender authentication of MX mail (`[sender_auth]`); None when verification is off.
    pub sender_auth: Option<Arc<postern_dns::auth::Verifier>>,
    /// DNS block lists of MX clients and URL domains (`[dnsbl]`); None when none is
    /// configured.
    pub dnsbl: Option<Arc<crate::dnsbl::DnsLists>>,
}

pub fn smtp_limits(config: &Config) -> Limits {
    let smtp = &config.smtp;
    Limits {
        max_message_size: usize_of(smtp.max_message_size),
        max_recipients: usize_of(smtp.max_recipients),
        max_command_line: usize_of(smtp.max_command_line),
        max_data_line: usize_of(smtp.max_data_line),
        max_commands: usize_of(smtp.max_commands),
        max_errors: usize_of(smtp.max_errors),
        timeout_command: smtp.timeout_command(),
        timeout_data: smtp.timeout_data(),
    }
}

/// [`smtp_limits`] for the submission listeners: fewer recipients per message where
/// `[smtp] submission_recipients_per_message` says so (further RCPT get 452 4.5.3, RFC 5321
/// 4.5.3.1.10, and the client sends them in another transaction).
pub fn submission_limits(config: &Config) -> Limits {
    let mut limits = smtp_limits(config);
    limits.max_recipients = limits
        .max_recipients
        .min(usize_of(config.smtp.submission_recipients_per_message));
    limits
}

fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

pub fn store_options(config: &Config, metrics: Option<Arc<Metrics>>) -> StoreOptions {
    let mut options = StoreOptions::new(config.data_dir().join("store"));
    options.shards = config.effective_shards();
    options.backend = match config.store.backend {
        StoreBackend::Auto => BackendChoice::Auto,
        StoreBackend::IoUring => BackendChoice::IoUring,
        StoreBackend::Portable => BackendChoice::Portable,
    };
    options.segment_bytes = config.store.segment_size;
    options.max_batch = usize_of(config.store.max_batch);
    let s = &config.store;
    options.maintenance = postern_store::MaintenanceOptions {
        checkpoint_bytes: s.checkpoint_bytes,
        checkpoint_interval: Duration::from_secs(s.checkpoint_interval_secs),
        compact_interval: (s.compact_interval_secs > 0)
            .then(|| Duration::from_secs(s.compact_interval_secs)),
        compact_dead_percent: u8::try_from(s.compact_dead_percent.min(100)).unwrap_or(100),
        compact_bytes_per_sec: s.compact_rate,
    };
    if let Some(metrics) = metrics {
        options.on_commit = Some(Arc::new(move |report| metrics.record_commit(report)));
    }
    options
}

/// What a listener serves, and whether TLS starts at accept (implicit TLS, RFC 8314 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp(ListenerKind),
    Imap { implicit_tls: bool },
    Pop3 { implicit_tls: bool },
}

fn service(kind: ConfiguredKind) -> Service {
    match kind {
        ConfiguredKind::Mx => Service::Smtp(ListenerKind::Mx),
        ConfiguredKind::Submission => Service::Smtp(ListenerKind::Submission),
        ConfiguredKind::Submissions => Service::Smtp(ListenerKind::Submissions),
        ConfiguredKind::Imap => Service::Imap {
            implicit_tls: false,
        },
        ConfiguredKind::Imaps => Service::Imap { implicit_tls: true },
        ConfiguredKind::Pop3 => Service::Pop3 {
            implicit_tls: false,
        },
        ConfiguredKind::Pop3s => Service::Pop3 { implicit_tls: true },
    }
}

/// One bound socket, owned by one worker.
struct BoundListener {
    service: Service,
    address: SocketAddr,
    socket: std::net::TcpListener,
}

fn bind_reuseport(address: SocketAddr) -> Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    // Every worker binds the same address; the kernel spreads connections (DESIGN.md 3.4).
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Shared {
    /// Everything the workers share, built from the configuration and the opened store:
    /// accounts, TLS (the self-signed certificate made if none is configured), bans and the
    /// storage gate. Listeners are not bound here.
    pub fn build(
        config: Config,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Shared>, Arc<ReloadingCertificate>)> {
        let data_dir = config.data_dir().to_path_buf();
        let directory = Directory::open(
            &data_dir,
            crate::credential_cache::CredentialCache::from_config(&config.auth),
        )?;
        let (tls, certificate) = crate::tls::server_config(&config)?;
        let login_guard = Arc::new(crate::login_guard::LoginGuard::open(
            crate::login_guard::Settings::from_config(&config.auth),
            &data_dir,
            crate::login_guard::unix_now(),
        )?);
        let filter = crate::filter::SpamFilter::open(&config, metrics.filter.clone())?;
        filter.start_trainer(store.clone())?;
        // The DNS thread runs when something asks DNS: sender authentication, block lists.
        let dns = if config.sender_auth.verify || (config.dnsbl.any() && config.filter.enabled) {
            Some(start_dns(&config)?)
        } else {
            None
        };
        let sender_auth = match &dns {
            Some(dns) if config.sender_auth.verify => {
                Some(Arc::new(sender_auth_verifier(&config, dns.bridge)))
            }
            _ => None,
        };
        let dnsbl = match &dns {
            Some(dns) => crate::dnsbl::DnsLists::new(
                &config,
                Arc::new(dns.resolver.clone()),
                metrics.filter.clone(),
            )?
            .map(Arc::new),
            None => None,
        };
        let health_gate = match &config.health.socket {
            Some(socket) => {
                crate::health_gate::HealthGate::start(socket.clone(), metrics.health_gate.clone())
                    .context("starting the storage health gate")?
            }
            None => crate::health_gate::HealthGate::disabled(metrics.health_gate.clone()),
        };
        let shared = Arc::new(Shared {
            sender_auth,
            dnsbl,
            health_gate,
            smtp_limits: smtp_limits(&config),
            submission_limits: submission_limits(&config),
            rate_limits: crate::connection_limits::RateLimits::new(),
            // DESIGN.md 6: MX and submission (587 and 465) each have their own per-IP
            // allowance (classes SMTP_MX and SMTP_SUBMISSION), within one SMTP total.
            connection_limits: ConnectionLimits::with_classes(
                usize_of(config.smtp.max_connections),
                vec![
                    usize_of(config.smtp.max_connections_per_ip),
                    usize_of(config.smtp.max_submission_connections_per_ip),
                ],
            ),
            inboxes: Inboxes::new(store.clone()),
            pop3: crate::pop3::Pop3State::new(&config),
            header_cache: Arc::new(crate::imap::HeaderCache::new(
                usize_of(config.imap.search_cache_mb).saturating_mul(1 << 20),
                metrics.imap_search_cache_bytes.clone(),
                metrics.imap_search_cache_fills.clone(),
            )),
            login_guard,
            filter,
            config,
            store,
            directory,
            metrics,
            tls,
        });
        Ok((shared, certificate))
    }
}

pub fn run(config: Config) -> Result<()> {
    let data_dir = config.data_dir().to_path_buf();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let metrics = Metrics::new();
    let store = Store::open(store_options(&config, Some(metrics.clone())))
        .with_context(|| format!("opening the store in {}", data_dir.join("store").display()))?;
    tracing::info!(
        event = "store.opened",
        backend = ?store.backend_kind(),
        shards = store.shard_count(),
        stripe_alignment = store.stripe_alignment(),
        from_checkpoint = store.recovery().from_checkpoint,
        records_replayed = store.recovery().records_replayed,
        recovery_ms = store.recovery().elapsed.as_millis() as u64,
    );
    let (shared, certificate) = Shared::build(config, store.clone(), metrics)?;
    let config = &shared.config;
    let workers = config.effective_workers();

    // Bind everything before anything is announced, so a port in use fails the start.
    let mut per_worker: Vec<Vec<BoundListener>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in &config.listeners {
        for address in &listener.bind {
            for (worker, bound) in per_worker.iter_mut().enumerate() {
                let socket = bind_reuseport(*address).with_context(|| {
                    format!(
                        "binding {:?} listener on {address} (worker {worker})",
                        listener.kind
                    )
                })?;
                bound.push(BoundListener {
                    service: service(listener.kind),
                    address: *address,
                    socket,
                });
            }
        }
    }

    let mut handles = Vec::new();
    for (worker, listeners) in per_worker.into_iter().enumerate() {
        let shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{worker}"))
            .spawn(move || run_worker(worker, listeners, shared))
            .context("starting a worker thread")?;
        handles.push(handle);
    }

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("control runtime")?;
    control.block_on(control_loop(shared.clone(), certificate, workers))?;
    // A ban added just before the stop may still be waiting for its write.
    shared.login_guard.flush(crate::login_guard::unix_now());
    // SIGTERM/SIGINT: every acknowledged message is already durable, so stopping is only a
    // matter of letting the shards finish what they have queued.
    store.shutdown();
    tracing::info!(event = "server.stopped");
    Ok(())
}

/// The DNS layer (DESIGN.md 3.5: hickory-resolver with DNSSEC validation behind a bounded
/// cache, on a thread of its own): the bridge mail-auth asks through, and the handle the
/// block lists ask through.
fn start_dns(config: &Config) -> Result<postern_dns::bridge::DnsThread> {
    let dns = config.dns.clone();
    let settings = postern_dns::ResolverSettings {
        nameservers: dns.nameserver_addrs(),
        timeout: dns.timeout(),
        attempts: usize_of(dns.attempts),
        validate: dns.dnssec_validation,
        trust_anchor: (!dns.trust_anchor.is_empty())
            .then(|| std::path::PathBuf::from(&dns.trust_anchor)),
    };
    postern_dns::bridge::spawn_thread(move || {
        match postern_dns::HickoryResolver::new(&settings) {
            Ok(resolver) => Ok(Arc::new(postern_dns::Cached::new(
                resolver,
                usize_of(dns.cache_entries),
                std::time::Duration::from_secs(dns.cache_max_ttl_secs),
            )) as Arc<dyn postern_dns::Resolver>),
            // A broken DNS layer must not keep the whole daemon down (found on the appliance:
            // an image without CA roots made hickory's TLS client fail, and posternd exited
            // and was restarted in a loop). Lookups fail as temporary errors instead.
            Err(e) => {
                tracing::error!(event = "dns.unavailable", error = %e,
                    "the DNS resolver could not be built; every lookup fails temporarily");
                Ok(Arc::new(postern_dns::Unavailable::new(e)) as Arc<dyn postern_dns::Resolver>)
            }
        }
    })
    .map_err(|e| anyhow::anyhow!("starting the DNS resolver: {e}"))
}

/// The sender-authentication verifier, asking through the DNS thread's bridge.
fn sender_auth_verifier(
    config: &Config,
    bridge: postern_dns::bridge::BridgeAddrs,
) -> postern_dns::auth::Verifier {
    let sa = &config.sender_auth;
    // mail-auth's client waits as long as the resolver behind the bridge may take.
    let timeout = config.dns.timeout() * (u32::try_from(config.dns.attempts).unwrap_or(5) + 2);
    postern_dns::auth::Verifier::new(
        bridge,
        timeout,
        &config.server.hostname,
        postern_dns::auth::LocalPolicy {
            enforce: sa.dmarc_enforce,
            exempt_domains: sa.dmarc_exempt_domains.clone(),
            exempt_networks: sa.exempt_networks(),
        },
    )
}

fn run_worker(worker: usize, listeners: Vec<BoundListener>, shared: Arc<Shared>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(event = "worker.start_failed", worker, %error);
            return;
        }
    };
    let shard = worker % shared.store.shard_count().max(1);
    runtime.block_on(async move {
        let mut accept_loops = Vec::new();
        for bound in listeners {
            let listener = match TcpListener::from_std(bound.socket) {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::error!(event = "worker.listener_failed", worker, address = %bound.address, %error);
                    continue;
                }
            };
            let shared = shared.clone();
            accept_loops.push(tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((tcp, peer)) => match bound.service {
                            Service::Smtp(kind) => {
                                tokio::spawn(crate::smtp::session::run(
                                    shared.clone(),
                                    shard,
                                    kind,
                                    tcp,
                                    peer,
                                ));
                            }
                            Service::Imap { implicit_tls } => {
                                tokio::spawn(crate::imap::run(
                                    shared.clone(),
                                    shard,
                                    implicit_tls,
                                    tcp,
                                    peer,
                                ));
                            }
                            Service::Pop3 { implicit_tls } => {
                                tokio::spawn(crate::pop3::run(
                                    shared.clone(),
                                    shard,
                                    implicit_tls,
                                    tcp,
                                    peer,
                                ));
                            }
                        },
                        Err(error) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(event = "server.accept_failed", service = ?bound.service, %error);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        for accept_loop in accept_loops {
            let _ = accept_loop.await;
        }
    });
}

async fn control_loop(
    shared: Arc<Shared>,
    certificate: Arc<ReloadingCertificate>,
    workers: usize,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    if let Some(bind) = shared.config.metrics.bind {
        let metrics = shared.metrics.clone();
        // Bind here so a bad address fails the start instead of a background task.
        let listener = std::net::TcpListener::bind(bind)
            .with_context(|| format!("binding the metrics endpoint on {bind}"))?;
        listener.set_nonblocking(true)?;
        let access = Arc::new(crate::admin_access::AdminAccess::new(
            shared.config.admin.networks(),
            metrics.admin_refused.clone(),
        ));
        tokio::spawn(async move {
            if let Err(error) = crate::metrics::serve(listener, metrics, access).await {
                tracing::error!(event = "metrics.failed", %error);
            }
        });
    }
    let admin_path: PathBuf = shared.config.admin_socket_path();
    let admin = crate::admin::bind(&admin_path)?;
    tokio::spawn(crate::admin::serve(admin, shared.clone()));

    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let reload_every = Duration::from_secs(shared.config.tls.reload_check_secs.max(1));
    let mut cert_poll = tokio::time::interval(reload_every);
    let mut accounts_poll = tokio::time::interval(Duration::from_secs(1));
    // The first summary one interval after the start (an interval's first tick is
    // immediate), so that each summary covers a whole interval.
    let mut peer_noise = tokio::time::interval_at(
        tokio::time::Instant::now() + crate::peer_noise::SUMMARY_INTERVAL,
        crate::peer_noise::SUMMARY_INTERVAL,
    );
    let addresses: Vec<String> = shared
        .config
        .listeners
        .iter()
        .flat_map(|l| l.bind.iter().map(move |a| format!("{:?}={a}", l.kind)))
        .collect();
    provision_mailboxes(&shared).await;
    tracing::info!(event = "server.ready", workers, listeners = %addresses.join(","));
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!(event = "server.sighup");
                certificate.reload(true);
                reload_accounts(&shared, true).await;
            }
            _ = cert_poll.tick() => certificate.reload(false),
            _ = accounts_poll.tick() => reload_accounts(&shared, false).await,
            _ = peer_noise.tick() => crate::peer_noise::report(),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!(event = "server.stopping");
    crate::peer_noise::report();
    let _ = std::fs::remove_file(&admin_path);
    Ok(())
}

/// Picks up a changed accounts file (always when `force`: SIGHUP, the admin socket) and
/// creates the INBOX of any user it adds.
pub async fn reload_accounts(shared: &Arc<Shared>, force: bool) {
    if shared.directory.reload(force) {
        provision_mailboxes(shared).await;
    }
}

/// Creates the INBOX of every known user that has none yet.
async fn provision_mailboxes(shared: &Arc<Shared>) {
    let users = shared.directory.snapshot().users();
    let shared = shared.clone();
    let _ = tokio::task::spawn_blocking(move || shared.inboxes.provision(&users)).await;
}
