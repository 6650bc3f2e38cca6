//! One SMTP client session: greeting, EHLO, optional STARTTLS, transactions, QUIT.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Longest reply line accepted; RFC 5321 4.5.3.1.5 sets 512 octets, servers exceed it a little.
const MAX_REPLY_LINE: usize = 64 * 1024;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A complete (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Every line, joined with " / ", including the codes.
    pub text: String,
    /// The text of each line after the code and separator (EHLO keywords).
    pub lines: Vec<String>,
}

impl Reply {
    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

#[derive(Debug)]
pub enum TxError {
    /// The server answered with a reply we did not want.
    Reply { stage: &'static str, text: String },
    /// The connection broke or timed out; the session is unusable.
    Io(anyhow::Error),
}

/// A buffered reader of replies over any stream.
struct Conn<S> {
    io: S,
    buf: Vec<u8>,
    timeout: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S, timeout: Duration) -> Self {
        Conn {
            io,
            buf: Vec::with_capacity(4096),
            timeout,
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<()> {
        let io = &mut self.io;
        tokio::time::timeout(self.timeout, async move {
            io.write_all(data).await?;
            // tokio-rustls only pushes records out on flush; a no-op for plain TCP.
            io.flush().await
        })
        .await
        .context("write timed out")?
        .context("write failed")
    }

    /// Reads one reply. RFC 5321 4.2.1: "ddd-text" continues, "ddd text" (or "ddd") ends.
    async fn reply(&mut self) -> Result<Reply> {
        let mut text = String::new();
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let line = String::from_utf8_lossy(&line).into_owned();
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                bail!("malformed reply line {line:?}");
            }
            let code: u16 = line[..3].parse().context("reply code")?;
            let last = bytes.get(3) != Some(&b'-');
            if !text.is_empty() {
                text.push_str(" / ");
            }
            text.push_str(&line);
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                return Ok(Reply { code, text, lines });
            }
        }
    }

    /// One line without its CRLF (a bare LF is tolerated).
    async fn line(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_REPLY_LINE {
                bail!("reply line longer than {MAX_REPLY_LINE} bytes");
            }
            let n = tokio::time::timeout(self.timeout, self.io.read_buf(&mut self.buf))
                .await
                .context("timed out waiting for a reply")?
                .context("read failed")?;
            if n == 0 {
                bail!("server closed the connection");
            }
        }
    }

    async fn command(&mut self, cmd: &str) -> Result<Reply> {
        self.send(cmd.as_bytes()).await?;
        self.reply().await
    }
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut Conn<S>, helo: &str) -> Result<Reply> {
    let r = conn.command(&format!("EHLO {helo}\r\n")).await?;
    if r.code != 250 {
        bail!("EHLO refused: {}", r.text);
    }
    Ok(r)
}

fn has_extension(ehlo: &Reply, name: &str) -> bool {
    // The first line is the greeting; keywords start each following line (RFC 5321 4.1.1.1).
    ehlo.lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case(name))
    })
}

pub struct Session {
    conn: Conn<Box<dyn Io>>,
    pipelining: bool,
}

