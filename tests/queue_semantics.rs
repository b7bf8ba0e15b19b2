//! Queue semantics as RabbitMQ documents them: naming, declare-ok counts, exclusive and
//! auto-delete lifecycles, purge/delete, consumer dispatch and prefetch, acks/nacks/rejects,
//! requeue on channel/connection end (graceful and abrupt), recover, and channel multiplexing.
mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};
use std::time::Duration;

/// The reply code of a channel or connection close carried by a lapin error.
fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

fn expect_code<T: std::fmt::Debug>(r: lapin::Result<T>, want: u16) {
    match r {
        Ok(v) => panic!("expected reply code {want}, got Ok({v:?})"),
        Err(e) => assert_eq!(code(&e), Some(want), "wrong error: {e}"),
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare_opts(
    ch: &Channel,
    name: &str,
    opts: QueueDeclareOptions,
) -> lapin::Result<lapin::Queue> {
    within(
        5,
        ch.queue_declare(name.into(), opts, FieldTable::default()),
    )
    .await
}

/// (ready messages, consumers) as a passive declare reports them.
async fn counts(ch: &Channel, name: &str) -> (u32, u32) {
    let q = declare_opts(ch, name, passive())
        .await
        .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
    (q.message_count(), q.consumer_count())
}

async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Consumer {
    within(
        5,
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume")
}

async fn next(c: &mut Consumer) -> Delivery {
    within(5, c.next())
        .await
        .expect("consumer stream ended")
        .expect("delivery error")
}

/// True if nothing arrives on the consumer for a short while.
async fn stays_quiet(c: &mut Consumer) -> bool {
    tokio::time::timeout(Duration::from_millis(300), c.next())
        .await
        .is_err()
}

async fn publish_n(ch: &Channel, queue: &str, n: u32) {
    for i in 1..=n {
        publish(ch, queue, i.to_string().as_bytes()).await;
    }
}

fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

/// basic.get with manual ack: (body, redelivered, delivery tag, message_count).
async fn get_manual(ch: &Channel, queue: &str) -> Option<(String, bool, u64, u32)> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .map(|m| {
        (
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
            m.delivery.delivery_tag,
            m.message_count,
        )
    })
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

fn msgs(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

/// Poll until the queue reports `n` ready messages (state changes made by another connection's
/// teardown are asynchronous).
async fn wait_ready(ch: &Channel, queue: &str, n: u32) {
    within(5, async {
        while counts(ch, queue).await.0 != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn wait_gone(ch: &Channel, queue: &str) {
    within(5, async {
        loop {
            match declare_opts(ch, queue, passive()).await {
                Err(e) => {
                    assert_eq!(code(&e), Some(404), "unexpected error {e}");
                    return;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn server_named_queue_gets_amq_gen_name() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let q1 = declare(&ch, "").await;
    let q2 = declare(&ch, "").await;
    assert!(q1.name().as_str().starts_with("amq.gen-"), "{}", q1.name());
    assert_ne!(q1.name(), q2.name());
    // The returned name is a real queue.
    publish(&ch, q1.name().as_str(), b"x").await;
    assert_eq!(counts(&ch, q1.name().as_str()).await, (1, 0));
    b.stop().await;
}

#[tokio::test]
async fn declaring_reserved_amq_prefix_is_refused() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    expect_code(
        declare_opts(&ch, "amq.mine", QueueDeclareOptions::default()).await,
        403,
    );
    b.stop().await;
}

#[tokio::test]
async fn declare_ok_reports_ready_messages_and_consumers() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let q = declare(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
    publish_n(&ch, "counted", 3).await;
    let q = declare(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (3, 0));
    let cch = c.create_channel().await.expect("channel");
    within(5, cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&cch, "counted", false).await;
    let _held = next(&mut consumer).await;
    // One message is unacked: only ready messages count.
    let q = declare(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (2, 1));
    b.stop().await;
}

#[tokio::test]
async fn passive_declare_checks_existence() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "exists").await;
    publish(&ch, "exists", b"m").await;
    assert_eq!(counts(&ch, "exists").await, (1, 0));
    expect_code(declare_opts(&ch, "missing", passive()).await, 404);
    // The 404 closed that channel only.
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(counts(&ch, "exists").await, (1, 0));
    b.stop().await;
}

#[tokio::test]
async fn redeclare_with_same_properties_is_ok() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(10));
    within(5, ch.queue_declare("same".into(), opts, args.clone()))
        .await
        .expect("declare");
    publish(&ch, "same", b"kept").await;
    let q = within(5, ch.queue_declare("same".into(), opts, args))
        .await
        .expect("equal redeclare");
    assert_eq!(q.message_count(), 1, "redeclare must not reset the queue");
    b.stop().await;
}

#[tokio::test]
async fn redeclare_with_different_durability_is_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "plain").await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    expect_code(declare_opts(&ch, "plain", durable).await, 406);
    b.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let b = Broker::start().await;
    let (owner, och) = b.channel().await;
    let excl = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    declare_opts(&och, "mine", excl).await.expect("declare");
    publish(&och, "mine", b"private").await;
    let other = b.connect().await;
    // Every kind of access from another connection: 405 RESOURCE_LOCKED.
    let ch = other.create_channel().await.expect("channel");
    expect_code(declare_opts(&ch, "mine", passive()).await, 405);
    let ch = other.create_channel().await.expect("channel");
    expect_code(declare_opts(&ch, "mine", excl).await, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(5, ch.basic_get("mine".into(), BasicGetOptions::default())).await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.queue_purge("mine".into(), QueuePurgeOptions::default()),
    )
    .await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.queue_bind(
            "mine".into(),
            "amq.fanout".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.queue_delete("mine".into(), QueueDeleteOptions::default()),
    )
    .await;
    expect_code(r, 405);
    // The owner still uses it normally.
    assert_eq!(counts(&och, "mine").await, (1, 0));
    within(5, owner.close(200, "bye".into()))
        .await
        .expect("close");
    let ch = other.create_channel().await.expect("channel");
    wait_gone(&ch, "mine").await;
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_after_its_last_consumer_cancels() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let ad = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_opts(&ch, "ad", ad).await.expect("declare");
    // No consumer yet: it stays, even across other use.
    publish(&ch, "ad", b"m").await;
    assert!(within(5, get_body(&ch, "ad")).await.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counts(&ch, "ad").await, (0, 0));
    let c1 = consume(&ch, "ad", false).await;
    let c2 = consume(&ch, "ad", false).await;
    within(5, ch.basic_cancel(c1.tag(), BasicCancelOptions::default()))
        .await
        .expect("cancel c1");
    assert_eq!(counts(&ch, "ad").await, (0, 1), "one consumer left");
    within(5, ch.basic_cancel(c2.tag(), BasicCancelOptions::default()))
        .await
        .expect("cancel c2");
    let ch2 = c.create_channel().await.expect("channel");
    wait_gone(&ch2, "ad").await;
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_when_its_consumers_channel_closes() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let ad = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_opts(&ch, "ad2", ad).await.expect("declare");
    let cch = c.create_channel().await.expect("channel");
    let _consumer = consume(&cch, "ad2", false).await;
    within(5, cch.close(200, "bye".into()))
        .await
        .expect("close");
    wait_gone(&ch, "ad2").await;
    b.stop().await;
}

#[tokio::test]
async fn purge_returns_the_number_of_ready_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "purged").await;
    publish_n(&ch, "purged", 4).await;
    let n = within(
        5,
        ch.queue_purge("purged".into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("purge");
    assert_eq!(n, 4);
    assert!(drain(&ch, "purged").await.is_empty());
    let n = within(
        5,
        ch.queue_purge("purged".into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("purge");
    assert_eq!(n, 0);
    b.stop().await;
}

#[tokio::test]
async fn delete_returns_the_number_of_ready_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "deleted").await;
    publish_n(&ch, "deleted", 3).await;
    let n = within(
        5,
        ch.queue_delete("deleted".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete");
    assert_eq!(n, 3);
    expect_code(declare_opts(&ch, "deleted", passive()).await, 404);
    b.stop().await;
}

#[tokio::test]
async fn delete_if_empty_and_if_unused_refuse_with_406() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "busy").await;
    publish(&ch, "busy", b"m").await;
    let if_empty = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    expect_code(
        within(5, ch.queue_delete("busy".into(), if_empty)).await,
        406,
    );
    let ch = c.create_channel().await.expect("channel");
    let _consumer = consume(&ch, "busy", false).await;
    let ch2 = c.create_channel().await.expect("channel");
    let if_unused = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    expect_code(
        within(5, ch2.queue_delete("busy".into(), if_unused)).await,
        406,
    );
    let ch3 = c.create_channel().await.expect("channel");
    assert_eq!(counts(&ch3, "busy").await, (0, 1), "still there");
    b.stop().await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "doomed").await;
    let mut consumer = consume(&ch, "doomed", false).await;
    let other = c.create_channel().await.expect("channel");
    within(
        5,
        other.queue_delete("doomed".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete");
    // The server's basic.cancel ends lapin's consumer stream.
    let end = within(5, consumer.next()).await;
    assert!(end.is_none(), "expected the stream to end, got {end:?}");
    // The consumer's channel stays open and usable.
    declare(&ch, "after").await;
    publish(&ch, "after", b"ok").await;
    assert_eq!(
        within(5, get_body(&ch, "after")).await.as_deref(),
        Some(&b"ok"[..])
    );
    b.stop().await;
}

#[tokio::test]
async fn server_generates_consumer_tags() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "tagged").await;
    let c1 = consume(&ch, "tagged", false).await;
    let c2 = consume(&ch, "tagged", false).await;
    assert!(c1.tag().as_str().starts_with("amq.ctag-"), "{}", c1.tag());
    assert_ne!(c1.tag(), c2.tag());
    b.stop().await;
}

#[tokio::test]
async fn consumers_get_messages_round_robin() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "rr").await;
    let ch1 = c.create_channel().await.expect("channel");
    let ch2 = c.create_channel().await.expect("channel");
    let mut a = consume(&ch1, "rr", true).await;
    let mut bb = consume(&ch2, "rr", true).await;
    publish_n(&pch, "rr", 10).await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..5 {
        got_a.push(body(&next(&mut a).await).parse::<u32>().expect("number"));
        got_b.push(body(&next(&mut bb).await).parse::<u32>().expect("number"));
    }
    assert!(stays_quiet(&mut a).await && stays_quiet(&mut bb).await);
    let (odd, even) = if got_a[0] == 1 {
        (got_a, got_b)
    } else {
        (got_b, got_a)
    };
    assert_eq!(odd, [1, 3, 5, 7, 9]);
    assert_eq!(even, [2, 4, 6, 8, 10]);
    b.stop().await;
}

#[tokio::test]
async fn prefetch_one_holds_the_next_message_until_ack() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "pf").await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&ch, "pf", false).await;
    publish_n(&pch, "pf", 2).await;
    let first = next(&mut consumer).await;
    assert_eq!(body(&first), "1");
    assert!(
        stays_quiet(&mut consumer).await,
        "second delivered before ack"
    );
    assert_eq!(counts(&pch, "pf").await, (1, 1));
    within(5, first.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    let second = next(&mut consumer).await;
    assert_eq!(body(&second), "2");
    b.stop().await;
}

