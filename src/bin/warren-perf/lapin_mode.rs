//! `--client lapin` (feature `perf-lapin`): the simple scenario (1 producer → 1 queue → 1
//! consumer, autoack) driven by lapin instead of the lean client, to cross-check the numbers and
//! the loss/duplicate verdict. Topology, stamps, tracker and report are shared with the native run.

use crate::client::{proto, Conn, Error, Result, Uri};
use crate::methods::field_table;
use crate::scenario::{setup, Topology};
use crate::stats::{Histogram, SeqTracker};
use crate::wire::{read_stamp, stamp};
use crate::{now_ns, proc_stat, Args, Outcome};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn lerr(e: lapin::Error) -> Error {
    Error::Protocol(format!("lapin: {e}"))
}

struct Consumed {
    tracker: SeqTracker,
    hist: Histogram,
    received: u64,
    invalid: u64,
    last_ns: u64,
}

pub async fn run(a: &Args) -> Result<Outcome> {
    if a.producers != 1
        || a.consumers != 1
        || a.queues != 1
        || !a.autoack
        || a.consume_only
        || a.publish_only
    {
        return proto("--client lapin runs 1 producer, 1 consumer, 1 queue with --autoack only");
    }
    let uri: Uri = a.uri.parse().map_err(Error::Protocol)?;
    let t = Topology::new(a);
    let mut admin = Conn::connect(&uri, "warren-perf setup").await?;
    setup(&mut admin, a, &t).await?;

    let cconn = Connection::connect(&a.uri, ConnectionProperties::default())
        .await
        .map_err(lerr)?;
    let cch = cconn.create_channel().await.map_err(lerr)?;
    let opts = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let args = field_table(&a.consumer_args)?;
    let mut consumer = cch
        .basic_consume(t.queues[0].as_str().into(), "perf-lapin".into(), opts, args)
        .await
        .map_err(lerr)?;
    let pconn = Connection::connect(&a.uri, ConnectionProperties::default())
        .await
        .map_err(lerr)?;
    let pch = pconn.create_channel().await.map_err(lerr)?;

    let cpu_before = a.broker_pid.and_then(proc_stat::cpu_seconds);
    let self_before = proc_stat::self_cpu_seconds();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (rc, st) = (received.clone(), stop.clone());
    let consumer_task = tokio::spawn(async move {
        let mut c = Consumed {
            tracker: SeqTracker::default(),
            hist: Histogram::default(),
            received: 0,
            invalid: 0,
            last_ns: 0,
        };
        while !st.load(Relaxed) {
            let Ok(next) = tokio::time::timeout(Duration::from_millis(50), consumer.next()).await
            else {
                continue;
            };
            let Some(Ok(d)) = next else { break };
            let now = now_ns();
            match read_stamp(&d.data) {
                Some((p, seq, ts)) if c.tracker.record(p, seq, 1) => {
                    c.hist.record(now.saturating_sub(ts))
                }
                _ => c.invalid += 1,
            }
            c.received += 1;
            c.last_ns = now;
            rc.store(c.received, Relaxed);
        }
        c
    });

    let t0 = now_ns();
    let start = Instant::now();
    let deadline = a.run_duration().map(|d| start + d);
    let mut body = vec![0u8; a.size];
    let props = if a.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let mut sent = 0u64;
    let mut errors = Vec::new();
    while a.count.map_or(true, |c| sent < c) && deadline.map_or(true, |d| Instant::now() < d) {
        stamp(&mut body, 0, sent, now_ns());
        let r = pch
            .basic_publish(
                t.exchange.as_str().into(),
                t.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await;
        if let Err(e) = r {
            errors.push(format!("producer: {}", lerr(e)));
            break;
        }
        sent += 1;
    }
    let pub_end = now_ns();
    let mut last = (0, Instant::now());
    while received.load(Relaxed) < sent
        && last.1.elapsed() < Duration::from_secs_f64(a.drain_timeout)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let r = received.load(Relaxed);
        if r != last.0 {
            last = (r, Instant::now());
        }
    }
    stop.store(true, Relaxed);
    let c = consumer_task
        .await
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let cpu = cpu_before.and_then(|b| Some(a.broker_pid.and_then(proc_stat::cpu_seconds)? - b));
    let client_cpu = proc_stat::self_cpu_seconds()
        .zip(self_before)
        .map(|(x, y)| x - y);
    let _ = pconn.close(200, "bye".into()).await;
    let _ = cconn.close(200, "bye".into()).await;
    if !a.keep {
        if let Err(e) = admin.delete_queue(1, &t.queues[0]).await {
            errors.push(format!("cleanup: {e}"));
        }
    }
    admin.close().await;
    Ok(Outcome {
        client: "lapin",
        sent,
        received: c.received,
        invalid: c.invalid,
        lost: c.tracker.lost(|_| Some(sent), 1),
        duplicates: c.tracker.duplicates,
        out_of_order: c.tracker.out_of_order,
        publish_s: pub_end.saturating_sub(t0) as f64 / 1e9,
        consume_s: c.last_ns.saturating_sub(t0) as f64 / 1e9,
        elapsed_s: start.elapsed().as_secs_f64(),
        latency: (c.hist.count() > 0).then_some(c.hist),
        broker_cpu_s: cpu,
        broker_peak_rss_kb: a.broker_pid.and_then(proc_stat::peak_rss_kb),
        client_cpu_s: client_cpu,
        errors,
        ..Default::default()
    })
}
