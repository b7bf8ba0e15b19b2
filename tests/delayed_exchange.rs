//! The `x-delayed-message` exchange type, as the rabbitmq-delayed-message-exchange plugin
//! documents it: `x-delayed-type` is required (406 without it), a message with `x-delay` (ms) is
//! held and then routed with the underlying type, one without (or with a delay <= 0) is routed at
//! once, delivered messages carry the delay negated, and a durable delayed exchange's held
//! persistent messages survive a restart and a kill -9.
use crate::common;
use crate::crash_support;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use std::time::{Duration, Instant};

fn delayed_kind() -> ExchangeKind {
    ExchangeKind::Custom("x-delayed-message".into())
}

async fn declare_delayed(ch: &lapin::Channel, name: &str, underlying: &str, durable: bool) {
    within(
        5,
        ch.exchange_declare(
            name.into(),
            delayed_kind(),
            ExchangeDeclareOptions {
                durable,
                ..Default::default()
            },
            args(&[("x-delayed-type", text(underlying))]),
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

fn delay(ms: i64) -> BasicProperties {
    BasicProperties::default().with_headers(args(&[("x-delay", long(ms))]))
}

async fn publish_to(ch: &lapin::Channel, ex: &str, key: &str, body: &[u8], p: BasicProperties) {
    within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            p,
        ),
    )
    .await
    .expect("basic.publish");
}

#[tokio::test]
async fn a_delayed_message_is_routed_when_its_time_comes() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "later", "direct", false).await;
    declare(&ch, "later-q").await;
    bind(&ch, "later-q", "later", "k").await;
    let mut consumer = consume(&ch, "later-q", true).await;
    let start = Instant::now();
    publish_to(&ch, "later", "k", b"slow", delay(900)).await;
    publish_to(&ch, "later", "k", b"fast", delay(300)).await;
    publish_to(&ch, "later", "k", b"now", BasicProperties::default()).await;
    assert_eq!(body(&next(&mut consumer).await), "now");
    let fast = next(&mut consumer).await;
    let t_fast = start.elapsed();
    let slow = next(&mut consumer).await;
    let t_slow = start.elapsed();
    assert_eq!((body(&fast), body(&slow)), ("fast".into(), "slow".into()));
    assert!(
        t_fast >= Duration::from_millis(280),
        "fast after {t_fast:?}"
    );
    assert!(
        t_slow >= Duration::from_millis(880),
        "slow after {t_slow:?}"
    );
    // Delivered with the delay negated, as the plugin leaves it.
    let h = slow.properties.headers().clone().expect("headers");
    assert_eq!(h.inner().get("x-delay"), Some(&AMQPValue::LongInt(-900)));
    b.stop().await;
}

#[tokio::test]
async fn a_zero_or_negative_delay_routes_at_once() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "neg", "direct", false).await;
    declare(&ch, "neg-q").await;
    bind(&ch, "neg-q", "neg", "k").await;
    publish_to(&ch, "neg", "k", b"a", delay(-100)).await;
    publish_to(&ch, "neg", "k", b"b", delay(0)).await;
    assert_eq!(counts(&ch, "neg-q").await.0, 2);
    b.stop().await;
}

#[tokio::test]
async fn the_underlying_type_decides_the_routing() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "fan", "fanout", false).await;
    declare_delayed(&ch, "top", "topic", false).await;
    for q in ["f1", "f2", "t1", "t2"] {
        declare(&ch, q).await;
    }
    bind(&ch, "f1", "fan", "x").await;
    bind(&ch, "f2", "fan", "y").await;
    bind(&ch, "t1", "top", "a.*").await;
    bind(&ch, "t2", "top", "b.#").await;
    publish_to(&ch, "fan", "ignored", b"f", delay(200)).await;
    publish_to(&ch, "top", "a.one", b"t", delay(200)).await;
    assert_eq!(counts(&ch, "f1").await.0, 0, "routed before its time");
    for (q, n) in [("f1", 1), ("f2", 1), ("t1", 1)] {
        wait_ready(&ch, q, n).await;
    }
    assert_eq!(counts(&ch, "t2").await.0, 0);
    b.stop().await;
}

#[tokio::test]
async fn x_delayed_type_is_required() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let e = within(
        5,
        ch.exchange_declare(
            "no-type".into(),
            delayed_kind(),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect_err("declare without x-delayed-type");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
    );
    b.stop().await;
}

#[tokio::test]
async fn an_unknown_x_delayed_type_is_an_unknown_exchange_type() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    let _ = ch
        .exchange_declare(
            "bad-type".into(),
            delayed_kind(),
            ExchangeDeclareOptions::default(),
            args(&[("x-delayed-type", text("nope"))]),
        )
        .await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!(code, 503);
    assert_eq!(text, "COMMAND_INVALID - unknown exchange type 'nope'");
    b.stop().await;
}

#[tokio::test]
async fn a_mandatory_delayed_message_is_confirmed_not_returned() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "mand", "direct", false).await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            "mand".into(),
            "unbound".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"x",
            delay(100),
        ),
    )
    .await
    .expect("publish");
    let c = within(5, confirm).await.expect("confirm");
    assert!(c.is_ack());
    assert!(c.take_message().is_none(), "returned");
    b.stop().await;
}

#[tokio::test]
async fn deleting_the_exchange_drops_what_it_held() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "gone", "direct", false).await;
    declare(&ch, "gone-q").await;
    bind(&ch, "gone-q", "gone", "k").await;
    publish_to(&ch, "gone", "k", b"x", delay(300)).await;
    within(
        5,
        ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default()),
    )
    .await
    .expect("exchange.delete");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(counts(&ch, "gone-q").await.0, 0);
    b.stop().await;
}

