//! Inbound sender authentication with mail-auth: SPF (RFC 7208) for HELO and MAIL FROM, DKIM
//! (RFC 6376, RSA and Ed25519 per RFC 8463), ARC (RFC 8617), iprev (RFC 8601 3), DMARC (RFC
//! 7489, with mail-auth's tree walk) with alignment; the Authentication-Results field (RFC
//! 8601) and the DMARC disposition the SMTP session applies.
//!
//! mail-auth asks its questions through [`crate::bridge`], so every answer comes from
//! Postern's [`Resolver`] (cache, timeouts, DNSSEC validation, or an in-memory zone in tests).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, IprevOutput, IprevResult,
    MessageAuthenticator, Parameters, SpfOutput, SpfResult,
};

use crate::bridge::BridgeAddrs;

/// Where DMARC failures are not enforced (RFC 7489 6.7 lets a receiver apply local policy,
/// e.g. for known forwarders and mailing lists); the result is still recorded.
#[derive(Debug, Clone, Default)]
pub struct LocalPolicy {
    /// Apply p=reject and p=quarantine at all (false: record only).
    pub enforce: bool,
    /// RFC5322.From domains (and their subdomains) whose failures are not enforced.
    pub exempt_domains: Vec<String>,
    /// Client networks whose failures are not enforced.
    pub exempt_networks: Vec<ipnet::IpNet>,
}

impl LocalPolicy {
    fn exempt(&self, from_domain: &str, ip: IpAddr) -> bool {
        let from_domain = crate::normalize(from_domain);
        self.exempt_networks.iter().any(|n| n.contains(&ip))
            || self.exempt_domains.iter().any(|d| {
                let d = crate::normalize(d);
                from_domain == d
                    || from_domain
                        .strip_suffix(&d)
                        .is_some_and(|rest| rest.ends_with('.'))
            })
    }
}

/// One received transaction to verify.
pub struct Request<'a> {
    pub ip: IpAddr,
    /// The EHLO/HELO argument.
    pub helo: &'a str,
    /// The MAIL FROM address ("" for the null reverse-path).
    pub mail_from: &'a str,
    /// The message as received (header and body, CRLF lines).
    pub message: &'a [u8],
}

/// What the session does with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Deliver,
    /// DMARC p=quarantine failed: deliver to the recipient's Junk mailbox.
    Quarantine,
    /// DMARC p=reject failed: `550 5.7.1` at the end of DATA (RFC 7489 10.3).
    Reject {
        domain: String,
    },
    /// A DNS failure left the verdict open: `451 4.4.3` (RFC 3463 X.4.3: directory server
    /// failure), the client retries.
    TempFail {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// The complete `Authentication-Results:` field, folded, ending in CRLF.
    pub header: String,
    pub spf_helo: SpfResult,
    pub spf_mail_from: SpfResult,
    /// One entry per DKIM-Signature: "pass", "fail", "neutral", "permerror", "temperror".
    pub dkim: Vec<&'static str>,
    /// "pass", "fail", "temperror", "permerror" or "none".
    pub dmarc: &'static str,
    pub dmarc_policy: Policy,
    pub dmarc_domain: String,
    pub arc: &'static str,
    pub iprev: &'static str,
    pub disposition: Disposition,
}

/// The envelope checks of one transaction ([`Verifier::check_envelope`]).
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The client, HELO and MAIL FROM they were made for.
    key: (IpAddr, String, String),
    /// Err: the verifier could not start (its reason).
    checked: Result<EnvelopeResults, String>,
}

#[derive(Debug, Clone)]
struct EnvelopeResults {
    spf_helo: SpfOutput,
    spf_mail_from: SpfOutput,
    iprev: IprevOutput,
}

impl Envelope {
    /// The SPF result of the MAIL FROM identity; temperror when the checks could not run.
    pub fn spf_mail_from(&self) -> SpfResult {
        self.checked
            .as_ref()
            .map_or(SpfResult::TempError, |r| r.spf_mail_from.result())
    }
}

pub struct Verifier {
    bridge: BridgeAddrs,
    timeout: Duration,
    authserv_id: String,
    policy: LocalPolicy,
}

