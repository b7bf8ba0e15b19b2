//! Durability across a graceful restart (`stop()`, then `warren::start` again on the same data
//! dir): durable exchanges, queues and bindings come back and transient ones do not; persistent
//! messages in durable queues come back in order with their properties, transient ones do not;
//! delivered-but-unacked messages come back redelivered, acked ones not at all; purge, delete and
//! unbind are durable; acked messages give their disk space back. Kill -9 is tests/crash.rs.
mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use std::path::{Path, PathBuf};
use std::time::Instant;
use warren::Config;

/// 1 MiB segments, so a few thousand messages already span several files.
fn small(c: &mut Config) {
    c.store.segment_size = 1 << 20;
}

async fn start(dir: &Path) -> Broker {
    Broker::start_in(dir, small).await
}

/// Graceful stop, then a new broker on the same data dir.
async fn restart(b: Broker) -> Broker {
    let dir = b.data_dir.clone();
    within(10, b.stop()).await;
    within(10, start(&dir)).await
}

/// The reply code of a channel or connection close carried by a lapin error.
fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

async fn confirm_channel(b: &Broker) -> (Connection, Channel) {
    let (c, ch) = b.channel().await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    (c, ch)
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn declare_queue(ch: &Channel, name: &str, opts: QueueDeclareOptions, args: FieldTable) {
    within(5, ch.queue_declare(name.into(), opts, args))
        .await
        .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    opts: ExchangeDeclareOptions,
    args: FieldTable,
) {
    within(5, ch.exchange_declare(name.into(), kind, opts, args))
        .await
        .unwrap_or_else(|e| panic!("declare exchange {name}: {e}"));
}

fn durable_x() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(
        5,
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("bind {queue} to {exchange}: {e}"));
}

/// Publish and wait for the broker's confirm, which must be an ack.
async fn publish_confirmed(ch: &Channel, ex: &str, key: &str, body: &[u8], p: BasicProperties) {
    let pc = within(
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
    let c = within(5, pc).await.expect("confirmation");
    assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
}

/// Does the queue exist? (A passive declare on a fresh channel; 404 means no.)
async fn queue_exists(c: &Connection, name: &str) -> bool {
    let ch = within(5, c.create_channel()).await.expect("channel");
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match within(
        5,
        ch.queue_declare(name.into(), opts, FieldTable::default()),
    )
    .await
    {
        Ok(_) => true,
        Err(e) if code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of {name}: {e}"),
    }
}

async fn exchange_exists(c: &Connection, name: &str) -> bool {
    let ch = within(5, c.create_channel()).await.expect("channel");
    let opts = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let r = ch.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        opts,
        FieldTable::default(),
    );
    match within(5, r).await {
        Ok(()) => true,
        Err(e) if code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of exchange {name}: {e}"),
    }
}

