//! Backlogs past the queue memory limit are kept on disk and come back in order.
use crate::common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

async fn fill_and_drain(durable: bool, persistent: bool) {
    let b = Broker::start_with(|c| c.store.queue_memory_limit = 64 * 1024).await;
    let (_c, ch) = b.channel().await;
    let opts = QueueDeclareOptions {
        durable,
        ..Default::default()
    };
    ch.queue_declare("backlog".into(), opts, FieldTable::default())
        .await
        .expect("declare");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let n = 5000u32;
    let mode = if persistent { 2 } else { 1 };
    for i in 0..n {
        let mut body = i.to_be_bytes().to_vec();
        body.resize(1024, b'x');
        let props = BasicProperties::default().with_delivery_mode(mode);
        ch.basic_publish(
            "".into(),
            "backlog".into(),
            BasicPublishOptions::default(),
            &body,
            props,
        )
        .await
        .expect("publish");
    }
    ch.wait_for_confirms().await.expect("confirms");
    let q = ch
        .queue_declare(
            "backlog".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(q.message_count(), n, "declare-ok counts paged messages too");
    // One get, then a consumer for the rest: both read paged messages back in order.
    let first = within(5, get_body(&ch, "backlog"))
        .await
        .expect("a message");
    assert_eq!(&first[..4], &0u32.to_be_bytes());
    ch.basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            "backlog".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 1..n {
        let d = within(10, consumer.next())
            .await
            .expect("delivery")
            .expect("ok");
        assert_eq!(&d.data[..4], &i.to_be_bytes(), "message {i} out of order");
        assert_eq!(d.data.len(), 1024);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    b.stop().await;
}

#[tokio::test]
async fn transient_backlog_pages_out_and_back_in_order() {
    fill_and_drain(false, false).await;
}

#[tokio::test]
async fn persistent_backlog_in_a_durable_queue_pages_out_and_back_in_order() {
    fill_and_drain(true, true).await;
}

#[tokio::test]
async fn transient_messages_in_a_durable_queue_page_out_too() {
    fill_and_drain(true, false).await;
}

#[tokio::test]
async fn purge_drops_paged_messages() {
    let b = Broker::start_with(|c| c.store.queue_memory_limit = 16 * 1024).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "p").await;
    for _ in 0..500 {
        publish(&ch, "p", &[7u8; 512]).await;
    }
    let n = ch
        .queue_purge("p".into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(n, 500);
    assert_eq!(within(5, get_body(&ch, "p")).await, None);
    publish(&ch, "p", b"after").await;
    assert_eq!(
        within(5, get_body(&ch, "p")).await.as_deref(),
        Some(&b"after"[..])
    );
    b.stop().await;
}
