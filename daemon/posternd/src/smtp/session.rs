//! Drives one SMTP connection: feeds the sans-IO `postern_smtp::Session` from the socket and
//! carries out what it asks for (TLS, password checks, relay decisions, durable delivery).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use postern_smtp::{
    events, Action, Answer, Envelope, ListenerKind, Reply, Session, SessionParams, Verdict,
};
use postern_store::AppendRequest;
use tokio::net::TcpStream;

use super::connection::Connection;
use crate::connection_limits::{RateKey, RateVerdict};
use crate::login::{self, Attempt, Service};
use crate::server::Shared;
use crate::trace_headers::{received, return_path, TraceInfo};

/// Bytes read from the socket per call; the session buffers what it needs.
const READ_CHUNK: usize = 64 * 1024;
pub fn listener_label(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Mx => "mx",
        ListenerKind::Submission => "submission",
        ListenerKind::Submissions => "submissions",
    }
}

pub async fn run(
    shared: Arc<Shared>,
    shard: usize,
    kind: ListenerKind,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    let label = listener_label(kind);
    shared
        .metrics
        .connections
        .get_or_create(&vec![("listener", label.to_string())])
        .inc();
    let class = if kind.is_submission() {
        crate::server::SMTP_SUBMISSION
    } else {
        crate::server::SMTP_MX
    };
    let slot = match shared.connection_limits.acquire_in(class, peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            let reason = match refusal {
                crate::connection_limits::Refusal::TooManyTotal => "too_many_connections",
                crate::connection_limits::Refusal::TooManyFromAddress => {
                    "too_many_connections_from_ip"
                }
            };
            tracing::warn!(event = "smtp.connection.refused", %peer, listener = label, reason);
            shared
                .metrics
                .connections_refused
                .get_or_create(&vec![("reason", reason.to_string())])
                .inc();
            let mut conn = Connection::Plain(tcp);
            if kind != ListenerKind::Submissions {
                // RFC 5321 3.1: a server may refuse service with 421 instead of a greeting.
                let _ = conn
                    .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
                    .await;
            }
            conn.shutdown().await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    // The client lists are asked now, so that their answers arrive while the client waits
    // for the greeting and says EHLO and MAIL FROM (an answer from the cache is there at
    // once); they are awaited at the first RCPT.
    let client_listed = match (&shared.dnsbl, kind) {
        (Some(lists), ListenerKind::Mx) => lists.start_client(peer.ip()),
        _ => crate::dnsbl::ClientListed::default(),
    };
    let delay = shared.config.smtp.greeting_delay();
    let tcp = if kind == ListenerKind::Mx && !delay.is_zero() {
        match greeting_awaited(&shared, tcp, peer, delay).await {
            Some(tcp) => tcp,
            None => return,
        }
    } else {
        tcp
    };
    shared.metrics.connections_active.inc();
    tracing::debug!(event = "smtp.connection.opened", %peer, listener = label);
    let mut conn = Connection::Plain(tcp);
    if kind == ListenerKind::Submissions {
        // RFC 8314 3.3: implicit TLS from the first byte.
        if let Err(error) = conn.start_tls(shared.tls.clone()).await {
            tracing::debug!(event = "smtp.tls.handshake_failed", %peer, %error);
            crate::peer_noise::handshake_failed(&error);
            shared.metrics.connections_active.dec();
            return;
        }
    }
    let limits = if kind.is_submission() {
        shared.submission_limits.clone()
    } else {
        shared.smtp_limits.clone()
    };
    let mut session = Session::new(SessionParams {
        hostname: shared.config.server.hostname.clone(),
        kind,
        limits,
        tls_active: kind == ListenerKind::Submissions,
        tls_available: true,
        peer,
    });
    let mut driver = Driver {
        shared: &shared,
        shard,
        label,
        peer,
        conn,
        out: session.greeting(),
        client_listed,
        mail_from: String::new(),
        envelope_auth: None,
    };
    driver.drive(&mut session).await;
    driver.conn.close_gracefully().await;
    shared.metrics.connections_active.dec();
    drop(slot);
    tracing::debug!(event = "smtp.connection.closed", %peer);
}

/// Waits `delay` before the MX greeting. A client that talks meanwhile is an early talker
/// (Postfix's postscreen "pregreet" test): RFC 5321 3.1 and 4.3.2 let a server answer 554
/// instead of the 220 greeting. The stream back when the greeting may be sent; None when the
/// client left or was refused here.
async fn greeting_awaited(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    delay: std::time::Duration,
) -> Option<TcpStream> {
    let mut probe = [0u8; 1];
    match tokio::time::timeout(delay, tcp.peek(&mut probe)).await {
        Err(_) => return Some(tcp),
        Ok(Ok(0)) | Ok(Err(_)) => return None,
        Ok(Ok(_)) => {}
    }
    tracing::info!(event = "smtp.reject.early_talker", %peer);
    shared.metrics.reject("early_talker");
    let mut conn = Connection::Plain(tcp);
    let reply = Reply::esc(554, 5, 5, 1, "Protocol error: talked before the greeting");
    let _ =
        tokio::time::timeout(super::connection::LINGER, conn.write_all(&reply.to_bytes())).await;
    conn.close_gracefully().await;
    None
}

struct Driver<'a> {
    shared: &'a Shared,
    shard: usize,
    label: &'static str,
    peer: SocketAddr,
    conn: Connection,
    /// Replies not yet written: flushed before every read so pipelined replies go out in one
    /// write (RFC 2920 3.1).
    out: Vec<u8>,
    /// What the DNS block lists say about the client (`[dnsbl] client`), asked at connect.
    client_listed: crate::dnsbl::ClientListed,
    /// The accepted MAIL FROM of the transaction.
    mail_from: String,
    /// SPF of HELO and MAIL FROM and iprev, started when MAIL FROM was accepted.
    envelope_auth: Option<tokio::task::JoinHandle<postern_dns::auth::Envelope>>,
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        // The client left: its sender checks are of no more use.
        if let Some(handle) = self.envelope_auth.take() {
            handle.abort();
        }
    }
}

