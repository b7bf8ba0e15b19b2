//! TLS for AMQP (`amqps://`, port 5671 by default) with rustls: the `[tls]` config section, the
//! acceptor built from PEM files, and the identity a client certificate proves (for the EXTERNAL
//! mechanism); also the acceptor of the HTTPS API (`[http] tls`). Names follow RabbitMQ's
//! `ssl_options` (certfile, keyfile, cacertfile, verify, fail_if_no_peer_cert).

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// `[tls]`: a second listener speaking AMQP over TLS. Off unless `cert_file` and `key_file` are set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Port of the TLS listener (5671); 0 picks an ephemeral port. Binds to the same address as AMQP.
    pub port: u16,
    /// Server certificate chain, PEM (leaf first).
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates client certificates must chain to, PEM. Needed for `verify_peer`.
    pub ca_file: Option<PathBuf>,
    /// Ask clients for a certificate and verify it against `ca_file` (RabbitMQ's `verify_peer`).
    pub verify_peer: bool,
    /// With `verify_peer`: refuse clients that present no certificate.
    pub fail_if_no_peer_cert: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            port: 5671,
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify_peer: false,
            fail_if_no_peer_cert: false,
        }
    }
}

impl TlsConfig {
    /// Is a TLS listener configured?
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Build the acceptor: reads and checks the PEM files. Errors name the file and the problem.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Err("tls.cert_file and tls.key_file must both be set".into());
        };
        let (certs, key) = load_pair("tls", cert, key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = if self.verify_peer {
            let Some(ca) = &self.ca_file else {
                return Err("tls.verify_peer needs tls.ca_file".into());
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if self.fail_if_no_peer_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("tls: {e}"))?)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls: certificate and key do not go together: {e}"))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// A certificate chain and its key from PEM files; errors name the setting (`section` is the
/// config section they come from), the file and the problem.
fn load_pair(
    section: &str,
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{section}.cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{section}.cert_file {}: no certificate found",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{section}.key_file {}: {e}", key.display()))?;
    Ok((certs, key))
}

/// The acceptor of the HTTPS API: a server certificate, no client certificates, HTTP/1.1.
pub fn https_acceptor(section: &str, cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let (certs, key) = load_pair(section, cert, key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("https: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("https: certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The user name a verified client certificate stands for: its subject's common name (RabbitMQ's
/// `ssl_cert_login_from = common_name`).
pub fn peer_common_name(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// The session of an accepted TLS connection in the management API's terms: RabbitMQ (Erlang's
/// ssl) writes `tlsv1.3`, the cipher as `aes_256_gcm`, the hash as `sha384`, and `any` as the
/// key exchange of TLS 1.3 (which does not name one in the suite).
pub fn details(conn: &rustls::ServerConnection) -> crate::broker::registry::TlsDetails {
    let protocol = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "tlsv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "tlsv1.2",
        _ => "unknown",
    };
    // e.g. TLS13_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()).to_lowercase())
        .unwrap_or_default();
    let (kx, rest) = match suite.split_once("_with_") {
        Some((kx, rest)) => (kx.trim_start_matches("tls_").to_string(), rest.to_string()),
        None => (
            "any".to_string(),
            suite.trim_start_matches("tls13_").to_string(),
        ),
    };
    let (cipher, hash) = match rest.rsplit_once('_') {
        Some((c, h)) if h.starts_with("sha") => (c.to_string(), h.to_string()),
        _ => (rest.clone(), String::new()),
    };
    let mut d = crate::broker::registry::TlsDetails {
        protocol: protocol.into(),
        cipher,
        key_exchange: kx,
        hash,
        ..Default::default()
    };
    if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
            let v = cert.validity();
            d.peer_cert_subject = Some(cert.subject().to_string());
            d.peer_cert_issuer = Some(cert.issuer().to_string());
            d.peer_cert_validity = Some(format!("{} - {}", v.not_before, v.not_after));
        }
    }
    d
}
