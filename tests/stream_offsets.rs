//! Where a stream consumer starts: every `x-stream-offset` form ("first", "last", "next" and its
//! default, an absolute number (clamped), a negative number (the last N), an AMQP timestamp and
//! an interval string), and the `x-stream-offset` header on each delivery. The message at offset
//! i is "m{i}" throughout, so a delivery's body and header must agree.
//!
//! Timestamps are per chunk (as in RabbitMQ): a consumer starting at a time gets whole chunks
//! whose first message is at or after it. A confirm means the stream synced, and a sync closes
//! the open chunk, so batches published with confirms and separated by a time gap are separate
//! chunks and the tests can be exact.
use crate::common;
use crate::stream_support;

use common::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stream_support::*;

/// A broker with stream "s" holding "m0".."m{n-1}", and a confirm channel to it.
async fn stream_of(n: u32) -> (Broker, lapin::Connection, lapin::Channel) {
    let b = start_broker().await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..n)).await;
    (b, c, ch)
}

fn at(v: AMQPValue) -> [(&'static str, AMQPValue); 1] {
    [("x-stream-offset", v)]
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[tokio::test]
async fn first_replays_the_whole_stream() {
    let (b, _c, _ch) = stream_of(50).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(s("first"))).await;
    assert_eq!(r.take(50).await, expected("m", 0..50));
    assert!(r.quiet(300).await, "nothing past the end");
    stop_broker(b).await;
}

#[tokio::test]
async fn default_start_is_next_only_new_messages() {
    let (b, _c, ch) = stream_of(10).await;
    let mut r = Reader::open(&b, "s", "", 10, &[]).await;
    assert!(r.quiet(300).await, "no history without x-stream-offset");
    publish_all(&ch, "s", bodies("m", 10..15)).await;
    assert_eq!(r.take(5).await, expected("m", 10..15));
    stop_broker(b).await;
}

#[tokio::test]
async fn next_gets_only_messages_published_after_subscribing() {
    let (b, _c, ch) = stream_of(10).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(s("next"))).await;
    assert!(r.quiet(300).await, "no history from next");
    publish_all(&ch, "s", bodies("m", 10..12)).await;
    assert_eq!(r.take(2).await, expected("m", 10..12));
    stop_broker(b).await;
}

#[tokio::test]
async fn last_starts_at_the_newest_chunk() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    // One chunk per message, so the newest chunk is exactly "m9".
    publish_each(&ch, "s", bodies("m", 0..10)).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(s("last"))).await;
    assert_eq!(r.take(1).await, expected("m", 9..10));
    assert!(r.quiet(300).await, "only the last chunk");
    publish_all(&ch, "s", bodies("m", 10..13)).await;
    assert_eq!(r.take(3).await, expected("m", 10..13), "then it tails");
    stop_broker(b).await;
}

#[tokio::test]
async fn last_of_a_pipelined_batch_is_a_suffix_of_that_batch() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_each(&ch, "s", bodies("m", 0..5)).await;
    // Pipelined: group commit may cut these 20 into one chunk or several.
    publish_all(&ch, "s", bodies("m", 5..25)).await;
    let mut r = Reader::open(&b, "s", "", 50, &at(s("last"))).await;
    let d = r.next().await;
    let start = offset(&d);
    assert!((5..25).contains(&start), "last started at {start}");
    assert_eq!(body(&d), format!("m{start}"));
    ack(&d).await;
    let n = usize::try_from(24 - start).expect("count");
    assert_eq!(r.take(n).await, expected("m", start + 1..25));
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn last_on_an_empty_stream_waits_for_the_first_message() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(s("last"))).await;
    assert!(r.quiet(200).await);
    publish_all(&ch, "s", bodies("m", 0..2)).await;
    assert_eq!(r.take(2).await, expected("m", 0..2));
    stop_broker(b).await;
}

#[tokio::test]
async fn number_starts_at_that_offset_whatever_its_integer_type() {
    let (b, _c, _ch) = stream_of(20).await;
    for v in [
        AMQPValue::LongLongInt(7),
        AMQPValue::LongInt(7),
        AMQPValue::ShortInt(7),
        AMQPValue::ShortShortUInt(7),
    ] {
        let mut r = Reader::open(&b, "s", "", 20, &at(v.clone())).await;
        assert_eq!(r.take(13).await, expected("m", 7..20), "{v:?}");
        assert!(r.quiet(100).await);
        r.close().await;
    }
    stop_broker(b).await;
}

