//! Soak test, on demand (ignored in the normal run):
//!
//! ```sh
//! SOAK_SECS=1800 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! The real broker binary runs as a child process for many lifetimes of a few seconds each,
//! ended at random by kill -9 or by SIGTERM (graceful stop). In every lifetime three publishers
//! (persistent, confirms, a window of 100) feed a durable queue, two consumer slots keep
//! connecting, consuming with manual ack for a random 0.3–3 s and leaving (a random client
//! disconnect: what they held is requeued), and a stream publisher appends with confirms to a
//! stream queue. At the end:
//!
//! - every confirmed message of the queue was acked before a stop or is still in it, once;
//! - no message was delivered twice in one lifetime without the redelivered flag;
//! - a replay of the stream from `first` holds every confirmed stream message, in order;
//! - the broker's resident memory stayed bounded over the lifetimes (printed, and checked
//!   against a ceiling); nothing was logged at error level.
mod crash_support;
use crash_support::load::*;
use crash_support::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use rand::Rng;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PUBLISHERS: u32 = 3;
const CONSUMERS: u32 = 2;
const STREAM: &str = "soak.stream";
/// Resident memory the broker may reach at the end of a lifetime (the load keeps the queue short).
const RSS_CEILING_KIB: u64 = 512 * 1024;

async fn declare_stream(url: &str) {
    let c = connect(url).await;
    let ch = c.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    ch.queue_declare(
        STREAM.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .expect("declare stream");
    let _ = c.close(200, "bye".into()).await;
}

/// Append sequence numbers to the stream with confirms until `stop` or an error; returns the
/// next number to use.
async fn stream_publisher(
    url: String,
    mut seq: u64,
    stop: Arc<AtomicBool>,
    confirmed: Arc<Mutex<HashSet<u64>>>,
) -> u64 {
    let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(5), async {
        lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await
    })
    .await
    else {
        return seq;
    };
    let Ok(ch) = c.create_channel().await else {
        return seq;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return seq;
    }
    let mut window: VecDeque<(u64, lapin::PublisherConfirm)> = VecDeque::new();
    let record = |r: Result<Result<Confirmation, lapin::Error>, _>, n: u64| match r {
        Ok(Ok(Confirmation::Ack(_))) => {
            confirmed.lock().unwrap().insert(n);
            true
        }
        Ok(Ok(_)) => true,
        _ => false,
    };
    while !stop.load(Ordering::Relaxed) {
        let n = seq;
        seq += 1;
        let payload = n.to_be_bytes();
        let publish = ch.basic_publish(
            "".into(),
            STREAM.into(),
            BasicPublishOptions::default(),
            &payload,
            BasicProperties::default().with_delivery_mode(2),
        );
        match tokio::time::timeout(Duration::from_secs(5), publish).await {
            Ok(Ok(pc)) => window.push_back((n, pc)),
            _ => break,
        }
        if window.len() >= WINDOW {
            let (n, pc) = window.pop_front().unwrap();
            if !record(tokio::time::timeout(Duration::from_secs(5), pc).await, n) {
                break;
            }
        }
    }
    for (n, pc) in window {
        if !record(tokio::time::timeout(Duration::from_secs(2), pc).await, n) {
            break;
        }
    }
    seq
}

