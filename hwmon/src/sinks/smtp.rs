//! A small blocking SMTP client for alert mail (RFC 5321) with STARTTLS (RFC 3207) through
//! rustls, optional AUTH PLAIN (RFC 4954, only over TLS), and the TLS client configuration the
//! webhook sink shares. Also the date formats the sinks write (RFC 5322 3.3, RFC 3339).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// When to use TLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// STARTTLS when the server offers it (RFC 3207), plain otherwise; the certificate is
    /// verified only when a CA file is configured (RFC 7435 opportunistic security).
    #[default]
    Opportunistic,
    /// STARTTLS with a verified certificate (the CA file, else the system bundle), or fail.
    Required,
    /// Never (loopback to a local MTA only).
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("connect {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("server answered {code} to {command}: {text}")]
    Rejected {
        command: String,
        code: u16,
        text: String,
    },
    #[error("malformed reply: {0}")]
    Protocol(String),
}

impl SmtpError {
    /// 5xx (RFC 5321 4.2.1: permanent) errors are not retried.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SmtpError::Rejected { code, .. } if (500..600).contains(code))
    }
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct SmtpParams {
    /// host:port
    pub server: String,
    pub helo: String,
    pub from: String,
    pub to: Vec<String>,
    pub tls: TlsMode,
    /// PEM file of trusted CAs; empty = the system bundle when `tls` is `required`, no
    /// authentication when it is `opportunistic`.
    pub ca_file: String,
    /// Name to verify the certificate against; empty = the host part of `server`.
    pub tls_name: String,
    pub username: String,
    pub password: String,
    pub timeout: Duration,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

struct Client {
    stream: Option<Stream>,
    buf: Vec<u8>,
}

/// A reply: code and text lines.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Client {
    fn stream(&mut self) -> std::io::Result<&mut Stream> {
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("connection closed"))
    }

    fn read_line(&mut self) -> Result<String, SmtpError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            if self.buf.len() > 64 * 1024 {
                return Err(SmtpError::Protocol("reply line too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream()?.read(&mut chunk)?;
            if n == 0 {
                return Err(SmtpError::Protocol("connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// RFC 5321 4.2: `code-text` continues, `code text` ends a reply.
    fn reply(&mut self) -> Result<Reply, SmtpError> {
        let mut lines = Vec::new();
        for _ in 0..1000 {
            let line = self.read_line()?;
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| SmtpError::Protocol(line.clone()))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
        Err(SmtpError::Protocol("reply too long".into()))
    }

    fn command(&mut self, line: &str, label: &str, expect: u16) -> Result<Reply, SmtpError> {
        let stream = self.stream()?;
        stream.write_all(line.as_bytes())?;
        stream.write_all(b"\r\n")?;
        stream.flush()?;
        let reply = self.reply()?;
        if reply.code / 100 != expect / 100 {
            return Err(SmtpError::Rejected {
                command: label.into(),
                code: reply.code,
                text: reply.lines.join(" "),
            });
        }
        Ok(reply)
    }
}

/// Builds a rustls client configuration trusting `ca_file` (PEM), or the system bundle.
pub fn tls_client_config(ca_file: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = if ca_file.is_empty() {
        "/etc/ssl/certs/ca-certificates.crt"
    } else {
        ca_file
    };
    let pem = std::fs::read(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{path}: {e}"))?;
        // Unusable entries in a system bundle are skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{path}: no certificates"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// RFC 7435 opportunistic security for `tls = "opportunistic"` without a `ca_file`: the
/// session is encrypted (handshake signatures are still checked, so the keys are sound) but the
/// server's certificate is not authenticated, as MTAs do at Postfix's `may` level. Set
/// `ca_file` (or `tls = "required"`) to authenticate the server.
#[derive(Debug)]
struct Unauthenticated(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unauthenticated {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for opportunistic STARTTLS without a CA file (see
/// [`Unauthenticated`]).
pub fn tls_unauthenticated_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unauthenticated(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a TLS session over `tcp` verifying `name`.
pub fn tls_connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, server_name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake now so that certificate errors surface here.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// `host:port` -> `host` (brackets of an IPv6 literal removed).
pub fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map(|(h, _)| h).unwrap_or(server);
    host.trim_start_matches('[').trim_end_matches(']')
}

pub fn connect_tcp(server: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in server.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
}

/// Sends one message (`message`: header and body with CRLF line ends) to every recipient.
pub fn send(params: &SmtpParams, message: &[u8]) -> Result<(), SmtpError> {
    let tcp = connect_tcp(&params.server, params.timeout).map_err(|source| SmtpError::Connect {
        server: params.server.clone(),
        source,
    })?;
    let mut c = Client {
        stream: Some(Stream::Plain(tcp)),
        buf: Vec::new(),
    };
    let greeting = c.reply()?;
    if greeting.code != 220 {
        return Err(SmtpError::Rejected {
            command: "greeting".into(),
            code: greeting.code,
            text: greeting.lines.join(" "),
        });
    }
    let ehlo = format!("EHLO {}", params.helo);
    let mut caps = c.command(&ehlo, "EHLO", 250)?.lines;
    let offers = |caps: &[String], kw: &str| {
        caps.iter().skip(1).any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(kw))
        })
    };
    let mut tls = false;
    if params.tls != TlsMode::None && offers(&caps, "STARTTLS") {
        c.command("STARTTLS", "STARTTLS", 220)?;
        // RFC 3207 4.2: anything buffered before the handshake is discarded.
        c.buf.clear();
        let Some(Stream::Plain(tcp)) = c.stream.take() else {
            return Err(SmtpError::Tls("not a plain connection".into()));
        };
        let config = if params.tls == TlsMode::Opportunistic && params.ca_file.is_empty() {
            tls_unauthenticated_config()
        } else {
            tls_client_config(&params.ca_file)
        }
        .map_err(SmtpError::Tls)?;
        let name = if params.tls_name.is_empty() {
            host_of(&params.server)
        } else {
            params.tls_name.as_str()
        };
        let stream = tls_connect(tcp, config, name).map_err(SmtpError::Tls)?;
        c.stream = Some(Stream::Tls(Box::new(stream)));
        tls = true;
        // RFC 3207 4.2: the client must discard what it knew and send EHLO again.
        caps = c.command(&ehlo, "EHLO", 250)?.lines;
    } else if params.tls == TlsMode::Required {
        return Err(SmtpError::Tls("server does not offer STARTTLS".into()));
    }
    if !params.username.is_empty() {
        if !tls {
            return Err(SmtpError::Tls(
                "AUTH refused without TLS (credentials would travel in clear)".into(),
            ));
        }
        // RFC 4616: authzid NUL authcid NUL passwd.
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{}\0{}", params.username, params.password));
        let _ = &caps;
        c.command(&format!("AUTH PLAIN {token}"), "AUTH", 235)?;
    }
    c.command(&format!("MAIL FROM:<{}>", params.from), "MAIL FROM", 250)?;
    let mut accepted = 0;
    let mut last_err = None;
    for rcpt in &params.to {
        match c.command(&format!("RCPT TO:<{rcpt}>"), "RCPT TO", 250) {
            Ok(_) => accepted += 1,
            Err(e) => last_err = Some(e),
        }
    }
    if accepted == 0 {
        return Err(last_err.unwrap_or_else(|| SmtpError::Protocol("no recipients".into())));
    }
    c.command("DATA", "DATA", 354)?;
    let stream = c.stream()?;
    stream.write_all(&dot_stuff(message))?;
    stream.write_all(b".\r\n")?;
    stream.flush()?;
    let reply = c.reply()?;
    if reply.code != 250 {
        return Err(SmtpError::Rejected {
            command: "DATA".into(),
            code: reply.code,
            text: reply.lines.join(" "),
        });
    }
    let _ = c.command("QUIT", "QUIT", 221);
    Ok(())
}

/// RFC 5321 4.5.2: a line starting with "." gets another "."; line ends become CRLF and the
/// data ends with CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let text = String::from_utf8_lossy(message);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // split() yields a final empty piece after the last newline.
    if message.ends_with(b"\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split_ms(ms: u64) -> (i64, u32, u32, u64, u64, u64, u64) {
    let secs = (ms / 1000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u64;
    (y, mo, d, rem / 3600, rem / 60 % 60, rem % 60, ms % 1000)
}

/// RFC 5322 3.3 date-time in UTC: `Tue, 24 Nov 2026 23:41:00 +0000`.
pub fn rfc5322_date(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = split_ms(ms);
    let weekday = DAYS[((ms / 1000 / 86_400) % 7) as usize];
    format!(
        "{weekday}, {d} {} {y} {h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    )
}

/// RFC 3339 timestamp in UTC with milliseconds (RFC 5424 6.2.3).
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s, frac) = split_ms(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:03}Z")
}

/// This machine's host name (for HELO, Message-ID and syslog), `localhost` when unknown.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        // 2026-11-24T23:41:00.123Z
        assert_eq!(rfc3339(1_795_563_660_123), "2026-11-24T23:41:00.123Z");
        assert_eq!(
            rfc5322_date(1_795_563_660_123),
            "Tue, 24 Nov 2026 23:41:00 +0000"
        );
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\n.b\r\n..c\n"), b"a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n");
    }

    #[test]
    fn host_part() {
        assert_eq!(host_of("127.0.0.1:25"), "127.0.0.1");
        assert_eq!(host_of("[::1]:25"), "::1");
        assert_eq!(host_of("mail.example:587"), "mail.example");
    }

    /// A scripted SMTP server on loopback: checks the client's dialogue and dot-stuffing.
    #[test]
    fn plain_dialogue() {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut got = Vec::new();
            w.write_all(b"220 test ESMTP\r\n").unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                got.push(line.clone());
                let answer: &[u8] = match line.trim_end() {
                    l if l.starts_with("EHLO") => b"250-test\r\n250 8BITMIME\r\n",
                    "DATA" => {
                        w.write_all(b"354 go\r\n").unwrap();
                        loop {
                            line.clear();
                            r.read_line(&mut line).unwrap();
                            got.push(line.clone());
                            if line == ".\r\n" {
                                break;
                            }
                        }
                        b"250 ok\r\n"
                    }
                    "QUIT" => {
                        w.write_all(b"221 bye\r\n").unwrap();
                        break;
                    }
                    l if l.starts_with("RCPT TO:<bad") => b"550 no\r\n",
                    _ => b"250 ok\r\n",
                };
                w.write_all(answer).unwrap();
            }
            got
        });
        let params = SmtpParams {
            server: addr.to_string(),
            helo: "hwmond.test".into(),
            from: "hwmond@example.test".into(),
            to: vec!["admin@example.test".into(), "bad@example.test".into()],
            tls: TlsMode::Opportunistic,
            ca_file: String::new(),
            tls_name: String::new(),
            username: String::new(),
            password: String::new(),
            timeout: Duration::from_secs(5),
        };
        send(&params, b"Subject: x\r\n\r\n.hidden\r\n").unwrap();
        let got = server.join().unwrap();
        assert_eq!(got[0], "EHLO hwmond.test\r\n");
        assert_eq!(got[1], "MAIL FROM:<hwmond@example.test>\r\n");
        assert!(got.contains(&"..hidden\r\n".to_string()));
        // Required TLS against a server without STARTTLS fails before MAIL FROM.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"220 x\r\n").unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            s.write_all(b"250 x\r\n").unwrap();
        });
        let e = send(
            &SmtpParams {
                server: addr.to_string(),
                tls: TlsMode::Required,
                ..params
            },
            b"x\r\n",
        )
        .unwrap_err();
        assert!(matches!(e, SmtpError::Tls(_)), "{e}");
    }
}
