//! Durability of messages across a graceful restart: persistent messages in durable queues come
//! back in order with all their properties, transient ones and non-durable queues do not;
//! delivered-but-unacked messages come back redelivered, acked, rejected and nacked ones not at
//! all; confirms arrive for persistent messages routed to several queues; order and settlement
//! hold over several restarts.
use crate::common;
use common::durability::*;
use common::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Confirmation, ExchangeKind};

/// Properties using every field, headers of many field types.
fn rich_properties(i: u32) -> BasicProperties {
    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongLongInt(-5));
    let mut arr = FieldArray::default();
    arr.push(AMQPValue::LongInt(1));
    arr.push(lstr("two"));
    let headers = table(&[
        ("i", AMQPValue::LongInt(i as i32)),
        ("s", lstr(&format!("header {i}"))),
        ("b", AMQPValue::Boolean(i % 2 == 0)),
        ("d", AMQPValue::Double(1.5)),
        ("l", AMQPValue::LongLongInt(1 << 40)),
        ("t", AMQPValue::Timestamp(1_700_000_000)),
        ("n", AMQPValue::FieldTable(nested)),
        ("a", AMQPValue::FieldArray(arr)),
        ("v", AMQPValue::Void),
        ("x", AMQPValue::ByteArray(vec![0, 1, 2, 255].into())),
    ]);
    persistent()
        .with_content_type("application/octet-stream".into())
        .with_content_encoding("identity".into())
        .with_headers(headers)
        .with_priority(3)
        .with_correlation_id(format!("corr-{i}").as_str().into())
        .with_reply_to("replies".into())
        .with_expiration("86400000".into())
        .with_message_id(format!("id-{i}").as_str().into())
        .with_timestamp(1_700_000_000 + u64::from(i))
        .with_type("test.type".into())
        .with_user_id("guest".into())
        .with_app_id("durability-test".into())
}

