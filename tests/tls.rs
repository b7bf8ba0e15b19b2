//! AMQP over TLS (`[tls]`): certificates generated with rcgen, a rustls client speaking AMQP
//! frames by hand; PLAIN over TLS, EXTERNAL with a client certificate, client-certificate
//! enforcement, and bad key material refused at start.
use crate::common;
use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass};
use amq_protocol::types::{FieldTable, LongString};
use bytes::BytesMut;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use warren::protocol::frame::{decode_method, encode_method, split_frame, RawFrame, Split};

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate with CN=guest,
/// as PEM files in `dir`.
struct Pki {
    ca: String,
    client_cert: String,
    client_key: String,
}

fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "warren test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");

    let srv_key = KeyPair::generate().expect("server key");
    let srv_params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    let srv = srv_params
        .signed_by(&srv_key, &ca, &ca_key)
        .expect("server cert");

    let cli_key = KeyPair::generate().expect("client key");
    let mut cli_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    cli_params
        .distinguished_name
        .push(DnType::CommonName, "guest");
    cli_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cli = cli_params
        .signed_by(&cli_key, &ca, &ca_key)
        .expect("client cert");

    let w = |name: &str, pem: String| std::fs::write(dir.join(name), pem).expect("write pem");
    w("ca.pem", ca.pem());
    w("server.pem", srv.pem());
    w("server.key", srv_key.serialize_pem());
    Pki {
        ca: ca.pem(),
        client_cert: cli.pem(),
        client_key: cli_key.serialize_pem(),
    }
}

async fn start_tls(dir: &Path, verify_peer: bool) -> Broker {
    let dir = dir.to_path_buf();
    Broker::start_with(move |c| {
        c.tls.port = 0;
        c.tls.cert_file = Some(dir.join("server.pem"));
        c.tls.key_file = Some(dir.join("server.key"));
        if verify_peer {
            c.tls.ca_file = Some(dir.join("ca.pem"));
            c.tls.verify_peer = true;
            c.tls.fail_if_no_peer_cert = true;
        }
    })
    .await
}

fn tls_addr(b: &Broker) -> std::net::SocketAddr {
    b.handle
        .as_ref()
        .and_then(|h| h.tls_addr())
        .expect("a TLS listener")
}

async fn tls_connect(
    b: &Broker,
    pki: &Pki,
    with_client_cert: bool,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).expect("ca pem"))
        .expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let chain = vec![CertificateDer::from_pem_slice(pki.client_cert.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(pki.client_key.as_bytes()).expect("key");
        builder
            .with_client_auth_cert(chain, key)
            .expect("client auth")
    } else {
        builder.with_no_client_auth()
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(tls_addr(b)).await?;
    let name = ServerName::try_from("localhost").expect("name");
    let mut s = connector.connect(name, tcp).await?;
    // TLS 1.3 reports a refused client certificate only on the first read: surface it here.
    s.write_all(b"AMQP\x00\x00\x09\x01").await?;
    s.flush().await?;
    Ok(s)
}

/// Just enough AMQP over any stream: methods and content frames.
struct Amqp<S> {
    s: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Amqp<S> {
    async fn send(&mut self, chan: u16, m: AMQPClass) {
        let mut b = BytesMut::new();
        encode_method(&mut b, chan, m);
        within(5, self.s.write_all(&b)).await.expect("write");
    }

    async fn frame(&mut self) -> RawFrame {
        loop {
            match split_frame(&mut self.buf, 0) {
                Split::Frame(f) if f.kind == 8 => continue,
                Split::Frame(f) => return f,
                Split::Incomplete => {}
                other => panic!("bad frame: {other:?}"),
            }
            let n = within(5, self.s.read_buf(&mut self.buf))
                .await
                .expect("read");
            assert!(n > 0, "broker closed the connection");
        }
    }

    async fn method(&mut self) -> AMQPClass {
        let f = self.frame().await;
        decode_method(&f.payload).expect("method")
    }

    /// After the protocol header: start → start-ok(mechanism) → tune → open. Returns the
    /// mechanisms the server offered.
    async fn login(&mut self, mechanism: &str, response: &[u8]) -> String {
        let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = self.method().await
        else {
            panic!("expected connection.start");
        };
        let offered = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        let start_ok = connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: mechanism.into(),
            response: LongString::from(response.to_vec()),
            locale: "en_US".into(),
        };
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)),
        )
        .await;
        let AMQPClass::Connection(connection::AMQPMethod::Tune(t)) = self.method().await else {
            panic!("expected connection.tune (login as {mechanism})");
        };
        let tune_ok = connection::TuneOk {
            channel_max: t.channel_max,
            frame_max: t.frame_max,
            heartbeat: 0,
        };
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)),
        )
        .await;
        let open = connection::Open {
            virtual_host: "/".into(),
        };
        self.send(0, AMQPClass::Connection(connection::AMQPMethod::Open(open)))
            .await;
        let AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) = self.method().await else {
            panic!("expected connection.open-ok");
        };
        offered
    }

    /// Open channel 1, declare `q`, publish `body` to it and basic.get it back.
    async fn round_trip(&mut self, q: &str, body: &[u8]) -> Vec<u8> {
        self.send(
            1,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        let AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) = self.method().await else {
            panic!("expected channel.open-ok");
        };
        let declare = queue::Declare {
            queue: q.into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        self.send(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare)))
            .await;
        let AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)) = self.method().await else {
            panic!("expected queue.declare-ok");
        };
        let publish = basic::Publish {
            exchange: "".into(),
            routing_key: q.into(),
            mandatory: false,
            immediate: false,
        };
        let mut wire = BytesMut::new();
        encode_method(
            &mut wire,
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(publish)),
        );
        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        header.extend_from_slice(&0u16.to_be_bytes());
        for (kind, payload) in [(2u8, &header[..]), (3u8, body)] {
            wire.extend_from_slice(&[kind, 0, 1]);
            wire.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            wire.extend_from_slice(payload);
            wire.extend_from_slice(&[0xCE]);
        }
        within(5, self.s.write_all(&wire)).await.expect("publish");
        let get = basic::Get {
            queue: q.into(),
            no_ack: true,
        };
        self.send(1, AMQPClass::Basic(basic::AMQPMethod::Get(get)))
            .await;
        let AMQPClass::Basic(basic::AMQPMethod::GetOk(_)) = self.method().await else {
            panic!("expected basic.get-ok");
        };
        let h = self.frame().await;
        assert_eq!(h.kind, 2, "content header");
        let b = self.frame().await;
        assert_eq!(b.kind, 3, "body");
        b.payload.to_vec()
    }
}

