//! Dead-lettering, checked against what RabbitMQ 4 writes: rejected (basic.reject / basic.nack
//! without requeue) and expired messages go to `x-dead-letter-exchange`, with
//! `x-dead-letter-routing-key` or their own routing keys (CC included); each carries the
//! `x-death` array (count per queue and reason, most recent first) and the `x-first-death-*` /
//! `x-last-death-*` headers; `expiration` becomes `original-expiration`; a publisher's death
//! headers are not interpreted; cycles without a rejection are dropped; a missing exchange drops
//! the message; dead-lettered messages keep their persistence.
use crate::common;
use common::durability::{restart, start};
use common::features::*;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use std::time::Duration;

async fn exchange(ch: &Channel, name: &str) {
    within(
        5,
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.declare");
}

async fn bind(ch: &Channel, queue: &str, ex: &str, key: &str) {
    within(
        5,
        ch.queue_bind(
            queue.into(),
            ex.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.bind");
}

/// basic.get with manual ack; the delivery tag.
async fn take(ch: &Channel, queue: &str) -> u64 {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .unwrap_or_else(|| panic!("{queue} is empty"))
    .delivery
    .delivery_tag
}

async fn reject(ch: &Channel, tag: u64) {
    within(
        5,
        ch.basic_reject(tag, BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("basic.reject");
}

/// Wait for a message in `queue` and take it (no-ack).
async fn arrives(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    within(5, async {
        loop {
            if let Some(m) = get(ch, queue).await {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn rejected_message_carries_rabbitmq_death_headers() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "dlx").await;
    declare_args(&ch, "dlq", args(&[])).await;
    bind(&ch, "dlq", "dlx", "work").await;
    declare_args(&ch, "work", args(&[("x-dead-letter-exchange", s("dlx"))])).await;
    send(&ch, "", "work", "job", BasicProperties::default()).await;
    let tag = take(&ch, "work").await;
    reject(&ch, tag).await;
    let m = arrives(&ch, "dlq").await;
    assert_eq!(text(&m), "job");
    assert_eq!(m.delivery.exchange.as_str(), "dlx");
    assert_eq!(m.delivery.routing_key.as_str(), "work");
    let p = &m.delivery.properties;
    let d = deaths(p);
    assert_eq!(d.len(), 1);
    assert_eq!(field_str(&d[0], "queue").as_deref(), Some("work"));
    assert_eq!(field_str(&d[0], "reason").as_deref(), Some("rejected"));
    assert_eq!(field_str(&d[0], "exchange").as_deref(), Some(""));
    assert_eq!(field_int(&d[0], "count"), Some(1));
    assert!(matches!(
        d[0].inner().get("time"),
        Some(AMQPValue::Timestamp(_))
    ));
    assert_eq!(
        d[0].inner().get("routing-keys"),
        Some(&AMQPValue::FieldArray(FieldArray::from(vec![s("work")])))
    );
    assert!(d[0].inner().get("original-expiration").is_none());
    for (k, v) in [
        ("x-first-death-queue", "work"),
        ("x-first-death-reason", "rejected"),
        ("x-first-death-exchange", ""),
        ("x-last-death-queue", "work"),
        ("x-last-death-reason", "rejected"),
        ("x-last-death-exchange", ""),
    ] {
        assert_eq!(header_str(p, k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(count(&ch, "work").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn nack_multiple_without_requeue_dead_letters_each() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "dlq", args(&[])).await;
    let a = args(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ]);
    declare_args(&ch, "n", a).await;
    for m in ["1", "2", "3"] {
        send(&ch, "", "n", m, BasicProperties::default()).await;
    }
    let mut last = 0;
    for _ in 0..3 {
        last = take(&ch, "n").await;
    }
    let opts = BasicNackOptions {
        multiple: true,
        requeue: false,
    };
    within(5, ch.basic_nack(last, opts)).await.expect("nack");
    wait_count(&ch, "dlq", 3, 5).await;
    assert_eq!(bodies(&ch, "dlq").await, ["1", "2", "3"]);
    b.stop().await;
}

#[tokio::test]
async fn expired_message_is_dead_lettered_with_its_original_expiration() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "expired", args(&[])).await;
    let a = args(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("expired")),
    ]);
    declare_args(&ch, "src", a).await;
    send(&ch, "", "src", "late", expiring("50")).await;
    let m = arrives(&ch, "expired").await;
    let p = &m.delivery.properties;
    assert_eq!(p.expiration(), &None, "expiration removed");
    let d = deaths(p);
    assert_eq!(field_str(&d[0], "reason").as_deref(), Some("expired"));
    assert_eq!(
        field_str(&d[0], "original-expiration").as_deref(),
        Some("50")
    );
    assert_eq!(m.delivery.routing_key.as_str(), "expired");
    assert_eq!(count(&ch, "src").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn x_death_counts_deaths_per_queue_and_reason() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    // The retry pattern: rejected from `work`, parked in `retry` until its TTL, back to `work`.
    let work = args(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("retry")),
    ]);
    let retry = args(&[
        ("x-message-ttl", int(50)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("work")),
    ]);
    declare_args(&ch, "work", work).await;
    declare_args(&ch, "retry", retry).await;
    send(&ch, "", "work", "task", BasicProperties::default()).await;
    for round in 1..=2 {
        wait_count(&ch, "work", 1, 5).await;
        let tag = take(&ch, "work").await;
        reject(&ch, tag).await;
        wait_count(&ch, "work", 1, 5).await;
        let m = within(
            5,
            ch.basic_get("work".into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .expect("get")
        .expect("back in work");
        let d = deaths(&m.delivery.properties);
        assert_eq!(d.len(), 2, "one entry per (queue, reason)");
        assert_eq!(field_str(&d[0], "queue").as_deref(), Some("retry"));
        assert_eq!(field_str(&d[0], "reason").as_deref(), Some("expired"));
        assert_eq!(field_int(&d[0], "count"), Some(round));
        assert_eq!(field_str(&d[1], "queue").as_deref(), Some("work"));
        assert_eq!(field_str(&d[1], "reason").as_deref(), Some("rejected"));
        assert_eq!(field_int(&d[1], "count"), Some(round));
        let p = &m.delivery.properties;
        assert_eq!(
            header_str(p, "x-first-death-queue").as_deref(),
            Some("work")
        );
        assert_eq!(
            header_str(p, "x-last-death-queue").as_deref(),
            Some("retry")
        );
        within(
            5,
            ch.basic_reject(
                m.delivery.delivery_tag,
                BasicRejectOptions { requeue: true },
            ),
        )
        .await
        .expect("requeue");
    }
    b.stop().await;
}

#[tokio::test]
async fn expiry_cycle_without_rejection_is_dropped() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    // Expired messages go back to the same queue through the default exchange: dropped there.
    let a = args(&[
        ("x-message-ttl", int(30)),
        ("x-dead-letter-exchange", s("")),
    ]);
    declare_args(&ch, "loop", a).await;
    send(&ch, "", "loop", "once", BasicProperties::default()).await;
    wait_count(&ch, "loop", 0, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&ch, "loop").await, 0, "not looping");
    b.stop().await;
}

#[tokio::test]
async fn reject_cycle_keeps_going() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "again", args(&[("x-dead-letter-exchange", s(""))])).await;
    send(&ch, "", "again", "m", BasicProperties::default()).await;
    for round in 1..=3 {
        wait_count(&ch, "again", 1, 5).await;
        let m = within(
            5,
            ch.basic_get("again".into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .expect("get")
        .expect("message");
        if round > 1 {
            let d = deaths(&m.delivery.properties);
            assert_eq!(field_int(&d[0], "count"), Some(round - 1));
        }
        reject(&ch, m.delivery.delivery_tag).await;
    }
    b.stop().await;
}

#[tokio::test]
async fn missing_dead_letter_exchange_drops_the_message() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(
        &ch,
        "lonely",
        args(&[("x-dead-letter-exchange", s("nowhere"))]),
    )
    .await;
    send(&ch, "", "lonely", "m", BasicProperties::default()).await;
    let tag = take(&ch, "lonely").await;
    reject(&ch, tag).await;
    assert_eq!(count(&ch, "lonely").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn publisher_death_headers_are_not_interpreted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "dlq", args(&[])).await;
    let a = args(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ]);
    declare_args(&ch, "src", a).await;
    let mut forged = FieldTable::default();
    forged.insert("queue".into(), s("src"));
    forged.insert("reason".into(), s("rejected"));
    forged.insert("count".into(), int(5));
    let mut h = FieldTable::default();
    h.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(forged)])),
    );
    h.insert("x-first-death-queue".into(), s("elsewhere"));
    send(
        &ch,
        "",
        "src",
        "m",
        BasicProperties::default().with_headers(h),
    )
    .await;
    let tag = take(&ch, "src").await;
    reject(&ch, tag).await;
    let m = arrives(&ch, "dlq").await;
    let p = &m.delivery.properties;
    let d = deaths(p);
    assert_eq!(d.len(), 1);
    assert_eq!(field_int(&d[0], "count"), Some(1));
    assert_eq!(header_str(p, "x-first-death-queue").as_deref(), Some("src"));
    b.stop().await;
}

