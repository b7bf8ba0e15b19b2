//! Single active consumer (`x-single-active-consumer`) and exclusive consumers, as RabbitMQ's
//! consumers guide describes them: only the first registered consumer receives, even while its
//! prefetch blocks it; when it cancels or its channel or connection goes, the next registered
//! consumer takes over, getting the gone consumer's unacked messages (requeued) first; an
//! exclusive consume on such a queue is refused with 403, and the argument must be a boolean.
use crate::common;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::AMQPValue;

fn sac() -> lapin::types::FieldTable {
    args(&[("x-single-active-consumer", AMQPValue::Boolean(true))])
}

#[tokio::test]
async fn only_the_first_consumer_receives_even_when_it_is_blocked() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare_args(&pch, "sac", sac()).await.expect("declare");
    let (ch1, ch2) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    qos(&ch1, 1).await;
    let mut first = consume(&ch1, "sac", false).await;
    let mut second = consume(&ch2, "sac", false).await;
    publish_n(&pch, "sac", 3).await;
    let d = next(&mut first).await;
    assert_eq!(body(&d), "1");
    // The active consumer is at its prefetch, and still the other one gets nothing.
    assert!(
        stays_quiet(&mut second).await,
        "a waiting consumer received"
    );
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    assert_eq!(body(&next(&mut first).await), "2");
    assert!(stays_quiet(&mut second).await);
    b.stop().await;
}

#[tokio::test]
async fn cancelling_the_active_consumer_fails_over_to_the_next() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare_args(&pch, "sac-cancel", sac())
        .await
        .expect("declare");
    let (ch1, ch2, ch3) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    let first = consume(&ch1, "sac-cancel", true).await;
    let mut second = consume(&ch2, "sac-cancel", true).await;
    let mut third = consume(&ch3, "sac-cancel", true).await;
    within(
        5,
        ch1.basic_cancel(first.tag().as_str().into(), BasicCancelOptions::default()),
    )
    .await
    .expect("cancel");
    publish_n(&pch, "sac-cancel", 3).await;
    for i in 1..=3 {
        assert_eq!(body(&next(&mut second).await), i.to_string());
    }
    assert!(stays_quiet(&mut third).await, "the third consumer received");
    b.stop().await;
}

#[tokio::test]
async fn closing_the_active_channel_hands_its_unacked_messages_to_the_next_consumer_first() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare_args(&pch, "sac-close", sac())
        .await
        .expect("declare");
    let (ch1, ch2) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    qos(&ch1, 2).await;
    let mut first = consume(&ch1, "sac-close", false).await;
    let mut second = consume(&ch2, "sac-close", false).await;
    publish_n(&pch, "sac-close", 4).await;
    assert_eq!(body(&next(&mut first).await), "1");
    assert_eq!(body(&next(&mut first).await), "2");
    within(5, ch1.close(200, "bye".into()))
        .await
        .expect("close");
    let mut got = Vec::new();
    for _ in 0..4 {
        let d = next(&mut second).await;
        got.push((body(&d), d.redelivered));
    }
    assert_eq!(
        got,
        msgs(&[("1", true), ("2", true), ("3", false), ("4", false)])
    );
    b.stop().await;
}

#[tokio::test]
async fn the_next_consumer_takes_over_when_the_active_connection_dies() {
    let b = Broker::start().await;
    let (_pc, pch) = b.channel().await;
    declare_args(&pch, "sac-conn", sac())
        .await
        .expect("declare");
    let (c1, ch1) = b.channel().await;
    let (_c2, ch2) = b.channel().await;
    let mut first = consume(&ch1, "sac-conn", false).await;
    let mut second = consume(&ch2, "sac-conn", false).await;
    publish(&pch, "sac-conn", b"job").await;
    assert_eq!(body(&next(&mut first).await), "job");
    assert!(stays_quiet(&mut second).await);
    within(5, c1.close(200, "gone".into()))
        .await
        .expect("close");
    let d = next(&mut second).await;
    assert_eq!((body(&d), d.redelivered), ("job".into(), true));
    b.stop().await;
}

