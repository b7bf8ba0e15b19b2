//! Stream consumers: each is a cursor of its own. A reader at the end waits for new messages and
//! gets them at once (tailing, no polling); readers at different speeds do not hold each other
//! back; a reader that stops acking stops at its prefetch; acks never delete, and nack/reject
//! return credit without redelivering; basic.cancel stops a reader.
use crate::common;
use crate::stream_support;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream_support::*;

fn first() -> [(&'static str, lapin::types::AMQPValue); 1] {
    [("x-stream-offset", s("first"))]
}

#[tokio::test]
async fn a_reader_at_the_end_gets_new_messages_promptly() {
    let b = start_broker().await;
    let (_c, ch) = b.channel().await;
    declare_stream(&ch, "s", &[]).await;
    let mut r1 = Reader::open(&b, "s", "", 10, &[]).await;
    let mut r2 = Reader::open(&b, "s", "", 10, &[("x-stream-offset", s("next"))]).await;
    let mut lat = Vec::new();
    for i in 0..10i64 {
        // Idle first: a reader that polled would sleep through here.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        within(5, publish(&ch, "s", format!("m{i}").as_bytes())).await;
        for r in [&mut r1, &mut r2] {
            let d = r.next().await;
            lat.push(t.elapsed());
            assert_eq!((offset(&d), body(&d)), (i, format!("m{i}")));
            ack(&d).await;
        }
    }
    lat.sort();
    let (median, worst) = (lat[lat.len() / 2], lat[lat.len() - 1]);
    eprintln!("tailing: delivery after publish: median {median:?}, slowest {worst:?}");
    // Generous for a loaded 2-core machine; a reader polling even every 500 ms would miss it.
    assert!(median < Duration::from_millis(250), "median {median:?}");
    assert!(worst < Duration::from_secs(1), "slowest {worst:?}");
    stop_broker(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_at_different_speeds_do_not_wait_for_each_other() {
    const N: usize = 300;
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..N as u32)).await;
    let fast = Reader::open(&b, "s", "fast", 200, &first()).await;
    let slow = Reader::open(&b, "s", "slow", 1, &first()).await;
    let slow_read = Arc::new(AtomicUsize::new(0));
    let counter = slow_read.clone();
    let slow_task = tokio::spawn(async move {
        let mut slow = slow;
        let mut got = Vec::new();
        for _ in 0..N {
            let d = slow.next().await;
            tokio::time::sleep(Duration::from_millis(5)).await; // the "work"
            ack(&d).await;
            got.push((offset(&d), body(&d)));
            counter.fetch_add(1, Ordering::SeqCst);
        }
        got
    });
    let mut fast = fast;
    let got = fast.take(N).await;
    let slow_when_fast_done = slow_read.load(Ordering::SeqCst);
    assert_eq!(got, expected("m", 0..N as i64));
    assert!(
        slow_when_fast_done < N,
        "the fast reader finished only after the slow one ({slow_when_fast_done})"
    );
    let slow_got = within(20, slow_task).await.expect("slow reader");
    assert_eq!(slow_got, expected("m", 0..N as i64));
    assert!(fast.quiet(100).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn a_reader_that_stops_acking_stops_at_its_prefetch_alone() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..30)).await;
    let mut stuck = Reader::open(&b, "s", "", 5, &first()).await;
    let mut held = Vec::new();
    for i in 0..5 {
        let d = stuck.next().await;
        assert_eq!(offset(&d), i);
        held.push(d);
    }
    assert!(stuck.quiet(300).await, "nothing past the prefetch");
    let mut other = Reader::open(&b, "s", "", 10, &first()).await;
    assert_eq!(other.take(30).await, expected("m", 0..30));
    // Acking the held ones lets the stuck reader go on where it was.
    within(5, held[4].ack(BasicAckOptions { multiple: true }))
        .await
        .expect("ack multiple");
    assert_eq!(stuck.take(25).await, expected("m", 5..30));
    stop_broker(b).await;
}

#[tokio::test]
async fn acks_never_delete() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..50)).await;
    let mut r = Reader::open(&b, "s", "", 20, &first()).await;
    assert_eq!(r.take(50).await, expected("m", 0..50));
    r.close().await;
    assert_eq!(stream_len(&ch, "s").await, 50, "acked messages stay");
    let mut again = Reader::open(&b, "s", "", 20, &first()).await;
    assert_eq!(again.take(50).await, expected("m", 0..50));
    stop_broker(b).await;
}

