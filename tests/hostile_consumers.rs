//! Hostile consumers: one that never acks and never set a prefetch, and one that stops reading its
//! socket while a large backlog is published to it. Neither pulls the backlog into the broker's
//! memory: the first is held at the delivery window (`limits.default_consumer_prefetch`), the
//! second is throttled and then disconnected after `limits.write_stall_timeout` with every message
//! back in its queue, while other clients are served within normal latency.
use crate::common;
use crate::hostile_support;
use crate::raw_amqp;

use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::FieldTable;
use common::*;
use futures_lite::StreamExt;
use hostile_support::*;
use lapin::options::*;
use raw_amqp::Raw;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::broker::queue::Queue;

fn queue(b: &Broker, name: &str) -> Arc<Queue> {
    let broker = b.handle.as_ref().expect("running").broker();
    broker
        .vhost("/")
        .and_then(|v| v.queue(name))
        .expect("queue exists")
}

/// (ready, unacked) as the broker holds them.
fn state(q: &Queue) -> (u64, u64) {
    let (ready, unacked, _, _) = q.snapshot();
    (ready, unacked)
}

/// Wait until the queue's (ready, unacked) is `want`, or fail after `secs`.
async fn wait_state(q: &Queue, want: (u64, u64), secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while state(q) != want {
        assert!(
            Instant::now() < deadline,
            "queue state {:?}, expected {want:?}",
            state(q)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish_n(ch: &lapin::Channel, q: &str, n: usize, size: usize) {
    let body = vec![b'x'; size];
    for _ in 0..n {
        publish(ch, q, &body).await;
    }
}

/// A manual-ack consumer that never sent basic.qos and never acks: the queue hands it the
/// window (2000 by default) and keeps the rest ready, however long it waits; each ack lets one
/// more through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_without_prefetch_is_held_at_the_window() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "hog").await;
    publish_n(&ch, "hog", 10_000, 16).await;
    let q = queue(&b, "hog");
    wait_state(&q, (10_000, 0), 10).await;
    let prober = Prober::start(Probe::new(&b).await);
    let (_c2, ch2) = b.channel().await;
    let mut consumer = ch2
        .basic_consume(
            "hog".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    wait_state(&q, (8_000, 2_000), 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state(&q), (8_000, 2_000), "the window must hold");
    // Ack the first 10 deliveries: 10 more come.
    let mut last = 0;
    for _ in 0..10 {
        let d = within(5, consumer.next())
            .await
            .expect("delivery")
            .expect("ok");
        last = d.delivery_tag;
    }
    ch2.basic_ack(last, BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    wait_state(&q, (7_990, 2_000), 10).await;
    let (worst, n) = prober.finish().await;
    eprintln!("{n} round trips meanwhile, slowest {worst:?}");
    b.stop().await;
}

/// With `default_consumer_prefetch = 0` a consumer without basic.qos gets everything, as in
/// RabbitMQ's default.
#[tokio::test]
async fn window_zero_is_unlimited_as_rabbitmq() {
    let b = Broker::start_with(|c| c.limits.default_consumer_prefetch = 0).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "all").await;
    publish_n(&ch, "all", 3_000, 16).await;
    let q = queue(&b, "all");
    wait_state(&q, (3_000, 0), 10).await;
    let _consumer = ch
        .basic_consume(
            "all".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    wait_state(&q, (0, 3_000), 10).await;
    b.stop().await;
}

/// basic.qos(0, global) on a running consumer that had a prefetch puts it back on the window,
/// not on "unlimited".
#[tokio::test]
async fn prefetch_reset_to_zero_falls_back_to_the_window() {
    let b = Broker::start_with(|c| c.limits.default_consumer_prefetch = 50).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "reset").await;
    publish_n(&ch, "reset", 500, 16).await;
    let q = queue(&b, "reset");
    wait_state(&q, (500, 0), 10).await;
    ch.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let _consumer = ch
        .basic_consume(
            "reset".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    wait_state(&q, (490, 10), 10).await;
    ch.basic_qos(0, BasicQosOptions { global: true })
        .await
        .expect("qos");
    wait_state(&q, (450, 50), 10).await;
    b.stop().await;
}

/// A consumer that stops reading its socket while 50 MB are published to its queue: it is
/// throttled (the broker keeps serving others), closed once its socket has taken nothing for
/// write_stall_timeout (2 s here), and every message is back in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_that_stops_reading_is_closed_and_its_messages_kept() {
    let b = Broker::start_with(|c| c.limits.write_stall_timeout = 2).await;
    let admission = b
        .handle
        .as_ref()
        .expect("running")
        .broker()
        .admission
        .clone();
    let (_c, ch) = b.channel().await;
    declare(&ch, "stalled").await;
    let q = queue(&b, "stalled");
    // The consumer: manual ack, no qos, and it never reads a byte after consume-ok.
    let mut stuck = Raw::open(b.addr()).await;
    stuck.open_channel(1).await;
    stuck
        .send_method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: "stalled".into(),
                consumer_tag: "stuck".into(),
                no_local: false,
                no_ack: false,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await;
    match stuck.read_method().await {
        Some((1, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)))) => {}
        other => panic!("expected consume-ok, got {other:?}"),
    }
    let prober = Prober::start(Probe::new(&b).await);
    let open_before = admission.open_connections();
    // 800 × 64 KiB = 50 MiB.
    let t = Instant::now();
    publish_n(&ch, "stalled", 800, 64 * 1024).await;
    let published = t.elapsed();
    within(30, async {
        while admission.open_connections() >= open_before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let closed = t.elapsed();
    // Every message is back: ready, none unacked.
    wait_state(&q, (800, 0), 10).await;
    let (worst, n) = prober.finish().await;
    eprintln!(
        "published in {published:?}, stalled consumer closed after {closed:?}; {n} round trips meanwhile, slowest {worst:?}"
    );
    assert!(
        closed >= Duration::from_secs(2),
        "closed before the stall timeout"
    );
    // The stalled client, reading at last, finds its socket closed after what was buffered.
    assert!(stuck.closed_within(Duration::from_secs(10)).await);
    b.stop().await;
}
