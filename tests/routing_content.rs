//! Message content through routing: every basic property delivered intact (basic.get and
//! basic.deliver), user-id checked against the authenticated user, and multi-frame and empty
//! bodies delivered intact.
use crate::common;
use common::routing::*;
use common::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable};
use lapin::BasicProperties;

fn every_property() -> BasicProperties {
    let mut nested = FieldTable::default();
    nested.insert("inner-int".into(), AMQPValue::LongLongInt(-42));
    nested.insert("inner-str".into(), s("deep"));
    let mut deeper = FieldTable::default();
    deeper.insert("leaf".into(), AMQPValue::Boolean(false));
    nested.insert("deeper".into(), AMQPValue::FieldTable(deeper));
    let array = FieldArray::from(vec![
        AMQPValue::LongInt(1),
        s("two"),
        AMQPValue::Boolean(true),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::ShortShortInt(-3)])),
        AMQPValue::FieldTable(table(&[("k", s("v"))])),
    ]);
    let hdrs = table(&[
        ("bool-true", AMQPValue::Boolean(true)),
        ("bool-false", AMQPValue::Boolean(false)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(60000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(i64::MIN)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        ("string", s("héllo wörld")),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255, 0xCE])),
        ),
        (
            "binary-longstr",
            AMQPValue::LongString(vec![0u8, 0xCE].into()),
        ),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        ("void", AMQPValue::Void),
        ("array", AMQPValue::FieldArray(array)),
        ("nested", AMQPValue::FieldTable(nested)),
        ("empty-table", AMQPValue::FieldTable(FieldTable::default())),
        ("empty-array", AMQPValue::FieldArray(FieldArray::default())),
    ]);
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(hdrs)
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_123)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
}

#[tokio::test]
async fn every_property_is_delivered_intact() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "props").await;
    let props = every_property();
    send_props(&ch, "", "props", b"{}", props.clone()).await;
    send_props(&ch, "", "props", b"{}", props.clone()).await;
    // Through basic.get ...
    let got = within(
        5,
        ch.basic_get("props".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    assert_eq!(got.delivery.properties, props);
    assert_eq!(got.delivery.data, b"{}");
    // ... and through basic.deliver.
    let mut consumer = within(
        5,
        ch.basic_consume(
            "props".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            table(&[]),
        ),
    )
    .await
    .expect("consume");
    let d = within(5, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert_eq!(d.properties, props);
    assert_eq!(d.data, b"{}");
    b.stop().await;
}

#[tokio::test]
async fn user_id_must_match_the_authenticated_user() {
    // RabbitMQ's validated user-id: a claimed user_id other than the connection's user is a 406.
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "uid").await;
    let mallory = BasicProperties::default().with_user_id("mallory".into());
    assert_eq!(publish_error(&ch, "", "uid", mallory).await, Some(406));
    let ch = c.create_channel().await.expect("channel");
    let guest = BasicProperties::default().with_user_id("guest".into());
    send_props(&ch, "", "uid", b"ok", guest).await;
    assert_eq!(drain(&ch, "uid").await, [b"ok"]);
    b.stop().await;
}

#[tokio::test]
async fn multi_frame_body_is_delivered_intact() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "big").await;
    // 1 MiB + 7: eight-plus frames at frame_max 131072, with a ragged last frame.
    let body: Vec<u8> = (0..(1usize << 20) + 7)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect();
    let props = BasicProperties::default().with_message_id("big".into());
    send_props(&ch, "", "big", &body, props.clone()).await;
    send_props(&ch, "", "big", &body, props.clone()).await;
    let got = within(
        10,
        ch.basic_get("big".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    assert_eq!(got.delivery.data.len(), body.len());
    assert!(got.delivery.data == body, "basic.get body differs");
    assert_eq!(got.delivery.properties, props);
    let mut consumer = within(
        5,
        ch.basic_consume(
            "big".into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[]),
        ),
    )
    .await
    .expect("consume");
    let d = within(10, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert!(d.data == body, "basic.deliver body differs");
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    b.stop().await;
}

#[tokio::test]
async fn empty_body_is_delivered() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "empty").await;
    let props = BasicProperties::default().with_content_type("text/plain".into());
    send_props(&ch, "", "empty", b"", props.clone()).await;
    send_props(&ch, "", "empty", b"", props.clone()).await;
    let got = within(
        5,
        ch.basic_get("empty".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    assert!(got.delivery.data.is_empty());
    assert_eq!(got.delivery.properties, props);
    let mut consumer = within(
        5,
        ch.basic_consume(
            "empty".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            table(&[]),
        ),
    )
    .await
    .expect("consume");
    let d = within(5, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert!(d.data.is_empty());
    assert_eq!(d.properties, props);
    b.stop().await;
}