impl Session {
    /// Reads the greeting, says EHLO, and with `tls` upgrades the connection and says EHLO again.
    pub async fn open(
        tcp: TcpStream,
        helo: &str,
        tls: Option<(&TlsConnector, ServerName<'static>)>,
        timeout: Duration,
    ) -> Result<Session> {
        let mut conn = Conn::new(tcp, timeout);
        let greeting = conn.reply().await.context("reading the greeting")?;
        if greeting.code != 220 {
            bail!("greeting refused: {}", greeting.text);
        }
        let first = ehlo(&mut conn, helo).await?;
        let (conn, ehlo_reply) = match tls {
            None => {
                let Conn { io, buf, timeout } = conn;
                let boxed: Box<dyn Io> = Box::new(io);
                (
                    Conn {
                        io: boxed,
                        buf,
                        timeout,
                    },
                    first,
                )
            }
            Some((connector, name)) => {
                if !has_extension(&first, "STARTTLS") {
                    bail!("server does not advertise STARTTLS");
                }
                let r = conn.command("STARTTLS\r\n").await?;
                if r.code != 220 {
                    bail!("STARTTLS refused: {}", r.text);
                }
                // RFC 3207 4: nothing may follow the 220 in plaintext; bytes already buffered
                // would be injected into the TLS session.
                if !conn.buf.is_empty() {
                    bail!("server sent data after its STARTTLS reply");
                }
                let tls = tokio::time::timeout(timeout, connector.connect(name, conn.io))
                    .await
                    .context("TLS handshake timed out")?
                    .context("TLS handshake failed")?;
                let boxed: Box<dyn Io> = Box::new(tls);
                let mut conn = Conn::new(boxed, timeout);
                // RFC 3207 4.2: the client must discard what it knew and EHLO again.
                let second = ehlo(&mut conn, helo).await?;
                (conn, second)
            }
        };
        Ok(Session {
            pipelining: has_extension(&ehlo_reply, "PIPELINING"),
            conn,
        })
    }

    /// One mail transaction. `message` is the content without the terminating dot line;
    /// it must not contain a line starting with '.', which message::build guarantees.
    pub async fn transaction(
        &mut self,
        from: &str,
        to: &str,
        message: &[u8],
    ) -> Result<(), TxError> {
        let mail = format!("MAIL FROM:<{from}>\r\n");
        let rcpt = format!("RCPT TO:<{to}>\r\n");
        let io = TxError::Io;
        let (mail_r, rcpt_r, data_r) = if self.pipelining {
            // RFC 2920 3.1: MAIL, RCPT and DATA may go in one group; DATA ends it.
            let group = format!("{mail}{rcpt}DATA\r\n");
            self.conn.send(group.as_bytes()).await.map_err(io)?;
            let m = self.conn.reply().await.map_err(io)?;
            let r = self.conn.reply().await.map_err(io)?;
            let d = self.conn.reply().await.map_err(io)?;
            (m, Some(r), Some(d))
        } else {
            let m = self.conn.command(&mail).await.map_err(io)?;
            if !m.is_positive() {
                (m, None, None)
            } else {
                let r = self.conn.command(&rcpt).await.map_err(io)?;
                if !r.is_positive() {
                    (m, Some(r), None)
                } else {
                    let d = self.conn.command("DATA\r\n").await.map_err(io)?;
                    (m, Some(r), Some(d))
                }
            }
        };
        let mut failure = None;
        if !mail_r.is_positive() {
            failure = Some(("MAIL", mail_r.text));
        } else if let Some(r) = rcpt_r.as_ref().filter(|r| !r.is_positive()) {
            failure = Some(("RCPT", r.text.clone()));
        }
        match data_r {
            Some(d) if d.code == 354 => {
                if let Some((stage, text)) = failure {
                    // RFC 2920 3.1: a server must reject DATA when no recipient was accepted.
                    // This one did not; the session is in an unknown state.
                    return Err(TxError::Io(anyhow::anyhow!(
                        "server accepted DATA after {stage} failed: {text}"
                    )));
                }
            }
            Some(d) => {
                let (stage, text) = failure.unwrap_or(("DATA", d.text));
                return Err(TxError::Reply { stage, text });
            }
            None => {
                let (stage, text) = failure.unwrap_or(("DATA", "no reply".to_string()));
                return Err(TxError::Reply { stage, text });
            }
        }
        // RFC 5321 4.1.1.4: the content ends with CRLF.CRLF. Content and terminator go in one
        // write so that a reply is never waited for on half a message.
        let mut buf = Vec::with_capacity(message.len() + 3);
        buf.extend_from_slice(message);
        buf.extend_from_slice(b".\r\n");
        self.conn.send(&buf).await.map_err(io)?;
        let end = self.conn.reply().await.map_err(io)?;
        if end.code != 250 {
            return Err(TxError::Reply {
                stage: "end of data",
                text: end.text,
            });
        }
        Ok(())
    }

    pub async fn rset(&mut self) -> Result<()> {
        let r = self.conn.command("RSET\r\n").await?;
        if r.code != 250 {
            bail!("RSET refused: {}", r.text);
        }
        Ok(())
    }

    /// RFC 5321 4.1.1.10: QUIT, then wait for the 221 so the server closes first.
    pub async fn quit(mut self) {
        if self.conn.send(b"QUIT\r\n").await.is_ok() {
            let _ = self.conn.reply().await;
        }
        let _ = self.conn.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_multiline_reply_and_extensions() {
        let (client, mut server) = tokio::io::duplex(1024);
        server
            .write_all(b"250-mx.test hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE 1000\r\n")
            .await
            .unwrap();
        let mut conn = Conn::new(client, Duration::from_secs(5));
        let r = conn.reply().await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 4);
        assert!(has_extension(&r, "pipelining"));
        assert!(has_extension(&r, "STARTTLS"));
        assert!(!has_extension(&r, "mx.test"));
        assert!(!has_extension(&r, "8BITMIME"));
    }

    #[tokio::test]
    async fn rejects_malformed_and_closed() {
        let (client, mut server) = tokio::io::duplex(1024);
        server.write_all(b"hello\r\n").await.unwrap();
        let mut conn = Conn::new(client, Duration::from_secs(5));
        assert!(conn.reply().await.is_err());

        let (client, server) = tokio::io::duplex(1024);
        drop(server);
        let mut conn = Conn::new(client, Duration::from_secs(5));
        let e = conn.reply().await.unwrap_err();
        assert!(format!("{e:#}").contains("closed"));
    }
}