#[tokio::test]
async fn number_past_the_end_is_clamped_to_next() {
    let (b, _c, ch) = stream_of(10).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(AMQPValue::LongLongInt(1000))).await;
    assert!(r.quiet(300).await);
    publish_all(&ch, "s", bodies("m", 10..11)).await;
    assert_eq!(r.take(1).await, expected("m", 10..11));
    stop_broker(b).await;
}

#[tokio::test]
async fn negative_number_gives_the_last_n() {
    let (b, _c, _ch) = stream_of(20).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(AMQPValue::LongLongInt(-5))).await;
    assert_eq!(r.take(5).await, expected("m", 15..20));
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn negative_number_larger_than_the_stream_starts_at_first() {
    let (b, _c, _ch) = stream_of(8).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(AMQPValue::LongInt(-100))).await;
    assert_eq!(r.take(8).await, expected("m", 0..8));
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn timestamp_starts_at_the_first_chunk_at_or_after_it() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..5)).await;
    // AMQP timestamps are whole seconds: cut at the next second boundary, publish after it.
    let cut = now_ms() / 1000 + 1;
    let wait = (cut * 1000 + 50).saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    publish_all(&ch, "s", bodies("m", 5..10)).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(AMQPValue::Timestamp(cut))).await;
    assert_eq!(
        r.take(5).await,
        expected("m", 5..10),
        "only the second batch"
    );
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn timestamp_before_the_stream_gives_everything() {
    let (b, _c, _ch) = stream_of(10).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(AMQPValue::Timestamp(0))).await;
    assert_eq!(r.take(10).await, expected("m", 0..10));
    stop_broker(b).await;
}

#[tokio::test]
async fn timestamp_in_the_future_starts_at_next() {
    let (b, _c, ch) = stream_of(10).await;
    let hour_ahead = now_ms() / 1000 + 3600;
    let mut r = Reader::open(&b, "s", "", 10, &at(AMQPValue::Timestamp(hour_ahead))).await;
    assert!(r.quiet(300).await);
    publish_all(&ch, "s", bodies("m", 10..12)).await;
    assert_eq!(r.take(2).await, expected("m", 10..12));
    stop_broker(b).await;
}

#[tokio::test]
async fn interval_starts_at_chunks_younger_than_it() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish_all(&ch, "s", bodies("m", 5..10)).await;
    let mut r = Reader::open(&b, "s", "", 10, &at(s("1s"))).await;
    assert_eq!(
        r.take(5).await,
        expected("m", 5..10),
        "only the last second"
    );
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn every_interval_unit_covering_the_stream_replays_all_of_it() {
    let (b, _c, _ch) = stream_of(10).await;
    for unit in ["10s", "30m", "1h", "7D", "1M", "1Y"] {
        let mut r = Reader::open(&b, "s", "", 10, &at(s(unit))).await;
        assert_eq!(r.take(10).await, expected("m", 0..10), "{unit}");
        assert!(r.quiet(100).await, "{unit}");
        r.close().await;
    }
    stop_broker(b).await;
}

#[tokio::test]
async fn deliveries_carry_the_offset_header_next_to_their_own_headers() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    for i in 0..3i64 {
        let props = BasicProperties::default()
            .with_headers(table(&[("app", AMQPValue::LongLongInt(i * 10))]))
            .with_content_type("text/plain".into());
        publish_confirmed(&ch, "", "s", format!("m{i}").as_bytes(), props).await;
    }
    let mut r = Reader::open(&b, "s", "", 10, &at(s("first"))).await;
    for i in 0..3i64 {
        let d = r.next().await;
        let h = d
            .properties
            .headers()
            .clone()
            .unwrap_or_else(FieldTable::default);
        assert_eq!(
            h.inner().get("x-stream-offset"),
            Some(&AMQPValue::LongLongInt(i))
        );
        assert_eq!(h.inner().get("app"), Some(&AMQPValue::LongLongInt(i * 10)));
        assert_eq!(
            d.properties.content_type().as_ref().map(|t| t.as_str()),
            Some("text/plain")
        );
        assert_eq!(body(&d), format!("m{i}"));
        assert_eq!(d.routing_key.as_str(), "s");
        assert!(!d.redelivered);
        ack(&d).await;
    }
    stop_broker(b).await;
}