impl Driver<'_> {
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let ok = self.conn.write_all(&self.out).await.is_ok();
        self.out.clear();
        ok
    }

    async fn drive(&mut self, session: &mut Session) {
        let mut buf = Vec::with_capacity(READ_CHUNK);
        // DESIGN.md 6: each timeout is a deadline for the whole command line or data block
        // (RFC 5321 4.5.3.2), set when the server starts waiting for it; bytes that arrive
        // do not extend it.
        let mut deadline = tokio::time::Instant::now();
        let mut unit = None;
        loop {
            match session.next_action() {
                Action::Send(bytes) => self.out.extend_from_slice(&bytes),
                Action::NeedInput => {
                    if !self.flush().await {
                        return;
                    }
                    if unit != Some(session.progress()) {
                        unit = Some(session.progress());
                        deadline = tokio::time::Instant::now() + session.current_timeout();
                    }
                    buf.clear();
                    match tokio::time::timeout_at(deadline, self.conn.read_buf(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(_)) => session.receive(&buf),
                        Err(_) => {
                            // RFC 5321 4.5.3.2: the server may close after its timeout, with 421.
                            tracing::info!(event = "smtp.timeout", peer = %self.peer);
                            self.shared.metrics.reject("timeout");
                            self.out.extend_from_slice(&session.on_timeout());
                            self.flush().await;
                            return;
                        }
                    }
                }
                Action::StartTls => {
                    if !self.flush().await {
                        return;
                    }
                    match self.conn.start_tls(self.shared.tls.clone()).await {
                        Ok(()) => session.tls_started(),
                        Err(error) => {
                            tracing::debug!(event = "smtp.tls.handshake_failed", peer = %self.peer, %error);
                            crate::peer_noise::handshake_failed(&error);
                            return;
                        }
                    }
                }
                Action::Authenticate {
                    mechanism,
                    username,
                    password,
                } => {
                    let attempt = Attempt {
                        service: Service::Smtp,
                        peer: self.peer,
                        mechanism,
                        username: &username,
                    };
                    let answer = match login::verify(self.shared, attempt, password).await {
                        login::Verdict::Accepted => Answer::Auth(true),
                        login::Verdict::Refused => Answer::Auth(false),
                        login::Verdict::Blocked => Answer::AuthBlocked,
                    };
                    session.resolve(answer);
                }
                Action::CheckSender {
                    address,
                    authenticated_as,
                } => {
                    let verdict = self.check_sender(&address, authenticated_as.as_deref());
                    if matches!(verdict, Verdict::Accept) {
                        self.mail_from = address.clone();
                        if authenticated_as.is_none() && self.label == "mx" {
                            self.start_envelope_auth(session.helo().unwrap_or(""), &address);
                        }
                    }
                    session.resolve(Answer::Verdict(verdict));
                }
                Action::CheckRecipient {
                    address,
                    authenticated_as,
                } => {
                    let verdict = self
                        .check_recipient(&address, authenticated_as.as_deref())
                        .await;
                    session.resolve(Answer::Verdict(verdict));
                }
                Action::Deliver(envelope) => {
                    let result = self.deliver(envelope).await;
                    session.resolve(Answer::Delivered(result));
                }
                Action::Log(event) => {
                    // The driver logs these itself, with the fields only it knows (message
                    // id, user, mailboxes): one line per thing that happened.
                    let logged_by_driver = [
                        events::AUTH_SUCCEEDED,
                        events::AUTH_FAILED,
                        events::TIMEOUT,
                        events::DELIVERED,
                    ]
                    .contains(&event.name);
                    if !logged_by_driver {
                        tracing::info!(event = event.name, peer = %self.peer, detail = %event.detail);
                    }
                    // Sender and recipient refusals are counted where they are decided, with
                    // a finer reason (relay, unknown_user, sender_not_owned).
                    let decided_here = [events::SENDER, events::RECIPIENT].contains(&event.name);
                    if let Some(reason) = event.name.strip_prefix("smtp.reject.") {
                        if !decided_here {
                            self.shared.metrics.reject(reason);
                        }
                    }
                }
                Action::Close => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    fn check_sender(&self, address: &str, authenticated_as: Option<&str>) -> Verdict {
        // The storage gate first: while hwmond reports storage unsafe, no new transaction
        // starts (RFC 5321 4.2.2: 451/452 at MAIL FROM; the sender retries later).
        if let Some(reply) = self.shared.health_gate.check() {
            tracing::warn!(event = "smtp.reject.storage_unsafe", peer = %self.peer, code = reply.code, detail = %reply.text);
            self.shared.metrics.reject("storage_unsafe");
            return Verdict::Reject(reply);
        }
        let smtp = &self.shared.config.smtp;
        let Some(user) = authenticated_as else {
            // MX: any sender (sender authentication arrives with SPF/DMARC), within the
            // message rate of its client address.
            let client = crate::login_guard::client_network(self.peer.ip());
            let shown = if client.prefix_len() == client.max_prefix_len() {
                client.addr().to_string()
            } else {
                client.to_string()
            };
            return match self.rate_limit(
                RateKey::MxMessages(client),
                "mx_messages_per_ip_per_hour",
                smtp.mx_messages_per_ip_per_hour,
                &shown,
            ) {
                Some(reply) => Verdict::Reject(reply),
                None => Verdict::Accept,
            };
        };
        if self.shared.directory.snapshot().owns_address(user, address) {
            // Counted once the sender is known to be the user's: a refused MAIL FROM sends
            // nothing.
            match self.rate_limit(
                RateKey::SubmittedMessages(user.to_ascii_lowercase()),
                "submission_messages_per_hour",
                smtp.submission_messages_per_hour,
                user,
            ) {
                Some(reply) => Verdict::Reject(reply),
                None => Verdict::Accept,
            }
        } else {
            tracing::warn!(event = "smtp.reject.sender_not_owned", peer = %self.peer, user, sender = address);
            self.shared.metrics.reject("sender_not_owned");
            Verdict::Reject(Reply::new(
                553,
                Some((5, 7, 1)),
                format!("Sender address <{address}> is not owned by user {user}"),
            ))
        }
    }

    /// The From and Sender fields (RFC 5322 3.6.2) of a message an authenticated user
    /// submits must name only addresses the user owns, as its MAIL FROM must
    /// ([`Self::check_sender`]): the account address and its aliases. Readers show From, not
    /// the envelope, so a forged From is the spoof that matters (DESIGN.md 2; RFC 6409 8
    /// lets an MSA enforce its site's policy on the content). Refused with 550 5.7.1
    /// (RFC 3463 X.7.1: delivery not authorized) at the end of DATA or the last BDAT chunk.
    fn check_authors(&self, user: &str, body: &[u8]) -> Result<(), Reply> {
        let refuse = |claimed: &str, why: String| {
            tracing::warn!(event = "smtp.reject.from_not_owned", peer = %self.peer, user, claimed, reason = ?why);
            self.shared.metrics.reject("from_not_owned");
            Reply::new(550, Some((5, 7, 1)), why)
        };
        let authors = match postern_smtp::authors(body) {
            Ok(authors) => authors,
            Err(error) => {
                return Err(refuse(
                    "",
                    format!("Message refused: {error}; the author of a submitted message must be an address of user {user}"),
                ))
            }
        };
        let accounts = self.shared.directory.snapshot();
        // The address goes back in the reply: control characters (a line break would start
        // another reply line, RFC 5321 4.2.1) and excess length are dropped.
        let shown =
            |a: &str| -> String { a.chars().filter(|c| !c.is_control()).take(256).collect() };
        for author in &authors {
            let field = author.field.name();
            if !accounts.owns_address(user, &author.address) {
                return Err(refuse(
                    &author.address,
                    format!(
                        "{field}: header address <{}> is not owned by user {user} (submission policy: the {field}: field must name the user's own addresses, RFC 5322 3.6.2)",
                        shown(&author.address)
                    ),
                ));
            }
            if let Some(named) = author
                .named
                .iter()
                .find(|a| !accounts.owns_address(user, a))
            {
                return Err(refuse(
                    named,
                    format!(
                        "{field}: header display name shows <{}>, which is not owned by user {user} (submission policy, RFC 5322 3.6.2)",
                        shown(named)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The address a recipient is looked up as: "<Postmaster>" without a domain (RFC 5321
    /// 4.1.1.3) is postmaster@ the server's own local domain.
    fn lookup_address(&self, accounts: &postern_accounts::Accounts, address: &str) -> String {
        if address.eq_ignore_ascii_case(postern_accounts::POSTMASTER) {
            if let Some(domain) = accounts.default_domain(&self.shared.config.server.hostname) {
                return format!("{}@{domain}", postern_accounts::POSTMASTER);
            }
        }
        address.to_string()
    }

    /// RFC 7208 2.4: SPF is evaluated when MAIL FROM arrives. The checks of the envelope
    /// (SPF of HELO and MAIL FROM, iprev) start now on the worker's runtime and run while
    /// the client sends RCPT and DATA; the end of DATA takes their result for DMARC.
    fn start_envelope_auth(&mut self, helo: &str, mail_from: &str) {
        if let Some(previous) = self.envelope_auth.take() {
            previous.abort();
        }
        let Some(verifier) = self.shared.sender_auth.clone() else {
            return;
        };
        let (ip, helo, mail_from) = (self.peer.ip(), helo.to_string(), mail_from.to_string());
        self.envelope_auth = Some(tokio::spawn(async move {
            verifier.check_envelope(ip, &helo, &mail_from).await
        }));
    }

    /// The DNS block lists at RCPT (Postfix's reject_rbl_client, postscreen's
    /// dnsbl_threshold): when the client lists' weights reach `[dnsbl] reject_weight` and
    /// the combiner refuses the message for every user behind the recipient (an allow
    /// list may say otherwise), 554 5.7.1 naming the lists (RFC 5321 4.2.3: 554 transaction
    /// failed, as Postfix answers reject_rbl_client; RFC 3463 X.7.1: delivery not
    /// authorized). Lower weights are weighed at the end of DATA with the rest.
    async fn dnsbl_at_rcpt(&mut self, users: &[String]) -> Option<Reply> {
        let shared = self.shared;
        let lists = shared.dnsbl.as_deref()?;
        let listed = self.client_listed.get(self.peer, lists.metrics()).await;
        if listed.hits.is_empty()
            || lists.weights.decide(listed) != postern_filter::Decision::Reject
        {
            return None;
        }
        let refused = users.iter().all(|user| {
            shared
                .filter
                .rcpt_verdict(user, &self.mail_from, listed, lists.weights)
                .is_ok_and(|v| v.decision == postern_filter::Decision::Reject)
        });
        if !refused {
            return None;
        }
        let why = crate::filter::listed_by(listed);
        tracing::info!(event = "smtp.reject.dnsbl", peer = %self.peer, weight = listed.weight(), lists = %why);
        shared.metrics.reject("dnsbl");
        Some(Reply::new(
            554,
            Some((5, 7, 1)),
            format!("Service unavailable; {why}"),
        ))
    }

    async fn check_recipient(&mut self, address: &str, authenticated_as: Option<&str>) -> Verdict {
        let accounts = self.shared.directory.snapshot();
        let lookup = self.lookup_address(&accounts, address);
        let address = lookup.as_str();
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if !accounts.is_local_domain(domain) {
            // Never an open relay. Authenticated users may relay once the outbound queue
            // exists; until then remote recipients are refused for everyone.
            let reason = if authenticated_as.is_some() {
                "Relaying to remote domains is not enabled on this server"
            } else {
                "Relay access denied"
            };
            tracing::info!(event = "smtp.reject.relay", peer = %self.peer, recipient = address);
            self.shared.metrics.reject("relay");
            return Verdict::Reject(Reply::new(550, Some((5, 7, 1)), reason.to_string()));
        }
        let Some(users) = accounts.resolve_recipient(address) else {
            tracing::info!(event = "smtp.reject.unknown_user", peer = %self.peer, recipient = address);
            self.shared.metrics.reject("unknown_user");
            return Verdict::Reject(Reply::new(
                550,
                Some((5, 1, 1)),
                format!("<{address}>: no such user here"),
            ));
        };
        if authenticated_as.is_none() {
            if let Some(reply) = self.dnsbl_at_rcpt(&users).await {
                return Verdict::Reject(reply);
            }
        }
        if let Some(user) = authenticated_as {
            // Only recipients that would be accepted count against the hourly allowance.
            if let Some(reply) = self.rate_limit(
                RateKey::SubmittedRecipients(user.to_ascii_lowercase()),
                "submission_recipients_per_hour",
                self.shared.config.smtp.submission_recipients_per_hour,
                user,
            ) {
                return Verdict::Reject(reply);
            }
        }
        Verdict::Accept
    }

    /// Takes one unit of an hourly allowance (`[smtp] <limit>`, 0 = none). Over it: the
    /// 450 4.7.1 to answer (RFC 5321 4.2.1: a transient negative reply, the client retries
    /// later; RFC 3463 X.7.1: not authorized now, as Postfix answers its rate limits). The
    /// first refusal of an episode logs the error-level `smtp.rate_limit.exceeded`, the
    /// alert; every refusal counts in `postern_smtp_rate_limited_total{limit}`.
    fn rate_limit(
        &self,
        key: RateKey,
        limit: &'static str,
        per_hour: u64,
        who: &str,
    ) -> Option<Reply> {
        let verdict = self
            .shared
            .rate_limits
            .take(key, per_hour, 1, std::time::Instant::now());
        let RateVerdict::Refused { first } = verdict else {
            return None;
        };
        if first {
            tracing::error!(event = "smtp.rate_limit.exceeded", peer = %self.peer, limit, per_hour, who);
        }
        self.shared
            .metrics
            .smtp_rate_limited
            .get_or_create(&vec![("limit", limit.to_string())])
            .inc();
        self.shared.metrics.reject("rate_limit");
        let what = match limit {
            "mx_messages_per_ip_per_hour" => format!("Too many messages from {who}"),
            "submission_messages_per_hour" => format!("Too many messages sent by {who}"),
            _ => format!("Too many recipients for messages sent by {who}"),
        };
        Some(Reply::new(
            450,
            Some((4, 7, 1)),
            format!("{what}: the limit is {per_hour} an hour, try again later"),
        ))
    }

    /// Sender authentication of an MX message (`[sender_auth]`). Ok(None) when it is off;
    /// Err with the reply when the DMARC policy refuses the message (550 5.7.1, RFC 7489
    /// 10.3 / RFC 3463 X.7.1) or a DNS failure left the verdict open (451 4.4.3, RFC 3463
    /// X.4.3: the client retries; never a silent pass).
    async fn verify_sender(
        &self,
        envelope: &Envelope,
        early: Option<tokio::task::JoinHandle<postern_dns::auth::Envelope>>,
    ) -> Result<Option<Verified>, Reply> {
        let Some(verifier) = self.shared.sender_auth.as_deref() else {
            return Ok(None);
        };
        // The SPF and iprev checks started at MAIL FROM (made again if they were for
        // another HELO or MAIL FROM, or did not finish).
        let early = match early {
            Some(handle) => handle.await.ok(),
            None => None,
        };
        let outcome = verifier
            .verify_with(
                &postern_dns::auth::Request {
                    ip: self.peer.ip(),
                    helo: &envelope.helo,
                    mail_from: &envelope.mail_from,
                    message: &envelope.body,
                },
                early,
            )
            .await;
        tracing::info!(
            event = "smtp.sender_auth.verified",
            peer = %self.peer,
            spf_helo = %outcome.spf_helo,
            spf_mail_from = %outcome.spf_mail_from,
            dkim = ?outcome.dkim,
            arc = outcome.arc,
            iprev = outcome.iprev,
            dmarc = outcome.dmarc,
            dmarc_domain = %outcome.dmarc_domain,
            disposition = ?outcome.disposition,
        );
        use postern_dns::auth::Disposition;
        let quarantine = match outcome.disposition {
            Disposition::Deliver => false,
            Disposition::Quarantine => true,
            Disposition::Reject { domain } => {
                self.shared.metrics.reject("dmarc_reject");
                return Err(Reply::new(
                    550,
                    Some((5, 7, 1)),
                    format!(
                        "Message rejected: it fails DMARC and {} publishes p=reject (RFC 7489)",
                        shown_domain(&domain)
                    ),
                ));
            }
            Disposition::TempFail { reason } => {
                tracing::warn!(event = "smtp.sender_auth.temporary_failure", peer = %self.peer, reason = %reason);
                self.shared.metrics.reject("sender_auth_dns");
                return Err(Reply::new(
                    451,
                    Some((4, 4, 3)),
                    "Sender authentication could not complete (DNS failure), try again later"
                        .to_string(),
                ));
            }
        };
        let (message, removed) =
            postern_dns::authres::strip_own_results(&envelope.body, verifier.authserv_id());
        if removed > 0 {
            tracing::info!(event = "smtp.sender_auth.forged_results_removed", peer = %self.peer, removed);
        }
        Ok(Some(Verified {
            header: outcome.header,
            message,
            quarantine,
        }))
    }

    /// Writes the message to every local recipient's INBOX in one durable commit. The 250 is
    /// sent by the session only after this returns Ok (DESIGN.md 3.3).
    async fn deliver(&mut self, envelope: Envelope) -> Result<(), Reply> {
        if let Some(user) = envelope.authenticated_as.as_deref() {
            // Only submission authenticates (MX never offers AUTH), so this is the
            // submission policy: refused before the storage gate, as no retry can pass it.
            self.check_authors(user, &envelope.body)?;
        }
        // Storage turned unsafe during the transaction: refuse rather than accept what the
        // store may lose (DESIGN.md 3.3); the client retries the whole message.
        if let Some(reply) = self.shared.health_gate.check() {
            tracing::warn!(event = "smtp.reject.storage_unsafe", peer = %self.peer, code = reply.code, detail = %reply.text);
            self.shared.metrics.reject("storage_unsafe");
            return Err(reply);
        }
        // MX mail is verified before anything is stored: SPF, DKIM, ARC, iprev, DMARC
        // (DESIGN.md 2), while the URI lists are asked about its URLs. Submission mail was
        // authenticated instead and is not.
        let verify = envelope.authenticated_as.is_none() && self.label == "mx";
        let mut dns = postern_filter::dnsbl::Listed::default();
        let verified = if verify {
            dns = self
                .client_listed
                .get(self.peer, &self.shared.metrics.filter)
                .await
                .clone();
            let early = self.envelope_auth.take();
            let uris = async {
                match self.shared.dnsbl.as_deref() {
                    Some(lists) => lists.check_uris(&envelope.body, self.peer).await,
                    None => postern_filter::dnsbl::Listed::default(),
                }
            };
            let (verified, uri_listed) = tokio::join!(self.verify_sender(&envelope, early), uris);
            dns.extend(uri_listed);
            verified?
        } else {
            None
        };
        let accounts = self.shared.directory.snapshot();
        let users: BTreeSet<String> = envelope
            .rcpt_to
            .iter()
            .filter_map(|rcpt| accounts.resolve_recipient(&self.lookup_address(&accounts, rcpt)))
            .flatten()
            .collect();
        if users.is_empty() {
            // Every recipient vanished between RCPT and the end of data (account deleted).
            return Err(Reply::new(
                550,
                Some((5, 1, 1)),
                "No valid recipients".to_string(),
            ));
        }
        let temporary_failure = || {
            Reply::new(
                451,
                Some((4, 3, 0)),
                "Local storage error, try again later".to_string(),
            )
        };
        // The message as verified: without Authentication-Results fields that claimed our
        // authserv-id (RFC 8601 5).
        let message: &[u8] = match &verified {
            Some(v) => &v.message,
            None => &envelope.body,
        };
        // The spam filter and sender lists (crate::filter): INBOX or Junk per user, each
        // copy with its X-Postern-Spam header, or 550 5.7.1. MX mail only. A DMARC
        // quarantine verdict sends the message to Junk through the same combiner.
        let mx = envelope.authenticated_as.is_none();
        let auth = verified
            .as_ref()
            .map(|v| postern_filter::verdict::SenderAuth {
                disposition: if v.quarantine {
                    postern_filter::verdict::AuthDisposition::Quarantine
                } else {
                    postern_filter::verdict::AuthDisposition::None
                },
                summary: if v.quarantine {
                    "dmarc=fail (p=quarantine)".to_string()
                } else {
                    String::new()
                },
            });
        let routed = crate::filter::route(
            self.shared,
            message,
            &envelope.mail_from,
            &users,
            mx,
            auth,
            dns,
        )
        .await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = format!("{:016x}", rand::random::<u64>());
        let tls = self.conn.tls_description();
        let trace = TraceInfo {
            hostname: &self.shared.config.server.hostname,
            helo: &envelope.helo,
            peer: self.peer,
            protocol: envelope.protocol,
            tls: tls.as_deref(),
            id: &id,
            single_recipient: match envelope.rcpt_to.as_slice() {
                [only] => Some(only.as_str()),
                _ => None,
            },
            unix_time: now,
        };
        let (return_path, received) = (return_path(&envelope.mail_from), received(&trace));
        // RFC 8601 5: our Authentication-Results goes on top (under Return-Path, RFC 5321
        // 4.4), then our Received, then the filter's header, then the message.
        let results = verified.as_ref().map_or("", |v| v.header.as_str());
        let requests = routed
            .into_iter()
            .map(|crate::filter::Routed { header, targets }| {
                let mut body = Vec::with_capacity(
                    return_path.len()
                        + results.len()
                        + received.len()
                        + header.len()
                        + message.len(),
                );
                body.extend_from_slice(return_path.as_bytes());
                body.extend_from_slice(results.as_bytes());
                body.extend_from_slice(received.as_bytes());
                body.extend_from_slice(header.as_bytes());
                body.extend_from_slice(message);
                AppendRequest {
                    body,
                    internal_date: now,
                    targets,
                }
            })
            .collect();
        let size = envelope.body.len();
        // One request per distinct filter header, queued into one group commit.
        let results = self.shared.store.append_all(self.shard, requests).await;
        match results
            .into_iter()
            .find(Result::is_err)
            .unwrap_or(Ok(Vec::new()))
        {
            Ok(_) => {
                self.shared
                    .metrics
                    .messages_accepted
                    .get_or_create(&vec![("listener", self.label.to_string())])
                    .inc();
                self.shared.metrics.bytes_received.inc_by(size as u64);
                tracing::info!(
                    event = "smtp.message.accepted",
                    id = %id,
                    peer = %self.peer,
                    size,
                    recipients = envelope.rcpt_to.len(),
                    mailboxes = users.len(),
                    dmarc_quarantine = verified.as_ref().is_some_and(|v| v.quarantine),
                );
                Ok(())
            }
            Err(error) => {
                tracing::error!(event = "store.append_failed", id = %id, error = %error);
                self.shared.metrics.reject("storage_error");
                Err(temporary_failure())
            }
        }
    }
}

/// A verified MX message: our Authentication-Results field, the message without fields
/// that claimed our authserv-id, and whether DMARC quarantines it.
struct Verified {
    header: String,
    message: Vec<u8>,
    quarantine: bool,
}

/// A domain as it may appear in a reply line: printable ASCII only (RFC 5321 4.2.1).
fn shown_domain(domain: &str) -> String {
    domain
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect()
}
