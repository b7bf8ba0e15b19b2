//! Kill -9 regressions, each against the real broker binary as a child process (see
//! tests/crash_support/): messages delivered and not acked before the kill come back
//! redelivered while acked ones do not, and a purge that got its purge-ok stays done (with
//! nothing unacked and with a delivered-unacked message) while other load keeps the group
//! commit busy.
use crate::crash_support;
use crash_support::load::*;
use crash_support::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::Confirmation;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Messages delivered (and not acked) a little while before a kill -9 come back with
/// `redelivered=true`; those never delivered come back with `redelivered=false`; acked ones do
/// not come back. No other traffic runs, so nothing else pushes the delivery records to disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_unacked_come_back_redelivered_after_kill_9() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let mut broker = BrokerProc::spawn(data.path(), logs.path(), 0).await;
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    declare_topology(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    for seq in 0..20 {
        let id = (0, seq);
        let pc = ch
            .basic_publish(
                EXCHANGE.into(),
                KEY.into(),
                BasicPublishOptions::default(),
                &body(id),
                properties(id),
            )
            .await
            .expect("publish");
        let conf = pc.await.expect("confirm");
        assert!(matches!(conf, Confirmation::Ack(_)), "{conf:?}");
    }
    // 0..3 by basic.get (1 acked), 3..8 by a consumer with prefetch 5 (4 acked with multiple).
    let getter = c.create_channel().await.expect("channel");
    let mut get_tags = Vec::new();
    for seq in 0..3 {
        let m = getter
            .basic_get(QUEUE.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
            .expect("a message");
        assert_eq!(parse(&m.delivery.data), (0, seq));
        get_tags.push(m.delivery.delivery_tag);
    }
    getter
        .basic_ack(get_tags[1], BasicAckOptions::default())
        .await
        .expect("ack");
    let cons = c.create_channel().await.expect("channel");
    cons.basic_qos(5, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut stream = cons
        .basic_consume(
            QUEUE.into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut tags = Vec::new();
    for seq in 3..8 {
        let d = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("delivery")
            .expect("stream")
            .expect("delivery");
        assert_eq!(parse(&d.data), (0, seq));
        tags.push(d.delivery_tag);
    }
    cons.basic_ack(tags[3], BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    // The freed credit brings 8..12; wait for them so they count as delivered too.
    for seq in 8..12 {
        let d = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("delivery")
            .expect("stream")
            .expect("delivery");
        assert_eq!(parse(&d.data), (0, seq));
    }
    // Round trips: both acks have been handled; then a quiet moment before the kill.
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for chan in [&getter, &cons] {
        chan.queue_declare(QUEUE.into(), passive, FieldTable::default())
            .await
            .expect("passive declare");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.kill();
    drop((stream, cons, getter, ch, c));

    let broker = BrokerProc::spawn(data.path(), logs.path(), 1).await;
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        got.push((parse(&m.delivery.data).1, m.delivery.redelivered));
    }
    let want: Vec<(u64, bool)> = [0, 2, 7, 8, 9, 10, 11]
        .into_iter()
        .map(|s| (s, true))
        .chain((12..20).map(|s| (s, false)))
        .collect();
    assert_eq!(got, want, "(seq, redelivered) after kill -9");
    let _ = c.close(200, "bye".into()).await;
    drop(broker);
    assert_no_errors_logged(logs.path());
}

/// A purge that got its purge-ok stays done after a kill -9 right behind it, with nothing
/// unacked (the log is cleared) and with a delivered-unacked message (the purged messages are
/// acked in the log; the unacked one is left and comes back), while another queue's load keeps
/// the group commit busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_ok_survives_kill_9() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    for round in 0..3 {
        let mut broker = BrokerProc::spawn(data.path(), logs.path(), round).await;
        let c = connect(&broker.url()).await;
        let ch = c.create_channel().await.expect("channel");
        declare_topology(&ch).await;
        let (qa, qb) = (format!("purge.a{round}"), format!("purge.b{round}"));
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let mut pending = Vec::new();
        for q in [&qa, &qb] {
            ch.queue_declare(q.as_str().into(), durable, FieldTable::default())
                .await
                .expect("declare");
            for seq in 0..2000 {
                let id = (0, seq);
                let pc = ch
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        &body(id),
                        properties(id),
                    )
                    .await
                    .expect("publish");
                pending.push(pc);
            }
        }
        for pc in pending {
            assert!(matches!(pc.await, Ok(Confirmation::Ack(_))));
        }
        let getter = c.create_channel().await.expect("channel");
        let m = getter
            .basic_get(qa.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
            .expect("a message");
        assert_eq!(parse(&m.delivery.data), (0, 0));
        let stop = Arc::new(AtomicBool::new(false));
        let ledger: Shared = Arc::default();
        let load = tokio::spawn(publisher(broker.url(), 1, 0, stop.clone(), ledger.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let purge_b = ch.queue_purge(qb.as_str().into(), QueuePurgeOptions::default());
        let nb = purge_b.await.expect("purge");
        let purge_a = ch.queue_purge(qa.as_str().into(), QueuePurgeOptions::default());
        let na = purge_a.await.expect("purge");
        broker.kill();
        assert_eq!((na, nb), (1999, 2000));
        stop.store(true, Ordering::Relaxed);
        let _ = load.await;
        drop((getter, ch, c));

        let broker = BrokerProc::spawn(data.path(), logs.path(), round + 100).await;
        let c = connect(&broker.url()).await;
        let ch = c.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        for (q, want) in [(&qa, 1), (&qb, 0)] {
            let left = ch
                .queue_declare(q.as_str().into(), passive, FieldTable::default())
                .await
                .expect("passive declare")
                .message_count();
            assert_eq!(left, want, "{q}: purged messages came back after kill -9");
        }
        let m = ch
            .basic_get(qa.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .expect("the unacked message");
        assert_eq!(parse(&m.delivery.data), (0, 0));
        assert!(m.delivery.redelivered);
        let _ = c.close(200, "bye".into()).await;
        drop(broker);
    }
    assert_no_errors_logged(logs.path());
}