#[tokio::test]
async fn prefetch_applies_per_consumer() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "pfc").await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut c1 = consume(&ch, "pfc", false).await;
    let mut c2 = consume(&ch, "pfc", false).await;
    publish_n(&pch, "pfc", 3).await;
    let d1 = next(&mut c1).await;
    let d2 = next(&mut c2).await;
    assert_eq!((body(&d1), body(&d2)), ("1".into(), "2".into()));
    assert!(stays_quiet(&mut c1).await && stays_quiet(&mut c2).await);
    assert_eq!(counts(&pch, "pfc").await, (1, 2));
    b.stop().await;
}

#[tokio::test]
async fn basic_get_reports_remaining_count_and_get_empty() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "pull").await;
    assert!(get_manual(&ch, "pull").await.is_none(), "get-empty");
    publish_n(&ch, "pull", 3).await;
    let (b1, r1, t1, left1) = get_manual(&ch, "pull").await.expect("first");
    assert_eq!((b1.as_str(), r1, t1, left1), ("1", false, 1, 2));
    let (b2, _, t2, left2) = get_manual(&ch, "pull").await.expect("second");
    assert_eq!((b2.as_str(), t2, left2), ("2", 2, 1));
    within(5, ch.basic_ack(t2, BasicAckOptions { multiple: true }))
        .await
        .expect("ack");
    let (b3, _, _, left3) = get_manual(&ch, "pull").await.expect("third");
    assert_eq!((b3.as_str(), left3), ("3", 0));
    assert!(get_manual(&ch, "pull").await.is_none(), "get-empty");
    b.stop().await;
}

