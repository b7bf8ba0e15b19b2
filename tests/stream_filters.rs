//! Stream filtering: publishers tag messages with the `x-stream-filter-value` header; a consumer
//! with `x-stream-filter` (one string or a list) gets exactly the messages carrying one of its
//! values (server-side and exact, unlike RabbitMQ's probabilistic filter), plus those without a
//! value if it sets `x-stream-match-unfiltered`. Delivered offsets are the messages' own, so a
//! filtered reader sees gaps.
use crate::common;
use crate::stream_support;

use common::*;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use stream_support::*;

/// Filter values of offsets 0..12: "eu", "us", "ap", none, and again.
fn value_of(i: i64) -> Option<&'static str> {
    [Some("eu"), Some("us"), Some("ap"), None][(i % 4) as usize]
}

fn tagged(v: Option<&str>) -> BasicProperties {
    match v {
        Some(v) => {
            BasicProperties::default().with_headers(table(&[("x-stream-filter-value", s(v))]))
        }
        None => BasicProperties::default(),
    }
}

async fn publish_tagged(ch: &Channel, range: std::ops::Range<i64>) {
    for i in range {
        let body = format!("m{i}");
        publish_confirmed(ch, "", "s", body.as_bytes(), tagged(value_of(i))).await;
    }
}

/// A broker with stream "s" holding m0..m11 tagged by `value_of`.
async fn tagged_stream() -> (Broker, lapin::Connection, Channel) {
    let b = start_broker().await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_tagged(&ch, 0..12).await;
    (b, c, ch)
}

/// (offset, body) of the messages among 0..12 that `keep` accepts.
fn wanted(keep: impl Fn(Option<&str>) -> bool) -> Vec<(i64, String)> {
    (0..12)
        .filter(|i| keep(value_of(*i)))
        .map(|i| (i, format!("m{i}")))
        .collect()
}

fn from_first(extra: &[(&'static str, AMQPValue)]) -> Vec<(&'static str, AMQPValue)> {
    let mut a = vec![("x-stream-offset", s("first"))];
    a.extend_from_slice(extra);
    a
}

#[tokio::test]
async fn a_string_filter_gets_only_that_value() {
    let (b, _c, _ch) = tagged_stream().await;
    let mut r = Reader::open(
        &b,
        "s",
        "",
        10,
        &from_first(&[("x-stream-filter", s("eu"))]),
    )
    .await;
    let want = wanted(|v| v == Some("eu"));
    assert_eq!(r.take(want.len()).await, want);
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn a_list_filter_gets_any_of_its_values() {
    let (b, _c, _ch) = tagged_stream().await;
    let args = from_first(&[("x-stream-filter", list(&["eu", "ap"]))]);
    let mut r = Reader::open(&b, "s", "", 10, &args).await;
    let want = wanted(|v| matches!(v, Some("eu" | "ap")));
    assert_eq!(r.take(want.len()).await, want);
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn match_unfiltered_adds_messages_without_a_value() {
    let (b, _c, _ch) = tagged_stream().await;
    let args = from_first(&[
        ("x-stream-filter", s("us")),
        ("x-stream-match-unfiltered", AMQPValue::Boolean(true)),
    ]);
    let mut r = Reader::open(&b, "s", "", 10, &args).await;
    let want = wanted(|v| matches!(v, Some("us") | None));
    assert_eq!(r.take(want.len()).await, want);
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn without_a_filter_a_reader_gets_every_message() {
    let (b, _c, _ch) = tagged_stream().await;
    let mut r = Reader::open(&b, "s", "", 10, &from_first(&[])).await;
    assert_eq!(r.take(12).await, wanted(|_| true));
    stop_broker(b).await;
}

#[tokio::test]
async fn a_filter_matching_nothing_delivers_nothing() {
    let (b, _c, _ch) = tagged_stream().await;
    let args = from_first(&[("x-stream-filter", s("mars"))]);
    let mut r = Reader::open(&b, "s", "", 10, &args).await;
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn a_tailing_filtered_reader_gets_only_new_matching_messages() {
    let (b, _c, ch) = tagged_stream().await;
    let mut r = Reader::open(&b, "s", "", 10, &[("x-stream-filter", s("ap"))]).await;
    assert!(r.quiet(200).await, "next: no history");
    publish_tagged(&ch, 12..20).await;
    assert_eq!(
        r.take(2).await,
        vec![(14, "m14".to_string()), (18, "m18".to_string())]
    );
    assert!(r.quiet(300).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn many_megabytes_of_other_values_do_not_stall_a_filtered_reader() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    // ~10 MiB tagged "us", then one "eu": more than one read scans at a time.
    let filler = vec![b'.'; 1024];
    within(60, async {
        let mut pending = Vec::new();
        for _ in 0..10_000 {
            let pc = ch
                .basic_publish(
                    "".into(),
                    "s".into(),
                    Default::default(),
                    &filler,
                    tagged(Some("us")),
                )
                .await
                .expect("publish");
            pending.push(pc);
        }
        for pc in pending {
            pc.await.expect("confirm");
        }
    })
    .await;
    publish_confirmed(&ch, "", "s", b"needle", tagged(Some("eu"))).await;
    let args = from_first(&[("x-stream-filter", s("eu"))]);
    let mut r = Reader::open(&b, "s", "", 10, &args).await;
    let d = r.next().await;
    assert_eq!((offset(&d), body(&d)), (10_000, "needle".to_string()));
    stop_broker(b).await;
}
