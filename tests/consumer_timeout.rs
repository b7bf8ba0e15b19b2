//! The delivery acknowledgement timeout, as RabbitMQ's consumers guide describes it: a channel
//! that keeps a delivery unacked longer than the timeout is closed with 406 PRECONDITION_FAILED
//! and RabbitMQ's text, and its unacked messages are requeued. The timeout comes from the
//! consumer's `x-consumer-timeout`, else the queue's, else `[consumer] timeout_ms` (0 = off).
use crate::common;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::AMQPValue;
use std::time::Duration;

fn timeout_text(chan: u16, ms: u64) -> String {
    format!(
        "PRECONDITION_FAILED - delivery acknowledgement on channel {chan} timed out. Timeout value \
         used: {ms} ms. This timeout value can be configured, see consumers doc guide to learn more"
    )
}

#[tokio::test]
async fn a_delivery_held_past_the_queue_timeout_closes_the_channel_and_is_requeued() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let other = c.create_channel().await.expect("channel");
    declare_args(&other, "slow", args(&[("x-consumer-timeout", long(400))]))
        .await
        .expect("declare");
    publish(&other, "slow", b"job").await;
    let ch = c.create_channel().await.expect("channel");
    let mut consumer = consume(&ch, "slow", false).await;
    let d = next(&mut consumer).await;
    assert!(!d.redelivered);
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    assert_eq!(text, timeout_text(ch.id(), 400));
    // The connection and its other channels carry on; the message is back, redelivered.
    let m = within(
        5,
        other.basic_get("slow".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .expect("the message was requeued");
    assert_eq!(&m.delivery.data[..], b"job");
    assert!(m.delivery.redelivered);
    b.stop().await;
}

#[tokio::test]
async fn acking_in_time_keeps_the_channel_open() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare_args(&ch, "quick", args(&[("x-consumer-timeout", long(500))]))
        .await
        .expect("declare");
    publish(&ch, "quick", b"job").await;
    let mut consumer = consume(&ch, "quick", false).await;
    let d = next(&mut consumer).await;
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(ch.status().connected(), "the channel was closed");
    declare(&ch, "still-works").await;
    b.stop().await;
}

#[tokio::test]
async fn the_consumer_argument_overrides_the_queue_argument() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    declare_args(&ch, "both", args(&[("x-consumer-timeout", long(600_000))]))
        .await
        .expect("declare");
    publish(&ch, "both", b"job").await;
    let mut consumer = consume_args(
        &ch,
        "both",
        false,
        args(&[("x-consumer-timeout", long(300))]),
    )
    .await
    .expect("consume");
    next(&mut consumer).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!((code, text), (406, timeout_text(ch.id(), 300)));
    b.stop().await;
}

#[tokio::test]
async fn the_configured_default_applies_to_queues_without_one() {
    let b = Broker::start_with(|cfg| cfg.consumer.timeout_ms = 300).await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "plain").await;
    publish(&ch, "plain", b"job").await;
    let mut consumer = consume(&ch, "plain", false).await;
    next(&mut consumer).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!((code, text), (406, timeout_text(ch.id(), 300)));
    b.stop().await;
}

#[tokio::test]
async fn an_unacked_basic_get_times_out_too() {
    let b = Broker::start_with(|cfg| cfg.consumer.timeout_ms = 300).await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let other = c.create_channel().await.expect("channel");
    declare(&other, "got").await;
    publish(&other, "got", b"job").await;
    let ch = c.create_channel().await.expect("channel");
    assert!(get_manual(&ch, "got").await.is_some());
    let (code, _) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    wait_ready(&other, "got", 1).await;
    b.stop().await;
}

#[tokio::test]
async fn a_timeout_of_zero_turns_the_check_off() {
    let b = Broker::start_with(|cfg| cfg.consumer.timeout_ms = 200).await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare_args(&ch, "forever", args(&[("x-consumer-timeout", long(0))]))
        .await
        .expect("declare");
    publish(&ch, "forever", b"job").await;
    let mut consumer = consume(&ch, "forever", false).await;
    let d = next(&mut consumer).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(ch.status().connected(), "the channel was closed");
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    b.stop().await;
}

