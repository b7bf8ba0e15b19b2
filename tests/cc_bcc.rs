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

/// Reject the one message in `queue` (basic.get, then basic.reject without requeue).
async fn reject_one(ch: &lapin::Channel, queue: &str) {
    let m = within(5, ch.basic_get(queue.into(), BasicGetOptions::default()))
        .await
        .expect("basic.get")
        .unwrap_or_else(|| panic!("no message in {queue}"));
    within(
        5,
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("reject");
}

/// A source queue `src` on direct exchange `dx` dead-lettering into `dx` (optionally with a
/// routing key), and queues bound with keys `cc`, `bcc` and `fixed`.
async fn dead_letter_setup(ch: &lapin::Channel, dlrk: Option<&str>) {
    within(
        5,
        ch.exchange_declare(
            "dx".into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.declare");
    let mut a = vec![("x-dead-letter-exchange", text("dx"))];
    if let Some(k) = dlrk {
        a.push(("x-dead-letter-routing-key", text(k)));
    }
    declare_args(ch, "src", args(&a))
        .await
        .expect("declare src");
    for (q, key) in [
        ("src", "src"),
        ("cc", "cc"),
        ("bcc", "bcc"),
        ("fixed", "fixed"),
    ] {
        if q != "src" {
            declare(ch, q).await;
        }
        within(
            5,
            ch.queue_bind(
                q.into(),
                "dx".into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("queue.bind");
    }
}

#[tokio::test]
async fn a_dead_letter_is_routed_with_its_bcc_keys_which_stay_hidden() {
    // RabbitMQ keeps CC and BCC keys as the message's routing keys: dead-lettered without a
    // dead-letter routing key, the message goes to the BCC queue too (its header never shows).
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    dead_letter_setup(&ch, None).await;
    publish_headers(
        &ch,
        "dx",
        "src",
        args(&[("CC", keys(&["cc"])), ("BCC", keys(&["bcc"]))]),
        false,
    )
    .await;
    // The first copies, straight from the publish.
    for q in ["cc", "bcc"] {
        let h = headers_in(&ch, q).await;
        assert!(h.inner().get("BCC").is_none(), "BCC delivered from {q}");
    }
    let h = headers_in(&ch, "src").await;
    assert!(h.inner().get("BCC").is_none(), "BCC delivered from src");
    // Again, rejected this time: the dead letter goes to src (its key), cc and bcc.
    publish_headers(
        &ch,
        "dx",
        "src",
        args(&[("CC", keys(&["cc"])), ("BCC", keys(&["bcc"]))]),
        false,
    )
    .await;
    for q in ["cc", "bcc"] {
        headers_in(&ch, q).await;
    }
    reject_one(&ch, "src").await;
    for q in ["src", "cc", "bcc"] {
        let h = headers_in(&ch, q).await;
        assert!(
            h.inner().get("BCC").is_none(),
            "BCC in the dead letter from {q}"
        );
        assert_eq!(h.inner().get("CC"), Some(&keys(&["cc"])), "{q}");
        let deaths = match h.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
            other => panic!("no x-death in {q}: {other:?}"),
        };
        let AMQPValue::FieldTable(d) = &deaths[0] else {
            panic!("x-death entry is not a table")
        };
        // The death records CC keys, never BCC ones.
        assert_eq!(
            d.inner().get("routing-keys"),
            Some(&keys(&["src", "cc"])),
            "{q}"
        );
    }
    assert_eq!(counts(&ch, "fixed").await.0, 0);
    b.stop().await;
}

#[tokio::test]
async fn a_dead_letter_routing_key_replaces_cc_and_bcc_and_drops_the_cc_header() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    dead_letter_setup(&ch, Some("fixed")).await;
    publish_headers(
        &ch,
        "dx",
        "src",
        args(&[
            ("CC", keys(&["cc"])),
            ("BCC", keys(&["bcc"])),
            ("x-app", long(1)),
        ]),
        false,
    )
    .await;
    for q in ["cc", "bcc"] {
        headers_in(&ch, q).await;
    }
    reject_one(&ch, "src").await;
    let h = headers_in(&ch, "fixed").await;
    assert!(h.inner().get("CC").is_none(), "CC kept: {h:?}");
    assert!(h.inner().get("BCC").is_none(), "BCC kept: {h:?}");
    assert_eq!(h.inner().get("x-app"), Some(&long(1)));
    for q in ["src", "cc", "bcc"] {
        assert_eq!(counts(&ch, q).await.0, 0, "{q}");
    }
    b.stop().await;
}

#[tokio::test]
async fn bcc_keys_kept_for_dead_lettering_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::durability::start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(
        5,
        ch.queue_declare("blind".into(), durable, FieldTable::default()),
    )
    .await
    .expect("declare blind");
    within(
        5,
        ch.queue_declare(
            "src".into(),
            durable,
            args(&[("x-dead-letter-exchange", text(""))]),
        ),
    )
    .await
    .expect("declare src");
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            "".into(),
            "src".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(args(&[("BCC", keys(&["blind"]))])),
        ),
    )
    .await
    .expect("publish");
    within(5, confirm).await.expect("confirm");
    // The copy in "blind" from the publish itself.
    headers_in(&ch, "blind").await;
    let b = common::durability::restart(b).await;
    let (_c, ch) = b.channel().await;
    let m = within(5, ch.basic_get("src".into(), BasicGetOptions::default()))
        .await
        .expect("basic.get")
        .expect("the message survived");
    let h = m.delivery.properties.headers().clone().unwrap_or_default();
    assert!(h.inner().get("BCC").is_none(), "BCC shown after a restart");
    within(
        5,
        m.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false }),
    )
    .await
    .expect("reject");
    // Dead-lettered through the default exchange with its keys: "src" and the BCC "blind".
    let h = headers_in(&ch, "blind").await;
    assert!(h.inner().get("BCC").is_none());
    assert!(h.inner().get("x-death").is_some());
    b.stop().await;
}
