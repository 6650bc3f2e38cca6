//! One SMTP client session: greeting, EHLO, optional STARTTLS, transactions, QUIT.

use std::os::fd::{AsRawFd, RawFd};
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
    /// The socket, to re-arm TCP_QUICKACK before each read; None in unit tests.
    quickack_fd: Option<RawFd>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(io: S, timeout: Duration) -> Self {
        Conn {
            io,
            buf: Vec::with_capacity(4096),
            timeout,
            quickack_fd: None,
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
            if let Some(fd) = self.quickack_fd {
                quickack(fd);
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

/// Asks the kernel to ACK received data at once instead of delaying the ACK (up to 40 ms).
/// Linux clears the flag again by itself, so it is re-armed before every read. Without it a
/// server that leaves Nagle on (Postfix) can hold its EHLO reply after the TLS session ticket
/// until our delayed ACK arrives: 40 ms per STARTTLS connection that no real peer pays.
fn quickack(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: fd is a live socket owned by this session; the option value is a valid c_int.
    // A failure only loses the optimisation, so the result is ignored.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
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
        quick_ack: bool,
    ) -> Result<Session> {
        let fd = tcp.as_raw_fd();
        let quickack_fd = quick_ack.then_some(fd);
        let mut conn = Conn::new(tcp, timeout);
        conn.quickack_fd = quickack_fd;
        let greeting = conn.reply().await.context("reading the greeting")?;
        if greeting.code != 220 {
            bail!("greeting refused: {}", greeting.text);
        }
        let first = ehlo(&mut conn, helo).await?;
        let (conn, ehlo_reply) = match tls {
            None => {
                let Conn {
                    io,
                    buf,
                    timeout,
                    quickack_fd,
                } = conn;
                let boxed: Box<dyn Io> = Box::new(io);
                (
                    Conn {
                        io: boxed,
                        buf,
                        timeout,
                        quickack_fd,
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
                conn.quickack_fd = quickack_fd;
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

    /// A scripted server: PIPELINING, rejects recipient "bad@x.test", stores message sizes.
    async fn fake_server(listener: tokio::net::TcpListener) -> Vec<usize> {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
        let mut sizes = Vec::new();
        let mut rcpt_ok = false;
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap() == 0 {
                return sizes;
            }
            let cmd = line.trim_end().to_ascii_uppercase();
            let reply: &[u8] = if cmd.starts_with("EHLO") {
                b"250-fake\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
            } else if cmd.starts_with("MAIL") {
                rcpt_ok = false;
                b"250 ok\r\n"
            } else if cmd.starts_with("RCPT") && cmd.contains("BAD@") {
                b"550 5.1.1 no such user\r\n"
            } else if cmd.starts_with("RCPT") {
                rcpt_ok = true;
                b"250 ok\r\n"
            } else if cmd == "DATA" && !rcpt_ok {
                b"554 5.5.1 no valid recipients\r\n"
            } else if cmd == "DATA" {
                w.write_all(b"354 go\r\n").await.unwrap();
                let mut n = 0;
                loop {
                    line.clear();
                    r.read_line(&mut line).await.unwrap();
                    if line == ".\r\n" {
                        break;
                    }
                    n += line.len();
                }
                sizes.push(n);
                b"250 queued\r\n"
            } else if cmd == "RSET" {
                b"250 reset\r\n"
            } else if cmd == "QUIT" {
                w.write_all(b"221 bye\r\n").await.unwrap();
                return sizes;
            } else {
                b"500 what\r\n"
            };
            w.write_all(reply).await.unwrap();
        }
    }

    #[tokio::test]
    async fn pipelined_transactions_and_rejections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(fake_server(listener));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = Session::open(tcp, "c.test", None, Duration::from_secs(5), true)
            .await
            .unwrap();
        assert!(s.pipelining);
        let (msg, _) = crate::message::build(5000, "a@x.test", "r@x.test").unwrap();
        s.transaction("a@x.test", "r@x.test", &msg).await.unwrap();
        match s.transaction("a@x.test", "bad@x.test", &msg).await {
            Err(TxError::Reply { stage, text }) => {
                assert_eq!(stage, "RCPT");
                assert!(text.starts_with("550 5.1.1"), "{text}");
            }
            other => panic!("expected a RCPT rejection, got {other:?}"),
        }
        s.rset().await.unwrap();
        s.transaction("a@x.test", "r@x.test", &msg).await.unwrap();
        s.quit().await;
        assert_eq!(server.await.unwrap(), vec![5000, 5000]);
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