#[tokio::test]
async fn nack_multiple_requeue_redelivers_in_original_order() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "nq").await;
    publish_n(&ch, "nq", 5).await;
    let mut consumer = consume(&ch, "nq", false).await;
    let mut last = 0;
    for i in 1..=5 {
        let d = next(&mut consumer).await;
        assert_eq!((body(&d), d.redelivered), (i.to_string(), false));
        last = d.delivery_tag;
    }
    within(
        5,
        ch.basic_nack(
            last,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        ),
    )
    .await
    .expect("nack");
    for i in 1..=5 {
        let d = next(&mut consumer).await;
        assert_eq!((body(&d), d.redelivered), (i.to_string(), true));
        assert_eq!(d.delivery_tag, 5 + i as u64, "tags keep increasing");
    }
    b.stop().await;
}

#[tokio::test]
async fn reject_requeue_redelivers_the_same_message() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "rq").await;
    let props = BasicProperties::default().with_message_id("id-7".into());
    within(
        5,
        ch.basic_publish(
            "".into(),
            "rq".into(),
            BasicPublishOptions::default(),
            b"payload",
            props.clone(),
        ),
    )
    .await
    .expect("publish");
    publish(&ch, "rq", b"second").await;
    let (_, redelivered, tag, _) = get_manual(&ch, "rq").await.expect("get");
    assert!(!redelivered);
    within(
        5,
        ch.basic_reject(tag, BasicRejectOptions { requeue: true }),
    )
    .await
    .expect("reject");
    let m = within(
        5,
        ch.basic_get("rq".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("requeued message");
    assert_eq!(m.delivery.data, b"payload", "back at the head of the queue");
    assert!(m.delivery.redelivered);
    assert_eq!(m.delivery.properties, props);
    b.stop().await;
}

#[tokio::test]
async fn reject_without_requeue_drops_the_message() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "dropq").await;
    publish(&ch, "dropq", b"bad").await;
    let (_, _, tag, _) = get_manual(&ch, "dropq").await.expect("get");
    within(
        5,
        ch.basic_reject(tag, BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("reject");
    assert!(get_manual(&ch, "dropq").await.is_none());
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(counts(&ch, "dropq").await, (0, 0), "gone for good");
    b.stop().await;
}

#[tokio::test]
async fn nack_without_requeue_drops_the_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "nackdrop").await;
    publish_n(&ch, "nackdrop", 3).await;
    let mut consumer = consume(&ch, "nackdrop", false).await;
    let mut last = 0;
    for _ in 0..3 {
        last = next(&mut consumer).await.delivery_tag;
    }
    within(
        5,
        ch.basic_nack(
            last,
            BasicNackOptions {
                multiple: true,
                requeue: false,
            },
        ),
    )
    .await
    .expect("nack");
    assert!(stays_quiet(&mut consumer).await);
    assert_eq!(counts(&ch, "nackdrop").await, (0, 1));
    b.stop().await;
}

