//! Streams across restarts: a clean restart keeps every message (persistent or not), its
//! headers and offsets, and appends continue at the old next offset; after kill -9 of the real
//! broker binary (tests/crash_support/) every confirmed message is there, in order, at its
//! offset, a torn tail is cut off, and offsets continue; a deleted stream stays deleted.
use crate::common;
use crate::crash_support;
use crate::stream_support;

use common::*;
use crash_support::{assert_no_errors_logged, BrokerProc};
use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Confirmation};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stream_support::*;

/// Segments of 64 KiB, so the crash rounds rotate through several.
fn segments() -> [(&'static str, AMQPValue); 1] {
    [(
        "x-stream-max-segment-size-bytes",
        AMQPValue::LongLongInt(65_536),
    )]
}

#[tokio::test]
async fn messages_and_offsets_survive_a_clean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &segments()).await;
    for i in 0..100i64 {
        // Transient and persistent alike: a stream stores everything.
        let props = BasicProperties::default()
            .with_delivery_mode(if i % 2 == 0 { 1 } else { 2 })
            .with_headers(table(&[("n", AMQPValue::LongLongInt(i))]));
        let body = format!("m{i}:{}", ".".repeat(1000));
        publish_confirmed(&ch, "", "s", body.as_bytes(), props).await;
    }
    drop((c, ch));
    stop_broker(b).await;

    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (_c, ch) = confirm_channel(&b).await;
    assert_eq!(stream_len(&ch, "s").await, 100);
    let mut r = Reader::open(&b, "s", "", 50, &[("x-stream-offset", s("first"))]).await;
    for i in 0..100i64 {
        let d = r.next().await;
        assert_eq!(offset(&d), i);
        assert_eq!(body(&d), format!("m{i}:{}", ".".repeat(1000)));
        let h = d.properties.headers().clone().expect("headers");
        assert_eq!(h.inner().get("n"), Some(&AMQPValue::LongLongInt(i)));
        ack(&d).await;
    }
    publish_all(&ch, "s", ["after"]).await;
    let d = r.next().await;
    assert_eq!((offset(&d), body(&d)), (100, "after".to_string()));
    stop_broker(b).await;
}

#[tokio::test]
async fn timestamp_and_last_offsets_work_on_recovered_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (c, ch) = confirm_channel(&b).await;
    let small = [(
        "x-stream-max-segment-size-bytes",
        AMQPValue::LongLongInt(4096),
    )];
    declare_stream(&ch, "s", &small).await;
    let body = |i: i64| format!("m{i}:{}", ".".repeat(1000));
    // One chunk each, four to a segment: the cut falls between sealed segments' chunks.
    publish_each(&ch, "s", (0..10).map(body)).await;
    let cut = now_secs() + 1;
    let wait = (cut * 1000 + 50).saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    publish_each(&ch, "s", (10..20).map(body)).await;
    drop((c, ch));
    stop_broker(b).await;

    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let at = [("x-stream-offset", AMQPValue::Timestamp(cut))];
    let mut r = Reader::open(&b, "s", "", 20, &at).await;
    let got = r.take(10).await;
    assert_eq!(got, (10..20).map(|i| (i, body(i))).collect::<Vec<_>>());
    assert!(r.quiet(200).await);
    let mut r = Reader::open(&b, "s", "", 20, &[("x-stream-offset", s("last"))]).await;
    assert_eq!(r.take(1).await, vec![(19, body(19))]);
    stop_broker(b).await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

