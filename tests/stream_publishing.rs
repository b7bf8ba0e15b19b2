//! Publishing into streams: publisher confirms (sent once the stream synced), and routing into a
//! stream like into any queue, through fanout and topic exchanges, next to classic queues that
//! get the same messages without the stream's `x-stream-offset` header.
use crate::common;
use crate::stream_support;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, ExchangeKind};
use stream_support::*;

async fn exchange(ch: &lapin::Channel, name: &str, kind: ExchangeKind) {
    within(
        5,
        ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.declare");
}

async fn bind(ch: &lapin::Channel, queue: &str, exchange: &str, key: &str) {
    within(
        5,
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.bind");
}

#[tokio::test]
async fn every_publish_to_a_stream_is_confirmed() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    let confirms = within(30, async {
        let mut pending = Vec::new();
        for i in 0..500 {
            let pc = ch
                .basic_publish(
                    "".into(),
                    "s".into(),
                    BasicPublishOptions::default(),
                    format!("m{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .expect("publish");
            pending.push(pc);
        }
        let mut out = Vec::new();
        for pc in pending {
            out.push(pc.await.expect("confirm"));
        }
        out
    })
    .await;
    assert_eq!(confirms.len(), 500);
    for c in &confirms {
        assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    }
    assert_eq!(stream_len(&ch, "s").await, 500);
    let mut r = Reader::open(&b, "s", "", 100, &[("x-stream-offset", s("first"))]).await;
    assert_eq!(r.take(500).await, expected("m", 0..500));
    stop_broker(b).await;
}

#[tokio::test]
async fn a_mandatory_publish_into_a_stream_is_acked_not_returned() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    let conf = within(5, async {
        ch.basic_publish(
            "".into(),
            "s".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m0",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm")
    })
    .await;
    assert!(matches!(conf, Confirmation::Ack(None)), "got {conf:?}");
    assert_eq!(stream_len(&ch, "s").await, 1);
    stop_broker(b).await;
}

#[tokio::test]
async fn a_fanout_exchange_routes_into_a_stream_and_a_classic_queue() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    declare(&ch, "q").await;
    exchange(&ch, "fan", ExchangeKind::Fanout).await;
    bind(&ch, "s", "fan", "").await;
    bind(&ch, "q", "fan", "").await;
    for i in 0..5 {
        let props =
            BasicProperties::default().with_headers(table(&[("n", AMQPValue::LongLongInt(i))]));
        publish_confirmed(&ch, "fan", "any.key", format!("m{i}").as_bytes(), props).await;
    }
    let mut r = Reader::open(&b, "s", "", 10, &[("x-stream-offset", s("first"))]).await;
    for i in 0..5 {
        let d = r.next().await;
        assert_eq!((offset(&d), body(&d)), (i, format!("m{i}")));
        assert_eq!(d.exchange.as_str(), "fan");
        assert_eq!(d.routing_key.as_str(), "any.key");
        let h = d.properties.headers().clone().expect("headers");
        assert_eq!(h.inner().get("n"), Some(&AMQPValue::LongLongInt(i)));
        ack(&d).await;
    }
    for i in 0..5 {
        let m = within(
            5,
            ch.basic_get("q".into(), BasicGetOptions { no_ack: true }),
        )
        .await
        .expect("basic.get")
        .expect("a message in the classic queue");
        assert_eq!(m.delivery.data, format!("m{i}").into_bytes());
        let h = m.delivery.properties.headers().clone().expect("headers");
        assert_eq!(
            h.inner().get("x-stream-offset"),
            None,
            "classic copy untouched"
        );
        assert_eq!(h.inner().get("n"), Some(&AMQPValue::LongLongInt(i)));
    }
    stop_broker(b).await;
}

#[tokio::test]
async fn a_topic_binding_routes_only_matching_keys_into_a_stream() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    exchange(&ch, "events", ExchangeKind::Topic).await;
    bind(&ch, "s", "events", "account.*.deposit").await;
    let keys = [
        "account.1.deposit",
        "account.1.withdrawal",
        "account.2.deposit",
        "audit.login",
    ];
    for k in keys {
        // Unroutable ones are confirmed too (and dropped).
        publish_confirmed(&ch, "events", k, k.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(stream_len(&ch, "s").await, 2);
    let mut r = Reader::open(&b, "s", "", 10, &[("x-stream-offset", s("first"))]).await;
    let got = r.take(2).await;
    assert_eq!(
        got,
        vec![
            (0, "account.1.deposit".to_string()),
            (1, "account.2.deposit".to_string())
        ]
    );
    stop_broker(b).await;
}

#[tokio::test]
async fn a_message_larger_than_a_chunk_round_trips() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    publish_all(&ch, "s", [&b"small"[..], &big[..], &b"after"[..]]).await;
    let mut r = Reader::open(&b, "s", "", 10, &[("x-stream-offset", s("first"))]).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = r.next().await;
        ack(&d).await;
        got.push((offset(&d), d.data.clone()));
    }
    assert_eq!(got[0], (0, b"small".to_vec()));
    assert_eq!(got[1].0, 1);
    assert!(got[1].1 == big, "4 MiB body intact");
    assert_eq!(got[2], (2, b"after".to_vec()));
    stop_broker(b).await;
}