#[tokio::test]
async fn ack_multiple_settles_everything_up_to_the_tag() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "am").await;
    publish_n(&ch, "am", 5).await;
    let mut consumer = consume(&ch, "am", false).await;
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(next(&mut consumer).await.delivery_tag);
    }
    within(5, ch.basic_ack(tags[2], BasicAckOptions { multiple: true }))
        .await
        .expect("ack");
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "am").await, msgs(&[("4", true), ("5", true)]));
    b.stop().await;
}

/// Publish 1..=5, take 1..=3 unacked with a prefetch-3 consumer on a fresh channel of `c`.
async fn hold_three(c: &lapin::Connection, queue: &str) -> (Channel, Consumer) {
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, queue).await;
    publish_n(&ch, queue, 5).await;
    within(5, ch.basic_qos(3, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&ch, queue, false).await;
    for i in 1..=3 {
        assert_eq!(body(&next(&mut consumer).await), i.to_string());
    }
    (ch, consumer)
}

fn requeued_order() -> Vec<(String, bool)> {
    msgs(&[
        ("1", true),
        ("2", true),
        ("3", true),
        ("4", false),
        ("5", false),
    ])
}

#[tokio::test]
async fn unacked_return_in_order_when_the_channel_closes() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let (ch, _consumer) = hold_three(&c, "cc").await;
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "cc").await, requeued_order());
    b.stop().await;
}

#[tokio::test]
async fn unacked_return_in_order_when_the_connection_closes() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let (_ch, _consumer) = hold_three(&c, "conn_close").await;
    within(5, c.close(200, "bye".into())).await.expect("close");
    let (_c2, ch) = b.channel().await;
    wait_ready(&ch, "conn_close", 5).await;
    assert_eq!(drain(&ch, "conn_close").await, requeued_order());
    b.stop().await;
}