#[tokio::test]
async fn nack_and_reject_return_credit_and_never_redeliver() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..10)).await;
    let mut r = Reader::open(&b, "s", "", 2, &first()).await;
    let d0 = r.next().await;
    let d1 = r.next().await;
    assert_eq!((offset(&d0), offset(&d1)), (0, 1));
    let nack = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    within(5, d0.nack(nack)).await.expect("nack");
    within(5, d1.reject(BasicRejectOptions { requeue: true }))
        .await
        .expect("reject");
    // With prefetch 2 nothing more would come unless the credit came back.
    assert_eq!(r.take(8).await, expected("m", 2..10));
    assert!(r.quiet(300).await, "no redelivery");
    stop_broker(b).await;
}

#[tokio::test]
async fn cancel_stops_a_reader_and_the_consumer_count_follows() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    let mut r = Reader::open(&b, "s", "reader", 10, &[]).await;
    let consumers = |ch: lapin::Channel| async move {
        within(
            5,
            ch.queue_declare("s".into(), passive(), FieldTable::default()),
        )
        .await
        .expect("passive declare")
        .consumer_count()
    };
    assert_eq!(consumers(ch.clone()).await, 1);
    publish_all(&ch, "s", bodies("m", 0..3)).await;
    assert_eq!(r.take(3).await, expected("m", 0..3));
    within(
        5,
        r.ch.basic_cancel("reader".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel");
    assert_eq!(consumers(ch.clone()).await, 0);
    publish_all(&ch, "s", bodies("m", 3..6)).await;
    // lapin ends the consumer's stream at cancel-ok; no delivery may come before that.
    match tokio::time::timeout(Duration::from_millis(300), r.consumer.next()).await {
        Err(_) | Ok(None) => {}
        Ok(Some(d)) => panic!("delivery after cancel: {d:?}"),
    }
    assert_eq!(stream_len(&ch, "s").await, 6);
    stop_broker(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_sees_concurrent_publishers_densely_and_in_order() {
    const PUBLISHERS: u32 = 4;
    const EACH: u32 = 250;
    let b = start_broker().await;
    let (_c, ch) = b.channel().await;
    declare_stream(&ch, "s", &[]).await;
    let mut r = Reader::open(&b, "s", "", 50, &[]).await;
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (c, ch) = confirm_channel(&b).await;
        tasks.push(tokio::spawn(async move {
            for chunk in (0..EACH).collect::<Vec<_>>().chunks(25) {
                let bodies: Vec<_> = chunk.iter().map(|i| format!("p{p}-{i}")).collect();
                publish_all(&ch, "s", bodies).await;
            }
            drop(c);
        }));
    }
    let got = r.take((PUBLISHERS * EACH) as usize).await;
    for t in tasks {
        within(10, t).await.expect("publisher");
    }
    let mut next_of = vec![0u32; PUBLISHERS as usize];
    for (i, (o, body)) in got.iter().enumerate() {
        assert_eq!(*o, i as i64, "offsets are dense");
        let (p, n) = body[1..].split_once('-').expect("p{p}-{i}");
        let (p, n): (usize, u32) = (p.parse().expect("p"), n.parse().expect("i"));
        assert_eq!(n, next_of[p], "publisher {p} in order");
        next_of[p] += 1;
    }
    assert!(r.quiet(200).await);
    stop_broker(b).await;
}

#[tokio::test]
async fn deleting_a_stream_cancels_its_readers_whatever_if_unused_and_if_empty_say() {
    let b = start_broker().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare_stream(&ch, "s", &[]).await;
    publish_all(&ch, "s", bodies("m", 0..3)).await;
    let mut r = Reader::open(&b, "s", "", 10, &first()).await;
    assert_eq!(r.take(3).await, expected("m", 0..3));
    // As RabbitMQ's stream queue type: if-unused and if-empty are ignored, the count is 0.
    let opts = QueueDeleteOptions {
        if_unused: true,
        if_empty: true,
        ..Default::default()
    };
    let n = within(5, ch.queue_delete("s".into(), opts))
        .await
        .expect("queue.delete");
    assert_eq!(n, 0);
    // basic.cancel from the broker ends lapin's consumer stream.
    assert!(
        within(5, r.consumer.next()).await.is_none(),
        "reader cancelled"
    );
    assert!(r.conn.status().connected(), "the connection stays");
    stop_broker(b).await;
}
