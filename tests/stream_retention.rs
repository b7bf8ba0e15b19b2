//! Stream retention: `x-max-length-bytes` and `x-max-age` drop whole segments
//! (`x-stream-max-segment-size-bytes` sets their size), oldest first and never the newest; what
//! is left starts at a new first offset, which declare-ok's message count, "first", clamped
//! numbers and lagging readers all follow. Retention runs when a segment rotates and every
//! second, so the tests poll for it.
//!
//! Sizes: a message here is a chunk of its own (published with a confirm each), ~1.1 KB for a
//! 1000-byte body, so a 4096-byte segment holds 4 of them; a 5000-byte body fills a segment.
use crate::common;
use crate::stream_support;

use common::*;
use lapin::types::AMQPValue;
use std::time::Duration;
use stream_support::*;

/// "m{i}:" padded with dots to `len` bytes.
fn padded(i: i64, len: usize) -> String {
    let mut s = format!("m{i}:");
    s.extend(std::iter::repeat('.').take(len.saturating_sub(s.len())));
    s
}

fn small_segments(max_bytes: i64) -> Vec<(&'static str, AMQPValue)> {
    vec![
        (
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongLongInt(4096),
        ),
        ("x-max-length-bytes", AMQPValue::LongLongInt(max_bytes)),
    ]
}

/// Reads `n` deliveries and checks they are offsets `from..from+n` with their own bodies.
async fn expect_run(r: &mut Reader, from: i64, n: usize, len: usize) {
    let got = r.take(n).await;
    let want: Vec<_> = (from..from + n as i64)
        .map(|i| (i, padded(i, len)))
        .collect();
    assert_eq!(got, want);
}

/// Waits until the stream holds at most `max` messages; returns how many it holds.
async fn shrinks_to(ch: &lapin::Channel, name: &str, max: u32) -> u32 {
    within(10, async {
        loop {
            let n = stream_len(ch, name).await;
            if n <= max {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn size_limit_drops_old_segments_and_first_moves_on() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &small_segments(10_000)).await;
    publish_each(&ch, "s", (0..40).map(|i| padded(i, 1000))).await;
    // 10 000 bytes hold at most 9 messages of ~1.1 KB.
    let n = shrinks_to(&ch, "s", 9).await;
    assert!(n >= 1, "the newest segment is never dropped");
    let first = 40 - i64::from(n);
    assert!(first >= 31, "first offset {first}");
    let mut r = Reader::open(&b, "s", "", 50, &[("x-stream-offset", s("first"))]).await;
    expect_run(&mut r, first, n as usize, 1000).await;
    assert!(r.quiet(200).await);
    // Appends go on at the old next offset.
    publish_each(&ch, "s", [padded(40, 1000)]).await;
    expect_run(&mut r, 40, 1, 1000).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn a_number_below_the_first_offset_is_clamped_to_it() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &small_segments(10_000)).await;
    publish_each(&ch, "s", (0..40).map(|i| padded(i, 1000))).await;
    let n = shrinks_to(&ch, "s", 9).await;
    let first = 40 - i64::from(n);
    for v in [AMQPValue::LongLongInt(0), AMQPValue::LongLongInt(3)] {
        let mut r = Reader::open(&b, "s", "", 50, &[("x-stream-offset", v)]).await;
        expect_run(&mut r, first, n as usize, 1000).await;
        r.close().await;
    }
    stop_broker(b).await;
}

#[tokio::test]
async fn small_segments_alone_drop_nothing() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    let args = [(
        "x-stream-max-segment-size-bytes",
        AMQPValue::LongLongInt(4096),
    )];
    declare_stream(&ch, "s", &args).await;
    publish_each(&ch, "s", (0..40).map(|i| padded(i, 1000))).await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // a retention tick
    assert_eq!(stream_len(&ch, "s").await, 40);
    let mut r = Reader::open(&b, "s", "", 50, &[("x-stream-offset", s("first"))]).await;
    expect_run(&mut r, 0, 40, 1000).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn age_limit_drops_segments_older_than_it() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    let args = [
        (
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongLongInt(4096),
        ),
        ("x-max-age", s("1s")),
    ];
    declare_stream(&ch, "s", &args).await;
    // A 5000-byte message fills a segment: 10 segments.
    publish_each(&ch, "s", (0..10).map(|i| padded(i, 5000))).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // All but the newest segment are gone by now; new messages rotate that one out too, and
    // stay together in the new segment, which is never dropped.
    publish_each(&ch, "s", (10..20).map(|i| padded(i, 100))).await;
    assert_eq!(shrinks_to(&ch, "s", 10).await, 10);
    let mut r = Reader::open(&b, "s", "", 50, &[("x-stream-offset", s("first"))]).await;
    expect_run(&mut r, 10, 10, 100).await;
    assert!(r.quiet(200).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn a_lagging_reader_moves_on_to_the_new_first_offset() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &small_segments(10_000)).await;
    publish_each(&ch, "s", (0..4).map(|i| padded(i, 1000))).await;
    // Prefetch 1: the reader holds offset 0 unacked and reads nothing further.
    let mut r = Reader::open(&b, "s", "", 1, &[("x-stream-offset", s("first"))]).await;
    let d0 = r.next().await;
    assert_eq!(offset(&d0), 0);
    publish_each(&ch, "s", (4..40).map(|i| padded(i, 1000))).await;
    let n = shrinks_to(&ch, "s", 9).await;
    let first = 40 - i64::from(n);
    ack(&d0).await;
    expect_run(&mut r, first, n as usize, 1000).await;
    assert!(r.quiet(200).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn retention_settings_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &small_segments(10_000)).await;
    publish_each(&ch, "s", (0..4).map(|i| padded(i, 1000))).await;
    drop((c, ch));
    stop_broker(b).await;

    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (_c, ch) = confirm_channel(&b).await;
    assert_eq!(stream_len(&ch, "s").await, 4);
    publish_each(&ch, "s", (4..40).map(|i| padded(i, 1000))).await;
    let n = shrinks_to(&ch, "s", 9).await;
    let mut r = Reader::open(&b, "s", "", 50, &[("x-stream-offset", s("first"))]).await;
    expect_run(&mut r, 40 - i64::from(n), n as usize, 1000).await;
    stop_broker(b).await;
}
