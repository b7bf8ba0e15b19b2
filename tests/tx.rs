//! Transactions (tx.select / tx.commit / tx.rollback), as RabbitMQ implements them: on a
//! transactional channel publishes and acks / nacks / rejects take effect at commit, all
//! together; rollback drops the publishes and leaves rolled-back deliveries unacked (ackable
//! again); commit and rollback without select, and mixing with confirms, are RabbitMQ's 406s; a
//! committed persistent message in a durable queue survives kill -9 right after commit-ok.
use crate::common;
use crate::crash_support;
use common::consumers::close_text;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn publishes_appear_only_at_commit() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let watch = c.create_channel().await.expect("channel");
    declare(&watch, "txq").await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.tx_select()).await.expect("tx.select");
    publish_n(&ch, "txq", 3).await;
    // A round trip on the publishing channel, so the publishes have surely arrived.
    declare(&ch, "txq").await;
    assert_eq!(counts(&watch, "txq").await.0, 0, "visible before commit");
    within(5, ch.tx_commit()).await.expect("tx.commit");
    assert_eq!(counts(&watch, "txq").await.0, 3);
    assert_eq!(
        drain(&watch, "txq").await,
        msgs(&[("1", false), ("2", false), ("3", false)])
    );
    b.stop().await;
}

#[tokio::test]
async fn rollback_drops_the_publishes_and_the_channel_stays_transactional() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "rb").await;
    within(5, ch.tx_select()).await.expect("tx.select");
    publish_n(&ch, "rb", 2).await;
    within(5, ch.tx_rollback()).await.expect("tx.rollback");
    assert_eq!(counts(&ch, "rb").await.0, 0);
    publish(&ch, "rb", b"after").await;
    declare(&ch, "rb").await;
    assert_eq!(counts(&ch, "rb").await.0, 0, "not transactional any more");
    within(5, ch.tx_commit()).await.expect("tx.commit");
    assert_eq!(drain(&ch, "rb").await, msgs(&[("after", false)]));
    b.stop().await;
}

#[tokio::test]
async fn acks_take_effect_at_commit() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let watch = c.create_channel().await.expect("channel");
    declare(&watch, "acked").await;
    publish_n(&watch, "acked", 2).await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.tx_select()).await.expect("tx.select");
    let (_, _, t1, _) = get_manual(&ch, "acked").await.expect("message");
    let (_, _, t2, _) = get_manual(&ch, "acked").await.expect("message");
    within(5, ch.basic_ack(t2, BasicAckOptions { multiple: true }))
        .await
        .expect("ack");
    assert!(t1 < t2);
    within(5, ch.tx_commit()).await.expect("tx.commit");
    // Acked for good: closing the channel gives nothing back.
    within(5, ch.close(200, "bye".into())).await.expect("close");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(counts(&watch, "acked").await.0, 0);
    b.stop().await;
}

#[tokio::test]
async fn rolled_back_acks_leave_the_messages_unacked() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let watch = c.create_channel().await.expect("channel");
    declare(&watch, "unacked").await;
    publish_n(&watch, "unacked", 2).await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.tx_select()).await.expect("tx.select");
    let (_, _, t1, _) = get_manual(&ch, "unacked").await.expect("message");
    let (_, _, t2, _) = get_manual(&ch, "unacked").await.expect("message");
    within(5, ch.basic_ack(t1, BasicAckOptions::default()))
        .await
        .expect("ack");
    within(5, ch.basic_ack(t2, BasicAckOptions::default()))
        .await
        .expect("ack");
    within(5, ch.tx_rollback()).await.expect("tx.rollback");
    // The same tags can be acked again (they are unacked again); ack one and commit.
    within(5, ch.basic_ack(t1, BasicAckOptions::default()))
        .await
        .expect("ack");
    within(5, ch.tx_commit()).await.expect("tx.commit");
    within(5, ch.close(200, "bye".into())).await.expect("close");
    wait_ready(&watch, "unacked", 1).await;
    assert_eq!(drain(&watch, "unacked").await, msgs(&[("2", true)]));
    b.stop().await;
}

#[tokio::test]
async fn a_reject_with_requeue_takes_effect_at_commit() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let watch = c.create_channel().await.expect("channel");
    declare(&watch, "rej").await;
    publish(&watch, "rej", b"r").await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.tx_select()).await.expect("tx.select");
    let (_, _, tag, _) = get_manual(&ch, "rej").await.expect("message");
    within(
        5,
        ch.basic_reject(tag, BasicRejectOptions { requeue: true }),
    )
    .await
    .expect("reject");
    declare(&ch, "rej").await;
    assert_eq!(counts(&watch, "rej").await.0, 0, "requeued before commit");
    within(5, ch.tx_commit()).await.expect("tx.commit");
    assert_eq!(counts(&watch, "rej").await.0, 1);
    b.stop().await;
}

#[tokio::test]
async fn uncommitted_work_is_dropped_when_the_channel_closes() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let watch = c.create_channel().await.expect("channel");
    declare(&watch, "dropped").await;
    publish(&watch, "dropped", b"held").await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.tx_select()).await.expect("tx.select");
    let (_, _, tag, _) = get_manual(&ch, "dropped").await.expect("message");
    within(5, ch.basic_ack(tag, BasicAckOptions::default()))
        .await
        .expect("ack");
    publish(&ch, "dropped", b"never").await;
    within(5, ch.close(200, "bye".into())).await.expect("close");
    wait_ready(&watch, "dropped", 1).await;
    assert_eq!(drain(&watch, "dropped").await, msgs(&[("held", true)]));
    b.stop().await;
}

#[tokio::test]
async fn commit_and_rollback_without_select_are_406() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let e = within(5, ch.tx_commit()).await.expect_err("commit");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - channel is not transactional"
    );
    let ch = c.create_channel().await.expect("channel");
    let e = within(5, ch.tx_rollback()).await.expect_err("rollback");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - channel is not transactional"
    );
    b.stop().await;
}

#[tokio::test]
async fn tx_and_confirms_do_not_mix() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.tx_select()).await.expect("tx.select");
    let e = within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect_err("confirm.select on a tx channel");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
    );
    let ch = c.create_channel().await.expect("channel");
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let e = within(5, ch.tx_select())
        .await
        .expect_err("tx.select on a confirm channel");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_committed_persistent_message_survives_kill_9_right_after_commit_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, logs) = (dir.path().join("data"), dir.path().join("logs"));
    std::fs::create_dir_all(&logs).expect("logs dir");
    let mut p = crash_support::BrokerProc::spawn(&data, &logs, 0).await;
    {
        let c = crash_support::connect(&p.url()).await;
        let ch = c.create_channel().await.expect("channel");
        within(
            5,
            ch.queue_declare(
                "tx.durable".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .expect("declare");
        within(5, ch.tx_select()).await.expect("tx.select");
        for i in 0..50u32 {
            within(
                5,
                ch.basic_publish(
                    "".into(),
                    "tx.durable".into(),
                    BasicPublishOptions::default(),
                    &vec![b'x'; 4096 + i as usize],
                    BasicProperties::default().with_delivery_mode(2),
                ),
            )
            .await
            .expect("publish");
        }
        within(5, ch.tx_commit()).await.expect("tx.commit");
        p.kill();
    }
    let p = crash_support::BrokerProc::spawn(&data, &logs, 1).await;
    let c = crash_support::connect(&p.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let q = declare_opts(&ch, "tx.durable", passive())
        .await
        .expect("declare");
    assert_eq!(q.message_count(), 50);
}
