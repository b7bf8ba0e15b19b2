use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;

#[tokio::test]
async fn publish_get_consume_ack() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "smoke").await;
    publish(&ch, "smoke", b"one").await;
    publish(&ch, "smoke", b"two").await;
    assert_eq!(
        within(5, get_body(&ch, "smoke")).await.as_deref(),
        Some(&b"one"[..])
    );
    let mut consumer = ch
        .basic_consume(
            "smoke".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let d = within(5, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert_eq!(d.data, b"two");
    d.ack(BasicAckOptions::default()).await.expect("ack");
    b.stop().await;
}
