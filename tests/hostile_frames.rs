//! Hostile frames from authenticated (or almost) clients: every channel up to channel_max and one
//! more, open/close churn, frame headers declaring gigabytes, and a client that pipelines
//! requests without reading the answers. Each is answered as RabbitMQ does, costs bounded
//! memory, and other clients stay served within normal latency.
use crate::common;
use crate::hostile_support;
use crate::raw_amqp;

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use common::*;
use hostile_support::*;
use raw_amqp::{method, Raw, HEADER};
use std::time::Duration;

fn channel_open(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
}

fn channel_close(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        })),
    )
}

/// All 2047 channels opened in one burst, then channel 2048: 530 as RabbitMQ words it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_then_one_more_is_530() {
    let b = Broker::start().await;
    let prober = Prober::start(Probe::new(&b).await);
    within(30, async {
        let mut r = Raw::open(b.addr()).await;
        let burst: Vec<u8> = (1..=2047).flat_map(channel_open).collect();
        r.send(&burst).await;
        for ch in 1..=2047u16 {
            match r.read_method().await {
                Some((c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) if c == ch => {}
                other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
            }
        }
        r.send(&channel_open(2048)).await;
        let close = r.connection_close().await.expect("connection.close");
        assert_eq!(close.reply_code, 530);
        assert_eq!(
            close.reply_text.as_str(),
            "NOT_ALLOWED - number of channels opened (2047) has reached the negotiated channel_max (2047)"
        );
    })
    .await;
    let (worst, n) = prober.finish().await;
    eprintln!("{n} round trips meanwhile, slowest {worst:?}");
    b.stop().await;
}

/// 100,000 channel.open + channel.close pairs in a burst on one channel number: each is
/// answered, nothing accumulates, and the connection still works after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_open_close_churn_is_answered_in_order() {
    let b = Broker::start().await;
    let prober = Prober::start(Probe::new(&b).await);
    within(60, async {
        let mut r = Raw::open(b.addr()).await;
        let pair = [channel_open(1), channel_close(1)].concat();
        // 10 bursts of 10,000 pairs, each read back before the next.
        for burst in 0..10 {
            r.send(&pair.repeat(10_000)).await;
            for i in 0..10_000 {
                match r.read_method().await {
                    Some((1, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) => {}
                    other => panic!("burst {burst} pair {i}: expected open-ok, got {other:?}"),
                }
                match r.read_method().await {
                    Some((1, AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)))) => {}
                    other => panic!("burst {burst} pair {i}: expected close-ok, got {other:?}"),
                }
            }
        }
        r.open_channel(1).await;
    })
    .await;
    let (worst, n) = prober.finish().await;
    eprintln!("{n} round trips meanwhile, slowest {worst:?}");
    b.stop().await;
}

/// A frame header declaring ~4 GiB, sent during the handshake (right after connection.start):
/// 501 FRAME_ERROR at once, nothing buffered. 50 such clients at once leave others served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frames_during_the_handshake_are_501_at_once() {
    let b = Broker::start().await;
    let prober = Prober::start(Probe::new(&b).await);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let addr = b.addr();
            tokio::spawn(async move {
                let mut r = Raw::connect(addr).await;
                r.start().await;
                let mut head = vec![1u8, 0, 0];
                head.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
                r.send(&head).await;
                let close = within(2, r.connection_close())
                    .await
                    .expect("connection.close");
                assert_eq!(close.reply_code, 501, "{close:?}");
                assert!(r.closed_within(Duration::from_secs(2)).await);
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    let (worst, n) = prober.finish().await;
    eprintln!("{n} round trips meanwhile, slowest {worst:?}");
    b.stop().await;
}

/// The same after the handshake from 50 connections at once: 501 each, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frames_after_the_handshake_are_501_at_once() {
    let b = Broker::start().await;
    let prober = Prober::start(Probe::new(&b).await);
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let addr = b.addr();
            tokio::spawn(async move {
                let mut r = Raw::open(addr).await;
                r.open_channel(1).await;
                // Content body, method and unknown frame types alike.
                let mut head = vec![[3u8, 1, 42][i % 3], 0, 1];
                head.extend_from_slice(&(0x8000_0000u32 + i as u32).to_be_bytes());
                r.send(&head).await;
                let close = within(2, r.connection_close())
                    .await
                    .expect("connection.close");
                assert_eq!(close.reply_code, 501, "{close:?}");
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    let (worst, n) = prober.finish().await;
    eprintln!("{n} round trips meanwhile, slowest {worst:?}");
    b.stop().await;
}

/// A client that pipelines 200 basic.get of 1 MiB messages and does not read the answers: the
/// broker stops handling its frames once ~4 MiB of output wait (writer::READ_PAUSE), instead of
/// encoding 200 MiB into memory; the queue keeps what was not fetched. Once the client reads,
/// every get is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_without_reading_pause_the_connection() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "big").await;
    let body = vec![7u8; 1 << 20];
    for _ in 0..200 {
        publish(&ch, "big", &body).await;
    }
    let prober = Prober::start(Probe::new(&b).await);
    let mut r = Raw::open(b.addr()).await;
    r.open_channel(1).await;
    let get = method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: "big".into(),
            no_ack: true,
        })),
    );
    r.send(&get.repeat(200)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ready, _) = common::queues::counts(&ch, "big").await;
    // ~4 MiB of output plus what the socket buffers hold; far from all 200.
    assert!(
        ready >= 150,
        "only {ready} of 200 messages left: output was not bounded"
    );
    let mut got = 0;
    within(60, async {
        while got < 200 {
            match r.read_frame().await.expect("frame") {
                amq_protocol::frame::AMQPFrame::Method(
                    1,
                    AMQPClass::Basic(basic::AMQPMethod::GetOk(_)),
                ) => got += 1,
                amq_protocol::frame::AMQPFrame::Method(_, m) => panic!("unexpected {m:?}"),
                _ => {}
            }
        }
    })
    .await;
    let (worst, n) = prober.finish().await;
    eprintln!("{ready} left while paused; {n} round trips meanwhile, slowest {worst:?}");
    b.stop().await;
}

/// The protocol header split over two writes with a pause between still works (a slow but
/// honest client is not a slowloris).
#[tokio::test]
async fn slow_but_timely_handshake_is_accepted() {
    let b = Broker::start().await;
    let mut r = Raw::connect(b.addr()).await;
    r.send(&HEADER[..3]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.send(&HEADER[3..]).await;
    match r.read_method().await {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::Start(_)))) => {}
        other => panic!("expected connection.start, got {other:?}"),
    }
    b.stop().await;
}