#[tokio::test]
async fn a_deleted_stream_stays_deleted_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("old", 0..10)).await;
    let n = within(
        5,
        ch.queue_delete("s".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete");
    assert_eq!(n, 0, "RabbitMQ reports 0 for a deleted stream");
    drop((c, ch));
    stop_broker(b).await;

    let b = within(10, Broker::start_in(dir.path(), |_| {})).await;
    let (_c, ch) = confirm_channel(&b).await;
    let gone = within(
        5,
        ch.queue_declare("s".into(), passive(), Default::default()),
    )
    .await;
    expect_code(gone, 404);
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    assert_eq!(
        stream_len(&ch, "s").await,
        0,
        "a new stream, not the old one"
    );
    publish_all(&ch, "s", bodies("m", 0..1)).await;
    let mut r = Reader::open(&b, "s", "", 5, &[("x-stream-offset", s("first"))]).await;
    assert_eq!(r.take(1).await, expected("m", 0..1));
    stop_broker(b).await;
}

/// Body of message `i` of crash round `round`: "r{round}-{i}:" and a varying padding.
fn crash_body(round: u32, i: usize) -> String {
    let pad = (i * 37 + round as usize * 101) % 700;
    format!("r{round}-{i}:{}", ".".repeat(pad))
}

/// Publishes round `round`'s messages in windows of 64 until the connection breaks, counting
/// how many were sent and how many (a prefix) confirmed.
async fn publish_until_killed(
    ch: Channel,
    round: u32,
    sent: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
) {
    let mut i = 0;
    loop {
        let mut window = Vec::new();
        for _ in 0..64 {
            let body = crash_body(round, i);
            let pc = ch
                .basic_publish(
                    "".into(),
                    "s".into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default(),
                )
                .await;
            let Ok(pc) = pc else { return };
            i += 1;
            sent.store(i, Ordering::SeqCst);
            window.push(pc);
        }
        for pc in window {
            match pc.await {
                Ok(Confirmation::Ack(_)) => {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Ok(other) => panic!("unexpected confirmation {other:?}"),
                Err(_) => return,
            }
        }
    }
}

/// Everything in the stream, read from "first" by a fresh consumer, checked to be at offsets
/// 0, 1, 2, ….
async fn read_all(url: &str) -> Vec<String> {
    within(30, async {
        let conn = crash_support::connect(url).await;
        let ch = conn.create_channel().await.expect("channel");
        let n = stream_len(&ch, "s").await as usize;
        ch.basic_qos(500, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut c = ch
            .basic_consume(
                "s".into(),
                "".into(),
                BasicConsumeOptions::default(),
                table(&[("x-stream-offset", s("first"))]),
            )
            .await
            .expect("consume");
        let got = take(&mut c, n).await;
        assert!(quiet(&mut c, 200).await, "more than declare-ok counted");
        conn.close(200, "bye".into()).await.expect("close");
        got.into_iter()
            .enumerate()
            .map(|(i, (o, b))| {
                assert_eq!(o, i as i64, "offsets are dense from 0");
                b
            })
            .collect()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirmed_messages_survive_kill_9_and_offsets_continue() {
    const ROUNDS: u32 = 3;
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let mut log: Vec<String> = Vec::new();
    let mut last = None;
    for round in 0..=ROUNDS {
        let mut p = BrokerProc::spawn(data.path(), logs.path(), round).await;
        let url = p.url();
        let conn = crash_support::connect(&url).await;
        let ch = within(5, conn.create_channel()).await.expect("channel");
        declare_stream(&ch, "s", &segments()).await; // redeclared as it was after a crash
        let recovered = read_all(&url).await;
        let (old, new) = recovered.split_at(log.len().min(recovered.len()));
        assert_eq!(old, &log[..], "round {round}: earlier rounds' messages");
        if let Some((sent, acked)) = last {
            // This round's survivors: a prefix of what was sent, at least all confirmed.
            let n = new.len();
            assert!(
                n >= acked && n <= sent,
                "round {round}: {n} back, {acked} confirmed, {sent} sent"
            );
            for (i, b) in new.iter().enumerate() {
                assert_eq!(*b, crash_body(round - 1, i), "round {round} message {i}");
            }
            eprintln!(
                "round {}: {acked} confirmed, {sent} sent, {n} recovered",
                round - 1
            );
        }
        log = recovered;
        if round == ROUNDS {
            // Appends continue right after what survived.
            within(5, ch.confirm_select(ConfirmSelectOptions::default()))
                .await
                .expect("confirm.select");
            publish_all(&ch, "s", ["last"]).await;
            let all = read_all(&url).await;
            assert_eq!(all.len(), log.len() + 1);
            assert_eq!(all.last().map(String::as_str), Some("last"));
            break;
        }
        within(5, ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .expect("confirm.select");
        let (sent, acked) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let publisher = tokio::spawn(publish_until_killed(ch, round, sent.clone(), acked.clone()));
        let target = 1000 + rand::random::<usize>() % 2000;
        eventually(30, || {
            let acked = acked.clone();
            async move { acked.load(Ordering::SeqCst) >= target }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 20)).await;
        p.kill();
        within(10, publisher).await.expect("publisher task");
        last = Some((sent.load(Ordering::SeqCst), acked.load(Ordering::SeqCst)));
        drop(conn);
    }
    assert_no_errors_logged(logs.path());
}
