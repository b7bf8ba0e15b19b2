//! Consumer dispatch: server-generated consumer tags, round robin between consumers, prefetch
//! holding deliveries back per consumer, basic.get counts and get-empty, a no-ack consumer
//! getting everything in order, exclusive consumers, and cancel leaving unacked deliveries
//! ackable.
use crate::common;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::FieldTable;

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