#[tokio::test]
async fn amqps_carries_plain_login_publish_and_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let b = start_tls(dir.path(), false).await;
    let s = tls_connect(&b, &pki, false).await.expect("tls handshake");
    let mut c = Amqp {
        s,
        buf: BytesMut::new(),
    };
    let offered = c.login("PLAIN", b"\0guest\0guest").await;
    assert!(
        !offered.contains("EXTERNAL"),
        "EXTERNAL needs a client certificate: {offered}"
    );
    assert_eq!(c.round_trip("over-tls", b"secret").await, b"secret");
    // The plain listener still serves clients beside the TLS one.
    let (_conn, ch) = b.channel().await;
    assert_eq!(get_body(&ch, "over-tls").await, None, "the get emptied it");
}

#[tokio::test]
async fn external_logs_in_as_the_client_certificate_common_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let b = start_tls(dir.path(), true).await;
    let s = tls_connect(&b, &pki, true).await.expect("tls handshake");
    let mut c = Amqp {
        s,
        buf: BytesMut::new(),
    };
    let offered = c.login("EXTERNAL", b"").await;
    assert!(offered.split(' ').any(|m| m == "EXTERNAL"), "{offered}");
    assert_eq!(c.round_trip("by-cert", b"hello").await, b"hello");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_when_one_is_required() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let b = start_tls(dir.path(), true).await;
    let refused = match tls_connect(&b, &pki, false).await {
        Err(_) => true,
        // TLS 1.3: the server's alert arrives with the first read.
        Ok(mut s) => {
            let mut byte = [0u8; 1];
            !matches!(within(5, s.read(&mut byte)).await, Ok(n) if n > 0)
        }
    };
    assert!(
        refused,
        "no client certificate, yet the connection was served"
    );
}

#[tokio::test]
async fn a_bad_key_file_stops_the_broker_from_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_pki(dir.path());
    std::fs::write(dir.path().join("server.key"), "not a key").expect("write");
    let mut cfg = warren::Config::for_tests(dir.path());
    cfg.tls.port = 0;
    cfg.tls.cert_file = Some(dir.path().join("server.pem"));
    cfg.tls.key_file = Some(dir.path().join("server.key"));
    let err = warren::start(cfg).await.err().expect("start must fail");
    assert!(err.to_string().contains("tls.key_file"), "{err}");
}

/// The management API shows a TLS connection's session as RabbitMQ does: `ssl: true`, the
/// protocol, cipher and hash in Erlang's names, and the client certificate's subject.
#[tokio::test]
async fn the_api_shows_the_tls_session_of_a_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    let b = start_tls(dir.path(), true).await;
    let s = tls_connect(&b, &pki, true).await.expect("tls handshake");
    let mut c = Amqp {
        s,
        buf: BytesMut::new(),
    };
    c.login("EXTERNAL", b"").await;
    let (_plain, _ch) = b.channel().await;
    let conns = b.http().get("/api/connections").await.json();
    let list = conns.as_array().expect("list");
    let tls = list
        .iter()
        .find(|c| c["ssl"] == true)
        .expect("a TLS connection");
    assert_eq!(tls["ssl_protocol"], "tlsv1.3", "{tls}");
    assert_eq!(tls["ssl_key_exchange"], "any");
    assert!(
        tls["ssl_cipher"].as_str().unwrap().contains("gcm")
            || tls["ssl_cipher"].as_str().unwrap().contains("chacha"),
        "{tls}"
    );
    assert!(
        tls["ssl_hash"].as_str().unwrap().starts_with("sha"),
        "{tls}"
    );
    assert!(
        tls["peer_cert_subject"].as_str().unwrap().contains("CN="),
        "{tls}"
    );
    assert!(tls["peer_cert_validity"].is_string());
    let plain = list
        .iter()
        .find(|c| c["ssl"] == false)
        .expect("the plain one");
    assert!(plain["ssl_protocol"].is_null());
}