#[tokio::test]
async fn unacked_return_in_order_when_a_consumer_connection_drops() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "dropped").await;
    publish_n(&ch, "dropped", 5).await;
    let mut raw = raw::Client::open(&b).await;
    raw.qos_and_consume(1, 3, "dropped").await;
    let bodies = raw.read_deliveries(3).await;
    assert_eq!(bodies, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    assert_eq!(counts(&ch, "dropped").await, (2, 1));
    raw.abort();
    wait_ready(&ch, "dropped", 5).await;
    assert_eq!(counts(&ch, "dropped").await, (5, 0));
    assert_eq!(drain(&ch, "dropped").await, requeued_order());
    b.stop().await;
}

#[tokio::test]
async fn basic_recover_requeue_redelivers_unacked() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "rec").await;
    publish_n(&ch, "rec", 3).await;
    let mut consumer = consume(&ch, "rec", false).await;
    for i in 1..=3 {
        let d = next(&mut consumer).await;
        assert_eq!((body(&d), d.redelivered), (i.to_string(), false));
    }
    within(5, ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .expect("recover");
    for i in 1..=3 {
        let d = next(&mut consumer).await;
        assert_eq!((body(&d), d.redelivered), (i.to_string(), true));
        within(5, d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    assert!(stays_quiet(&mut consumer).await);
    b.stop().await;
}

#[tokio::test]
async fn an_acked_message_never_comes_back() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "acked").await;
    publish(&ch, "acked", b"a").await;
    publish(&ch, "acked", b"b").await;
    let mut consumer = consume(&ch, "acked", false).await;
    let a = next(&mut consumer).await;
    let _b = next(&mut consumer).await;
    within(5, a.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "acked").await, msgs(&[("b", true)]));
    within(5, ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .expect("recover");
    assert!(drain(&ch, "acked").await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn no_ack_consumer_gets_everything_in_order() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "firehose").await;
    // More than the broker's no-ack write window, so credit must come back.
    const N: u32 = 5000;
    publish_n(&ch, "firehose", N).await;
    let cch = c.create_channel().await.expect("channel");
    let mut consumer = consume(&cch, "firehose", true).await;
    within(30, async {
        for i in 1..=N {
            let d = next(&mut consumer).await;
            assert_eq!(body(&d), i.to_string());
            assert!(!d.redelivered);
        }
    })
    .await;
    within(5, cch.close(200, "bye".into()))
        .await
        .expect("close");
    assert_eq!(counts(&ch, "firehose").await, (0, 0), "nothing to requeue");
    b.stop().await;
}

fn pattern(chan: usize, msg: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(7) ^ chan.wrapping_mul(31) ^ msg.wrapping_mul(131)) as u8)
        .collect()
}

#[tokio::test]
async fn concurrent_multi_frame_publishes_on_many_channels_do_not_mix() {
    let b = Broker::start().await;
    let c = b.connect().await;
    const CHANNELS: usize = 8;
    const MSGS: usize = 4;
    const LEN: usize = 300_000; // three frames at frame_max 131072
    let mut tasks = Vec::new();
    for n in 0..CHANNELS {
        let ch = c.create_channel().await.expect("channel");
        let q = format!("mix{n}");
        declare(&ch, &q).await;
        tasks.push(tokio::spawn(async move {
            for m in 0..MSGS {
                publish(&ch, &q, &pattern(n, m, LEN + n)).await;
            }
            ch
        }));
    }
    let mut chans = Vec::new();
    for t in tasks {
        chans.push(within(30, t).await.expect("publisher task"));
    }
    // Consume all queues concurrently too: deliveries interleave on the way out.
    let mut readers = Vec::new();
    for (n, ch) in chans.into_iter().enumerate() {
        readers.push(tokio::spawn(async move {
            let mut consumer = consume(&ch, &format!("mix{n}"), true).await;
            for m in 0..MSGS {
                let d = next(&mut consumer).await;
                assert!(
                    d.data == pattern(n, m, LEN + n),
                    "channel {n} message {m} corrupted"
                );
            }
        }));
    }
    for r in readers {
        within(30, r).await.expect("reader task");
    }
    b.stop().await;
}

#[tokio::test]
async fn interleaved_content_frames_across_channels_stay_separate() {
    // Raw frames: two channels' publishes interleaved frame by frame, which lapin never does.
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "il1").await;
    declare(&ch, "il2").await;
    let mut raw = raw::Client::open(&b).await;
    raw.open_channel(2).await;
    let one = pattern(1, 0, 10_000);
    let two = pattern(2, 0, 10_000);
    raw.interleaved_publish(&[(1, "il1", &one), (2, "il2", &two)], 4096)
        .await;
    raw.sync(1).await;
    raw.sync(2).await;
    assert!(within(5, get_body(&ch, "il1")).await == Some(one));
    assert!(within(5, get_body(&ch, "il2")).await == Some(two));
    drop(raw);
    b.stop().await;
}

