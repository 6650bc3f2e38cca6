//! POP3 sessions (RFC 1939, RFC 2449) over the store.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::server::Shared;

/// Serves one POP3 connection until it ends.
pub async fn run(
    _shared: Arc<Shared>,
    _shard: usize,
    _implicit_tls: bool,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    // Placeholder until the POP3 session lands (issue 3): refuse politely.
    tracing::info!(event = "pop3.refused", %peer);
    let _ = tcp.try_write(b"-ERR POP3 is not available yet\r\n");
}