fn dkim_name(result: &DkimResult) -> &'static str {
    match result {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn dmarc_name(result: &DmarcResult) -> &'static str {
    match result {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

fn iprev_name(result: &IprevResult) -> &'static str {
    match result {
        IprevResult::Pass => "pass",
        IprevResult::Fail(_) => "fail",
        IprevResult::TempError(_) => "temperror",
        IprevResult::PermError(_) => "permerror",
        IprevResult::None => "none",
    }
}

impl Verifier {
    /// `authserv_id` is the server's host name (RFC 8601 2.5). `timeout` bounds each question mail-auth asks the bridge (the resolver behind it has
    /// its own deadline).
    pub fn new(
        bridge: BridgeAddrs,
        timeout: Duration,
        authserv_id: &str,
        policy: LocalPolicy,
    ) -> Verifier {
        Verifier {
            bridge,
            timeout,
            authserv_id: authserv_id.to_string(),
            policy,
        }
    }

    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    /// mail-auth's client for the calling thread: hickory's connection tasks live on the
    /// runtime that first uses a client, and each posternd worker runs its own
    /// current-thread runtime, so each worker thread gets its own.
    fn authenticator(&self) -> Result<Arc<MessageAuthenticator>, String> {
        thread_local! {
            static CLIENTS: RefCell<HashMap<u16, Arc<MessageAuthenticator>>> =
                RefCell::new(HashMap::new());
        }
        let port = self.bridge.udp.port();
        if let Some(client) = CLIENTS.with(|c| c.borrow().get(&port).cloned()) {
            return Ok(client);
        }
        let mut udp = ConnectionConfig::udp();
        udp.port = port;
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = self.bridge.tcp.port();
        let server = NameServerConfig::new(self.bridge.udp.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
        let mut options = ResolverOpts::default();
        options.timeout = self.timeout;
        options.attempts = 1;
        // The bridge's resolver validates and keeps the daemon's bounded cache; this client
        // keeps a small one of its own (answers for their TTL, which the bridge's cache has
        // already capped) so that a busy worker does not cross the loopback for every
        // question of every message.
        options.cache_size = 1024;
        options.validate = false;
        options.edns0 = true;
        options.use_hosts_file = ResolveHosts::Never;
        let client =
            Arc::new(MessageAuthenticator::new(config, options).map_err(|e| e.to_string())?);
        CLIENTS.with(|c| c.borrow_mut().insert(port, client.clone()));
        Ok(client)
    }

    /// The SPF result of the MAIL FROM identity alone (RFC 7208 2.4; `mail_from` "" checks
    /// postmaster@`helo`), as the RFC 7208 test suite asks it.
    pub async fn spf(&self, ip: IpAddr, helo: &str, mail_from: &str) -> SpfResult {
        match self.authenticator() {
            Ok(authenticator) => authenticator
                .verify_spf(Parameters::new(SpfParameters::verify_mail_from(
                    ip,
                    helo,
                    &self.authserv_id,
                    mail_from,
                )))
                .await
                .result(),
            Err(_) => SpfResult::TempError,
        }
    }

    /// The checks of the envelope alone: SPF of the HELO and MAIL FROM identities (RFC 7208
    /// 2.3, 2.4) and iprev (RFC 8601 3). RFC 7208 2.4 has SPF evaluated when MAIL FROM
    /// arrives: the SMTP session starts this then, so that it runs while RCPT and DATA are
    /// still being received, and [`Verifier::verify_with`] uses it at the end of DATA.
    pub async fn check_envelope(&self, ip: IpAddr, helo: &str, mail_from: &str) -> Envelope {
        let authenticator = match self.authenticator() {
            Ok(a) => a,
            Err(reason) => {
                return Envelope {
                    key: (ip, helo.to_string(), mail_from.to_string()),
                    checked: Err(reason),
                }
            }
        };
        let host = self.authserv_id.as_str();
        // RFC 7208 2.3: the HELO identity is checked on its own; a HELO that is an address
        // literal has no SPF record (mail-auth answers none).
        let spf_helo = authenticator
            .verify_spf(Parameters::new(SpfParameters::verify_ehlo(ip, helo, host)))
            .await;
        // RFC 7208 2.4: a null reverse-path is checked as postmaster@<HELO domain>.
        let spf_mail_from = authenticator
            .verify_spf(Parameters::new(SpfParameters::verify_mail_from(
                ip, helo, host, mail_from,
            )))
            .await;
        let iprev = authenticator.verify_iprev(Parameters::new(ip)).await;
        Envelope {
            key: (ip, helo.to_string(), mail_from.to_string()),
            checked: Ok(EnvelopeResults {
                spf_helo,
                spf_mail_from,
                iprev,
            }),
        }
    }

    pub async fn verify(&self, request: &Request<'_>) -> Outcome {
        self.verify_with(request, None).await
    }

    /// [`Verifier::verify`] with the envelope checks done earlier ([`Verifier::check_envelope`]);
    /// they are used only when they were made for this request's client, HELO and MAIL FROM,
    /// and made again otherwise.
    pub async fn verify_with(&self, request: &Request<'_>, envelope: Option<Envelope>) -> Outcome {
        let ip = request.ip;
        let helo = request.helo;
        let envelope = match envelope {
            Some(e) if e.key.0 == ip && e.key.1 == helo && e.key.2 == request.mail_from => e,
            _ => self.check_envelope(ip, helo, request.mail_from).await,
        };
        let EnvelopeResults {
            spf_helo,
            spf_mail_from,
            iprev,
        } = match envelope.checked {
            Ok(results) => results,
            Err(reason) => return self.unavailable(reason),
        };
        let authenticator = match self.authenticator() {
            Ok(a) => a,
            Err(reason) => return self.unavailable(reason),
        };
        let host = self.authserv_id.as_str();
        let mail_from_domain = request
            .mail_from
            .rsplit_once('@')
            .map_or(helo, |(_, d)| d)
            .to_string();

        let mut results = AuthenticationResults::new(host);
        let parsed = AuthenticatedMessage::parse(request.message);
        let (dkim, dmarc_result, dmarc_policy, dmarc_domain, arc) = match &parsed {
            Some(message) => {
                let dkim = authenticator.verify_dkim(Parameters::new(message)).await;
                let arc = authenticator.verify_arc(Parameters::new(message)).await;
                let dmarc = authenticator
                    .verify_dmarc(Parameters::new(DmarcParameters {
                        message,
                        dkim_output: &dkim,
                        dkim2_output: None,
                        rfc5321_mail_from_domain: &mail_from_domain,
                        spf_output: &spf_mail_from,
                    }))
                    .await;
                results = results
                    .with_dkim_results(&dkim, message.from())
                    .with_spf_ehlo_result(&spf_helo, ip, helo)
                    .with_spf_mailfrom_result(&spf_mail_from, ip, request.mail_from, helo)
                    .with_arc_result(&arc, ip)
                    .with_dmarc_result(&dmarc)
                    .with_iprev_result(&iprev, ip);
                (
                    dkim.iter().map(|d| dkim_name(d.result())).collect(),
                    dmarc.result(),
                    dmarc.policy(),
                    dmarc.domain().to_string(),
                    dkim_name(arc.result()),
                )
            }
            None => {
                // Not a parsable message (no header section): nothing to sign or align.
                results = results
                    .with_spf_ehlo_result(&spf_helo, ip, helo)
                    .with_spf_mailfrom_result(&spf_mail_from, ip, request.mail_from, helo)
                    .with_iprev_result(&iprev, ip);
                (
                    Vec::new(),
                    DmarcResult::None,
                    Policy::None,
                    String::new(),
                    "none",
                )
            }
        };
        let disposition = self.disposition(
            &dmarc_result,
            dmarc_policy,
            &dmarc_domain,
            ip,
            spf_mail_from.result(),
            &dkim,
        );
        Outcome {
            header: results.to_header(),
            spf_helo: spf_helo.result(),
            spf_mail_from: spf_mail_from.result(),
            dkim,
            dmarc: dmarc_name(&dmarc_result),
            dmarc_policy,
            dmarc_domain,
            arc,
            iprev: iprev_name(iprev.result()),
            disposition,
        }
    }

    fn disposition(
        &self,
        dmarc: &DmarcResult,
        policy: Policy,
        domain: &str,
        ip: IpAddr,
        spf: SpfResult,
        dkim: &[&'static str],
    ) -> Disposition {
        match dmarc {
            DmarcResult::Pass => Disposition::Deliver,
            // RFC 7489 6.6.3 / RFC 9989: a temporary DNS error decides nothing; the message
            // is deferred rather than passed unverified.
            DmarcResult::TempError(e) => Disposition::TempFail {
                reason: format!("DMARC: {e}"),
            },
            DmarcResult::Fail(_) => {
                if !self.policy.enforce || self.policy.exempt(domain, ip) {
                    return Disposition::Deliver;
                }
                match policy {
                    Policy::Reject => Disposition::Reject {
                        domain: domain.to_string(),
                    },
                    Policy::Quarantine => Disposition::Quarantine,
                    Policy::None | Policy::Unspecified => Disposition::Deliver,
                }
            }
            DmarcResult::PermError(_) | DmarcResult::None => {
                // No DMARC verdict: a temporary failure of SPF or DKIM is not a pass either.
                if spf == SpfResult::TempError || dkim.contains(&"temperror") {
                    Disposition::TempFail {
                        reason: "SPF or DKIM: temporary DNS failure".into(),
                    }
                } else {
                    Disposition::Deliver
                }
            }
        }
    }

    fn unavailable(&self, reason: String) -> Outcome {
        Outcome {
            header: format!(
                "Authentication-Results: {}; none (verifier unavailable)\r\n",
                self.authserv_id
            ),
            spf_helo: SpfResult::TempError,
            spf_mail_from: SpfResult::TempError,
            dkim: Vec::new(),
            dmarc: "temperror",
            dmarc_policy: Policy::None,
            dmarc_domain: String::new(),
            arc: "none",
            iprev: "temperror",
            disposition: Disposition::TempFail { reason },
        }
    }
}

pub use crate::authres::strip_own_results;

#[cfg(test)]
mod tests;