#[tokio::test]
async fn delivery_tags_start_at_one_per_channel_and_increase_by_one() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch1 = c.create_channel().await.expect("channel");
    let ch2 = c.create_channel().await.expect("channel");
    declare(&ch1, "t1").await;
    declare(&ch1, "t2").await;
    publish_n(&ch1, "t1", 3).await;
    publish_n(&ch1, "t2", 3).await;
    // basic.get and basic.deliver share the channel's sequence.
    let (_, _, tag, _) = get_manual(&ch1, "t1").await.expect("get");
    assert_eq!(tag, 1);
    let mut c1 = consume(&ch1, "t1", false).await;
    let mut c2 = consume(&ch2, "t2", false).await;
    assert_eq!(next(&mut c1).await.delivery_tag, 2);
    assert_eq!(next(&mut c1).await.delivery_tag, 3);
    for want in 1..=3 {
        assert_eq!(next(&mut c2).await.delivery_tag, want);
    }
    b.stop().await;
}

#[tokio::test]
async fn requeue_keeps_original_order_around_acked_gaps() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "gaps").await;
    publish_n(&ch, "gaps", 5).await;
    let mut consumer = consume(&ch, "gaps", false).await;
    for i in 1..=5 {
        let d = next(&mut consumer).await;
        if i % 2 == 0 {
            within(5, d.ack(BasicAckOptions::default()))
                .await
                .expect("ack");
        }
    }
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(
        drain(&ch, "gaps").await,
        msgs(&[("1", true), ("3", true), ("5", true)])
    );
    b.stop().await;
}

#[tokio::test]
async fn nack_multiple_across_queues_returns_each_to_its_own_queue() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "qa").await;
    declare(&ch, "qb").await;
    for (q, m) in [("qa", "a1"), ("qb", "b1"), ("qa", "a2"), ("qb", "b2")] {
        publish(&ch, q, m.as_bytes()).await;
    }
    let mut tags = Vec::new();
    for q in ["qa", "qb", "qa", "qb"] {
        tags.push(get_manual(&ch, q).await.expect("message").2);
    }
    within(
        5,
        ch.basic_nack(
            tags[3],
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        ),
    )
    .await
    .expect("nack");
    assert_eq!(drain(&ch, "qa").await, msgs(&[("a1", true), ("a2", true)]));
    assert_eq!(drain(&ch, "qb").await, msgs(&[("b1", true), ("b2", true)]));
    b.stop().await;
}

#[tokio::test]
async fn unacked_basic_get_messages_return_when_the_channel_closes() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "got").await;
    publish_n(&ch, "got", 3).await;
    get_manual(&ch, "got").await.expect("1");
    get_manual(&ch, "got").await.expect("2");
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(
        drain(&ch, "got").await,
        msgs(&[("1", true), ("2", true), ("3", false)])
    );
    b.stop().await;
}

#[tokio::test]
async fn cancelling_a_consumer_keeps_its_unacked_messages_ackable() {
    // RabbitMQ: basic.cancel does not requeue; the deliveries stay unacked on the channel.
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "cancelled").await;
    publish_n(&ch, "cancelled", 2).await;
    let mut consumer = consume(&ch, "cancelled", false).await;
    let d1 = next(&mut consumer).await;
    let d2 = next(&mut consumer).await;
    within(
        5,
        ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .expect("cancel");
    assert_eq!(counts(&ch, "cancelled").await, (0, 0), "nothing requeued");
    within(5, d1.ack(BasicAckOptions::default()))
        .await
        .expect("ack after cancel");
    assert_eq!(counts(&ch, "cancelled").await, (0, 0), "channel still open");
    drop(d2);
    within(5, ch.close(200, "bye".into())).await.expect("close");
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(drain(&ch, "cancelled").await, msgs(&[("2", true)]));
    b.stop().await;
}

