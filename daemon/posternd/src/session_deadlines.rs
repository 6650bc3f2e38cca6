//! Post-login deadlines of IMAP and POP3 against a client that trickles bytes (DESIGN.md 6:
//! a timeout is a deadline for the whole command, not an idle timer each byte restarts).
//!
//! The configuration refuses the short timeouts a system test would need (RFC 9051 5.4:
//! the IMAP autologout timer is at least 30 minutes; RFC 1939 3: POP3's at least 10), so
//! these tests run the real sessions over real TLS on loopback and pause tokio's clock once
//! the client has logged in: the 30 minutes of trickling then pass in virtual time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::metrics::Metrics;
use crate::server::{store_options, Shared};

const USER: &str = "trickle@example.test";
const PASSWORD: &str = "correct horse battery staple 42";

/// A daemon's shared state over a fresh data directory with one user, the store on the
/// portable backend.
fn shared(dir: &std::path::Path, extra: &str) -> Arc<Shared> {
    let toml = format!(
        "[server]\nhostname = \"localhost\"\ndata_dir = \"{}\"\nworkers = 1\n\
         [store]\nbackend = \"portable\"\n{extra}",
        dir.display()
    );
    let config = Config::parse(&toml, std::path::Path::new("test.toml")).expect("config");
    postern_accounts::AccountStore::open(dir)
        .expect("accounts")
        .modify(|accounts| {
            accounts.add_domain("example.test")?;
            accounts.add_user(USER, PASSWORD)
        })
        .expect("user");
    let store = postern_store::Store::open(store_options(&config, None)).expect("store");
    store.ensure_mailbox(USER, "INBOX", None).expect("INBOX");
    Shared::build(config, store, Metrics::new())
        .expect("shared state")
        .0
}

/// Accepts one connection and serves it with `serve`.
async fn listen<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (tcp, peer) = listener.accept().await.expect("accept");
        serve(tcp, peer).await;
    });
    address
}

/// The test trusts whatever certificate the daemon made for itself: the point here is the
/// timing, and the TLS set-up is tested against real clients elsewhere.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
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
        cert: &rustls::pki_types::CertificateDer<'_>,
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

async fn connect_tls(address: SocketAddr) -> TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let tcp = TcpStream::connect(address).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("TLS handshake")
}

/// Reads until the text received so far contains `wanted`.
async fn read_until(stream: &mut TlsStream<TcpStream>, wanted: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(wanted) {
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before {wanted:?}: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Pauses the clock, then sends `command` one byte every `every` (and after it, spaces,
/// never the end of the line) until the server closes the connection. Returns how long the
/// server let the command trickle, in virtual time, and everything it said meanwhile.
async fn trickle_until_closed(
    stream: TlsStream<TcpStream>,
    command: &[u8],
    every: Duration,
) -> (Duration, String) {
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let command = command.to_vec();
    let trickler = tokio::spawn(async move {
        for i in 0.. {
            let byte = command.get(i).copied().unwrap_or(b' ');
            if writer.write_all(&[byte]).await.is_err() || writer.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let mut said = Vec::new();
    let mut buf = [0u8; 1024];
    // A guard against a server that never closes: far past any deadline tested here.
    let give_up = started + Duration::from_secs(3 * 3600);
    loop {
        match tokio::time::timeout_at(give_up, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => said.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after 3 hours of trickling"),
        }
    }
    let held = started.elapsed();
    trickler.abort();
    (held, String::from_utf8_lossy(&said).into_owned())
}

#[tokio::test]
async fn imap_command_trickled_after_login_is_closed_at_the_autologout_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = shared(dir.path(), "[imap]\ntimeout_idle_secs = 1800\n");
    let idle = Duration::from_secs(shared.config.imap.timeout_idle_secs);
    let server = shared.clone();
    let address = listen(move |tcp, peer| crate::imap::run(server, 0, true, tcp, peer)).await;

    let mut client = connect_tls(address).await;
    read_until(&mut client, "* OK").await;
    client
        .write_all(format!("a LOGIN {USER} \"{PASSWORD}\"\r\n").as_bytes())
        .await
        .expect("login");
    read_until(&mut client, "a OK").await;

    // One byte every 10 s restarts no timer: the command gets the autologout time in all.
    let (held, said) =
        trickle_until_closed(client, b"b SEARCH TEXT ", Duration::from_secs(10)).await;
    assert!(said.contains("* BYE"), "no BYE before the close: {said:?}");
    assert!(
        held >= idle && held <= idle + Duration::from_secs(11),
        "a trickled command was held {held:?}; its deadline is {idle:?}"
    );
    shared.store.shutdown();
}

#[tokio::test]
async fn pop3_command_trickled_after_login_is_closed_at_its_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = shared(dir.path(), "[pop3]\ntimeout_secs = 600\n");
    let limit = Duration::from_secs(shared.config.pop3.timeout_secs);
    let server = shared.clone();
    let address = listen(move |tcp, peer| crate::pop3::run(server, 0, true, tcp, peer)).await;

    let mut client = connect_tls(address).await;
    read_until(&mut client, "+OK").await;
    client
        .write_all(format!("USER {USER}\r\n").as_bytes())
        .await
        .expect("USER");
    read_until(&mut client, "+OK").await;
    client
        .write_all(format!("PASS {PASSWORD}\r\n").as_bytes())
        .await
        .expect("PASS");
    read_until(&mut client, "Maildrop has").await;

    let (held, said) = trickle_until_closed(client, b"LIST ", Duration::from_secs(10)).await;
    assert!(
        held >= limit && held <= limit + Duration::from_secs(11),
        "a trickled command was held {held:?}; its deadline is {limit:?} (server said {said:?})"
    );
    shared.store.shutdown();
}
