//! Acknowledgements and requeue: ack (multiple), reject and nack with and without requeue,
//! basic.recover, requeued messages keeping their original order (around acked gaps, across
//! queues), and unacked messages returning in order when their channel or connection closes or
//! the connection drops without a close handshake.
use crate::common;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::{BasicProperties, Channel, Consumer};

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
