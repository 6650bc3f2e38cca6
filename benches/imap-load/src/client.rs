//! A minimal IMAP4 client for load generation: tagged commands, untagged responses with
//! literals read whole (RFC 9051 4.3), APPEND with LITERAL+ (RFC 7888) or a synchronising
//! literal, pipelining of commands whose order the server keeps (RFC 9051 5.5), IDLE (RFC 2177).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Read buffer of a client connection (idle connections use a smaller one).
pub const DEFAULT_BUFFER: usize = 64 * 1024;

/// Largest literal accepted from a server (a bug guard, far above any test message).
const MAX_LITERAL: usize = 256 << 20;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone)]
pub enum Security {
    Plain,
    /// TLS from the first byte (imaps, RFC 8314 3.2).
    Implicit(TlsConnector),
    /// STARTTLS after the greeting (RFC 9051 6.2.1).
    StartTls(TlsConnector),
}

#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub security: Security,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// The tagged completion and the untagged responses before it.
pub struct Response {
    pub status: Status,
    /// The tagged line after the status word, without CRLF.
    pub text: String,
    /// Untagged responses, literals inline, back to back.
    pub data: Vec<u8>,
    /// Start and end of each untagged response in `data`.
    pub items: Vec<(usize, usize)>,
}

impl Response {
    pub fn untagged(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(|&(s, e)| &self.data[s..e])
    }

    /// Untagged FETCH responses ("* n FETCH (...)").
    pub fn fetch_count(&self) -> usize {
        self.untagged()
            .filter(|r| {
                let Some(rest) = r.strip_prefix(b"* ") else {
                    return false;
                };
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                digits > 0 && rest[digits..].starts_with(b" FETCH ")
            })
            .count()
    }

    /// Numbers of "* SEARCH n n n" (RFC 9051 7.3.5 / RFC 3501 7.2.5).
    pub fn search_hits(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for r in self.untagged() {
            if let Some(rest) = r.strip_prefix(b"* SEARCH") {
                out.extend(
                    rest.split(|b| b.is_ascii_whitespace())
                        .filter_map(|w| std::str::from_utf8(w).ok()?.parse::<u32>().ok()),
                );
            }
        }
        out
    }

    /// "* n EXISTS".
    pub fn exists(&self) -> Option<u32> {
        self.untagged().find_map(|r| {
            let s = std::str::from_utf8(r).ok()?;
            let n = s.strip_prefix("* ")?.trim_end().strip_suffix(" EXISTS")?;
            n.parse().ok()
        })
    }

    /// Total size of the response (untagged data and the tagged line).
    pub fn len(&self) -> usize {
        self.data.len() + self.text.len()
    }

    pub fn ok(self, what: &str) -> Result<Response> {
        if self.status == Status::Ok {
            Ok(self)
        } else {
            bail!("{what}: {:?} {}", self.status, self.text)
        }
    }
}

pub struct Client {
    io: BufReader<Box<dyn Io>>,
    next_tag: u64,
    timeout: Duration,
    /// Capabilities, upper case.
    pub caps: Vec<String>,
}

/// Outcome of reading one response item.
enum Item {
    Untagged,
    Continuation,
    Tagged {
        tag: String,
        status: Status,
        text: String,
    },
}

impl Client {
    /// Connects, reads the greeting, does STARTTLS when asked, and reads CAPABILITY.
    pub async fn connect(ep: &Endpoint, source: Option<IpAddr>, buffer: usize) -> Result<Client> {
        let t = ep.timeout;
        tokio::time::timeout(t, Self::connect_inner(ep, source, buffer))
            .await
            .map_err(|_| anyhow!("connect and greeting timed out after {t:?}"))?
    }