#[tokio::test]
async fn persistent_messages_survive_in_order_with_properties() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "pm.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    declare_queue(&ch, "pm.q", durable(), table(&[])).await;
    bind(&ch, "pm.q", "pm.x", "k-a", table(&[])).await;
    bind(&ch, "pm.q", "pm.x", "k-b", table(&[])).await;
    // (exchange, routing key, body, properties) in publish order.
    let mut sent: Vec<(&str, String, Vec<u8>, BasicProperties)> = Vec::new();
    for i in 0..60u32 {
        let key = if i % 2 == 0 { "k-a" } else { "k-b" };
        let body = format!("message {i}").into_bytes();
        sent.push(("pm.x", key.to_string(), body, rich_properties(i)));
    }
    // Via the default exchange, empty body, bare properties, and bodies of several frames.
    sent.push(("", "pm.q".into(), Vec::new(), persistent()));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    sent.push(("pm.x", "k-a".into(), big.clone(), rich_properties(99)));
    // Larger than the 1 MiB segment: the record sits alone in its own segment.
    let huge: Vec<u8> = (0..1_500_000u32).map(|i| (i % 239) as u8).collect();
    sent.push(("", "pm.q".into(), huge, persistent()));
    sent.push(("pm.x", "k-b".into(), b"last".to_vec(), rich_properties(100)));
    for (ex, key, body, p) in &sent {
        publish_confirmed(&ch, ex, key, body, p.clone()).await;
    }
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "pm.q").await as usize, sent.len());
    for (i, (ex, key, body, p)) in sent.iter().enumerate() {
        let m = within(
            5,
            ch.basic_get("pm.q".into(), BasicGetOptions { no_ack: true }),
        )
        .await
        .expect("basic.get")
        .unwrap_or_else(|| panic!("message {i} missing"));
        let d = &m.delivery;
        assert_eq!(d.data.len(), body.len(), "message {i}: body length");
        assert!(d.data == *body, "message {i}: body differs");
        assert_eq!(d.exchange.as_str(), *ex, "message {i}: exchange");
        assert_eq!(d.routing_key.as_str(), key, "message {i}: routing key");
        assert_eq!(d.properties, *p, "message {i}: properties");
        assert!(!d.redelivered, "message {i} was never delivered");
        assert_eq!(m.message_count as usize, sent.len() - i - 1);
    }
    assert!(drain(&ch, "pm.q").await.is_empty());
    drop((ch, c));

    // Taken with no-ack, so they are settled: nothing comes back the second time.
    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "pm.q").await, 0);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn transient_messages_and_non_durable_queues_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "mix.q", durable(), table(&[])).await;
    declare_queue(&ch, "plain.q", QueueDeclareOptions::default(), table(&[])).await;
    declare_exchange(&ch, "fan", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    declare_queue(&ch, "fan.d", durable(), table(&[])).await;
    declare_queue(&ch, "fan.t", QueueDeclareOptions::default(), table(&[])).await;
    bind(&ch, "fan.d", "fan", "", table(&[])).await;
    bind(&ch, "fan.t", "fan", "", table(&[])).await;
    for i in 0..10 {
        publish_confirmed(&ch, "", "mix.q", format!("p{i}").as_bytes(), persistent()).await;
        let transient = BasicProperties::default().with_delivery_mode(1);
        publish_confirmed(&ch, "", "mix.q", format!("t{i}").as_bytes(), transient).await;
        let unset = BasicProperties::default();
        publish_confirmed(&ch, "", "mix.q", format!("u{i}").as_bytes(), unset).await;
        publish_confirmed(&ch, "", "plain.q", b"lost", persistent()).await;
    }
    publish_confirmed(&ch, "fan", "", b"fanned", persistent()).await;
    assert_eq!(ready(&ch, "mix.q").await, 30);
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    let want: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let got = drain(&ch, "mix.q").await;
    assert_eq!(bodies(&got), want, "only the persistent ones, in order");
    assert!(got.iter().all(|(_, r)| !r));
    assert!(!queue_exists(&c, "plain.q").await);
    assert!(!queue_exists(&c, "fan.t").await);
    assert_eq!(bodies(&drain(&ch, "fan.d").await), ["fanned"]);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn unacked_come_back_redelivered_and_acked_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "rd.q", durable(), table(&[])).await;
    for i in 0..10 {
        publish_confirmed(&ch, "", "rd.q", format!("m{i}").as_bytes(), persistent()).await;
    }
    // basic.get: m0, m1, m2 taken; m1 acked.
    let (getter_c, getter) = b.channel().await;
    let got: Vec<(String, u64)> = [
        get_manual(&getter, "rd.q").await,
        get_manual(&getter, "rd.q").await,
        get_manual(&getter, "rd.q").await,
    ]
    .into();
    assert_eq!(got[1].0, "m1");
    within(5, getter.basic_ack(got[1].1, BasicAckOptions::default()))
        .await
        .unwrap();
    // A consumer with prefetch 4 gets m3..m6; it acks m3 and m4 with one multiple ack.
    let (consumer_c, consumer) = b.channel().await;
    within(5, consumer.basic_qos(4, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut stream = within(
        5,
        consumer.basic_consume(
            "rd.q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let mut tags = Vec::new();
    for i in 3..7 {
        let d = within(5, stream.next()).await.unwrap().unwrap();
        assert_eq!(d.data, format!("m{i}").as_bytes());
        tags.push(d.delivery_tag);
    }
    within(
        5,
        consumer.basic_ack(tags[1], BasicAckOptions { multiple: true }),
    )
    .await
    .unwrap();
    // The freed credit brings m7 and m8.
    for i in 7..9 {
        let d = within(5, stream.next()).await.unwrap().unwrap();
        assert_eq!(d.data, format!("m{i}").as_bytes());
    }
    // Round trips on both channels: the acks before them have been handled.
    ready(&getter, "rd.q").await;
    assert_eq!(ready(&consumer, "rd.q").await, 1);
    // The broker stops with m0, m2, m5..m8 delivered and unacked.
    let b = restart(b).await;
    drop((getter, getter_c, consumer, stream, consumer_c, ch, c));

    let (c, ch) = b.channel().await;
    let got = drain(&ch, "rd.q").await;
    let want: Vec<(String, bool)> = [
        ("m0", true),
        ("m2", true),
        ("m5", true),
        ("m6", true),
        ("m7", true),
        ("m8", true),
        ("m9", false),
    ]
    .iter()
    .map(|(b, r)| (b.to_string(), *r))
    .collect();
    assert_eq!(got, want);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn rejected_and_nacked_without_requeue_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "rj.q", durable(), table(&[])).await;
    for i in 0..4 {
        publish_confirmed(&ch, "", "rj.q", format!("m{i}").as_bytes(), persistent()).await;
    }
    let (m0, t0) = get_manual(&ch, "rj.q").await;
    let (m1, t1) = get_manual(&ch, "rj.q").await;
    let (m2, t2) = get_manual(&ch, "rj.q").await;
    assert_eq!((m0.as_str(), m1.as_str(), m2.as_str()), ("m0", "m1", "m2"));
    within(
        5,
        ch.basic_reject(t0, BasicRejectOptions { requeue: false }),
    )
    .await
    .unwrap();
    let nack = BasicNackOptions {
        requeue: false,
        multiple: false,
    };
    within(5, ch.basic_nack(t1, nack)).await.unwrap();
    // Requeued: comes back (redelivered) now and after the restart.
    let requeue = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    within(5, ch.basic_nack(t2, requeue)).await.unwrap();
    assert_eq!(ready(&ch, "rj.q").await, 2);
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    let got = drain(&ch, "rj.q").await;
    assert_eq!(got, [("m2".to_string(), true), ("m3".to_string(), false)]);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn confirms_arrive_for_persistent_messages_in_several_queues() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "cf.x", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    for q in ["cf.d1", "cf.d2"] {
        declare_queue(&ch, q, durable(), table(&[])).await;
        bind(&ch, q, "cf.x", "", table(&[])).await;
    }
    declare_queue(&ch, "cf.t", QueueDeclareOptions::default(), table(&[])).await;
    bind(&ch, "cf.t", "cf.x", "", table(&[])).await;
    // Several in flight at once: every one is acked, in order.
    let mut pending = Vec::new();
    for i in 0..200 {
        let body = format!("m{i}");
        let pc = within(
            5,
            ch.basic_publish(
                "cf.x".into(),
                "".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                persistent(),
            ),
        )
        .await
        .unwrap();
        pending.push(pc);
    }
    // Unroutable persistent: acked too.
    publish_confirmed(&ch, "", "cf.no-such-queue", b"x", persistent()).await;
    for pc in pending {
        let c = within(5, pc).await.unwrap();
        assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    }
    drop((ch, c));
    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "cf.d1").await, 200);
    assert_eq!(ready(&ch, "cf.d2").await, 200);
    assert!(!queue_exists(&c, "cf.t").await);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn several_restarts_keep_order_and_sequence() {
    // Messages published across several broker lifetimes stay in publish order, and what is
    // acked in one lifetime never reappears in a later one.
    let dir = tempfile::tempdir().unwrap();
    let mut b = start(dir.path()).await;
    let mut expect: Vec<String> = Vec::new();
    for round in 0..4 {
        let (c, ch) = confirm_channel(&b).await;
        declare_queue(&ch, "seq.q", durable(), table(&[])).await;
        for i in 0..50 {
            let body = format!("r{round}-{i}");
            publish_confirmed(&ch, "", "seq.q", body.as_bytes(), persistent()).await;
            expect.push(body);
        }
        // Ack the oldest 30 of what is there.
        for _ in 0..30 {
            let (body, tag) = get_manual(&ch, "seq.q").await;
            assert_eq!(body, expect.remove(0), "round {round}");
            within(5, ch.basic_ack(tag, BasicAckOptions::default()))
                .await
                .unwrap();
        }
        assert_eq!(ready(&ch, "seq.q").await as usize, expect.len());
        drop((ch, c));
        b = restart(b).await;
        let (c, ch) = b.channel().await;
        assert_eq!(
            ready(&ch, "seq.q").await as usize,
            expect.len(),
            "after restart {round}"
        );
        drop((ch, c));
    }
    let (c, ch) = b.channel().await;
    let got = drain(&ch, "seq.q").await;
    assert_eq!(bodies(&got), expect);
    assert!(got.iter().all(|(_, r)| !r));
    // Drained with no-ack, then an empty lifetime: a new message still comes back alone.
    drop((ch, c));
    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    publish_confirmed(&ch, "", "seq.q", b"fresh", persistent()).await;
    drop((ch, c));
    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(drain(&ch, "seq.q").await, [("fresh".to_string(), false)]);
    drop((ch, c));
    b.stop().await;
}
