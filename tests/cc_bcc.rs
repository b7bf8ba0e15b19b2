//! Sender-selected distribution, as RabbitMQ's guide describes it: the `CC` and `BCC` headers
//! (arrays of long strings) add routing keys on the exchange the message was published to; each
//! queue gets the message once; `BCC` is removed before delivery; a value that is not an array
//! fails the publish with RabbitMQ's 406.
use crate::common;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::BasicProperties;

fn keys(list: &[&str]) -> AMQPValue {
    let v: Vec<AMQPValue> = list
        .iter()
        .map(|k| AMQPValue::LongString((*k).into()))
        .collect();
    AMQPValue::FieldArray(FieldArray::from(v))
}

async fn publish_headers(
    ch: &lapin::Channel,
    exchange: &str,
    key: &str,
    headers: FieldTable,
    mandatory: bool,
) {
    within(
        5,
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            b"m",
            BasicProperties::default().with_headers(headers),
        ),
    )
    .await
    .expect("basic.publish");
}

/// The headers of the one message in `queue` (taken with basic.get).
async fn headers_in(ch: &lapin::Channel, queue: &str) -> FieldTable {
    let m = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .unwrap_or_else(|| panic!("no message in {queue}"));
    m.delivery.properties.headers().clone().unwrap_or_default()
}

#[tokio::test]
async fn cc_keys_reach_more_queues_and_stay_visible() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for q in ["cc-1", "cc-2", "cc-3", "cc-4"] {
        declare(&ch, q).await;
    }
    publish_headers(
        &ch,
        "",
        "cc-1",
        args(&[("CC", keys(&["cc-2", "cc-3"]))]),
        false,
    )
    .await;
    for q in ["cc-1", "cc-2", "cc-3"] {
        let h = headers_in(&ch, q).await;
        assert_eq!(h.inner().get("CC"), Some(&keys(&["cc-2", "cc-3"])), "{q}");
    }
    assert_eq!(counts(&ch, "cc-4").await.0, 0);
    b.stop().await;
}

#[tokio::test]
async fn bcc_keys_route_but_are_removed_before_delivery() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "to").await;
    declare(&ch, "blind").await;
    publish_headers(
        &ch,
        "",
        "to",
        args(&[("BCC", keys(&["blind"])), ("x-app", long(7))]),
        false,
    )
    .await;
    for q in ["to", "blind"] {
        let h = headers_in(&ch, q).await;
        assert!(h.inner().get("BCC").is_none(), "BCC delivered from {q}");
        assert_eq!(h.inner().get("x-app"), Some(&long(7)), "{q}");
    }
    b.stop().await;
}

#[tokio::test]
async fn a_queue_reached_by_several_keys_gets_the_message_once() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "once").await;
    for key in ["a", "b", "c"] {
        within(
            5,
            ch.queue_bind(
                "once".into(),
                "amq.direct".into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("bind");
    }
    publish_headers(
        &ch,
        "amq.direct",
        "a",
        args(&[("CC", keys(&["b"])), ("BCC", keys(&["c", "a"]))]),
        false,
    )
    .await;
    assert_eq!(counts(&ch, "once").await.0, 1);
    b.stop().await;
}

#[tokio::test]
async fn cc_keys_follow_the_exchange_type() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "eu").await;
    declare(&ch, "us").await;
    for (q, pattern) in [("eu", "orders.eu.*"), ("us", "orders.us.#")] {
        within(
            5,
            ch.queue_bind(
                q.into(),
                "amq.topic".into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("bind");
    }
    publish_headers(
        &ch,
        "amq.topic",
        "orders.eu.new",
        args(&[("CC", keys(&["orders.us.west.new"]))]),
        false,
    )
    .await;
    assert_eq!(counts(&ch, "eu").await.0, 1);
    assert_eq!(counts(&ch, "us").await.0, 1);
    b.stop().await;
}

#[tokio::test]
async fn a_mandatory_message_routed_only_by_cc_is_not_returned() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "only-cc").await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default().with_headers(args(&[("CC", keys(&["only-cc"]))])),
        ),
    )
    .await
    .expect("publish");
    let c = within(5, confirm).await.expect("confirm");
    assert!(c.take_message().is_none(), "returned although CC routed it");
    assert_eq!(counts(&ch, "only-cc").await.0, 1);
    b.stop().await;
}

#[tokio::test]
async fn a_cc_that_is_not_an_array_fails_the_publish() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "strict").await;
    publish_headers(&ch, "", "strict", args(&[("CC", text("strict"))]), false).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}"
    );
    b.stop().await;
}
