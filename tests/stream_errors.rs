//! What streams refuse, with RabbitMQ's reply codes: a stream that is not durable, or is
//! exclusive or auto-delete (406); an argument streams do not take, such as `x-max-length` (406);
//! a consumer without a prefetch (406); an invalid `x-stream-offset`, `x-stream-filter`,
//! `x-max-age`, `x-max-length-bytes` or segment size (406); no-ack consumers, basic.get and
//! queue.purge (540, a hard error: the connection closes). After a channel error the stream
//! still works. Texts are RabbitMQ 4's.
use crate::common;
use crate::stream_support;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use stream_support::*;

/// A broker with an empty stream "s", and a connection with a channel to it.
async fn with_stream() -> (Broker, Connection, Channel) {
    let b = start_broker().await;
    let (c, ch) = b.channel().await;
    declare_stream(&ch, "s", &[]).await;
    (b, c, ch)
}

async fn declare_with(
    ch: &Channel,
    name: &str,
    opts: QueueDeclareOptions,
    extra: &[(&str, AMQPValue)],
) -> lapin::Result<lapin::Queue> {
    within(5, ch.queue_declare(name.into(), opts, stream_args(extra))).await
}

/// The declare was refused with 406 and created nothing.
async fn refused_406(b: &Broker, opts: QueueDeclareOptions, extra: &[(&str, AMQPValue)]) {
    let (_c, ch) = b.channel().await;
    expect_code(declare_with(&ch, "bad", opts, extra).await, 406);
    let (_c, ch) = b.channel().await;
    let r = within(
        5,
        ch.queue_declare("bad".into(), passive(), FieldTable::default()),
    )
    .await;
    expect_code(r, 404);
}

/// basic.consume on "s" with `prefetch` (0: no basic.qos), no-ack and the arguments.
async fn consume_with(
    b: &Broker,
    prefetch: u16,
    no_ack: bool,
    args: &[(&str, AMQPValue)],
) -> lapin::Result<lapin::Consumer> {
    let (_c, ch) = b.channel().await;
    if prefetch > 0 {
        within(5, ch.basic_qos(prefetch, BasicQosOptions::default()))
            .await
            .expect("qos");
    }
    let opts = BasicConsumeOptions {
        no_ack,
        ..Default::default()
    };
    within(
        5,
        ch.basic_consume("s".into(), "".into(), opts, table(args)),
    )
    .await
}

/// The stream still takes and delivers messages.
async fn still_works(b: &Broker) {
    let (_c, ch) = confirm_channel(b).await;
    let before = stream_len(&ch, "s").await;
    publish_all(&ch, "s", ["ok"]).await;
    let at = AMQPValue::LongLongInt(i64::from(before));
    let mut r = Reader::open(b, "s", "", 5, &[("x-stream-offset", at)]).await;
    assert_eq!(r.take(1).await, vec![(i64::from(before), "ok".to_string())]);
}