#[tokio::test]
async fn cc_keys_are_used_and_recorded_and_bcc_is_removed() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "dlx").await;
    declare_args(&ch, "by-cc", args(&[])).await;
    bind(&ch, "by-cc", "dlx", "cc-key").await;
    declare_args(&ch, "src", args(&[("x-dead-letter-exchange", s("dlx"))])).await;
    let list = |v: &str| AMQPValue::FieldArray(FieldArray::from(vec![s(v)]));
    let mut h = FieldTable::default();
    h.insert("CC".into(), list("cc-key"));
    h.insert("BCC".into(), list("bcc-key"));
    send(
        &ch,
        "",
        "src",
        "m",
        BasicProperties::default().with_headers(h),
    )
    .await;
    let tag = take(&ch, "src").await;
    reject(&ch, tag).await;
    let m = arrives(&ch, "by-cc").await;
    let p = &m.delivery.properties;
    assert!(header(p, "BCC").is_none(), "BCC removed");
    assert_eq!(header(p, "CC"), Some(&list("cc-key")));
    let d = deaths(p);
    assert_eq!(
        d[0].inner().get("routing-keys"),
        Some(&AMQPValue::FieldArray(FieldArray::from(vec![
            s("src"),
            s("cc-key")
        ])))
    );
    b.stop().await;
}

