//! A tracked stream consumer that acks out of order resumes at its oldest unacked message, never
//! past it.
use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};

#[tokio::test]
async fn out_of_order_acks_do_not_skip_messages_on_resume() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(b"stream".to_vec())),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(5, ch.queue_declare("s".into(), durable, args))
        .await
        .expect("declare");
    for i in 0..10u8 {
        publish(&ch, "s", &[i]).await;
    }
    let consume_args = || {
        let mut a = FieldTable::default();
        a.insert("x-stream-offset-tracking".into(), AMQPValue::Boolean(true));
        a
    };
    let (c1, ch1) = b.channel().await;
    ch1.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut s1 = ch1
        .basic_consume(
            "s".into(),
            "reader".into(),
            BasicConsumeOptions::default(),
            {
                let mut a = consume_args();
                a.insert(
                    "x-stream-offset".into(),
                    AMQPValue::LongString(LongString::from(b"first".to_vec())),
                );
                a
            },
        )
        .await
        .expect("consume");
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(within(5, s1.next()).await.expect("delivery").expect("ok"));
    }
    // Ack 0..=2 and 7..=9, leave 3..=6 unacked.
    for d in got.iter().filter(|d| d.data[0] <= 2 || d.data[0] >= 7) {
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    within(5, c1.close(200, "bye".into())).await.expect("close");
    let (_c2, ch2) = b.channel().await;
    ch2.basic_qos(10, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut s2 = ch2
        .basic_consume(
            "s".into(),
            "reader".into(),
            BasicConsumeOptions::default(),
            consume_args(),
        )
        .await
        .expect("consume again");
    let first = within(5, s2.next()).await.expect("delivery").expect("ok");
    assert_eq!(first.data[0], 3, "resumes at the oldest unacked message");
    b.stop().await;
}
