//! A client connection that starts in plaintext or TLS and can be upgraded by STARTTLS.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a TLS handshake may take, for every service.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest [`Connection::close_gracefully`] waits for the client to take its last reply.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// Most input [`Connection::close_gracefully`] reads and drops.
pub const LINGER_BYTES: usize = 1 << 20;

pub enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only seen while a handshake is in progress or after it failed.
    Closed,
}

impl Connection {
    /// Reads into the spare capacity of `out` (appending; at most what is spare), without
    /// zero-filling it first: a 64 KiB read buffer per connection would otherwise be
    /// cleared on every connection and every read.
    pub async fn read_buf(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.read_buf(out).await,
            Connection::Tls(stream) => stream.read_buf(out).await,
            Connection::Closed => Ok(0),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Connection::Plain(stream) => stream.write_all(bytes).await,
            Connection::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Connection::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = match self {
            Connection::Plain(stream) => stream.shutdown().await,
            Connection::Tls(stream) => stream.shutdown().await,
            Connection::Closed => Ok(()),
        };
    }

    /// Ends the connection after a last reply: shuts down the sending side, then reads and
    /// drops what the client still sends, for at most [`LINGER`] and [`LINGER_BYTES`].
    /// Closing a socket with unread input resets the connection, and the reset can destroy
    /// the last reply before the client reads it (a client refused while it still sends:
    /// an oversized message, an early talker).
    pub async fn close_gracefully(&mut self) {
        self.shutdown().await;
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut sink = Vec::with_capacity(16 * 1024);
        let mut drained = 0usize;
        while drained < LINGER_BYTES {
            sink.clear();
            match tokio::time::timeout_at(deadline, self.read_buf(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }

    /// Runs the TLS handshake over the plaintext stream (STARTTLS, STLS, or implicit TLS),
    /// bounded by [`HANDSHAKE_TIMEOUT`] so a silent client cannot hold the connection.
    pub async fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        let Connection::Plain(stream) = std::mem::replace(self, Connection::Closed) else {
            return Err(io::Error::other("TLS already active"));
        };
        let handshake = TlsAcceptor::from(config).accept(stream);
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        *self = Connection::Tls(Box::new(tls));
        Ok(())
    }

    /// "version=TLSv1.3 cipher=TLS13_AES_256_GCM_SHA384" for the Received field, when TLS
    /// is active.
    pub fn tls_description(&self) -> Option<String> {
        let Connection::Tls(stream) = self else {
            return None;
        };
        let (_, state) = stream.get_ref();
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let suite = state
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        Some(format!("version={version} cipher={suite}"))
    }
}