async fn durable_setup(ch: &lapin::Channel) {
    declare_delayed(ch, "dx", "direct", true).await;
    within(
        5,
        ch.queue_declare(
            "dq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("declare");
    bind(ch, "dq", "dx", "k").await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
}

async fn publish_persistent_delayed(ch: &lapin::Channel, ms: i64) {
    let confirm = within(
        5,
        ch.basic_publish(
            "dx".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"held",
            delay(ms).with_delivery_mode(2),
        ),
    )
    .await
    .expect("publish");
    assert!(within(5, confirm).await.expect("confirm").is_ack());
}

#[tokio::test]
async fn held_persistent_messages_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start_in(dir.path(), |_| {}).await;
    {
        let (_c, ch) = b.channel().await;
        durable_setup(&ch).await;
        publish_persistent_delayed(&ch, 1500).await;
    }
    let published = Instant::now();
    b.stop().await;
    let b = Broker::start_in(dir.path(), |_| {}).await;
    let (_c, ch) = b.channel().await;
    if published.elapsed() < Duration::from_millis(1200) {
        assert_eq!(counts(&ch, "dq").await.0, 0, "delivered before its time");
    }
    let mut consumer = consume(&ch, "dq", true).await;
    let d = next(&mut consumer).await;
    assert_eq!(body(&d), "held");
    assert!(published.elapsed() >= Duration::from_millis(1450));
    assert!(stays_quiet(&mut consumer).await, "delivered twice");
    b.stop().await;
    // And once delivered, it does not come back after another restart.
    let b = Broker::start_in(dir.path(), |_| {}).await;
    let (_c, ch) = b.channel().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(&ch, "dq").await.0, 0);
    b.stop().await;
}

#[tokio::test]
async fn held_persistent_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, logs) = (dir.path().join("data"), dir.path().join("logs"));
    std::fs::create_dir_all(&logs).expect("logs dir");
    let mut p = crash_support::BrokerProc::spawn(&data, &logs, 0).await;
    {
        let c = crash_support::connect(&p.url()).await;
        let ch = c.create_channel().await.expect("channel");
        durable_setup(&ch).await;
        publish_persistent_delayed(&ch, 800).await;
        p.kill();
    }
    let p = crash_support::BrokerProc::spawn(&data, &logs, 1).await;
    let c = crash_support::connect(&p.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let mut consumer = consume(&ch, "dq", true).await;
    let d = within(10, futures_lite::StreamExt::next(&mut consumer))
        .await
        .expect("stream")
        .expect("delivery");
    assert_eq!(&d.data[..], b"held");
}

#[tokio::test]
async fn a_dead_letter_with_x_delay_is_held_by_a_delayed_exchange() {
    // The plugin delays in its route callback, which dead-lettering goes through as well: a
    // retry pipeline can park rejected messages in a delayed exchange.
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "retry", "direct", false).await;
    declare(&ch, "again").await;
    bind(&ch, "again", "retry", "k").await;
    within(
        5,
        ch.queue_declare(
            "work".into(),
            QueueDeclareOptions::default(),
            args(&[
                ("x-dead-letter-exchange", text("retry")),
                ("x-dead-letter-routing-key", text("k")),
            ]),
        ),
    )
    .await
    .expect("declare work");
    let mut again = consume(&ch, "again", true).await;
    publish_to(&ch, "", "work", b"job", delay(500)).await;
    let m = within(
        5,
        ch.basic_get("work".into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("the job, at once (the default exchange does not delay)");
    let start = Instant::now();
    within(
        5,
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("reject");
    let d = next(&mut again).await;
    let waited = start.elapsed();
    assert_eq!(body(&d), "job");
    assert!(
        waited >= Duration::from_millis(450),
        "dead letter routed after {waited:?}, not held"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_dead_letter_held_by_a_delayed_exchange_keeps_its_bcc_keys() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_delayed(&ch, "retry", "direct", false).await;
    declare(&ch, "again").await;
    declare(&ch, "side").await;
    bind(&ch, "again", "retry", "work").await;
    // A key no queue is named after: the publish itself (default exchange) reaches no queue by it.
    bind(&ch, "side", "retry", "side-key").await;
    within(
        5,
        ch.queue_declare(
            "work".into(),
            QueueDeclareOptions::default(),
            args(&[("x-dead-letter-exchange", text("retry"))]),
        ),
    )
    .await
    .expect("declare work");
    let mut h = FieldTable::default();
    h.insert("x-delay".into(), AMQPValue::LongLongInt(200));
    h.insert(
        "BCC".into(),
        AMQPValue::FieldArray(vec![text("side-key")].into()),
    );
    publish_to(
        &ch,
        "",
        "work",
        b"job",
        BasicProperties::default().with_headers(h),
    )
    .await;
    let m = within(
        5,
        ch.basic_get("work".into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("the job");
    within(
        5,
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("reject");
    // Held, then routed by its routing key and its BCC key; the BCC header is never shown.
    let mut side = consume(&ch, "side", true).await;
    let d = next(&mut side).await;
    assert_eq!(body(&d), "job");
    let headers = d.properties.headers().clone().unwrap_or_default();
    assert!(!headers.inner().contains_key("BCC"), "{headers:?}");
    let mut again = consume(&ch, "again", true).await;
    assert_eq!(body(&next(&mut again).await), "job");
    b.stop().await;
}
