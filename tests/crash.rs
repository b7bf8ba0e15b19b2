//! Kill -9 under load. The real broker binary runs as a child process; three publishers (one
//! connection each, confirms, a window of 100 in flight) publish persistent messages into one
//! durable queue while two consumers (manual ack, prefetch 50) ack what they get. At a random
//! moment the broker gets SIGKILL and is started again on the same data dir; after several rounds
//! the queue is drained and checked:
//!
//! - every confirmed message was acked (ack sent) before a crash or is in the queue at the end;
//! - nothing is in the queue twice, and each publisher's messages are in publish order;
//! - the headers of every message left still match its body;
//! - within one broker lifetime no message is delivered twice unless flagged redelivered;
//! - durable exchange, queue and binding come back each time, transient ones do not.
//!
//! Unconfirmed messages may or may not be there; a message whose ack was sent just before a
//! crash may come back (acks are not waited for). Both are counted, not failed.
//!
//! A churn task meanwhile declares, binds, publishes to and deletes durable queues: whatever got
//! its `*-ok` (or confirm) must be there after the crash, whatever was deleted must stay gone.
//! The broker runs with 1 MiB segments and a 256 KiB queue memory limit, so segment rotation,
//! segment deletion and paging to disk all happen under the load.
//!
//! By default (3 rounds, under ~5 s) the kill comes 200–800 ms into each round's load. For a
//! longer run: `CRASH_ROUNDS=20 CRASH_MSGS=50000 cargo test --release --test crash -- --nocapture`
//! where `CRASH_MSGS` makes each round's kill come once a random number between half of it and
//! all of it of messages have been confirmed in that round.
//!
//! The broker child process, the shared topology and message identity are in
//! tests/crash_support/; narrower kill -9 regressions are in tests/crash_regressions.rs.
mod crash_support;
use crash_support::churn::*;
use crash_support::load::*;
use crash_support::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PUBLISHERS: u32 = 3;
const CONSUMERS: u32 = 2;

