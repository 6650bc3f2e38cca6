//! DNS block lists in the daemon (`[dnsbl]`): the client lists are asked as soon as an MX
//! client connects (a task on the worker's runtime, so the answers arrive while the client
//! says EHLO and MAIL FROM, and an answer from the cache costs nothing), the URI lists at
//! the end of DATA. What they said is weighed by the spam filter's combiner
//! (`crate::filter`); the lists themselves are `postern_filter::dnsbl`.
//!
//! Fail open (RFC 5782 is advisory; a list that cannot answer must not stop mail): a
//! question that times out or fails counts as not listing, and logs the warning
//! `dnsbl.lookup_failed` naming the list's zone.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use postern_config::Config;
use postern_dns::Resolver;
use postern_filter::dnsbl::{self, DnsList, Listed};
use postern_filter::urls;
use postern_filter::DnsWeights;

use crate::filter::FilterMetrics;

pub struct DnsLists {
    resolver: Arc<dyn Resolver>,
    metrics: FilterMetrics,
    client: Arc<Vec<DnsList>>,
    uri: Vec<DnsList>,
    pub weights: DnsWeights,
    timeout: Duration,
    max_uri_domains: usize,
}

/// The client lists' answers for one connection: asked at connect, awaited (once) when
/// first needed.
#[derive(Default)]
pub struct ClientListed {
    pending: Option<tokio::task::JoinHandle<Listed>>,
    done: Listed,
}

impl ClientListed {
    /// What the client lists said (waits at most the lists' timeout for the answers).
    pub async fn get(&mut self, peer: SocketAddr, metrics: &FilterMetrics) -> &Listed {
        if let Some(handle) = self.pending.take() {
            self.done = handle.await.unwrap_or_else(|error| {
                // A task that panicked: nothing is known, the mail goes through.
                tracing::error!(event = "dnsbl.lookup_failed", %peer, list = "*", error = %error);
                Listed::default()
            });
            log(&self.done, peer, metrics);
        }
        &self.done
    }
}

impl DnsLists {
    /// None when no list is configured or the filter is off (nothing would weigh them).
    pub fn new(
        config: &Config,
        resolver: Arc<dyn Resolver>,
        metrics: FilterMetrics,
    ) -> anyhow::Result<Option<DnsLists>> {
        let d = &config.dnsbl;
        if !d.any() || !config.filter.enabled {
            return Ok(None);
        }
        let parse = |lists: &[postern_config::DnsListConfig], key: &str| {
            lists
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    DnsList::new(&l.zone, l.weight, &l.codes)
                        .map_err(|why| anyhow::anyhow!("[dnsbl] {key}[{i}]: {why}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        Ok(Some(DnsLists {
            resolver,
            metrics,
            client: Arc::new(parse(&d.client, "client")?),
            uri: parse(&d.uri, "uri")?,
            weights: DnsWeights {
                junk: d.junk_weight,
                reject: d.reject_weight,
            },
            timeout: d.timeout(),
            max_uri_domains: usize::try_from(d.max_uri_domains).unwrap_or(usize::MAX),
        }))
    }

    /// Starts the client lists' questions about `ip` on the current runtime.
    pub fn start_client(&self, ip: IpAddr) -> ClientListed {
        if self.client.is_empty() {
            return ClientListed::default();
        }
        let (resolver, lists, timeout) = (self.resolver.clone(), self.client.clone(), self.timeout);
        ClientListed {
            pending: Some(tokio::spawn(async move {
                dnsbl::check_client(&*resolver, &lists, ip, timeout).await
            })),
            done: Listed::default(),
        }
    }

    /// Asks the URI lists about the URL hosts of `message`.
    pub async fn check_uris(&self, message: &[u8], peer: SocketAddr) -> Listed {
        if self.uri.is_empty() {
            return Listed::default();
        }
        let hosts = urls::message_hosts(message, &urls::Limits::default());
        if hosts.hosts.is_empty() {
            return Listed::default();
        }
        let listed = dnsbl::check_uris(
            &*self.resolver,
            &self.uri,
            &hosts.hosts,
            self.max_uri_domains,
            self.timeout,
        )
        .await;
        log(&listed, peer, &self.metrics);
        listed
    }

    pub fn metrics(&self) -> &FilterMetrics {
        &self.metrics
    }
}

/// One line per list that listed (info) and per list that could not answer (warning: the
/// mail went through without its opinion).
fn log(listed: &Listed, peer: SocketAddr, metrics: &FilterMetrics) {
    let count = |kind: dnsbl::Kind, zone: &str, result: &str| {
        metrics
            .dnsbl_results
            .get_or_create(&vec![
                ("kind", kind.name().to_string()),
                ("list", zone.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    };
    for hit in &listed.hits {
        count(hit.kind, &hit.zone, "listed");
        tracing::info!(event = "dnsbl.listed", %peer, kind = hit.kind.name(), list = %hit.zone, listed = %hit.listed, code = %hit.code, weight = hit.weight);
    }
    for failure in &listed.failed {
        count(failure.kind, &failure.zone, "failed");
        tracing::warn!(event = "dnsbl.lookup_failed", %peer, kind = failure.kind.name(), list = %failure.zone, queried = %failure.queried, reason = %failure.reason);
    }
}
