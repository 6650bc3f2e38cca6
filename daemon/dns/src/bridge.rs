//! A DNS server on loopback that answers from a [`Resolver`]: the way mail-auth's own
//! hickory client is made to ask every question through Postern's DNS interface (its cache
//! hooks cannot ask asynchronously), so that SPF, DKIM, DMARC, ARC and iprev see the same
//! answers, timeouts, cache and DNSSEC validation as the rest of the daemon, and unit tests
//! run them against an in-memory zone without a network.
//!
//! RFC 1035 4.2.1 (UDP) and 4.2.2 (TCP, two-byte length prefix). Answers carry AD (RFC 4035
//! 3.2.3) when the resolver validated them; a temporary failure is SERVFAIL (RFC 1035
//! 4.1.1), which mail-auth turns into temperror.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{tlsa, A, AAAA, MX, PTR, TLSA, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType as HType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use crate::{DnsError, Dnssec, Rdata, RecordType, Resolver};

/// Where the bridge listens: a UDP and a TCP port on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct BridgeAddrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

/// Binds the bridge and spawns its tasks on the current tokio runtime.
pub async fn spawn(resolver: Arc<dyn Resolver>) -> std::io::Result<BridgeAddrs> {
    let udp = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addrs = BridgeAddrs {
        udp: udp.local_addr()?,
        tcp: tcp.local_addr()?,
    };
    let udp_resolver = resolver.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((len, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            // Only this host's processes (mail-auth's client) are answered.
            if !from.ip().is_loopback() {
                continue;
            }
            let query = buf[..len].to_vec();
            let (udp, resolver) = (udp.clone(), udp_resolver.clone());
            tokio::spawn(async move {
                if let Some(reply) = answer(&*resolver, &query, true).await {
                    let _ = udp.send_to(&reply, from).await;
                }
            });
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, from)) = tcp.accept().await else {
                continue;
            };
            if !from.ip().is_loopback() {
                continue;
            }
            let resolver = resolver.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 2];
                    if stream.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = answer(&*resolver, &query, false).await else {
                        return;
                    };
                    let Ok(len) = u16::try_from(reply.len()) else {
                        return;
                    };
                    if stream.write_all(&len.to_be_bytes()).await.is_err()
                        || stream.write_all(&reply).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(addrs)
}

/// Questions waiting for the DNS thread; more fail at once as temporary errors.
const REMOTE_QUEUE: usize = 4096;

/// The DNS thread's resolver as seen from other threads (each posternd worker runs its own
/// current-thread runtime, and hickory's connections belong to the runtime that made them):
/// every question is handed to the DNS thread over a channel and answered there, through
/// the same cache and timeouts as the bridge's. Used directly by code that asks its own
/// questions (DNS block lists), without the loopback round trip mail-auth needs.
#[derive(Clone)]
pub struct RemoteResolver {
    tx: tokio::sync::mpsc::Sender<RemoteQuestion>,
}

type RemoteQuestion = (
    String,
    RecordType,
    tokio::sync::oneshot::Sender<Result<crate::Answer, DnsError>>,
);

impl Resolver for RemoteResolver {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: RecordType,
    ) -> crate::BoxFuture<'a, Result<crate::Answer, DnsError>> {
        Box::pin(async move {
            let unavailable = |reason: &str| DnsError::Temporary {
                name: crate::normalize(name),
                reason: reason.to_string(),
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            // A full queue is a DNS failure now, not a wait: callers bound their waits.
            if self.tx.try_send((name.to_string(), rtype, tx)).is_err() {
                return Err(unavailable("DNS thread busy or stopped"));
            }
            rx.await
                .unwrap_or_else(|_| Err(unavailable("DNS thread stopped")))
        })
    }
}

/// What [`spawn_thread`] starts: the bridge for mail-auth and the handle for everyone else.
pub struct DnsThread {
    pub bridge: BridgeAddrs,
    pub resolver: RemoteResolver,
}