#[tokio::test]
async fn acking_after_the_queue_was_deleted_is_fine() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "vanishing").await;
    publish(&ch, "vanishing", b"m").await;
    let mut consumer = consume(&ch, "vanishing", false).await;
    let d = next(&mut consumer).await;
    let other = c.create_channel().await.expect("channel");
    within(
        5,
        other.queue_delete("vanishing".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete");
    assert!(within(5, consumer.next()).await.is_none(), "cancelled");
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    declare(&ch, "still-open").await;
    b.stop().await;
}

#[tokio::test]
async fn purge_leaves_unacked_messages_alone() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "half").await;
    publish_n(&ch, "half", 3).await;
    let cch = c.create_channel().await.expect("channel");
    within(5, cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&cch, "half", false).await;
    assert_eq!(body(&next(&mut consumer).await), "1");
    let n = within(
        5,
        ch.queue_purge("half".into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("purge");
    assert_eq!(n, 2);
    within(5, cch.close(200, "bye".into()))
        .await
        .expect("close");
    assert_eq!(drain(&ch, "half").await, msgs(&[("1", true)]));
    b.stop().await;
}

#[tokio::test]
async fn exclusive_consumer_excludes_others_with_403() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "solo").await;
    let excl = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let _owner = within(
        5,
        ch.basic_consume("solo".into(), "".into(), excl, FieldTable::default()),
    )
    .await
    .expect("exclusive consume");
    let ch2 = c.create_channel().await.expect("channel");
    let r = within(
        5,
        ch2.basic_consume(
            "solo".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    // And an exclusive consume on a queue that already has a consumer.
    declare(&ch, "shared").await;
    let _plain = consume(&ch, "shared", false).await;
    let ch3 = c.create_channel().await.expect("channel");
    let r = within(
        5,
        ch3.basic_consume("shared".into(), "".into(), excl, FieldTable::default()),
    )
    .await;
    expect_code(r, 403);
    b.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_connection_drops() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let mut raw = raw::Client::open(&b).await;
    raw.declare_exclusive(1, "ephemeral").await;
    expect_code(declare_opts(&ch, "ephemeral", passive()).await, 405);
    raw.abort();
    let ch = _c.create_channel().await.expect("channel");
    wait_gone(&ch, "ephemeral").await;
    b.stop().await;
}

#[tokio::test]
async fn channel_flow_active_is_acknowledged() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let active = within(5, ch.channel_flow(ChannelFlowOptions { active: true }))
        .await
        .expect("channel.flow");
    assert!(active);
    declare(&ch, "after_flow").await;
    b.stop().await;
}