#[tokio::test]
async fn a_non_durable_stream_is_406() {
    let b = start_broker().await;
    refused_406(&b, QueueDeclareOptions::default(), &[]).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn an_exclusive_stream_is_406() {
    let b = start_broker().await;
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..durable()
    };
    refused_406(&b, opts, &[]).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn an_auto_delete_stream_is_406() {
    let b = start_broker().await;
    let opts = QueueDeclareOptions {
        auto_delete: true,
        ..durable()
    };
    refused_406(&b, opts, &[]).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn invalid_retention_arguments_are_406() {
    let b = start_broker().await;
    for (k, v) in [
        ("x-max-age", s("soon")),
        ("x-max-age", s("1.5h")),
        ("x-max-age", s("10x")),
        ("x-max-age", AMQPValue::LongLongInt(10)),
        ("x-max-length-bytes", AMQPValue::LongLongInt(-1)),
        ("x-max-length-bytes", s("1GB")),
        ("x-stream-max-segment-size-bytes", AMQPValue::LongLongInt(0)),
    ] {
        eprintln!("{k} = {v:?}");
        refused_406(&b, durable(), &[(k, v)]).await;
    }
    stop_broker(b).await;
}

#[tokio::test]
async fn redeclaring_a_classic_queue_as_a_stream_is_406() {
    let b = start_broker().await;
    let (_c, ch) = b.channel().await;
    within(
        5,
        ch.queue_declare("q".into(), durable(), FieldTable::default()),
    )
    .await
    .expect("classic declare");
    expect_code(declare_with(&ch, "q", durable(), &[]).await, 406);
    stop_broker(b).await;
}

#[tokio::test]
async fn consuming_without_a_prefetch_is_406() {
    let (b, _c, _ch) = with_stream().await;
    expect_code(consume_with(&b, 0, false, &[]).await, 406);
    still_works(&b).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn a_global_prefetch_alone_is_not_a_consumer_prefetch() {
    let (b, _c, _ch) = with_stream().await;
    let (_c2, ch2) = b.channel().await;
    let global = BasicQosOptions { global: true };
    within(5, ch2.basic_qos(10, global)).await.expect("qos");
    let r = within(
        5,
        ch2.basic_consume(
            "s".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    let text = r.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(
        text.contains("consumer prefetch count is not set for stream queue 's' in vhost '/'"),
        "{text}"
    );
    // A consumer prefetch as well: accepted.
    let (_c3, ch3) = b.channel().await;
    within(5, ch3.basic_qos(10, global)).await.expect("qos");
    within(5, ch3.basic_qos(5, BasicQosOptions::default()))
        .await
        .expect("qos");
    within(
        5,
        ch3.basic_consume(
            "s".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("consume with a consumer prefetch");
    still_works(&b).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn consuming_with_no_ack_is_540_and_closes_the_connection() {
    let (b, _c, _ch) = with_stream().await;
    let (c2, ch2) = b.channel().await;
    within(5, ch2.basic_qos(10, BasicQosOptions::default()))
        .await
        .expect("qos");
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let r = within(
        5,
        ch2.basic_consume("s".into(), "".into(), opts, FieldTable::default()),
    )
    .await;
    let text = r.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(
        text.contains("automatic acknowledgement not supported by stream queue 's' in vhost '/'"),
        "{text}"
    );
    hard_540(r, &c2).await;
    still_works(&b).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn arguments_streams_do_not_take_are_406_with_rabbitmq_text() {
    let b = start_broker().await;
    for k in [
        "x-max-length",
        "x-message-ttl",
        "x-max-priority",
        "x-expires",
    ] {
        let (_c, ch) = b.channel().await;
        let r = declare_with(&ch, "bad", durable(), &[(k, AMQPValue::LongInt(5))]).await;
        let text = r.as_ref().map(|_| ()).unwrap_err().to_string();
        assert!(
            text.contains(&format!(
                "invalid arg '{k}' for queue 'bad' in vhost '/' of queue type rabbit_stream_queue"
            )),
            "{k}: {text}"
        );
        expect_code(r, 406);
    }
    refused_406(&b, durable(), &[("x-dead-letter-exchange", s("dlx"))]).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn an_exclusive_stream_names_the_exclusive_owner_property() {
    let b = start_broker().await;
    let (_c, ch) = b.channel().await;
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..durable()
    };
    let r = declare_with(&ch, "bad", opts, &[]).await;
    let text = r.unwrap_err().to_string();
    assert!(
        text.contains("invalid property 'exclusive-owner' for queue 'bad' in vhost '/'"),
        "{text}"
    );
    stop_broker(b).await;
}

#[tokio::test]
async fn an_invalid_stream_offset_is_406() {
    let (b, _c, _ch) = with_stream().await;
    for v in [
        s("yesterday"),
        s(""),
        s("10x"),
        s("-1h"),
        AMQPValue::Boolean(true),
        AMQPValue::Double(1.5),
    ] {
        let r = consume_with(&b, 10, false, &[("x-stream-offset", v.clone())]).await;
        match r {
            Ok(_) => panic!("x-stream-offset {v:?} was accepted"),
            Err(e) => assert_eq!(code(&e), Some(406), "{v:?}: {e}"),
        }
    }
    still_works(&b).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn an_invalid_filter_or_tracking_argument_is_406() {
    let (b, _c, _ch) = with_stream().await;
    for (k, v) in [
        ("x-stream-filter", AMQPValue::LongLongInt(1)),
        ("x-stream-filter", list_of_ints()),
        ("x-stream-offset-tracking", s("")),
        ("x-stream-offset-tracking", AMQPValue::LongLongInt(1)),
    ] {
        let r = consume_with(&b, 10, false, &[(k, v.clone())]).await;
        match r {
            Ok(_) => panic!("{k} = {v:?} was accepted"),
            Err(e) => assert_eq!(code(&e), Some(406), "{k} = {v:?}: {e}"),
        }
    }
    still_works(&b).await;
    stop_broker(b).await;
}

fn list_of_ints() -> AMQPValue {
    AMQPValue::FieldArray(vec![AMQPValue::LongLongInt(1)].into())
}

/// The call failed with 540 and its connection `conn` closes.
async fn hard_540<T: std::fmt::Debug>(r: lapin::Result<T>, conn: &Connection) {
    expect_code(r, 540);
    eventually(5, || async { !conn.status().connected() }).await;
}

#[tokio::test]
async fn basic_get_on_a_stream_is_540_and_closes_the_connection() {
    let (b, _c, ch) = with_stream().await;
    let (c2, ch2) = b.channel().await;
    let r = within(5, ch2.basic_get("s".into(), BasicGetOptions::default())).await;
    hard_540(r, &c2).await;
    assert_eq!(stream_len(&ch, "s").await, 0, "other connections go on");
    still_works(&b).await;
    stop_broker(b).await;
}

#[tokio::test]
async fn queue_purge_on_a_stream_is_540_and_closes_the_connection() {
    let (b, _c, ch) = with_stream().await;
    let (_pc, pch) = confirm_channel(&b).await;
    publish_all(&pch, "s", bodies("m", 0..3)).await;
    let (c2, ch2) = b.channel().await;
    let r = within(5, ch2.queue_purge("s".into(), QueuePurgeOptions::default())).await;
    hard_540(r, &c2).await;
    assert_eq!(stream_len(&ch, "s").await, 3, "nothing purged");
    still_works(&b).await;
    stop_broker(b).await;
}