/// Runs the bridge on a thread of its own (with its own runtime), for a daemon whose
/// workers each run a current-thread runtime.
pub fn spawn_thread(
    make: impl FnOnce() -> Result<Arc<dyn Resolver>, String> + Send + 'static,
) -> Result<DnsThread, String> {
    let (question_tx, mut questions) = tokio::sync::mpsc::channel::<RemoteQuestion>(REMOTE_QUEUE);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(format!("DNS runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let started = match make() {
                    Ok(resolver) => spawn(resolver.clone())
                        .await
                        .map(|addrs| (addrs, resolver))
                        .map_err(|e| format!("DNS bridge: {e}")),
                    Err(e) => Err(e),
                };
                let resolver = match started {
                    Ok((addrs, resolver)) => {
                        let _ = tx.send(Ok(addrs));
                        resolver
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // Each question on a task of its own: a slow one never holds up the others.
                while let Some((name, rtype, reply)) = questions.recv().await {
                    let resolver = resolver.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(resolver.lookup(&name, rtype).await);
                    });
                }
                std::future::pending::<()>().await;
            });
        })
        .map_err(|e| format!("DNS thread: {e}"))?;
    let bridge = rx.recv().map_err(|e| format!("DNS thread: {e}"))??;
    Ok(DnsThread {
        bridge,
        resolver: RemoteResolver { tx: question_tx },
    })
}

fn rtype_of(t: HType) -> Option<RecordType> {
    Some(match t {
        HType::A => RecordType::A,
        HType::AAAA => RecordType::Aaaa,
        HType::MX => RecordType::Mx,
        HType::TXT => RecordType::Txt,
        HType::PTR => RecordType::Ptr,
        HType::TLSA => RecordType::Tlsa,
        _ => return None,
    })
}

fn rdata_of(data: &Rdata) -> Option<RData> {
    Some(match data {
        Rdata::A(a) => RData::A(A(*a)),
        Rdata::Aaaa(a) => RData::AAAA(AAAA(*a)),
        Rdata::Mx {
            preference,
            exchange,
        } => RData::MX(MX::new(*preference, fqdn(exchange)?)),
        Rdata::Txt(parts) => RData::TXT(TXT::from_bytes(parts.iter().map(Vec::as_slice).collect())),
        Rdata::Ptr(name) => RData::PTR(PTR(fqdn(name)?)),
        Rdata::Tlsa {
            usage,
            selector,
            matching,
            data,
        } => RData::TLSA(TLSA::new(
            tlsa::CertUsage::from(*usage),
            tlsa::Selector::from(*selector),
            tlsa::Matching::from(*matching),
            data.clone(),
        )),
    })
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// The reply to one query (a DNS message, RFC 1035 4.1); None when it is not worth answering
/// (not a query).
pub async fn answer(resolver: &dyn Resolver, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let [question] = request.queries.as_slice() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    reply.add_query(question.clone());
    if request.metadata.op_code != OpCode::Query {
        reply.metadata.response_code = ResponseCode::NotImp;
        return reply.to_vec().ok();
    }
    let owner = question.name().clone();
    let name = owner.to_ascii();
    let Some(rtype) = rtype_of(question.query_type()) else {
        // Types Postern never asks about: NODATA.
        return reply.to_vec().ok();
    };
    match resolver.lookup(&name, rtype).await {
        Ok(found) => {
            reply.metadata.authentic_data = found.dnssec == Dnssec::Secure;
            for data in &found.records {
                if let Some(rdata) = rdata_of(data) {
                    reply.add_answer(Record::from_rdata(owner.clone(), found.ttl, rdata));
                }
            }
        }
        Err(DnsError::NxDomain { dnssec, .. }) => {
            reply.metadata.authentic_data = dnssec == Dnssec::Secure;
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        Err(DnsError::Invalid { .. }) => reply.metadata.response_code = ResponseCode::FormErr,
        Err(DnsError::Temporary { .. }) => reply.metadata.response_code = ResponseCode::ServFail,
    }
    let bytes = reply.to_vec().ok()?;
    if udp && bytes.len() > usize::from(request.max_payload().max(512)) {
        // RFC 1035 4.2.1 / RFC 6891 7: too large for the datagram; the client retries over TCP.
        let mut truncated = reply.truncate();
        truncated.metadata.truncation = true;
        return truncated.to_vec().ok();
    }
    Some(bytes)
}
