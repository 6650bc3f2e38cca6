//! The IMAP byte stream: a plain or TLS connection (STARTTLS upgrade shared with SMTP), with
//! optional DEFLATE compression on top (COMPRESS, RFC 4978).

use std::io;
use std::sync::Arc;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::smtp::connection::Connection;

/// Raw DEFLATE (RFC 1951, no zlib header) in both directions (RFC 4978 3).
struct Deflate {
    compress: Compress,
    decompress: Decompress,
    /// Compressed bytes read from the socket and not yet inflated.
    pending: Vec<u8>,
}

pub struct ImapStream {
    pub conn: Connection,
    deflate: Option<Box<Deflate>>,
}

const CHUNK: usize = 64 * 1024;

/// The least room a read offers: one read of an idle session's short command fits.
pub const READ_MIN: usize = 4096;

/// Reads from `conn` into the spare capacity of `out` (at least [`READ_MIN`] bytes of
/// room): no buffer of the stream's own sits allocated through a long IDLE.
async fn read_into(conn: &mut Connection, out: &mut Vec<u8>) -> io::Result<usize> {
    out.reserve(READ_MIN);
    conn.read_buf(out).await
}

impl ImapStream {
    pub fn new(conn: Connection) -> ImapStream {
        ImapStream {
            conn,
            deflate: None,
        }
    }

    /// Starts compressing: everything after the tagged OK to COMPRESS (RFC 4978 3).
    pub fn start_deflate(&mut self) {
        self.deflate = Some(Box::new(Deflate {
            compress: Compress::new(Compression::default(), false),
            decompress: Decompress::new(false),
            pending: Vec::new(),
        }));
    }

    /// Compressed bytes that arrived with the COMPRESS command (RFC 4978 3).
    pub fn push_compressed(&mut self, bytes: &[u8]) {
        if let Some(d) = self.deflate.as_mut() {
            d.pending.extend_from_slice(bytes);
        }
    }

    pub async fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> io::Result<()> {
        self.conn.start_tls(config).await
    }

    /// Reads some bytes (decompressed when COMPRESS is active); 0 means end of stream.
    pub async fn read(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        loop {
            let Some(d) = self.deflate.as_mut() else {
                return read_into(&mut self.conn, out).await;
            };
            if !d.pending.is_empty() {
                let before_out = d.decompress.total_out();
                let before_in = d.decompress.total_in();
                let start = out.len();
                out.reserve(CHUNK);
                let status = d
                    .decompress
                    .decompress_vec(&d.pending, out, FlushDecompress::Sync)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let consumed = (d.decompress.total_in() - before_in) as usize;
                d.pending.drain(..consumed);
                let produced = (d.decompress.total_out() - before_out) as usize;
                debug_assert_eq!(out.len() - start, produced);
                if status == Status::StreamEnd {
                    return Ok(0);
                }
                if produced > 0 {
                    return Ok(produced);
                }
                if consumed > 0 && !d.pending.is_empty() {
                    continue;
                }
            }
            if read_into(&mut self.conn, &mut d.pending).await? == 0 {
                return Ok(0);
            }
        }
    }

    /// Writes and flushes (a DEFLATE sync flush, so the client can decode every response
    /// as soon as it arrives).
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(d) = self.deflate.as_mut() else {
            return self.conn.write_all(bytes).await;
        };
        let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
        let mut input = bytes;
        loop {
            let before_in = d.compress.total_in();
            out.reserve(CHUNK);
            d.compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let consumed = (d.compress.total_in() - before_in) as usize;
            input = &input[consumed..];
            // Done when all input is consumed and the flush left spare output room.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        self.conn.write_all(&out).await
    }

    pub async fn shutdown(&mut self) {
        self.conn.shutdown().await;
    }
}
