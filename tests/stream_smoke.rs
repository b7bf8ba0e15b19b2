use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};

fn stream_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"stream".to_vec())),
    );
    t
}

#[tokio::test]
async fn stream_replays_from_first_and_from_an_offset() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("events".into(), durable, stream_args())
        .await
        .expect("declare");
    for i in 0..100u32 {
        publish(&ch, "events", format!("e{i}").as_bytes()).await;
    }
    ch.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    for (start, first) in [
        (
            AMQPValue::LongString(LongString::from(b"first".to_vec())),
            0u32,
        ),
        (AMQPValue::LongLongInt(50), 50),
    ] {
        let mut args = FieldTable::default();
        args.insert("x-stream-offset".into(), start);
        let mut c = ch
            .basic_consume(
                "events".into(),
                "".into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await
            .expect("consume");
        for i in first..100 {
            let d = within(5, c.next()).await.expect("delivery").expect("ok");
            assert_eq!(d.data, format!("e{i}").as_bytes());
            let off = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-stream-offset").cloned());
            assert_eq!(off, Some(AMQPValue::LongLongInt(i64::from(i))));
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn confirms_arrive_with_stream_fsync_off() {
    let b = Broker::start_with(|c| c.store.stream_fsync = false).await;
    let (_c, ch) = b.channel().await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("fast".into(), durable, stream_args())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    for i in 0..200u32 {
        publish(&ch, "fast", &i.to_be_bytes()).await;
    }
    within(5, ch.wait_for_confirms()).await.expect("confirms");
    let q = ch
        .queue_declare(
            "fast".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(q.message_count(), 200);
    b.stop().await;
}
