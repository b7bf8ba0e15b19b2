//! Durability of what is on disk across a graceful restart: purge and queue delete are durable,
//! a deleted queue's log is removed and stays removed (also when acks for its messages arrive
//! after the delete), acked messages give their disk space back, and a backlog paged out to the
//! log (64 KiB queue memory limit) comes back in order and purges durably.
use crate::common;
use common::durability::*;
use common::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use std::path::PathBuf;
use std::time::Instant;
use warren::Config;

#[tokio::test]
async fn purge_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "pg.q", durable(), table(&[])).await;
    declare_queue(&ch, "pg2.q", durable(), table(&[])).await;
    for i in 0..10 {
        publish_confirmed(&ch, "", "pg.q", format!("m{i}").as_bytes(), persistent()).await;
        publish_confirmed(&ch, "", "pg2.q", format!("m{i}").as_bytes(), persistent()).await;
    }
    let n = within(
        5,
        ch.queue_purge("pg.q".into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(n, 10);
    // Purge with a message delivered and unacked: it survives the purge (and the restart).
    let (getter_c, getter) = b.channel().await;
    let (m0, _) = get_manual(&getter, "pg2.q").await;
    assert_eq!(m0, "m0");
    let n = within(
        5,
        ch.queue_purge("pg2.q".into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(n, 9);
    publish_confirmed(&ch, "", "pg.q", b"after", persistent()).await;
    publish_confirmed(&ch, "", "pg2.q", b"after", persistent()).await;

    let b = restart(b).await;
    drop((getter, getter_c, ch, c));
    let (c, ch) = b.channel().await;
    assert_eq!(drain(&ch, "pg.q").await, [("after".to_string(), false)]);
    assert_eq!(
        drain(&ch, "pg2.q").await,
        [("m0".to_string(), true), ("after".to_string(), false)]
    );
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn queue_delete_is_durable_and_removes_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "del.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    let before = queue_dirs(&b.data_dir);
    declare_queue(&ch, "del.q", durable(), table(&[])).await;
    bind(&ch, "del.q", "del.x", "k", table(&[])).await;
    let after = queue_dirs(&b.data_dir);
    let log: Vec<&PathBuf> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(log.len(), 1, "one new log directory: {after:?}");
    let log = log[0].clone();
    for i in 0..100 {
        let body = format!("old {i}");
        publish_confirmed(&ch, "del.x", "k", body.as_bytes(), persistent()).await;
    }
    assert!(du(&log) > 0, "the log holds the messages");
    let n = within(
        5,
        ch.queue_delete("del.q".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(n, 100);
    assert!(!log.exists(), "{} still exists", log.display());
    // The same name again is a new queue: new log, no old messages, no old binding.
    declare_queue(&ch, "del.q", durable(), table(&[])).await;
    publish_confirmed(&ch, "del.x", "k", b"unrouted", persistent()).await;
    publish_confirmed(&ch, "", "del.q", b"new", persistent()).await;
    // And one deleted for good.
    declare_queue(&ch, "gone.q", durable(), table(&[])).await;
    publish_confirmed(&ch, "", "gone.q", b"x", persistent()).await;
    within(
        5,
        ch.queue_delete("gone.q".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert!(!queue_exists(&c, "gone.q").await);
    assert_eq!(drain(&ch, "del.q").await, [("new".to_string(), false)]);
    assert_eq!(queue_dirs(&b.data_dir).len(), 1, "only del.q has a log");
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn acks_after_queue_delete_do_not_bring_its_log_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "ad.del", durable(), table(&[])).await;
    let log = queue_dirs(&b.data_dir);
    assert_eq!(log.len(), 1);
    for i in 0..10 {
        publish_confirmed(&ch, "", "ad.del", format!("m{i}").as_bytes(), persistent()).await;
    }
    let (cc, consumer) = b.channel().await;
    within(5, consumer.basic_qos(5, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut stream = within(
        5,
        consumer.basic_consume(
            "ad.del".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(
            within(5, stream.next())
                .await
                .unwrap()
                .unwrap()
                .delivery_tag,
        );
    }
    within(
        5,
        ch.queue_delete("ad.del".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert!(!log[0].exists());
    // Acks and a reject for messages of the deleted queue: accepted, and nothing is written.
    for t in &tags[..4] {
        within(5, consumer.basic_ack(*t, BasicAckOptions::default()))
            .await
            .unwrap();
    }
    within(
        5,
        consumer.basic_reject(tags[4], BasicRejectOptions { requeue: true }),
    )
    .await
    .unwrap();
    // Still open (a round trip on the consumer's channel), and the log stays gone.
    let r = consumer
        .queue_declare("other".into(), QueueDeclareOptions::default(), table(&[]))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert!(!log[0].exists(), "the deleted queue's log came back");
    drop((stream, consumer, cc, ch, c));

    let b = restart(b).await;
    let (c, _ch) = b.channel().await;
    assert!(!queue_exists(&c, "ad.del").await);
    assert!(queue_dirs(&b.data_dir).is_empty());
    drop(c);
    b.stop().await;
}

#[tokio::test]
async fn acked_messages_give_their_disk_space_back() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "big.q", durable(), table(&[])).await;
    let body = vec![b'x'; 1024];
    let t = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for _ in 0..N {
        let pc = ch
            .basic_publish(
                "".into(),
                "big.q".into(),
                BasicPublishOptions::default(),
                &body,
                persistent(),
            )
            .await
            .expect("publish");
        pending.push_back(pc);
        if pending.len() >= 1000 {
            let c = within(10, pending.pop_front().unwrap()).await.unwrap();
            assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
        }
    }
    for pc in pending {
        let c = within(10, pc).await.unwrap();
        assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    }
    let published = t.elapsed();
    let queues = b.data_dir.join("queues");
    let full = du(&queues);
    assert!(full > (N * 1024) as u64, "{full} bytes on disk");

    let (cc, consumer) = b.channel().await;
    within(5, consumer.basic_qos(500, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut stream = within(
        5,
        consumer.basic_consume(
            "big.q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    for i in 0..N {
        let d = within(10, stream.next()).await.unwrap().unwrap();
        if i % 50 == 49 || i == N - 1 {
            let multiple = BasicAckOptions { multiple: true };
            consumer.basic_ack(d.delivery_tag, multiple).await.unwrap();
        }
    }
    assert_eq!(ready(&consumer, "big.q").await, 0);
    let drained = du(&queues);
    eprintln!(
        "{N} x 1 KiB persistent, confirmed: {published:?}; disk {full} bytes full, \
         {drained} bytes after acking all"
    );
    assert!(drained < 1 << 20, "{drained} bytes left after acking all");
    drop((stream, consumer, cc, ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "big.q").await, 0);
    let after = du(&queues);
    assert!(after < 1 << 20, "{after} bytes after restart");
    drop((ch, c));
    b.stop().await;
}

/// 1 MiB segments and a 64 KiB queue memory limit: backlogs page out to the log.
fn paging(c: &mut Config) {
    small(c);
    c.store.queue_memory_limit = 64 * 1024;
}

async fn restart_paging(b: Broker) -> Broker {
    let dir = b.data_dir.clone();
    within(10, b.stop()).await;
    within(10, Broker::start_in(&dir, paging)).await
}

/// Publish a numbered 1 KiB body ("<tag><i>:" then padding) with a confirm.
async fn publish_kib(ch: &Channel, queue: &str, tag: &str, i: usize, persistent_: bool) {
    let mut body = format!("{tag}{i}:").into_bytes();
    body.resize(1024, b'.');
    let p = if persistent_ {
        persistent()
    } else {
        BasicProperties::default()
    };
    publish_confirmed(ch, "", queue, &body, p).await;
}

fn label(body: &str) -> &str {
    body.split(':').next().unwrap_or(body)
}

fn labels_of(v: &[(String, bool)]) -> Vec<&str> {
    v.iter().map(|(b, _)| label(b)).collect()
}

#[tokio::test]
async fn paged_out_backlog_survives_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), paging).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "pgo.q", durable(), table(&[])).await;
    // 2000 x 1 KiB, far past 64 KiB: almost all of it is only in the log. Every third is
    // transient (a spilled copy in the same log that must not come back).
    let mut want = Vec::new();
    for i in 0..2000 {
        let p = i % 3 != 2;
        publish_kib(&ch, "pgo.q", if p { "p" } else { "t" }, i, p).await;
        if p {
            want.push(format!("p{i}"));
        }
    }
    // p0 and p1 delivered; p0 acked, p1 left unacked.
    let (b0, t0) = get_manual(&ch, "pgo.q").await;
    let (b1, _) = get_manual(&ch, "pgo.q").await;
    assert_eq!((label(&b0), label(&b1)), ("p0", "p1"));
    within(5, ch.basic_ack(t0, BasicAckOptions::default()))
        .await
        .unwrap();
    assert_eq!(ready(&ch, "pgo.q").await, 1998);
    want.remove(0);
    drop((ch, c));

    let b = restart_paging(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "pgo.q").await as usize, want.len());
    let got = drain(&ch, "pgo.q").await;
    let labels: Vec<&str> = got.iter().map(|(b, _)| label(b)).collect();
    assert_eq!(labels, want, "persistent ones only, in order");
    let redelivered: Vec<&str> = got
        .iter()
        .filter(|(_, r)| *r)
        .map(|(b, _)| label(b))
        .collect();
    assert_eq!(redelivered, ["p1"]);
    drop((ch, c));

    // Drained with no-ack: nothing comes back, and the space is given back.
    let b = restart_paging(b).await;
    let (c, ch) = b.channel().await;
    assert_eq!(ready(&ch, "pgo.q").await, 0);
    let left = du(&b.data_dir.join("queues"));
    assert!(left < 1 << 20, "{left} bytes left");
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn purge_of_a_paged_out_backlog_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), paging).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_queue(&ch, "pp1.q", durable(), table(&[])).await;
    declare_queue(&ch, "pp2.q", durable(), table(&[])).await;
    for i in 0..500 {
        publish_kib(&ch, "pp1.q", "m", i, i % 2 == 0).await;
        publish_kib(&ch, "pp2.q", "m", i, i % 2 == 0).await;
    }
    // pp1: nothing unacked when purged. pp2: one delivered and unacked, which survives.
    assert_eq!(
        within(
            5,
            ch.queue_purge("pp1.q".into(), QueuePurgeOptions::default())
        )
        .await
        .unwrap(),
        500
    );
    let (getter_c, getter) = b.channel().await;
    let (m0, _) = get_manual(&getter, "pp2.q").await;
    assert_eq!(label(&m0), "m0");
    assert_eq!(
        within(
            5,
            ch.queue_purge("pp2.q".into(), QueuePurgeOptions::default())
        )
        .await
        .unwrap(),
        499
    );
    for q in ["pp1.q", "pp2.q"] {
        publish_kib(&ch, q, "after", 0, true).await;
    }

    let b = restart_paging(b).await;
    drop((getter, getter_c, ch, c));
    let (c, ch) = b.channel().await;
    let got = drain(&ch, "pp1.q").await;
    assert_eq!(got.len(), 1, "pp1 after restart: {:?}", labels_of(&got));
    assert_eq!(label(&got[0].0), "after0");
    let got = drain(&ch, "pp2.q").await;
    assert_eq!(labels_of(&got), ["m0", "after0"]);
    assert!(got[0].1, "m0 was delivered before the restart");
    drop((ch, c));
    b.stop().await;
}