/// Ready messages as declare-ok reports them.
async fn ready(ch: &Channel, name: &str) -> u32 {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(
        5,
        ch.queue_declare(name.into(), opts, FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"))
    .message_count()
}

/// Every ready message as (body, redelivered), taken with no-ack.
async fn drain(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    loop {
        let m = within(
            5,
            ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
        )
        .await
        .expect("basic.get");
        match m {
            Some(m) => out.push((
                String::from_utf8_lossy(&m.delivery.data).into_owned(),
                m.delivery.redelivered,
            )),
            None => return out,
        }
    }
}

fn bodies(list: &[(String, bool)]) -> Vec<&str> {
    list.iter().map(|(b, _)| b.as_str()).collect()
}

/// basic.get with manual ack: (body, delivery tag).
async fn get_manual(ch: &Channel, queue: &str) -> (String, u64) {
    let m = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("a message");
    (
        String::from_utf8_lossy(&m.delivery.data).into_owned(),
        m.delivery.delivery_tag,
    )
}

/// The log directories of durable queues (data_dir/queues/<id>).
fn queue_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(data_dir.join("queues")) {
        Ok(rd) => rd.map(|e| e.expect("dir entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Bytes of every file under `p`.
fn du(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.map(|e| {
        let e = e.expect("dir entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            du(&e.path())
        } else {
            m.len()
        }
    })
    .sum()
}

#[tokio::test]
async fn durable_topology_survives_restart_and_transient_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = b.channel().await;
    let ae = table(&[("alternate-exchange", lstr("d.fanout"))]);
    declare_exchange(
        &ch,
        "d.direct",
        ExchangeKind::Direct,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(&ch, "d.topic", ExchangeKind::Topic, durable_x(), ae.clone()).await;
    declare_exchange(
        &ch,
        "d.fanout",
        ExchangeKind::Fanout,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(
        &ch,
        "d.headers",
        ExchangeKind::Headers,
        durable_x(),
        table(&[]),
    )
    .await;
    let transient_x = ExchangeDeclareOptions::default();
    declare_exchange(
        &ch,
        "t.direct",
        ExchangeKind::Direct,
        transient_x,
        table(&[]),
    )
    .await;
    let qargs = table(&[("x-custom", AMQPValue::LongInt(7)), ("x-note", lstr("hi"))]);
    declare_queue(&ch, "dq", durable(), qargs.clone()).await;
    declare_queue(&ch, "dq2", durable(), table(&[])).await;
    declare_queue(&ch, "tq", QueueDeclareOptions::default(), table(&[])).await;
    let hargs = table(&[("x-match", lstr("all")), ("h", AMQPValue::LongInt(1))]);
    bind(&ch, "dq", "d.direct", "k1", table(&[])).await;
    bind(&ch, "dq2", "d.topic", "a.*", table(&[])).await;
    bind(&ch, "dq", "d.headers", "", hargs.clone()).await;
    bind(&ch, "dq", "amq.direct", "amq-k", table(&[])).await;
    bind(&ch, "tq", "d.direct", "k1", table(&[])).await; // transient queue: not kept
    bind(&ch, "dq", "t.direct", "k1", table(&[])).await; // transient exchange: not kept
    within(
        5,
        ch.exchange_bind(
            "d.direct".into(),
            "d.fanout".into(),
            "".into(),
            ExchangeBindOptions::default(),
            table(&[]),
        ),
    )
    .await
    .expect("exchange.bind");
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    for x in ["d.direct", "d.topic", "d.fanout", "d.headers"] {
        assert!(exchange_exists(&c, x).await, "{x} did not come back");
    }
    assert!(
        !exchange_exists(&c, "t.direct").await,
        "transient exchange came back"
    );
    assert!(queue_exists(&c, "dq").await);
    assert!(queue_exists(&c, "dq2").await);
    assert!(!queue_exists(&c, "tq").await, "transient queue came back");

    // Every durable binding routes again (each path lands one message in dq).
    publish_confirmed(&ch, "d.direct", "k1", b"direct", persistent()).await;
    let h = table(&[("h", AMQPValue::LongInt(1))]);
    publish_confirmed(
        &ch,
        "d.headers",
        "",
        b"headers",
        persistent().with_headers(h),
    )
    .await;
    publish_confirmed(&ch, "amq.direct", "amq-k", b"amq", persistent()).await;
    publish_confirmed(&ch, "d.fanout", "k1", b"e2e", persistent()).await;
    // d.topic has no match for k1: its alternate exchange d.fanout takes it on to d.direct.
    publish_confirmed(&ch, "d.topic", "k1", b"alternate", persistent()).await;
    publish_confirmed(&ch, "d.topic", "a.b", b"topic", persistent()).await;
    let got = drain(&ch, "dq").await;
    assert_eq!(
        bodies(&got),
        ["direct", "headers", "amq", "e2e", "alternate"],
        "dq after restart"
    );
    assert_eq!(bodies(&drain(&ch, "dq2").await), ["topic"]);

    // Redeclaring exactly as before is equivalent: no 406.
    declare_exchange(
        &ch,
        "d.direct",
        ExchangeKind::Direct,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(&ch, "d.topic", ExchangeKind::Topic, durable_x(), ae).await;
    declare_exchange(
        &ch,
        "d.fanout",
        ExchangeKind::Fanout,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(
        &ch,
        "d.headers",
        ExchangeKind::Headers,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_queue(&ch, "dq", durable(), qargs).await;
    declare_queue(&ch, "dq2", durable(), table(&[])).await;
    // ... and the flags did come back: a transient redeclare is refused.
    let e = within(
        5,
        ch.queue_declare("dq".into(), QueueDeclareOptions::default(), table(&[])),
    )
    .await
    .expect_err("durable mismatch must fail");
    assert_eq!(code(&e), Some(406), "{e}");
    let ch = within(5, c.create_channel()).await.unwrap();
    let r = ch.exchange_declare(
        "d.topic".into(),
        ExchangeKind::Topic,
        durable_x(),
        table(&[]),
    );
    let e = within(5, r)
        .await
        .expect_err("arguments mismatch must fail");
    assert_eq!(code(&e), Some(406), "{e}");
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn exclusive_durable_queue_does_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    let opts = QueueDeclareOptions {
        durable: true,
        exclusive: true,
        ..Default::default()
    };
    declare_queue(&ch, "excl", opts, table(&[])).await;
    declare_exchange(&ch, "ex.x", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    bind(&ch, "excl", "ex.x", "", table(&[])).await;
    publish_confirmed(&ch, "", "excl", b"m", persistent()).await;
    assert!(
        queue_dirs(&b.data_dir).is_empty(),
        "an exclusive queue got a log"
    );
    // Still connected (the queue is alive) when the broker stops.
    let b = restart(b).await;
    drop((ch, c));
    let (c, ch) = b.channel().await;
    assert!(!queue_exists(&c, "excl").await, "exclusive queue came back");
    assert!(exchange_exists(&c, "ex.x").await);
    // Nothing routes from ex.x any more: the binding to the exclusive queue is gone too.
    declare_queue(&ch, "excl", durable(), table(&[])).await;
    publish(&ch, "ex.x", b"x").await;
    assert_eq!(ready(&ch, "excl").await, 0);
    drop((ch, c));
    b.stop().await;
}

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
async fn purge_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "pg.q", durable(), table(&[])).await;
    declare_queue(&ch, "pg2.q", durable(), table(&[])).await;
    for i in 0..10 {
        publish_confirmed(&ch, "", "pg.q", format!("m{i}").as_bytes(), persistent()).await;
        publish_confirmed(&ch, "", "pg2.q", format!("m{i}").as_bytes(), persistent()).await;
    }
    let n = within(
        5,
        ch.queue_purge("pg.q".into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(n, 10);
    // Purge with a message delivered and unacked: it survives the purge (and the restart).
    let (getter_c, getter) = b.channel().await;
    let (m0, _) = get_manual(&getter, "pg2.q").await;
    assert_eq!(m0, "m0");
    let n = within(
        5,
        ch.queue_purge("pg2.q".into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(n, 9);
    publish_confirmed(&ch, "", "pg.q", b"after", persistent()).await;
    publish_confirmed(&ch, "", "pg2.q", b"after", persistent()).await;

    let b = restart(b).await;
    drop((getter, getter_c, ch, c));
    let (c, ch) = b.channel().await;
    assert_eq!(drain(&ch, "pg.q").await, [("after".to_string(), false)]);
    assert_eq!(
        drain(&ch, "pg2.q").await,
        [("m0".to_string(), true), ("after".to_string(), false)]
    );
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn queue_delete_is_durable_and_removes_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "del.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    let before = queue_dirs(&b.data_dir);
    declare_queue(&ch, "del.q", durable(), table(&[])).await;
    bind(&ch, "del.q", "del.x", "k", table(&[])).await;
    let after = queue_dirs(&b.data_dir);
    let log: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(log.len(), 1, "one new log directory: {after:?}");
    let log = log[0].clone();
    for i in 0..100 {
        let body = format!("old {i}");
        publish_confirmed(&ch, "del.x", "k", body.as_bytes(), persistent()).await;
    }
    assert!(du(&log) > 0, "the log holds the messages");
    let n = within(
        5,
        ch.queue_delete("del.q".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(n, 100);
    assert!(!log.exists(), "{} still exists", log.display());
    // The same name again is a new queue: new log, no old messages, no old binding.
    declare_queue(&ch, "del.q", durable(), table(&[])).await;
    publish_confirmed(&ch, "del.x", "k", b"unrouted", persistent()).await;
    publish_confirmed(&ch, "", "del.q", b"new", persistent()).await;
    // And one deleted for good.
    declare_queue(&ch, "gone.q", durable(), table(&[])).await;
    publish_confirmed(&ch, "", "gone.q", b"x", persistent()).await;
    within(
        5,
        ch.queue_delete("gone.q".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert!(!queue_exists(&c, "gone.q").await);
    assert_eq!(drain(&ch, "del.q").await, [("new".to_string(), false)]);
    assert_eq!(queue_dirs(&b.data_dir).len(), 1, "only del.q has a log");
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn acked_messages_give_their_disk_space_back() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "big.q", durable(), table(&[])).await;
    let body = vec![b'x'; 1024];
    let t = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..N {
        let pc = ch
            .basic_publish(
                "".into(),
                "big.q".into(),
                BasicPublishOptions::default(),
                &body,
                persistent(),
            )
            .await
            .expect("publish");
        pending.push_back(pc);
        if pending.len() >= 1000 {
            let c = within(10, pending.pop_front().unwrap()).await.unwrap();
            assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
        }
    }
    for pc in pending {
        let c = within(10, pc).await.unwrap();
        assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    }
    let published = t.elapsed();
    let queues = b.data_dir.join("queues");
    let full = du(&queues);
    assert!(full > (N * 1024) as u64, "{full} bytes on disk");

    let (cc, consumer) = b.channel().await;
    within(5, consumer.basic_qos(500, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut stream = within(
        5,
        consumer.basic_consume(
            "big.q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    for i in 0..N {
        let d = within(10, stream.next()).await.unwrap().unwrap();
        if i % 50 == 49 || i == N - 1 {
            let multiple = BasicAckOptions { multiple: true };
            consumer.basic_ack(d.delivery_tag, multiple).await.unwrap();
        }
    }
    assert_eq!(ready(&consumer, "big.q").await, 0);
    let drained = du(&queues);
    eprintln!(
        "{N} x 1 KiB persistent, confirmed: {published:?}; disk {full} bytes full, \
         {drained} bytes after acking all"
    );
    assert!(drained < 1 << 20, "{drained} bytes left after acking all");
    drop((stream, consumer, cc, ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "big.q").await, 0);
    let after = du(&queues);
    assert!(after < 1 << 20, "{after} bytes after restart");
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
async fn unbind_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "ub.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    declare_exchange(&ch, "ub.h", ExchangeKind::Headers, durable_x(), table(&[])).await;
    declare_exchange(&ch, "ub.src", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    declare_queue(&ch, "ub.q", durable(), table(&[])).await;
    bind(&ch, "ub.q", "ub.x", "a", table(&[])).await;
    bind(&ch, "ub.q", "ub.x", "b", table(&[])).await;
    let h1 = table(&[("x-match", lstr("any")), ("h", lstr("1"))]);
    let h2 = table(&[("x-match", lstr("any")), ("h", lstr("2"))]);
    bind(&ch, "ub.q", "ub.h", "", h1.clone()).await;
    bind(&ch, "ub.q", "ub.h", "", h2.clone()).await;
    let e2e = |unbind: bool| {
        let ch = ch.clone();
        async move {
            let r = if unbind {
                ch.exchange_unbind(
                    "ub.x".into(),
                    "ub.src".into(),
                    "a".into(),
                    ExchangeUnbindOptions::default(),
                    table(&[]),
                )
                .await
            } else {
                ch.exchange_bind(
                    "ub.x".into(),
                    "ub.src".into(),
                    "a".into(),
                    ExchangeBindOptions::default(),
                    table(&[]),
                )
                .await
            };
            r.expect("exchange (un)bind");
        }
    };
    within(5, e2e(false)).await;
    within(
        5,
        ch.queue_unbind("ub.q".into(), "ub.x".into(), "a".into(), table(&[])),
    )
    .await
    .unwrap();
    // Unbind matches arguments: only the h=1 binding goes.
    within(
        5,
        ch.queue_unbind("ub.q".into(), "ub.h".into(), "".into(), h1),
    )
    .await
    .unwrap();
    within(5, e2e(true)).await;
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    let hdr = |v: &str| persistent().with_headers(table(&[("h", lstr(v))]));
    publish_confirmed(&ch, "ub.x", "a", b"x-a", persistent()).await;
    publish_confirmed(&ch, "ub.x", "b", b"x-b", persistent()).await;
    publish_confirmed(&ch, "ub.h", "", b"h-1", hdr("1")).await;
    publish_confirmed(&ch, "ub.h", "", b"h-2", hdr("2")).await;
    publish_confirmed(&ch, "ub.src", "a", b"src", persistent()).await;
    assert_eq!(bodies(&drain(&ch, "ub.q").await), ["x-b", "h-2"]);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn durable_auto_delete_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    let ad = ExchangeDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    declare_exchange(&ch, "ad.x", ExchangeKind::Direct, ad, table(&[])).await;
    declare_exchange(&ch, "ad2.x", ExchangeKind::Direct, ad, table(&[])).await;
    declare_queue(&ch, "ad.q", durable(), table(&[])).await;
    declare_queue(&ch, "ad2.q", durable(), table(&[])).await;
    bind(&ch, "ad.q", "ad.x", "k", table(&[])).await;
    bind(&ch, "ad2.q", "ad2.x", "k", table(&[])).await;
    drop((ch, c));

    // With its binding, an auto-delete exchange comes back (and routes).
    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    assert!(exchange_exists(&c, "ad.x").await);
    assert!(exchange_exists(&c, "ad2.x").await);
    publish_confirmed(&ch, "ad.x", "k", b"routed", persistent()).await;
    assert_eq!(ready(&ch, "ad.q").await, 1);
    // Redeclare is equivalent (auto_delete came back too).
    declare_exchange(&ch, "ad.x", ExchangeKind::Direct, ad, table(&[])).await;
    // Last binding gone, by unbind or by deleting the queue: the exchange goes, durably.
    within(
        5,
        ch.queue_unbind("ad.q".into(), "ad.x".into(), "k".into(), table(&[])),
    )
    .await
    .unwrap();
    within(
        5,
        ch.queue_delete("ad2.q".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert!(!exchange_exists(&c, "ad.x").await);
    assert!(!exchange_exists(&c, "ad2.x").await);
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert!(!exchange_exists(&c, "ad.x").await);
    assert!(!exchange_exists(&c, "ad2.x").await);
    assert_eq!(ready(&ch, "ad.q").await, 1);
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

/// 1 MiB segments and a 64 KiB queue memory limit: backlogs page out to the log.
fn paging(c: &mut Config) {
    small(c);
    c.store.queue_memory_limit = 64 * 1024;
}

async fn restart_paging(b: Broker) -> Broker {
    let dir = b.data_dir.clone();
    within(10, b.stop()).await;
    within(10, Broker::start_in(&dir, paging)).await
}

/// Publish a numbered 1 KiB body ("<tag><i>:" then padding) with a confirm.
async fn publish_kib(ch: &Channel, queue: &str, tag: &str, i: usize, persistent_: bool) {
    let mut body = format!("{tag}{i}:").into_bytes();
    body.resize(1024, b'.');
    let p = if persistent_ {
        persistent()
    } else {
        BasicProperties::default()
    };
    publish_confirmed(ch, "", queue, &body, p).await;
}

fn label(body: &str) -> &str {
    body.split(':').next().unwrap_or(body)
}

#[tokio::test]
async fn paged_out_backlog_survives_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), paging).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "pgo.q", durable(), table(&[])).await;
    // 2000 x 1 KiB, far past 64 KiB: almost all of it is only in the log. Every third is
    // transient (a spilled copy in the same log that must not come back).
    let mut want = Vec::new();
    for i in 0..2000 {
        let p = i % 3 != 2;
        publish_kib(&ch, "pgo.q", if p { "p" } else { "t" }, i, p).await;
        if p {
            want.push(format!("p{i}"));
        }
    }
    // p0 and p1 delivered; p0 acked, p1 left unacked.
    let (b0, t0) = get_manual(&ch, "pgo.q").await;
    let (b1, _) = get_manual(&ch, "pgo.q").await;
    assert_eq!((label(&b0), label(&b1)), ("p0", "p1"));
    within(5, ch.basic_ack(t0, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_eq!(ready(&ch, "pgo.q").await, 1998);
    want.remove(0);
    drop((ch, c));

    let b = restart_paging(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "pgo.q").await as usize, want.len());
    let got = drain(&ch, "pgo.q").await;
    let labels: Vec<&str> = got.iter().map(|(b, _)| label(b)).collect();
    assert_eq!(labels, want, "persistent ones only, in order");
    let redelivered: Vec<&str> = got
        .iter()
        .filter(|(_, r)| *r)
        .map(|(b, _)| label(b))
        .collect();
    assert_eq!(redelivered, ["p1"]);
    drop((ch, c));

    // Drained with no-ack: nothing comes back, and the space is given back.
    let b = restart_paging(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "pgo.q").await, 0);
    let left = du(&b.data_dir.join("queues"));
    assert!(left < 1 << 20, "{left} bytes left");
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn purge_of_a_paged_out_backlog_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), paging).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "pp1.q", durable(), table(&[])).await;
    declare_queue(&ch, "pp2.q", durable(), table(&[])).await;
    for i in 0..500 {
        publish_kib(&ch, "pp1.q", "m", i, i % 2 == 0).await;
        publish_kib(&ch, "pp2.q", "m", i, i % 2 == 0).await;
    }
    // pp1: nothing unacked when purged. pp2: one delivered and unacked, which survives.
    assert_eq!(
        within(
            5,
            ch.queue_purge("pp1.q".into(), QueuePurgeOptions::default())
        )
        .await
        .unwrap(),
        500
    );
    let (getter_c, getter) = b.channel().await;
    let (m0, _) = get_manual(&getter, "pp2.q").await;
    assert_eq!(label(&m0), "m0");
    assert_eq!(
        within(
            5,
            ch.queue_purge("pp2.q".into(), QueuePurgeOptions::default())
        )
        .await
        .unwrap(),
        499
    );
    for q in ["pp1.q", "pp2.q"] {
        publish_kib(&ch, q, "after", 0, true).await;
    }

    let b = restart_paging(b).await;
    drop((getter, getter_c, ch, c));
    let (c, ch) = b.channel().await;
    let got = drain(&ch, "pp1.q").await;
    assert_eq!(got.len(), 1, "pp1 after restart: {:?}", labels_of(&got));
    assert_eq!(label(&got[0].0), "after0");
    let got = drain(&ch, "pp2.q").await;
    assert_eq!(labels_of(&got), ["m0", "after0"]);
    assert!(got[0].1, "m0 was delivered before the restart");
    drop((ch, c));
    b.stop().await;
}

fn labels_of(v: &[(String, bool)]) -> Vec<&str> {
    v.iter().map(|(b, _)| label(b)).collect()
}

#[tokio::test]
async fn exchange_delete_is_durable_with_its_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "xd.src", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    declare_exchange(&ch, "xd.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    declare_queue(&ch, "xd.q", durable(), table(&[])).await;
    bind(&ch, "xd.q", "xd.x", "k", table(&[])).await;
    within(
        5,
        ch.exchange_bind(
            "xd.x".into(),
            "xd.src".into(),
            "".into(),
            ExchangeBindOptions::default(),
            table(&[]),
        ),
    )
    .await
    .unwrap();
    within(
        5,
        ch.exchange_delete("xd.x".into(), ExchangeDeleteOptions::default()),
    )
    .await
    .unwrap();
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    assert!(!exchange_exists(&c, "xd.x").await);
    assert!(exchange_exists(&c, "xd.src").await);
    // Declared again, it has none of the old bindings (from xd.src, or to xd.q).
    declare_exchange(&ch, "xd.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    publish_confirmed(&ch, "xd.x", "k", b"direct", persistent()).await;
    publish_confirmed(&ch, "xd.src", "k", b"fanout", persistent()).await;
    assert_eq!(ready(&ch, "xd.q").await, 0);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn acks_after_queue_delete_do_not_bring_its_log_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "ad.del", durable(), table(&[])).await;
    let log = queue_dirs(&b.data_dir);
    assert_eq!(log.len(), 1);
    for i in 0..10 {
        publish_confirmed(&ch, "", "ad.del", format!("m{i}").as_bytes(), persistent()).await;
    }
    let (cc, consumer) = b.channel().await;
    within(5, consumer.basic_qos(5, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut stream = within(
        5,
        consumer.basic_consume(
            "ad.del".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(
            within(5, stream.next())
                .await
                .unwrap()
                .unwrap()
                .delivery_tag,
        );
    }
    within(
        5,
        ch.queue_delete("ad.del".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert!(!log[0].exists());
    // Acks and a reject for messages of the deleted queue: accepted, and nothing is written.
    for t in &tags[..4] {
        within(5, consumer.basic_ack(*t, BasicAckOptions::default()))
            .await
            .unwrap();
    }
    within(
        5,
        consumer.basic_reject(tags[4], BasicRejectOptions { requeue: true }),
    )
    .await
    .unwrap();
    // Still open (a round trip on the consumer's channel), and the log stays gone.
    let r = consumer
        .queue_declare("other".into(), QueueDeclareOptions::default(), table(&[]))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(!log[0].exists(), "the deleted queue's log came back");
    drop((stream, consumer, cc, ch, c));

    let b = restart(b).await;
    let (c, _ch) = b.channel().await;
    assert!(!queue_exists(&c, "ad.del").await);
    assert!(queue_dirs(&b.data_dir).is_empty());
    drop(c);
    b.stop().await;
}
