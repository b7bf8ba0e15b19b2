//! queue.purge and queue.delete: the ready counts they return, purge leaving unacked messages
//! alone, if-empty and if-unused refusing with 406, and a deleted queue cancelling its consumers
//! while acks for its deliveries stay harmless.
use crate::common;
use common::queues::*;
use common::*;

use futures_lite::StreamExt;
use lapin::options::*;

#[tokio::test]
async fn purge_returns_the_number_of_ready_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "purged").await;
    publish_n(&ch, "purged", 4).await;
    let n = within(
        5,
        ch.queue_purge("purged".into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("purge");
    assert_eq!(n, 4);
    assert!(drain(&ch, "purged").await.is_empty());
    let n = within(
        5,
        ch.queue_purge("purged".into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("purge");
    assert_eq!(n, 0);
    b.stop().await;
}

#[tokio::test]
async fn purge_leaves_unacked_messages_alone() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "half").await;
    publish_n(&ch, "half", 3).await;
    let cch = c.create_channel().await.expect("channel");
    within(5, cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&cch, "half", false).await;
    assert_eq!(body(&next(&mut consumer).await), "1");
    let n = within(
        5,
        ch.queue_purge("half".into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("purge");
    assert_eq!(n, 2);
    within(5, cch.close(200, "bye".into()))
        .await
        .expect("close");
    assert_eq!(drain(&ch, "half").await, msgs(&[("1", true)]));
    b.stop().await;
}

#[tokio::test]
async fn delete_returns_the_number_of_ready_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "deleted").await;
    publish_n(&ch, "deleted", 3).await;
    let n = within(
        5,
        ch.queue_delete("deleted".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete");
    assert_eq!(n, 3);
    expect_code(declare_opts(&ch, "deleted", passive()).await, 404);
    b.stop().await;
}

#[tokio::test]
async fn delete_if_empty_and_if_unused_refuse_with_406() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "busy").await;
    publish(&ch, "busy", b"m").await;
    let if_empty = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    expect_code(
        within(5, ch.queue_delete("busy".into(), if_empty)).await,
        406,
    );
    let ch = c.create_channel().await.expect("channel");
    let _consumer = consume(&ch, "busy", false).await;
    let ch2 = c.create_channel().await.expect("channel");
    let if_unused = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    expect_code(
        within(5, ch2.queue_delete("busy".into(), if_unused)).await,
        406,
    );
    let ch3 = c.create_channel().await.expect("channel");
    assert_eq!(counts(&ch3, "busy").await, (0, 1), "still there");
    b.stop().await;
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "doomed").await;
    let mut consumer = consume(&ch, "doomed", false).await;
    let other = c.create_channel().await.expect("channel");
    within(
        5,
        other.queue_delete("doomed".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete");
    // The server's basic.cancel ends lapin's consumer stream.
    let end = within(5, consumer.next()).await;
    assert!(end.is_none(), "expected the stream to end, got {end:?}");
    // The consumer's channel stays open and usable.
    declare(&ch, "after").await;
    publish(&ch, "after", b"ok").await;
    assert_eq!(
        within(5, get_body(&ch, "after")).await.as_deref(),
        Some(&b"ok"[..])
    );
    b.stop().await;
}

#[tokio::test]
async fn acking_after_the_queue_was_deleted_is_fine() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "vanishing").await;
    publish(&ch, "vanishing", b"m").await;
    let mut consumer = consume(&ch, "vanishing", false).await;
    let d = next(&mut consumer).await;
    let other = c.create_channel().await.expect("channel");
    within(
        5,
        other.queue_delete("vanishing".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete");
    assert!(within(5, consumer.next()).await.is_none(), "cancelled");
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    declare(&ch, "still-open").await;
    b.stop().await;
}