#[tokio::test]
async fn only_the_channel_holding_the_late_delivery_is_closed() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let pch = c.create_channel().await.expect("channel");
    declare_args(&pch, "two", args(&[("x-consumer-timeout", long(500))]))
        .await
        .expect("declare");
    let (slow_ch, fast_ch) = (
        c.create_channel().await.expect("channel"),
        c.create_channel().await.expect("channel"),
    );
    qos(&slow_ch, 1).await;
    qos(&fast_ch, 1).await;
    let mut slow = consume(&slow_ch, "two", false).await;
    let mut fast = consume(&fast_ch, "two", false).await;
    publish_n(&pch, "two", 2).await;
    next(&mut slow).await;
    let d = next(&mut fast).await;
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!((code, text), (406, timeout_text(slow_ch.id(), 500)));
    // The fast consumer now gets the slow one's message, redelivered.
    let d = next(&mut fast).await;
    assert_eq!((body(&d), d.redelivered), ("1".into(), true));
    assert!(fast_ch.status().connected());
    b.stop().await;
}

#[tokio::test]
async fn an_unusable_timeout_argument_is_accepted_and_ignored() {
    // As RabbitMQ, which does not validate x-consumer-timeout (queue or consumer argument).
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "neg", args(&[("x-consumer-timeout", long(-1))]))
        .await
        .expect("declare with a negative timeout");
    declare_args(
        &ch,
        "text",
        args(&[("x-consumer-timeout", AMQPValue::LongString("soon".into()))]),
    )
    .await
    .expect("declare with a string timeout");
    ch.basic_consume(
        "neg".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        args(&[("x-consumer-timeout", AMQPValue::LongString("x".into()))]),
    )
    .await
    .expect("consume with a string timeout");
    b.stop().await;
}

/// RabbitMQ works a delivery's timeout out when it checks it, from the queue's policy as it is
/// then: a consumer-timeout policy set while a consumer holds a delivery applies to it.
#[tokio::test]
async fn a_policy_set_while_a_delivery_is_held_applies_to_it() {
    let b = Broker::start().await;
    let http = b.http();
    let c = b.connect().await;
    let mut ev = events(&c);
    let other = c.create_channel().await.expect("channel");
    declare_args(&other, "held", args(&[]))
        .await
        .expect("declare");
    publish(&other, "held", b"job").await;
    let ch = c.create_channel().await.expect("channel");
    let mut consumer = consume(&ch, "held", false).await;
    next(&mut consumer).await;
    let r = http
        .put(
            "/api/policies/%2F/impatient",
            serde_json::json!({"pattern": "^held$", "definition": {"consumer-timeout": 300}, "apply-to": "queues"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!((code, text), (406, timeout_text(ch.id(), 300)));
    b.stop().await;
}

/// A policy set while the consumer holds nothing applies to the deliveries made after it.
#[tokio::test]
async fn a_policy_set_while_nothing_is_held_applies_to_later_deliveries() {
    let b = Broker::start().await;
    let http = b.http();
    let c = b.connect().await;
    let mut ev = events(&c);
    let other = c.create_channel().await.expect("channel");
    declare_args(&other, "idle", args(&[]))
        .await
        .expect("declare");
    let ch = c.create_channel().await.expect("channel");
    let mut consumer = consume(&ch, "idle", false).await;
    let r = http
        .put(
            "/api/policies/%2F/impatient",
            serde_json::json!({"pattern": "^idle$", "definition": {"consumer-timeout": 300}, "apply-to": "queues"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    publish(&other, "idle", b"job").await;
    next(&mut consumer).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!((code, text), (406, timeout_text(ch.id(), 300)));
    b.stop().await;
}

#[tokio::test]
async fn with_both_a_queue_argument_and_a_policy_the_lower_timeout_applies() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .put(
            "/api/policies/%2F/slow",
            serde_json::json!({"pattern": "^both$", "definition": {"consumer-timeout": 300}, "apply-to": "queues"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = b.connect().await;
    let mut ev = events(&c);
    let other = c.create_channel().await.expect("channel");
    declare_args(
        &other,
        "both",
        args(&[("x-consumer-timeout", long(600_000))]),
    )
    .await
    .expect("declare");
    publish(&other, "both", b"job").await;
    let ch = c.create_channel().await.expect("channel");
    let mut consumer = consume(&ch, "both", false).await;
    next(&mut consumer).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!((code, text), (406, timeout_text(ch.id(), 300)));
    b.stop().await;
}