/// A minimal hand-rolled AMQP client for what lapin cannot do: drop the TCP connection without a
/// close handshake, and interleave content frames of several channels.
mod raw {
    use super::common::{within, Broker};
    use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass};
    use amq_protocol::types::{FieldTable, LongString};
    use bytes::BytesMut;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use warren::protocol::frame::{decode_method, encode_method, split_frame, RawFrame, Split};

    pub struct Client {
        sock: TcpStream,
        buf: BytesMut,
    }

    fn frame(kind: u8, chan: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&chan.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xCE);
        f
    }

    /// A content header with no properties.
    fn header(chan: u16, size: u64) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&60u16.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&0u16.to_be_bytes());
        frame(2, chan, &p)
    }

    impl Client {
        /// Connect, authenticate as guest, open vhost `/` and channel 1.
        pub async fn open(b: &Broker) -> Client {
            let mut c = Client {
                sock: b.raw().await,
                buf: BytesMut::new(),
            };
            c.write(b"AMQP\x00\x00\x09\x01").await;
            let AMQPClass::Connection(connection::AMQPMethod::Start(_)) = c.method().await else {
                panic!("expected connection.start");
            };
            let mut caps = FieldTable::default();
            caps.insert("consumer_cancel_notify".into(), true.into());
            let mut props = FieldTable::default();
            props.insert("capabilities".into(), caps.into());
            c.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                    client_properties: props,
                    mechanism: "PLAIN".into(),
                    response: LongString::from(&b"\0guest\0guest"[..]),
                    locale: "en_US".into(),
                })),
            )
            .await;
            let AMQPClass::Connection(connection::AMQPMethod::Tune(t)) = c.method().await else {
                panic!("expected connection.tune");
            };
            c.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                    channel_max: t.channel_max,
                    frame_max: t.frame_max,
                    heartbeat: 0,
                })),
            )
            .await;
            c.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                    virtual_host: "/".into(),
                })),
            )
            .await;
            let AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) = c.method().await else {
                panic!("expected connection.open-ok");
            };
            c.open_channel(1).await;
            c
        }

        /// queue.declare(exclusive) on `chan`, waiting for declare-ok.
        pub async fn declare_exclusive(&mut self, chan: u16, name: &str) {
            self.send(
                chan,
                AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                    queue: name.into(),
                    passive: false,
                    durable: false,
                    exclusive: true,
                    auto_delete: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            )
            .await;
            let AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)) = self.method().await else {
                panic!("expected queue.declare-ok");
            };
        }

        pub async fn open_channel(&mut self, chan: u16) {
            self.send(
                chan,
                AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            )
            .await;
            let AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) = self.method().await else {
                panic!("expected channel.open-ok");
            };
        }

        async fn write(&mut self, bytes: &[u8]) {
            within(5, self.sock.write_all(bytes))
                .await
                .expect("raw write");
        }

        async fn send(&mut self, chan: u16, m: AMQPClass) {
            let mut b = BytesMut::new();
            encode_method(&mut b, chan, m);
            self.write(&b).await;
        }

        /// The next frame that is not a heartbeat.
        async fn frame(&mut self) -> RawFrame {
            loop {
                match split_frame(&mut self.buf, 0) {
                    Split::Frame(f) if f.kind == 8 => continue,
                    Split::Frame(f) => return f,
                    Split::Incomplete => {}
                    other => panic!("bad frame from broker: {other:?}"),
                }
                let n = within(5, self.sock.read_buf(&mut self.buf))
                    .await
                    .expect("raw read");
                assert!(n > 0, "broker closed the socket");
            }
        }

        async fn method(&mut self) -> AMQPClass {
            let f = self.frame().await;
            assert_eq!(f.kind, 1, "expected a method frame");
            decode_method(&f.payload).expect("decodable method")
        }

        /// basic.qos(prefetch) then basic.consume(no_ack=false) on `chan`.
        pub async fn qos_and_consume(&mut self, chan: u16, prefetch: u16, queue: &str) {
            self.send(
                chan,
                AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                    prefetch_count: prefetch,
                    global: false,
                })),
            )
            .await;
            let AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) = self.method().await else {
                panic!("expected basic.qos-ok");
            };
            self.send(
                chan,
                AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: queue.into(),
                    consumer_tag: "raw".into(),
                    no_local: false,
                    no_ack: false,
                    exclusive: false,
                    nowait: false,
                    arguments: FieldTable::default(),
                })),
            )
            .await;
            let AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) = self.method().await else {
                panic!("expected basic.consume-ok");
            };
        }

        /// Read `n` deliveries (single-frame bodies), returning their bodies.
        pub async fn read_deliveries(&mut self, n: usize) -> Vec<Vec<u8>> {
            let mut out = Vec::new();
            while out.len() < n {
                let AMQPClass::Basic(basic::AMQPMethod::Deliver(_)) = self.method().await else {
                    panic!("expected basic.deliver");
                };
                let h = self.frame().await;
                assert_eq!(h.kind, 2, "expected a content header");
                let b = self.frame().await;
                assert_eq!(b.kind, 3, "expected a body frame");
                out.push(b.payload.to_vec());
            }
            out
        }

        /// Publish several messages at once, their body frames (of `chunk` bytes) interleaved
        /// across channels.
        pub async fn interleaved_publish(&mut self, msgs: &[(u16, &str, &[u8])], chunk: usize) {
            let mut wire = BytesMut::new();
            for (chan, queue, body) in msgs {
                encode_method(
                    &mut wire,
                    *chan,
                    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                        exchange: "".into(),
                        routing_key: (*queue).into(),
                        mandatory: false,
                        immediate: false,
                    })),
                );
                wire.extend_from_slice(&header(*chan, body.len() as u64));
            }
            let chunks: Vec<Vec<&[u8]>> =
                msgs.iter().map(|m| m.2.chunks(chunk).collect()).collect();
            let longest = chunks.iter().map(Vec::len).max().unwrap_or(0);
            for i in 0..longest {
                for (m, parts) in msgs.iter().zip(&chunks) {
                    if let Some(p) = parts.get(i) {
                        wire.extend_from_slice(&frame(3, m.0, p));
                    }
                }
            }
            self.write(&wire).await;
        }

        /// A round trip on `chan` (basic.qos) so everything sent before it has been handled.
        pub async fn sync(&mut self, chan: u16) {
            self.send(
                chan,
                AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                    prefetch_count: 0,
                    global: false,
                })),
            )
            .await;
            let AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) = self.method().await else {
                panic!("expected basic.qos-ok on channel {chan}");
            };
        }

        /// Drop the connection abruptly: RST, no close handshake. (A zero linger never blocks,
        /// which is what tokio's deprecation of `set_linger` warns about.)
        #[allow(deprecated)]
        pub fn abort(self) {
            let _ = self.sock.set_linger(Some(Duration::ZERO));
            drop(self.sock);
        }
    }
}
