//! The TLS listener under the same limits as plain AMQP: a socket takes its handshake place
//! (`limits.max_handshakes`) before the TLS handshake, and one `handshake_timeout` covers the TLS
//! and the AMQP handshake together, so a client trickling its ClientHello is dropped at the
//! deadline.
use crate::common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start_tls(dir: &std::path::Path, f: impl FnOnce(&mut warren::Config)) -> Broker {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(dir.join("server.pem"), cert.cert.pem()).expect("pem");
    std::fs::write(dir.join("server.key"), cert.key_pair.serialize_pem()).expect("key");
    let dir = dir.to_path_buf();
    Broker::start_with(move |c| {
        c.tls.port = 0;
        c.tls.cert_file = Some(dir.join("server.pem"));
        c.tls.key_file = Some(dir.join("server.key"));
        f(c);
    })
    .await
}

fn tls_addr(b: &Broker) -> std::net::SocketAddr {
    b.handle
        .as_ref()
        .and_then(|h| h.tls_addr())
        .expect("a TLS listener")
}

/// A TLS ClientHello record trickled a byte per second: dropped at the 3 s deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_tls_handshake_is_dropped_at_the_deadline() {
    let dir = tempfile::tempdir().expect("dir");
    let b = start_tls(dir.path(), |c| c.limits.handshake_timeout = 3).await;
    let t = Instant::now();
    let s = TcpStream::connect(tls_addr(&b)).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        // The start of a TLS 1.2+ ClientHello record: handshake, version, a long length.
        for byte in [
            0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ] {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = [0u8; 1024];
    within(10, async {
        while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let lasted = t.elapsed();
    writer.abort();
    assert!(
        lasted >= Duration::from_millis(2800) && lasted < Duration::from_secs(5),
        "lasted {lasted:?}"
    );
    b.stop().await;
}

/// Idle sockets on the TLS port count against max_handshakes like plain ones.
#[tokio::test]
async fn idle_tls_sockets_count_against_max_handshakes() {
    let dir = tempfile::tempdir().expect("dir");
    let b = start_tls(dir.path(), |c| c.limits.max_handshakes = 5).await;
    let admission = b
        .handle
        .as_ref()
        .expect("running")
        .broker()
        .admission
        .clone();
    let mut socks = Vec::new();
    for _ in 0..10 {
        socks.push(TcpStream::connect(tls_addr(&b)).await.expect("connect"));
    }
    within(5, async {
        while admission.handshaking() < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut closed = 0;
    for s in &socks {
        let mut buf = [0u8; 8];
        match s.try_read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 5);
    assert_eq!(admission.handshaking(), 5);
    b.stop().await;
}
