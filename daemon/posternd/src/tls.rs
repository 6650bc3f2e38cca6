//! TLS for every listener: rustls with the aws-lc-rs provider, TLS 1.2 and 1.3 only.
//!
//! The certificate comes from files named in the configuration, or from a self-signed pair
//! generated on first start (so TLS is never off). It is reloaded when the files change
//! (polled) or on SIGHUP; a reload that fails keeps the previous certificate and logs why.
//!
//! The self-signed certificate is valid for [`SELF_SIGNED_LIFETIME`] (from a day before its
//! creation, for clocks that lag); a start that finds it within [`SELF_SIGNED_RENEW_BEFORE`]
//! of its end (or past it, or unreadable) generates a new pair.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use arc_swap::ArcSwap;
use postern_config::{Config, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// How long a generated self-signed certificate is valid.
pub const SELF_SIGNED_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// A generated certificate this close to its end is replaced at start.
pub const SELF_SIGNED_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// The generated certificate is valid from this long before its creation (clock skew).
const SELF_SIGNED_BACKDATE: Duration = Duration::from_secs(86_400);

/// Where the certificate and key live, and whether we generated them.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub self_signed: bool,
}

impl CertificateFiles {
    /// The configured files, or the self-signed pair under `<data_dir>/tls/` (generated now
    /// if missing).
    pub fn from_config(config: &Config) -> Result<CertificateFiles> {
        match (&config.tls.certificate, &config.tls.private_key) {
            (Some(cert), Some(key)) => Ok(CertificateFiles {
                certificate: cert.clone(),
                private_key: key.clone(),
                self_signed: false,
            }),
            _ => {
                let dir = config.data_dir().join("tls");
                let files = CertificateFiles {
                    certificate: dir.join("self-signed.crt"),
                    private_key: dir.join("self-signed.key"),
                    self_signed: true,
                };
                if !files.certificate.exists() || !files.private_key.exists() {
                    generate_self_signed(&config.server.hostname, &dir, &files)?;
                } else if let Some(why) = self_signed_needs_renewal(&files.certificate) {
                    tracing::info!(event = "tls.self_signed_renewing", certificate = %files.certificate.display(), reason = why);
                    generate_self_signed(&config.server.hostname, &dir, &files)?;
                }
                Ok(files)
            }
        }
    }

    fn stamp(&self) -> Option<(SystemTime, SystemTime)> {
        let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((modified(&self.certificate)?, modified(&self.private_key)?))
    }
}

/// Why the generated certificate at `path` must be replaced now, if it must.
fn self_signed_needs_renewal(path: &Path) -> Option<&'static str> {
    let Ok(chain) =
        CertificateDer::pem_file_iter(path).and_then(|i| i.collect::<Result<Vec<_>, _>>())
    else {
        return Some("unreadable");
    };
    let Some((_, not_after)) = chain.first().and_then(|c| validity(c)) else {
        return Some("unreadable");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if not_after <= now.saturating_add(SELF_SIGNED_RENEW_BEFORE.as_secs() as i64) {
        Some("expiring")
    } else {
        None
    }
}

fn generate_self_signed(hostname: &str, dir: &Path, files: &CertificateFiles) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = vec![hostname.to_string(), "localhost".to_string()];
    let failed = |e: rcgen::Error| anyhow!("generating a self-signed certificate: {e}");
    let mut params = rcgen::CertificateParams::new(names).map_err(failed)?;
    // rcgen's default validity is 1975 to 4096; a year, renewed at start, instead.
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
    params.not_before = now - SELF_SIGNED_BACKDATE;
    params.not_after = now + SELF_SIGNED_LIFETIME;
    let signing_key = rcgen::KeyPair::generate().map_err(failed)?;
    let cert = params.self_signed(&signing_key).map_err(failed)?;
    crate::files::write_private_file(&files.private_key, signing_key.serialize_pem().as_bytes())?;
    crate::files::write_private_file(&files.certificate, cert.pem().as_bytes())?;
    tracing::warn!(
        event = "tls.self_signed_generated",
        certificate = %files.certificate.display(),
        "no certificate configured: generated a self-signed one; configure [tls] certificate and private_key for production"
    );
    Ok(())
}

