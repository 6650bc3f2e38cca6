//! IMAP4rev2 / IMAP4rev1 sessions (RFC 9051, RFC 3501) over the store.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::server::Shared;

/// Serves one IMAP connection until it ends.
pub async fn run(
    _shared: Arc<Shared>,
    _shard: usize,
    _implicit_tls: bool,
    tcp: TcpStream,
    peer: SocketAddr,
) {
    // Placeholder until the IMAP session lands (issue 3): refuse politely.
    tracing::info!(event = "imap.refused", %peer);
    let _ = tcp.try_write(b"* BYE IMAP is not available yet\r\n");
}
