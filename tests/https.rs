//! The HTTP API over TLS (`[http] tls = true`, or `[http] cert_file`/`key_file`): a certificate
//! made with rcgen, a rustls client speaking HTTP/1.1 by hand (the test HTTP client has no TLS).
use crate::common;

use base64::Engine as _;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A CA and a server certificate for localhost/127.0.0.1 (`server.pem`, `server.key` in
/// `dir`); returns the CA's PEM.
fn make_certs(dir: &Path) -> String {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "warren https test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
    ca.pem()
}

/// A response: status and body (de-chunked).
struct Reply {
    status: u16,
    body: String,
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// `GET path` over TLS as guest, trusting `ca`.
async fn https_get(addr: std::net::SocketAddr, ca: &str, path: &str) -> std::io::Result<Reply> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut s = connector.connect(name, tcp).await?;
    let auth = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error for rustls; what was read counts.
    let _ = s.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(Reply {
        status,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    })
}

#[tokio::test]
async fn the_api_is_served_over_tls_with_the_amqp_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_certs(dir.path());
    let d = dir.path().to_path_buf();
    let b = Broker::start_with(move |c| {
        c.tls.port = 0;
        c.tls.cert_file = Some(d.join("server.pem"));
        c.tls.key_file = Some(d.join("server.key"));
        c.http.tls = true;
    })
    .await;
    let r = within(10, https_get(b.http_addr(), &ca, "/api/overview"))
        .await
        .expect("TLS handshake and request");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON body");
    assert_eq!(v["product_name"], "warren");
    assert!(
        v["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["protocol"] == "https"),
        "{v}"
    );
    let r = within(10, https_get(b.http_addr(), &ca, "/api/whoami"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"guest\""), "{}", r.body);
    b.stop().await;
}

#[tokio::test]
async fn plain_http_is_not_answered_on_the_tls_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let d = dir.path().to_path_buf();
    let b = Broker::start_with(move |c| {
        c.http.cert_file = Some(d.join("server.pem"));
        c.http.key_file = Some(d.join("server.key"));
    })
    .await;
    // No [tls] section: no AMQPS listener, yet the API is on TLS with its own certificate.
    assert!(b.handle.as_ref().unwrap().tls_addr().is_none());
    let mut s = tokio::net::TcpStream::connect(b.http_addr()).await.unwrap();
    s.write_all(b"GET /api/overview HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = within(10, s.read_to_end(&mut raw)).await;
    assert!(
        !String::from_utf8_lossy(&raw).starts_with("HTTP/"),
        "plain HTTP answered on the HTTPS port"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_certs(dir.path());
    let d = dir.path().to_path_buf();
    let b = Broker::start_with(move |c| {
        c.http.cert_file = Some(d.join("server.pem"));
        c.http.key_file = Some(d.join("server.key"));
    })
    .await;
    // Connected, but never starts a TLS handshake.
    let _silent = tokio::net::TcpStream::connect(b.http_addr()).await.unwrap();
    let r = within(5, https_get(b.http_addr(), &ca, "/api/overview"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    b.stop().await;
}

#[tokio::test]
async fn http_tls_without_a_certificate_stops_the_broker_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = warren::Config::for_tests(dir.path());
    cfg.http.tls = true;
    let err = warren::start(cfg).await.err().expect("start must fail");
    assert!(err.to_string().contains("http.tls"), "{err}");
}

#[tokio::test]
async fn warren_ctl_talks_https_with_a_given_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = make_certs(dir.path());
    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    let d = dir.path().to_path_buf();
    let b = Broker::start_with(move |c| {
        c.http.cert_file = Some(d.join("server.pem"));
        c.http.key_file = Some(d.join("server.key"));
    })
    .await;
    let url = format!("https://{}", b.http_addr());
    let ca_file = dir.path().join("ca.pem");
    let run = |extra: Vec<String>| {
        let url = url.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
                .arg("ctl")
                .args(["--url", &url, "--user", "guest", "--password", "guest"])
                .args(extra)
                .env_remove("WARREN_CACERT")
                .output()
                .await
                .expect("run warren ctl");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let cacert = ca_file.to_string_lossy().into_owned();
    let (code, out, err) = run(vec![
        "--cacert".into(),
        cacert.clone(),
        "list".into(),
        "vhosts".into(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with('/')), "{out}");
    let (code, _, err) = run(vec!["list".into(), "vhosts".into()]).await;
    assert_eq!(code, 2, "no --cacert is a usage error: {err}");
    assert!(err.contains("--cacert"), "{err}");
    // A CA that did not sign the broker's certificate is not trusted.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("ca.pem"), make_certs(other.path())).unwrap();
    let (code, _, _) = run(vec![
        "--cacert".into(),
        other.path().join("ca.pem").to_string_lossy().into_owned(),
        "list".into(),
        "vhosts".into(),
    ])
    .await;
    assert_eq!(code, 1);
    b.stop().await;
}
