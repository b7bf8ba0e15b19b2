//! Consumer priorities (`x-priority` on basic.consume), as RabbitMQ's consumer-priority guide
//! describes them: the highest-priority consumer that can take a message gets it, consumers of
//! equal priority share round robin, lower priorities get messages only while every higher one is
//! blocked by its prefetch, and a priority that is not an integer is refused with 406.
use crate::common;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;

#[tokio::test]
async fn the_high_priority_consumer_gets_everything_while_it_has_credit() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "prio").await;
    let (lo_ch, hi_ch) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    // The low-priority consumer registers first, so registration order cannot explain the result.
    let mut lo = consume_args(&lo_ch, "prio", true, args(&[]))
        .await
        .expect("consume");
    let mut hi = consume_args(&hi_ch, "prio", true, args(&[("x-priority", long(10))]))
        .await
        .expect("consume");
    publish_n(&pch, "prio", 10).await;
    for i in 1..=10 {
        assert_eq!(body(&next(&mut hi).await), i.to_string());
    }
    assert!(
        stays_quiet(&mut lo).await,
        "the low-priority consumer got a message"
    );
    b.stop().await;
}

#[tokio::test]
async fn lower_priorities_get_messages_only_while_higher_ones_are_blocked() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "blocked").await;
    let (hi_ch, lo_ch) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    qos(&hi_ch, 2).await;
    qos(&lo_ch, 2).await;
    let mut hi = consume_args(&hi_ch, "blocked", false, args(&[("x-priority", long(5))]))
        .await
        .expect("consume");
    let mut lo = consume_args(&lo_ch, "blocked", false, args(&[("x-priority", long(-1))]))
        .await
        .expect("consume");
    publish_n(&pch, "blocked", 6).await;
    let h1 = next(&mut hi).await;
    let h2 = next(&mut hi).await;
    assert_eq!((body(&h1), body(&h2)), ("1".into(), "2".into()));
    // The high one is at its prefetch: the low one takes the next two.
    assert_eq!(body(&next(&mut lo).await), "3");
    assert_eq!(body(&next(&mut lo).await), "4");
    assert!(stays_quiet(&mut lo).await && stays_quiet(&mut hi).await);
    // Credit back for the high one: it gets the next message, not the low one.
    within(5, h1.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    assert_eq!(body(&next(&mut hi).await), "5");
    assert!(stays_quiet(&mut lo).await);
    b.stop().await;
}

#[tokio::test]
async fn equal_top_priorities_share_round_robin() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "rr-prio").await;
    let mut chs = Vec::new();
    for _ in 0..3 {
        chs.push(c.create_channel().await.expect("channel"));
    }
    let mut low = consume_args(&chs[0], "rr-prio", true, args(&[("x-priority", long(1))]))
        .await
        .expect("consume");
    let mut a = consume_args(&chs[1], "rr-prio", true, args(&[("x-priority", long(7))]))
        .await
        .expect("consume");
    let mut bb = consume_args(&chs[2], "rr-prio", true, args(&[("x-priority", long(7))]))
        .await
        .expect("consume");
    publish_n(&pch, "rr-prio", 8).await;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    for _ in 0..4 {
        got_a.push(body(&next(&mut a).await));
        got_b.push(body(&next(&mut bb).await));
    }
    assert_eq!(got_a, ["1", "3", "5", "7"]);
    assert_eq!(got_b, ["2", "4", "6", "8"]);
    assert!(stays_quiet(&mut low).await);
    b.stop().await;
}

#[tokio::test]
async fn a_priority_that_is_not_an_integer_is_a_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "bad-prio").await;
    let e = consume_args(
        &ch,
        "bad-prio",
        false,
        args(&[("x-priority", text("high"))]),
    )
    .await
    .expect_err("consume with a string priority");
    assert_eq!(code(&e), Some(406), "{e}");
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'bad-prio' in vhost '/': \"expected integer, got longstr\""
    );
    b.stop().await;
}

#[tokio::test]
async fn when_the_high_priority_consumer_cancels_the_lower_one_takes_over() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let pch = c.create_channel().await.expect("channel");
    declare(&pch, "takeover").await;
    let (hi_ch, lo_ch) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    let hi = consume_args(&hi_ch, "takeover", true, args(&[("x-priority", long(3))]))
        .await
        .expect("consume");
    let mut lo = consume_args(&lo_ch, "takeover", true, args(&[]))
        .await
        .expect("consume");
    within(
        5,
        hi_ch.basic_cancel(hi.tag().as_str().into(), BasicCancelOptions::default()),
    )
    .await
    .expect("cancel");
    publish_n(&pch, "takeover", 3).await;
    for i in 1..=3 {
        assert_eq!(body(&next(&mut lo).await), i.to_string());
    }
    b.stop().await;
}

#[tokio::test]
async fn stream_consumer_arguments_on_a_classic_queue_are_a_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "plain").await;
    let e = consume_args(
        &ch,
        "plain",
        false,
        args(&[("x-stream-offset", text("first"))]),
    )
    .await
    .expect_err("consume with a stream offset");
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue 'plain' in vhost '/' of queue type rabbit_classic_queue"
    );
    b.stop().await;
}
