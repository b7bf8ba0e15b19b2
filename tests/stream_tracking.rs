//! Server-side offset tracking: a consumer with `x-stream-offset-tracking` (`true`: named by its
//! consumer tag; a string: that name) resumes after the last offset it acked, across reconnects
//! and broker restarts, unless it passes an explicit `x-stream-offset`. Delivered but unacked
//! messages come again; names are independent.
use crate::common;
use crate::stream_support;

use common::*;
use lapin::options::BasicAckOptions;
use lapin::types::AMQPValue;
use stream_support::*;

fn tracked(first: bool) -> Vec<(&'static str, AMQPValue)> {
    let mut a = vec![("x-stream-offset-tracking", AMQPValue::Boolean(true))];
    if first {
        a.push(("x-stream-offset", s("first")));
    }
    a
}

/// A broker with stream "s" holding m0..m{n-1}.
async fn stream_of(n: u32) -> (Broker, lapin::Connection, lapin::Channel) {
    let b = start_broker().await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..n)).await;
    (b, c, ch)
}

#[tokio::test]
async fn a_tracked_reader_resumes_after_its_last_ack_on_reconnect() {
    let (b, _c, _ch) = stream_of(30).await;
    let mut r = Reader::open(&b, "s", "projector", 5, &tracked(true)).await;
    assert_eq!(r.take(12).await, expected("m", 0..12));
    // Delivered, never acked: not part of the tracked position.
    for i in 12..15 {
        assert_eq!(offset(&r.next().await), i);
    }
    r.close().await;
    let mut r = Reader::open(&b, "s", "projector", 5, &tracked(false)).await;
    assert_eq!(r.take(18).await, expected("m", 12..30));
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn a_named_tracker_resumes_under_another_consumer_tag() {
    let (b, _c, _ch) = stream_of(20).await;
    let name = [("x-stream-offset-tracking", s("ledger-view"))];
    let mut args = name.to_vec();
    args.push(("x-stream-offset", s("first")));
    let mut r = Reader::open(&b, "s", "worker-1", 5, &args).await;
    assert_eq!(r.take(7).await, expected("m", 0..7));
    r.close().await;
    let mut r = Reader::open(&b, "s", "worker-2", 5, &name).await;
    assert_eq!(r.take(13).await, expected("m", 7..20));
    stop_broker(b).await;
}

#[tokio::test]
async fn a_multiple_ack_moves_the_tracked_offset_to_its_highest() {
    let (b, _c, _ch) = stream_of(20).await;
    let mut r = Reader::open(&b, "s", "t", 10, &tracked(true)).await;
    let mut last = None;
    for i in 0..8 {
        let d = r.next().await;
        assert_eq!(offset(&d), i);
        last = Some(d);
    }
    let last = last.expect("deliveries");
    within(5, last.ack(BasicAckOptions { multiple: true }))
        .await
        .expect("ack multiple");
    r.close().await;
    let mut r = Reader::open(&b, "s", "t", 10, &tracked(false)).await;
    assert_eq!(r.take(12).await, expected("m", 8..20));
    stop_broker(b).await;
}

#[tokio::test]
async fn an_explicit_offset_overrides_the_tracked_one() {
    let (b, _c, _ch) = stream_of(20).await;
    let mut r = Reader::open(&b, "s", "t", 5, &tracked(true)).await;
    assert_eq!(r.take(10).await, expected("m", 0..10));
    r.close().await;
    let mut args = tracked(false);
    args.push(("x-stream-offset", AMQPValue::LongLongInt(3)));
    let mut r = Reader::open(&b, "s", "t", 5, &args).await;
    assert_eq!(r.take(17).await, expected("m", 3..20));
    stop_broker(b).await;
}

#[tokio::test]
async fn tracking_names_are_independent() {
    let (b, _c, _ch) = stream_of(20).await;
    let mut a = Reader::open(&b, "s", "a", 5, &tracked(true)).await;
    let mut z = Reader::open(&b, "s", "z", 5, &tracked(true)).await;
    assert_eq!(a.take(4).await, expected("m", 0..4));
    assert_eq!(z.take(15).await, expected("m", 0..15));
    a.close().await;
    z.close().await;
    let mut a = Reader::open(&b, "s", "a", 5, &tracked(false)).await;
    let mut z = Reader::open(&b, "s", "z", 5, &tracked(false)).await;
    assert_eq!(a.take(16).await, expected("m", 4..20));
    assert_eq!(z.take(5).await, expected("m", 15..20));
    stop_broker(b).await;
}

#[tokio::test]
async fn an_untracked_consumer_tag_does_not_resume() {
    let (b, _c, ch) = stream_of(10).await;
    let mut r = Reader::open(&b, "s", "plain", 5, &[("x-stream-offset", s("first"))]).await;
    assert_eq!(r.take(5).await, expected("m", 0..5));
    r.close().await;
    let mut r = Reader::open(&b, "s", "plain", 5, &[]).await;
    assert!(r.quiet(300).await, "default next, not offset 5");
    publish_all(&ch, "s", bodies("m", 10..11)).await;
    assert_eq!(r.take(1).await, expected("m", 10..11));
    stop_broker(b).await;
}

#[tokio::test]
async fn a_tracked_reader_that_read_everything_tails_on_return() {
    let (b, _c, ch) = stream_of(10).await;
    let mut r = Reader::open(&b, "s", "t", 5, &tracked(true)).await;
    assert_eq!(r.take(10).await, expected("m", 0..10));
    r.close().await;
    let mut r = Reader::open(&b, "s", "t", 5, &tracked(false)).await;
    assert!(r.quiet(300).await);
    publish_all(&ch, "s", bodies("m", 10..12)).await;
    assert_eq!(r.take(2).await, expected("m", 10..12));
    stop_broker(b).await;
}

#[tokio::test]
async fn a_tracked_reader_resumes_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..30)).await;
    let mut r = Reader::open(&b, "s", "t", 5, &tracked(true)).await;
    assert_eq!(r.take(21).await, expected("m", 0..21));
    r.close().await;
    drop((c, ch));
    stop_broker(b).await;

    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let mut r = Reader::open(&b, "s", "t", 5, &tracked(false)).await;
    assert_eq!(r.take(9).await, expected("m", 21..30));
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn acks_sent_after_cancel_still_count_for_the_tracked_offset() {
    let (b, _c, _ch) = stream_of(20).await;
    let mut r = Reader::open(&b, "s", "t", 10, &tracked(true)).await;
    let mut held = Vec::new();
    for i in 0..10 {
        let d = r.next().await;
        assert_eq!(offset(&d), i);
        held.push(d);
    }
    // A graceful stop: cancel, finish the work in hand, ack it, close.
    within(
        5,
        r.ch.basic_cancel("t".into(), lapin::options::BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel");
    for d in &held {
        ack(d).await;
    }
    r.close().await;
    let mut r = Reader::open(&b, "s", "t", 10, &tracked(false)).await;
    assert_eq!(r.take(10).await, expected("m", 10..20));
    stop_broker(b).await;
}
