//! Hostile clients before and at the handshake: slowloris (a handshake trickled a byte at a
//! time), a flood of sockets left idle in the handshake, and connections past
//! `limits.max_connections`. The broker drops them at the handshake deadline (or at once, past
//! `limits.max_handshakes`) and keeps serving everyone else within normal latency.
use crate::common;
use crate::hostile_support;
use crate::raw_amqp;

use amq_protocol::protocol::{connection, AMQPClass};
use common::*;
use hostile_support::*;
use raw_amqp::{Login, Raw, HEADER};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connect and write `prefix` at once, then `slow` one byte per second; returns how long after
/// connecting the broker closed the socket (reads until EOF or reset).
async fn slowloris(addr: SocketAddr, prefix: Vec<u8>, slow: Vec<u8>) -> Duration {
    let t = Instant::now();
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(&prefix).await.is_err() {
            return;
        }
        for byte in slow {
            if wr.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Hold the socket open (never finish the handshake).
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut buf = [0u8; 4096];
    while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
    writer.abort();
    t.elapsed()
}

/// Raw bytes of connection.start-ok for guest/guest.
fn start_ok() -> Vec<u8> {
    raw_amqp::method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: Default::default(),
            mechanism: "PLAIN".into(),
            response: raw_amqp::plain_response("guest", "guest").into(),
            locale: "en_US".into(),
        })),
    )
}

/// While `attack` runs, a connection opened before it keeps round-tripping and new clients keep
/// connecting, each within normal latency.
async fn served_during<T>(b: &Broker, attack: impl std::future::Future<Output = T>) -> T {
    let prober = Prober::start(Probe::new(b).await);
    let fresh = async {
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            worst = worst.max(fresh_client_round_trip(b).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        worst
    };
    let (out, worst_fresh) = tokio::join!(attack, fresh);
    let (worst, n) = prober.finish().await;
    assert!(worst < NORMAL && worst_fresh < NORMAL);
    eprintln!("served during the attack: {n} round trips, slowest {worst:?}; new clients slowest {worst_fresh:?}");
    out
}

/// `n` slowloris clients at once; how long each lasted.
async fn slowloris_crowd(b: &Broker, n: usize, prefix: Vec<u8>, slow: Vec<u8>) -> Vec<Duration> {
    let handles: Vec<_> = (0..n)
        .map(|_| tokio::spawn(slowloris(b.addr(), prefix.clone(), slow.clone())))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("slowloris task"));
    }
    out
}

fn assert_dropped_at_deadline(lasted: &[Duration], deadline: Duration) {
    for d in lasted {
        assert!(
            *d >= deadline - Duration::from_millis(200) && *d < deadline + Duration::from_secs(2),
            "a slowloris client lasted {d:?}, the handshake deadline is {deadline:?}"
        );
    }
}

/// The protocol header one byte per second (8 s for 8 bytes): dropped at the 3 s deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_protocol_header_is_dropped_at_the_deadline() {
    let b = Broker::start_with(|c| c.limits.handshake_timeout = 3).await;
    let lasted = served_during(&b, slowloris_crowd(&b, 20, Vec::new(), HEADER.to_vec())).await;
    assert_dropped_at_deadline(&lasted, Duration::from_secs(3));
    b.stop().await;
}

/// The header at once, then connection.start-ok one byte per second: the deadline covers the
/// whole handshake, not each read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_start_ok_is_dropped_at_the_deadline() {
    let b = Broker::start_with(|c| c.limits.handshake_timeout = 3).await;
    let lasted = served_during(&b, slowloris_crowd(&b, 20, HEADER.to_vec(), start_ok())).await;
    assert_dropped_at_deadline(&lasted, Duration::from_secs(3));
    b.stop().await;
}

/// Is the socket closed by the peer (EOF or reset) right now?
fn closed_now(s: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// 2000 sockets opened and left idle: past max_handshakes (1000) they are closed at once, the
/// rest at the handshake deadline. Connections opened before the flood are served throughout;
/// once the flood is gone new clients connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_is_bounded_and_dropped_at_the_deadline() {
    let b = Broker::start_with(|c| {
        c.limits.handshake_timeout = 3;
        c.limits.max_handshakes = 1000;
    })
    .await;
    let admission = b
        .handle
        .as_ref()
        .expect("running")
        .broker()
        .admission
        .clone();
    let prober = Prober::start(Probe::new(&b).await);
    let start = Instant::now();
    let mut flood = Vec::new();
    for _ in 0..2000 {
        flood.push(TcpStream::connect(b.addr()).await.expect("connect"));
    }
    // The broker has seen them all once 1000 are in the handshake.
    within(5, async {
        while admission.handshaking() < 1000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let early = flood.iter().filter(|s| closed_now(s)).count();
    assert_eq!(
        early, 1000,
        "sockets past max_handshakes are closed at once"
    );
    assert_eq!(admission.handshaking(), 1000);
    // While the slots are full a new socket is closed at once too (documented trade-off: the
    // broker cannot tell a real client from the flood before its handshake).
    let mut late = TcpStream::connect(b.addr()).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = within(2, late.read(&mut buf)).await.unwrap_or(0);
    assert_eq!(n, 0, "a socket past max_handshakes got an answer");
    // At the deadline the rest goes.
    within(10, async {
        while !flood.iter().all(closed_now) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let gone = start.elapsed();
    assert!(
        gone >= Duration::from_millis(2800),
        "flood dropped after {gone:?}, before the deadline"
    );
    assert_eq!(admission.handshaking(), 0);
    let (worst, n) = prober.finish().await;
    eprintln!("flood dropped after {gone:?}; {n} round trips meanwhile, slowest {worst:?}");
    fresh_client_round_trip(&b).await;
    b.stop().await;
}

/// Past limits.max_connections, connection.open is refused as RabbitMQ's node connection_max:
/// 530 NOT_ALLOWED naming the limit, on connection.open; a closed connection frees its place.
#[tokio::test]
async fn max_connections_refuses_connection_open_with_530() {
    let b = Broker::start_with(|c| c.limits.max_connections = 2).await;
    let first = Raw::open(b.addr()).await;
    let _second = Raw::open(b.addr()).await;
    let mut third = Raw::connect(b.addr()).await;
    match third.try_handshake(&Login::default()).await {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
            assert_eq!(c.reply_code, 530);
            assert_eq!(
                c.reply_text.as_str(),
                "NOT_ALLOWED - connection refused: node connection limit (2) is reached"
            );
            assert_eq!((c.class_id, c.method_id), (10, 40));
        }
        other => panic!("expected connection.close 530, got {other:?}"),
    }
    assert!(third.closed_within(Duration::from_secs(5)).await);
    drop(first);
    // The place comes back once the broker has seen the first connection go.
    within(5, async {
        loop {
            let mut r = Raw::connect(b.addr()).await;
            match r.try_handshake(&Login::default()).await {
                Some((0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))) => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    b.stop().await;
}