#[tokio::test]
async fn dead_lettered_message_keeps_its_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_with(&ch, "dlq", durable(), args(&[]))
        .await
        .expect("dlq");
    let a = args(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
    ]);
    declare_with(&ch, "src", durable(), a).await.expect("src");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    send(&ch, "", "src", "kept", persistent).await;
    send(&ch, "", "src", "transient", BasicProperties::default()).await;
    for _ in 0..2 {
        let tag = take(&ch, "src").await;
        reject(&ch, tag).await;
    }
    wait_count(&ch, "dlq", 2, 5).await;
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(count(&ch, "src").await, 0, "settled in the source");
    let m = get(&ch, "dlq")
        .await
        .expect("persistent dead letter survives");
    assert_eq!(text(&m), "kept");
    assert_eq!(m.delivery.properties.delivery_mode(), &Some(2));
    assert_eq!(deaths(&m.delivery.properties).len(), 1);
    assert!(get(&ch, "dlq").await.is_none(), "the transient one is gone");
    b.stop().await;
}

#[tokio::test]
async fn message_that_expired_while_the_broker_was_down_is_dead_lettered_after_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_with(&ch, "parked", durable(), args(&[]))
        .await
        .expect("dlq");
    let a = args(&[
        ("x-message-ttl", int(300)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("parked")),
    ]);
    declare_with(&ch, "waiting", durable(), a)
        .await
        .expect("src");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    send(&ch, "", "waiting", "m", persistent).await;
    assert_eq!(count(&ch, "waiting").await, 1);
    let dir_path = b.data_dir.clone();
    within(10, b.stop()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = start(&dir_path).await;
    let (_c, ch) = b.channel().await;
    wait_count(&ch, "parked", 1, 5).await;
    assert_eq!(count(&ch, "waiting").await, 0);
    let m = get(&ch, "parked").await.expect("dead letter");
    let d = deaths(&m.delivery.properties);
    assert_eq!(field_str(&d[0], "reason").as_deref(), Some("expired"));
    b.stop().await;
}