    async fn connect_inner(ep: &Endpoint, source: Option<IpAddr>, buffer: usize) -> Result<Client> {
        let socket = if ep.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .context("creating a socket")?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding to {ip}"))?;
        }
        let tcp: TcpStream = socket
            .connect(ep.addr)
            .await
            .with_context(|| format!("connecting to {}", ep.addr))?;
        tcp.set_nodelay(true).context("TCP_NODELAY")?;
        let io: Box<dyn Io> = match &ep.security {
            Security::Plain => Box::new(tcp),
            Security::Implicit(c) => Box::new(
                c.connect(ep.server_name.clone(), tcp)
                    .await
                    .context("TLS handshake")?,
            ),
            Security::StartTls(c) => {
                let mut plain = Client::new(Box::new(tcp), ep.timeout, buffer);
                plain.greeting().await?;
                plain.command("STARTTLS").await?.ok("STARTTLS")?;
                if !plain.io.buffer().is_empty() {
                    bail!("server sent data after STARTTLS OK (RFC 9051 6.2.1 forbids it)");
                }
                // The TcpStream is behind a trait object; rebuild from the raw parts.
                let inner = plain.io.into_inner();
                let tls = c
                    .connect(ep.server_name.clone(), inner)
                    .await
                    .context("TLS handshake after STARTTLS")?;
                let mut c = Client::new(Box::new(tls), ep.timeout, buffer);
                c.next_tag = plain.next_tag;
                c.refresh_caps().await?;
                return Ok(c);
            }
        };
        let mut c = Client::new(io, ep.timeout, buffer);
        c.greeting().await?;
        c.refresh_caps().await?;
        Ok(c)
    }

    fn new(io: Box<dyn Io>, timeout: Duration, buffer: usize) -> Client {
        Client {
            io: BufReader::with_capacity(buffer, io),
            next_tag: 1,
            timeout,
            caps: Vec::new(),
        }
    }

    async fn greeting(&mut self) -> Result<()> {
        let mut buf = Vec::new();
        let item = self.read_item(&mut buf).await?;
        // RFC 9051 7.1.1 / 7.1.4 / 7.1.5: OK, PREAUTH or BYE.
        if !matches!(item, Item::Untagged)
            || !(buf.starts_with(b"* OK") || buf.starts_with(b"* PREAUTH"))
        {
            bail!(
                "unexpected greeting: {}",
                String::from_utf8_lossy(&buf).trim_end()
            );
        }
        Ok(())
    }

    pub async fn refresh_caps(&mut self) -> Result<()> {
        let r = self.command("CAPABILITY").await?.ok("CAPABILITY")?;
        self.caps = r
            .untagged()
            .filter_map(|l| l.strip_prefix(b"* CAPABILITY "))
            .flat_map(|l| {
                String::from_utf8_lossy(l)
                    .split_whitespace()
                    .map(|w| w.to_ascii_uppercase())
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(())
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .await?
            .ok("LOGIN")?;
        // RFC 9051 6.2.3: capabilities may change after login.
        self.refresh_caps().await
    }

    fn tag(&mut self) -> String {
        let t = format!("a{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Sends one command and waits for its tagged completion.
    pub async fn command(&mut self, cmd: &str) -> Result<Response> {
        let t = self.timeout;
        let tag = self.tag();
        tokio::time::timeout(t, async {
            self.send(format!("{tag} {cmd}\r\n").as_bytes()).await?;
            self.read_until_tagged(&tag).await
        })
        .await
        .map_err(|_| anyhow!("no reply to {} within {t:?}", first_word(cmd)))?
    }

    /// APPEND (RFC 9051 6.3.12) with flags and internal date; LITERAL+ when the server has it.
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &str,
        date: Option<&str>,
        msg: &[u8],
    ) -> Result<Response> {
        let t = self.timeout;
        let tag = self.tag();
        let nonsync = self.has_cap("LITERAL+");
        let prefix = append_prefix(&tag, mailbox, flags, date, msg.len(), nonsync);
        tokio::time::timeout(t, async {
            if nonsync {
                let mut buf = prefix.into_bytes();
                buf.extend_from_slice(msg);
                buf.extend_from_slice(b"\r\n");
                self.send(&buf).await?;
            } else {
                self.send(prefix.as_bytes()).await?;
                let mut scratch = Vec::new();
                loop {
                    scratch.clear();
                    match self.read_item(&mut scratch).await? {
                        Item::Continuation => break,
                        Item::Untagged => continue,
                        Item::Tagged { status, text, .. } => {
                            return Ok(Response {
                                status,
                                text,
                                data: Vec::new(),
                                items: Vec::new(),
                            })
                        }
                    }
                }
                let mut buf = msg.to_vec();
                buf.extend_from_slice(b"\r\n");
                self.send(&buf).await?;
            }
            self.read_until_tagged(&tag).await
        })
        .await
        .map_err(|_| anyhow!("no reply to APPEND within {t:?}"))?
    }

    /// Writes commands without waiting; the caller reads completions with `read_tagged`.
    /// Returns the tag. Only for commands without synchronising literals.
    pub async fn send_append_nonsync(
        &mut self,
        mailbox: &str,
        flags: &str,
        date: Option<&str>,
        msg: &[u8],
    ) -> Result<String> {
        let tag = self.tag();
        let mut buf = append_prefix(&tag, mailbox, flags, date, msg.len(), true).into_bytes();
        buf.extend_from_slice(msg);
        buf.extend_from_slice(b"\r\n");
        let t = self.timeout;
        tokio::time::timeout(t, self.send(&buf))
            .await
            .map_err(|_| anyhow!("APPEND write blocked for {t:?}"))??;
        Ok(tag)
    }

    /// Reads up to the next tagged completion, whatever its tag.
    pub async fn read_tagged(&mut self) -> Result<(String, Response)> {
        let t = self.timeout;
        tokio::time::timeout(t, async {
            let mut data = Vec::new();
            let mut items = Vec::new();
            loop {
                let start = data.len();
                match self.read_item(&mut data).await? {
                    Item::Untagged => items.push((start, data.len())),
                    Item::Continuation => bail!("unexpected continuation request"),
                    Item::Tagged { tag, status, text } => {
                        data.truncate(start);
                        return Ok((
                            tag,
                            Response {
                                status,
                                text,
                                data,
                                items,
                            },
                        ));
                    }
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no tagged reply within {t:?}"))?
    }

    /// Starts IDLE (RFC 2177 3) and waits for the continuation request.
    pub async fn idle(&mut self) -> Result<()> {
        let t = self.timeout;
        let tag = self.tag();
        tokio::time::timeout(t, async {
            self.send(format!("{tag} IDLE\r\n").as_bytes()).await?;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match self.read_item(&mut buf).await? {
                    Item::Continuation => return Ok(()),
                    Item::Untagged => continue,
                    Item::Tagged { status, text, .. } => bail!("IDLE: {status:?} {text}"),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no continuation for IDLE within {t:?}"))?
    }

    /// While idling: waits for the next server response; Ok(false) at end of stream.
    pub async fn next_unsolicited(&mut self) -> Result<bool> {
        let mut buf = Vec::new();
        match self.read_item(&mut buf).await {
            Ok(_) => Ok(true),
            Err(e) if buf.is_empty() && e.to_string().contains("closed") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("LOGOUT")).await;
    }

    async fn send(&mut self, buf: &[u8]) -> Result<()> {
        let w = self.io.get_mut();
        w.write_all(buf).await.context("writing to the server")?;
        w.flush().await.context("writing to the server")?;
        Ok(())
    }

    async fn read_until_tagged(&mut self, tag: &str) -> Result<Response> {
        let mut data = Vec::new();
        let mut items = Vec::new();
        loop {
            let start = data.len();
            match self.read_item(&mut data).await? {
                Item::Untagged => items.push((start, data.len())),
                Item::Continuation => bail!("unexpected continuation request"),
                Item::Tagged {
                    tag: t,
                    status,
                    text,
                } => {
                    data.truncate(start);
                    if t != tag {
                        bail!("reply for tag {t} while waiting for {tag}");
                    }
                    return Ok(Response {
                        status,
                        text,
                        data,
                        items,
                    });
                }
            }
        }
    }

    /// Reads one response (a line plus any literals it announces) and appends it to `out`.
    async fn read_item(&mut self, out: &mut Vec<u8>) -> Result<Item> {
        let begin = out.len();
        loop {
            let start = out.len();
            let n = self
                .io
                .read_until(b'\n', out)
                .await
                .context("reading from the server")?;
            if n == 0 {
                bail!("connection closed by the server");
            }
            match literal_len(&out[start..]) {
                Some(len) if len > MAX_LITERAL => bail!("literal of {len} bytes"),
                Some(len) => {
                    let at = out.len();
                    out.resize(at + len, 0);
                    self.io
                        .read_exact(&mut out[at..])
                        .await
                        .context("reading a literal")?;
                }
                None => break,
            }
        }
        let item = &out[begin..];
        if item.starts_with(b"* ") {
            return Ok(Item::Untagged);
        }
        if item.starts_with(b"+") {
            return Ok(Item::Continuation);
        }
        let line = String::from_utf8_lossy(item);
        let line = line.trim_end();
        let mut parts = line.splitn(3, ' ');
        let tag = parts.next().unwrap_or_default().to_string();
        let status = match parts.next().map(str::to_ascii_uppercase).as_deref() {
            Some("OK") => Status::Ok,
            Some("NO") => Status::No,
            Some("BAD") => Status::Bad,
            _ => bail!("unparseable response: {line}"),
        };
        let text = parts.next().unwrap_or_default().to_string();
        Ok(Item::Tagged { tag, status, text })
    }
}

fn append_prefix(
    tag: &str,
    mailbox: &str,
    flags: &str,
    date: Option<&str>,
    len: usize,
    nonsync: bool,
) -> String {
    let mut s = format!("{tag} APPEND {}", quote(mailbox));
    if !flags.is_empty() {
        s.push_str(&format!(" ({flags})"));
    }
    if let Some(d) = date {
        s.push_str(&format!(" \"{d}\""));
    }
    s.push_str(&format!(" {{{len}{}}}\r\n", if nonsync { "+" } else { "" }));
    s
}

/// RFC 9051 4.3: a line ending in "{n}" or "{n+}" (or "~{n}") is followed by n octets.
fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// RFC 9051 4.3 quoted string.
pub fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

fn first_word(cmd: &str) -> &str {
    cmd.split(' ')
        .find(|w| !w.is_empty() && *w != "UID")
        .unwrap_or(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {123}\r\n"), Some(123));
        assert_eq!(literal_len(b"a APPEND x {5+}\r\n"), Some(5));
        assert_eq!(literal_len(b"* 1 FETCH (BINARY[] ~{7}\r\n"), Some(7));
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
        assert_eq!(literal_len(b"* OK done\r\n"), None);
        assert_eq!(literal_len(b"* OK {}\r\n"), None);
    }

    #[test]
    fn quoting_and_prefix() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            append_prefix(
                "a1",
                "INBOX",
                "\\Seen",
                Some("01-Jan-2024 00:00:00 +0000"),
                10,
                true
            ),
            "a1 APPEND \"INBOX\" (\\Seen) \"01-Jan-2024 00:00:00 +0000\" {10+}\r\n"
        );
        assert_eq!(
            append_prefix("a2", "X", "", None, 3, false),
            "a2 APPEND \"X\" {3}\r\n"
        );
    }

    #[tokio::test]
    async fn reads_literals_and_tagged_replies() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut c = Client::new(Box::new(a), Duration::from_secs(5), DEFAULT_BUFFER);
        let server = tokio::spawn(async move {
            let mut buf = vec![0u8; 64];
            let n = b.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"a1 UID FETCH 1:2 (BODY.PEEK[])\r\n");
            b.write_all(
                b"* 1 FETCH (UID 1 BODY[] {5}\r\nab\r\nc)\r\n* 2 FETCH (UID 2 BODY[] {0}\r\n)\r\n\
                  * SEARCH 3 4\r\na1 OK done\r\n",
            )
            .await
            .unwrap();
        });
        let r = c.command("UID FETCH 1:2 (BODY.PEEK[])").await.unwrap();
        server.await.unwrap();
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.text, "done");
        assert_eq!(r.fetch_count(), 2);
        assert_eq!(r.search_hits(), vec![3, 4]);
        let first: Vec<&[u8]> = r.untagged().collect();
        assert_eq!(first[0], b"* 1 FETCH (UID 1 BODY[] {5}\r\nab\r\nc)\r\n");
    }
}
