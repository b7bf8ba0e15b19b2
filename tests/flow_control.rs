//! Publisher flow control: a publisher that outruns the consumers of a queue is paused (its socket
//! is not read) once the backlog passes the high-water mark, instead of the queue growing without
//! bound; a backlog with stuck consumers never blocks publishers for good.
use crate::common;
use common::queues::counts;
use common::raw::Client;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::broker::queue::flow::HIGH_WATER;

/// Publish `n` 16-byte messages to `queue` over a raw connection, in batches written at once
/// (far faster than any consumer here). Returns when the broker has read them all.
async fn flood(b: &Broker, queue: &'static str, n: usize) -> tokio::task::JoinHandle<()> {
    let mut raw = Client::open(b).await;
    tokio::spawn(async move {
        for _ in 0..n / 5_000 {
            raw.publish_many(1, queue, &[7u8; 16], 5_000).await;
        }
        raw.sync(1).await;
    })
}

async fn consume(ch: &lapin::Channel, queue: &str, prefetch: u16) -> lapin::Consumer {
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    ch.basic_consume(
        queue.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("consume")
}

#[tokio::test]
async fn a_publisher_waits_for_slow_consumers_instead_of_growing_the_queue() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "fc").await;
    let (_cc, cch) = b.channel().await;
    let mut consumer = consume(&cch, "fc", 100).await;
    let acked = Arc::new(AtomicU64::new(0));
    let a = acked.clone();
    // A consumer that keeps taking messages, but slowly (a few thousand a second).
    let slow = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            d.ack(BasicAckOptions::default()).await.expect("ack");
            if a.fetch_add(1, Ordering::Relaxed) % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let publisher = flood(&b, "fc", 60_000).await;
    let mut max = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) && !publisher.is_finished() {
        max = max.max(counts(&ch, "fc").await.0 as usize);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        acked.load(Ordering::Relaxed) > 0,
        "the consumer made progress"
    );
    // One read batch (64 KiB of frames) may land after the mark is passed.
    assert!(
        max <= HIGH_WATER + 2_000,
        "backlog reached {max} messages with a consumer attached (high water {HIGH_WATER})"
    );
    // At under 10k acks a second, 3 s cannot drain enough for all 60k to be read.
    assert!(
        !publisher.is_finished(),
        "the publisher was not throttled to the consumer's pace"
    );
    publisher.abort();
    slow.abort();
}

#[tokio::test]
async fn a_stuck_consumer_does_not_block_publishers() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "stuck").await;
    let (_cc, cch) = b.channel().await;
    // Prefetch 1 and never an ack: the queue cannot drain.
    let mut consumer = consume(&cch, "stuck", 1).await;
    let publisher = flood(&b, "stuck", 30_000).await;
    let _first = within(5, consumer.next()).await;
    within(20, publisher).await.expect("publisher task");
    let (ready, consumers) = counts(&ch, "stuck").await;
    assert_eq!((ready, consumers), (29_999, 1));
}

#[tokio::test]
async fn a_queue_with_no_consumer_buffers_everything_at_full_speed() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "buffer").await;
    let publisher = flood(&b, "buffer", 50_000).await;
    within(20, publisher).await.expect("publisher task");
    assert_eq!(counts(&ch, "buffer").await, (50_000, 0));
}

#[tokio::test]
async fn a_throttled_publisher_is_not_dropped_for_missed_heartbeats() {
    let b = Broker::start_with(|c| {
        c.limits.heartbeat = 1;
    })
    .await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "fc-hb").await;
    // A consumer that drains one message every 100 ms: steady progress (so the publisher is
    // not let go as stuck), far too slow to bring the backlog under the low-water mark.
    let (_cc, cch) = b.channel().await;
    let mut consumer = consume(&cch, "fc-hb", 1).await;
    let slow = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
    });
    let url = format!("{}?heartbeat=1", b.url());
    let pc = lapin::Connection::connect(&url, Default::default())
        .await
        .expect("connect");
    let pch = pc.create_channel().await.expect("channel");
    let publisher = tokio::spawn(async move {
        for _ in 0..(HIGH_WATER * 3) {
            let r = pch
                .basic_publish(
                    "".into(),
                    "fc-hb".into(),
                    BasicPublishOptions::default(),
                    &[7u8; 16],
                    lapin::BasicProperties::default(),
                )
                .await;
            if r.is_err() {
                break;
            }
        }
    });
    within(10, async {
        while (counts(&ch, "fc-hb").await.0 as usize) < HIGH_WATER {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Throttled: its socket is not read, so its heartbeats wait there. Well past two
    // heartbeat intervals, it must still be connected.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let ready = counts(&ch, "fc-hb").await.0 as usize;
    assert!(
        ready <= HIGH_WATER + 2_000,
        "the publisher was not throttled: {ready} messages queued"
    );
    assert!(
        pc.status().connected(),
        "the throttled publisher was dropped"
    );
    publisher.abort();
    slow.abort();
}