fn load_certified_key(files: &CertificateFiles, provider: &CryptoProvider) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .with_context(|| format!("reading {}", files.certificate.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", files.certificate.display()))?;
    if chain.is_empty() {
        return Err(anyhow!(
            "{}: no certificate found",
            files.certificate.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .with_context(|| format!("reading {}", files.private_key.display()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("{}: unusable private key", files.private_key.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .with_context(|| "certificate and private key do not match".to_string())?;
    Ok(certified)
}

/// The validity (notBefore, notAfter) of a DER certificate, in seconds since the Unix epoch
/// (RFC 5280 4.1.2.5), or None when it does not parse as X.509.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = certificate.validity();
    Some((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// Serves the current certificate; swapped atomically on reload.
#[derive(Debug)]
pub struct ReloadingCertificate {
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    loaded_stamp: std::sync::Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ReloadingCertificate {
    pub fn load(files: CertificateFiles, provider: Arc<CryptoProvider>) -> Result<Self> {
        let stamp = files.stamp();
        let key = load_certified_key(&files, &provider)?;
        Ok(ReloadingCertificate {
            files,
            provider,
            current: ArcSwap::from_pointee(key),
            loaded_stamp: std::sync::Mutex::new(stamp),
        })
    }

    /// Reloads when forced (SIGHUP) or when the files changed since the last load.
    pub fn reload(&self, force: bool) {
        let stamp = self.files.stamp();
        let Ok(mut loaded) = self.loaded_stamp.lock() else {
            return;
        };
        if !force && *loaded == stamp {
            return;
        }
        match load_certified_key(&self.files, &self.provider) {
            Ok(key) => {
                self.current.store(Arc::new(key));
                *loaded = stamp;
                tracing::info!(event = "tls.certificate_reloaded", certificate = %self.files.certificate.display());
            }
            Err(error) => {
                // Keep serving the old certificate: a half-written file must not take TLS down.
                tracing::error!(event = "tls.certificate_reload_failed", error = %format!("{error:#}"));
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls server configuration shared by every listener.
pub fn server_config(config: &Config) -> Result<(Arc<ServerConfig>, Arc<ReloadingCertificate>)> {
    let provider = Arc::new(provider_preferring_aes128());
    let files = CertificateFiles::from_config(config)?;
    let certificate = Arc::new(ReloadingCertificate::load(files, provider.clone())?);
    // TLS 1.0 and 1.1 are never offered (RFC 8996). The aws-lc-rs provider's default suites
    // are AEAD-only with forward secrecy.
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.tls.min_version {
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    // Our order, not the client's: many clients (OpenSSL's default among them) list
    // AES-256 first, which costs SHA-384 in every key derivation for no security a mail
    // connection needs.
    server.ignore_client_order = true;
    // One session ticket per handshake: a mail client resumes at most once per connection
    // it opens, and each ticket costs a key derivation, an encryption and a write.
    server.send_tls13_tickets = 1;
    Ok((Arc::new(server), certificate))
}

/// The aws-lc-rs provider with its suites reordered so that AES-128-GCM comes first within
/// each protocol version, as Mozilla's "modern" and "intermediate" profiles order them.
/// SHA-256 (used by those suites' key schedule and PRF) runs on the SHA extensions of
/// current x86 and ARM cores; SHA-384 runs in software. The set of suites is unchanged:
/// AEAD only, forward secrecy only.
fn provider_preferring_aes128() -> CryptoProvider {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // A stable sort keeps the provider's order otherwise (TLS 1.3 before TLS 1.2, ECDSA
    // before RSA).
    provider.cipher_suites.sort_by_key(|suite| {
        let aes128 = matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        (
            suite.version().version != rustls::ProtocolVersion::TLSv1_3,
            !aes128,
        )
    });
    provider
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(dir: &Path) -> CertificateFiles {
        let files = CertificateFiles {
            certificate: dir.join("c.crt"),
            private_key: dir.join("c.key"),
            self_signed: true,
        };
        generate_self_signed("mail.example.test", dir, &files).unwrap();
        files
    }

    #[test]
    fn generated_certificate_is_valid_for_a_year_from_yesterday() {
        let dir = tempfile::tempdir().unwrap();
        let files = generated(dir.path());
        let der = CertificateDer::pem_file_iter(&files.certificate)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let (not_before, not_after) = validity(&der).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - 86_400 - 60..=now - 86_400 + 60).contains(&not_before));
        assert!((now + 365 * 86_400 - 60..=now + 365 * 86_400 + 60).contains(&not_after));
        assert_eq!(self_signed_needs_renewal(&files.certificate), None);
    }

    #[test]
    fn validity_of_garbage_is_none() {
        assert_eq!(validity(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(validity(b""), None);
    }
}