/// Checks the definitions after a restart: the durable ones are back with their flags (an
/// identical redeclare passes, a transient one is refused), the binding routes, the transient
/// ones are gone. Returns the recovered message count.
async fn check_definitions(c: &Connection) -> u32 {
    let ch = c.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let recovered = ch
        .queue_declare(QUEUE.into(), passive, FieldTable::default())
        .await
        .expect("durable queue is back")
        .message_count();
    let ex_passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        lapin::ExchangeKind::Direct,
        ex_passive,
        FieldTable::default(),
    )
    .await
    .expect("durable exchange is back");
    let x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        lapin::ExchangeKind::Direct,
        x,
        FieldTable::default(),
    )
    .await
    .expect("identical exchange redeclare");
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), q, FieldTable::default())
        .await
        .expect("identical queue redeclare");
    let r = ch
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        r.as_ref().err().and_then(code),
        Some(406),
        "a transient redeclare of the durable queue: {r:?}"
    );
    let ch = c.create_channel().await.expect("channel");
    let r = ch
        .queue_declare("crash.tq".into(), passive, FieldTable::default())
        .await;
    assert_eq!(
        r.as_ref().err().and_then(code),
        Some(404),
        "transient queue: {r:?}"
    );
    let ch = c.create_channel().await.expect("channel");
    let r = ch
        .exchange_declare(
            "crash.tx".into(),
            lapin::ExchangeKind::Fanout,
            ex_passive,
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        r.as_ref().err().and_then(code),
        Some(404),
        "transient exchange: {r:?}"
    );
    recovered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kill_9() {
    let rounds = env_or("CRASH_ROUNDS", 3) as u32;
    let per_round = env_or("CRASH_MSGS", 0);
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let started = Instant::now();
    let ledger: Shared = Arc::default();
    let churn_state: Arc<Mutex<Churn>> = Arc::default();
    let mut next_seq: HashMap<u32, u64> = (0..PUBLISHERS).map(|p| (p, 0)).collect();

    let mut broker = BrokerProc::spawn(data.path(), logs.path(), 0).await;
    {
        let c = connect(&broker.url()).await;
        declare_topology(&c.create_channel().await.expect("channel")).await;
        let _ = c.close(200, "bye".into()).await;
    }
    for round in 1..=rounds {
        let url = broker.url();
        let stop = Arc::new(AtomicBool::new(false));
        let mut consumers = Vec::new();
        for id in 0..CONSUMERS {
            let f = consumer(url.clone(), id, stop.clone(), ledger.clone());
            consumers.push(tokio::spawn(f));
        }
        let churner = tokio::spawn(churn(url.clone(), stop.clone(), churn_state.clone()));
        let mut publishers = Vec::new();
        for id in 0..PUBLISHERS {
            let (seq, stop, l) = (next_seq[&id], stop.clone(), ledger.clone());
            let f = publisher(url.clone(), id, seq, stop, l);
            publishers.push((id, tokio::spawn(f)));
        }
        let load = Instant::now();
        if per_round == 0 {
            let delay = rand::thread_rng().gen_range(200..=800);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        } else {
            let goal = rand::thread_rng().gen_range(per_round / 2..=per_round);
            while ledger.lock().unwrap().round_confirmed < goal {
                assert!(load.elapsed() < Duration::from_secs(300), "load stalled");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let delay = load.elapsed();
        broker.kill();
        let killed = Instant::now();
        stop.store(true, Ordering::Relaxed);
        for (id, p) in publishers {
            let seq = tokio::time::timeout(Duration::from_secs(20), p)
                .await
                .expect("publisher did not stop")
                .expect("publisher panicked");
            next_seq.insert(id, seq);
        }
        for c in consumers {
            tokio::time::timeout(Duration::from_secs(20), c)
                .await
                .expect("consumer did not stop")
                .expect("consumer panicked");
        }
        tokio::time::timeout(Duration::from_secs(20), churner)
            .await
            .expect("churn did not stop")
            .expect("churn panicked");
        let teardown = killed.elapsed();

        let t = Instant::now();
        broker = BrokerProc::spawn(data.path(), logs.path(), round).await;
        let c = connect(&broker.url()).await;
        let recovered = check_definitions(&c).await;
        let restart = t.elapsed();
        let (present, gone) = check_churn(&broker.url(), &churn_state, false).await;
        declare_topology(&c.create_channel().await.expect("channel")).await;
        let _ = c.close(200, "bye".into()).await;

        let mut l = ledger.lock().unwrap();
        let owed = l.confirmed.difference(&l.acked).count();
        eprintln!(
            "round {round}: killed after {delay:?}; confirmed {} acked {} (sent), \
             back after ack {}, redelivered flag lost {}; nacked so far {}; \
             recovered {recovered} (confirmed and not acked: {owed}); \
             churn queues present {present} gone {gone}; \
             teardown {teardown:?}, restart+recovery {restart:?}",
            l.round_confirmed,
            l.round_acked,
            l.round_back_after_ack,
            l.round_lost_redelivered,
            l.nacked,
        );
        assert!(
            recovered as usize >= owed,
            "round {round}: {recovered} recovered but {owed} confirmed messages were not acked"
        );
        let seen = std::mem::take(&mut l.seen_this_life);
        let not_acked: Vec<Id> = seen.into_iter().filter(|m| !l.acked.contains(m)).collect();
        l.delivered_unacked_before.extend(not_acked);
        l.round_confirmed = 0;
        l.round_acked = 0;
        l.round_back_after_ack = 0;
        l.round_lost_redelivered = 0;
    }

    // Drain what is left with a no-ack consumer and check it.
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let left = ch
        .queue_declare(QUEUE.into(), passive, FieldTable::default())
        .await
        .expect("passive declare")
        .message_count();
    let mut stream = ch
        .basic_consume(
            QUEUE.into(),
            "drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut drained: Vec<Id> = Vec::new();
    let mut inconsistent = 0u64;
    loop {
        let wait = if drained.len() < left as usize {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(300) // anything beyond the count would be a bug too
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => break,
            Ok(Some(Ok(d))) => {
                inconsistent += u64::from(!consistent(&d));
                drained.push(parse(&d.data));
            }
            Ok(other) => panic!("drain consumer ended: {other:?}"),
        }
    }
    // The binding still routes.
    ch.basic_publish(
        EXCHANGE.into(),
        KEY.into(),
        BasicPublishOptions::default(),
        b"9:0:",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let routed = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("binding routes after the crashes");
    assert!(matches!(routed, Some(Ok(d)) if d.data == b"9:0:"));
    let (present, gone) = check_churn(&broker.url(), &churn_state, true).await;
    eprintln!("final: churn queues present {present} (bindings checked), gone {gone}");
    let _ = c.close(200, "bye".into()).await;

    let l = ledger.lock().unwrap();
    let mut unique = HashSet::new();
    let duplicates: Vec<Id> = drained
        .iter()
        .filter(|m| !unique.insert(**m))
        .copied()
        .collect();
    let missing: Vec<Id> = l
        .confirmed
        .iter()
        .filter(|m| !l.acked.contains(m) && !unique.contains(m))
        .copied()
        .collect();
    let unconfirmed = unique.iter().filter(|m| !l.confirmed.contains(m)).count();
    let mut out_of_order = 0usize;
    let mut last: HashMap<u32, u64> = HashMap::new();
    for &(p, s) in &drained {
        if last.get(&p).is_some_and(|&prev| prev >= s) {
            out_of_order += 1;
        }
        last.insert(p, s);
    }
    eprintln!(
        "final: {} confirmed, {} acked (sent), {} nacked, {} left in the queue \
         ({} never confirmed), {} duplicates, {} missing, {} out of order; {:?} in all",
        l.confirmed.len(),
        l.acked.len(),
        l.nacked,
        drained.len(),
        unconfirmed,
        duplicates.len(),
        missing.len(),
        out_of_order,
        started.elapsed(),
    );
    assert!(l.errors.is_empty(), "errors: {:?}", l.errors);
    assert_eq!(drained.len(), left as usize, "drain count vs declare-ok");
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert!(
        missing.is_empty(),
        "{} confirmed messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(out_of_order, 0, "publish order not kept");
    assert_eq!(inconsistent, 0, "messages whose properties do not match");
    assert!(
        !l.confirmed.is_empty(),
        "nothing was confirmed: no load ran"
    );
    drop(broker);
    assert_no_errors_logged(logs.path());
}