/// One consumer slot: consumers that come and go until `stop`.
async fn churning_consumer(url: String, id: u32, stop: Arc<AtomicBool>, ledger: Shared) {
    while !stop.load(Ordering::Relaxed) {
        let mine = Arc::new(AtomicBool::new(false));
        let h = tokio::spawn(consumer(url.clone(), id, mine.clone(), ledger.clone()));
        let stay = Duration::from_millis(rand::thread_rng().gen_range(300..3000));
        let t = Instant::now();
        while t.elapsed() < stay && !stop.load(Ordering::Relaxed) && !h.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        mine.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(20), h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "on demand: SOAK_SECS=1800 cargo test --release --test soak -- --ignored --nocapture"]
async fn soak() {
    let secs = env_or("SOAK_SECS", 60);
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let started = Instant::now();
    let ledger: Shared = Arc::default();
    let stream_confirmed: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut next_seq = vec![0u64; PUBLISHERS as usize];
    let mut stream_seq = 0u64;
    let mut rss = Vec::new();
    let (mut kills, mut terms) = (0u32, 0u32);
    let mut life = 0u32;
    while started.elapsed() < Duration::from_secs(secs) {
        life += 1;
        let mut broker = BrokerProc::spawn(data.path(), logs.path(), life).await;
        let url = broker.url();
        {
            let c = connect(&url).await;
            declare_topology(&c.create_channel().await.expect("channel")).await;
            let _ = c.close(200, "bye".into()).await;
        }
        declare_stream(&url).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for id in 0..CONSUMERS {
            let f = churning_consumer(url.clone(), id, stop.clone(), ledger.clone());
            tasks.push(tokio::spawn(f));
        }
        let mut publishers = Vec::new();
        for id in 0..PUBLISHERS {
            let f = publisher(
                url.clone(),
                id,
                next_seq[id as usize],
                stop.clone(),
                ledger.clone(),
            );
            publishers.push((id, tokio::spawn(f)));
        }
        let sp = tokio::spawn(stream_publisher(
            url.clone(),
            stream_seq,
            stop.clone(),
            stream_confirmed.clone(),
        ));
        let length = Duration::from_millis(rand::thread_rng().gen_range(3_000..15_000));
        tokio::time::sleep(length).await;
        rss.push(broker.rss_kib());
        let kill = rand::thread_rng().gen_bool(0.5);
        if kill {
            broker.kill();
            kills += 1;
        }
        stop.store(true, Ordering::Relaxed);
        if !kill {
            broker.terminate();
            terms += 1;
        }
        for (id, p) in publishers {
            next_seq[id as usize] = tokio::time::timeout(Duration::from_secs(30), p)
                .await
                .expect("publisher did not stop")
                .expect("publisher panicked");
        }
        stream_seq = tokio::time::timeout(Duration::from_secs(30), sp)
            .await
            .expect("stream publisher did not stop")
            .expect("stream publisher panicked");
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("consumer did not stop")
                .expect("consumer panicked");
        }
        let mut l = ledger.lock().unwrap();
        eprintln!(
            "life {life} ({}, {length:?}): confirmed {} acked {}, rss {} KiB",
            if kill { "kill -9" } else { "SIGTERM" },
            l.round_confirmed,
            l.round_acked,
            rss.last().copied().unwrap_or(0),
        );
        let seen = std::mem::take(&mut l.seen_this_life);
        let not_acked: Vec<Id> = seen.into_iter().filter(|m| !l.acked.contains(m)).collect();
        l.delivered_unacked_before.extend(not_acked);
        l.round_confirmed = 0;
        l.round_acked = 0;
    }

    // Final lifetime: drain the queue, replay the stream.
    let broker = BrokerProc::spawn(data.path(), logs.path(), life + 1).await;
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let mut drain = ch
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
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), drain.next()).await {
        drained.push(parse(&d.data));
    }
    let sch = c.create_channel().await.expect("channel");
    sch.basic_qos(1000, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut args = FieldTable::default();
    args.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let mut replay = sch
        .basic_consume(
            STREAM.into(),
            "replay".into(),
            BasicConsumeOptions::default(),
            args,
        )
        .await
        .expect("consume stream");
    let mut replayed: Vec<u64> = Vec::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(3), replay.next()).await {
        let n = <[u8; 8]>::try_from(&d.data[..]).map(u64::from_be_bytes);
        replayed.push(n.expect("stream body is a u64"));
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let _ = c.close(200, "bye".into()).await;

    let l = ledger.lock().unwrap();
    let mut unique = HashSet::new();
    let duplicates = drained.iter().filter(|m| !unique.insert(**m)).count();
    let missing: Vec<Id> = l
        .confirmed
        .iter()
        .filter(|m| !l.acked.contains(m) && !unique.contains(m))
        .copied()
        .collect();
    let in_stream: HashSet<u64> = replayed.iter().copied().collect();
    let sc = stream_confirmed.lock().unwrap();
    let stream_missing = sc.iter().filter(|n| !in_stream.contains(n)).count();
    let stream_unordered = replayed.windows(2).filter(|w| w[0] >= w[1]).count();
    let max_rss = rss.iter().copied().max().unwrap_or(0);
    eprintln!(
        "soak: {:?}, {life} lifetimes ({kills} kill -9, {terms} SIGTERM); queue: {} confirmed, \
         {} acked, {} left, {} duplicates, {} missing; stream: {} confirmed, {} replayed, {} \
         missing, {} out of order; broker RSS per lifetime (KiB): {rss:?}",
        started.elapsed(),
        l.confirmed.len(),
        l.acked.len(),
        drained.len(),
        duplicates,
        missing.len(),
        sc.len(),
        replayed.len(),
        stream_missing,
        stream_unordered,
    );
    assert!(l.errors.is_empty(), "errors: {:?}", l.errors);
    assert!(!l.confirmed.is_empty() && !sc.is_empty(), "no load ran");
    assert_eq!(duplicates, 0, "a message is in the queue twice");
    assert!(missing.is_empty(), "confirmed messages lost: {missing:?}");
    assert_eq!(stream_missing, 0, "confirmed stream messages lost");
    assert_eq!(stream_unordered, 0, "stream replay out of order");
    assert!(
        max_rss < RSS_CEILING_KIB,
        "broker RSS reached {max_rss} KiB"
    );
    drop(broker);
    assert_no_errors_logged(logs.path());
}