#[tokio::test]
async fn an_exclusive_consume_on_a_single_active_consumer_queue_is_refused() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "sac-excl", sac()).await.expect("declare");
    let r = within(
        5,
        ch.basic_consume(
            "sac-excl".into(),
            "".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            args(&[]),
        ),
    )
    .await;
    let e = r.expect_err("exclusive consume");
    assert_eq!(code(&e), Some(403), "{e}");
    assert_eq!(
        close_text(&e),
        "ACCESS_REFUSED - queue 'sac-excl' in vhost '/' in exclusive use"
    );
    b.stop().await;
}

#[tokio::test]
async fn the_argument_must_be_a_boolean() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let e = declare_args(
        &ch,
        "sac-bad",
        args(&[("x-single-active-consumer", text("yes"))]),
    )
    .await
    .expect_err("declare");
    assert_eq!(code(&e), Some(406), "{e}");
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue 'sac-bad' in vhost '/': {unacceptable_type,longstr}"
    );
    b.stop().await;
}

#[tokio::test]
async fn the_setting_survives_a_restart_of_a_durable_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start_in(dir.path(), |_| {}).await;
    {
        let (_c, ch) = b.channel().await;
        within(
            5,
            ch.queue_declare(
                "sac-durable".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                sac(),
            ),
        )
        .await
        .expect("declare");
    }
    b.stop().await;
    let b = Broker::start_in(dir.path(), |_| {}).await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    let (ch1, ch2) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    let mut first = consume(&ch1, "sac-durable", true).await;
    let mut second = consume(&ch2, "sac-durable", true).await;
    publish_n(&pch, "sac-durable", 2).await;
    assert_eq!(body(&next(&mut first).await), "1");
    assert_eq!(body(&next(&mut first).await), "2");
    assert!(stays_quiet(&mut second).await);
    b.stop().await;
}

/// A durable quorum queue with single active consumer.
async fn declare_quorum_sac(ch: &lapin::Channel, name: &str) {
    within(
        5,
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args(&[
                ("x-single-active-consumer", AMQPValue::Boolean(true)),
                ("x-queue-type", AMQPValue::LongString("quorum".into())),
            ]),
        ),
    )
    .await
    .expect("declare");
}

#[tokio::test]
async fn a_higher_priority_consumer_takes_over_a_quorum_queue_once_the_active_one_settles() {
    // RabbitMQ 4.0: a quorum queue's single active consumer honours consumer priorities. The
    // displaced consumer gets nothing more; the new one starts once it has acked what it holds.
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare_quorum_sac(&pch, "qsac").await;
    let (ch1, ch2) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    let mut low = consume(&ch1, "qsac", false).await;
    publish_n(&pch, "qsac", 1).await;
    let held = next(&mut low).await;
    assert_eq!(body(&held), "1");
    let mut high = consume_args(&ch2, "qsac", false, args(&[("x-priority", long(10))]))
        .await
        .expect("consume with a priority");
    publish_n(&pch, "qsac", 2).await;
    assert!(
        stays_quiet(&mut high).await,
        "took over before the old one settled"
    );
    assert!(
        stays_quiet(&mut low).await,
        "the displaced consumer got more"
    );
    within(5, held.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    // publish_n numbers from 1 again: the second batch is "1", "2".
    assert_eq!(body(&next(&mut high).await), "1");
    assert_eq!(body(&next(&mut high).await), "2");
    assert!(stays_quiet(&mut low).await);
    b.stop().await;
}

#[tokio::test]
async fn a_classic_queue_s_single_active_consumer_ignores_priorities() {
    // Classic queues keep registration order (RabbitMQ 4 changed this for quorum queues only).
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare_args(&pch, "csac", sac()).await.expect("declare");
    let (ch1, ch2) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    let mut low = consume(&ch1, "csac", true).await;
    let mut high = consume_args(&ch2, "csac", true, args(&[("x-priority", long(10))]))
        .await
        .expect("consume with a priority");
    publish_n(&pch, "csac", 2).await;
    assert_eq!(body(&next(&mut low).await), "1");
    assert_eq!(body(&next(&mut low).await), "2");
    assert!(stays_quiet(&mut high).await);
    b.stop().await;
}
