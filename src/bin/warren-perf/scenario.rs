//! One run: declare the topology, connect consumers then producers (before the clock starts),
//! publish, watch progress until every queue has everything that was sent (or nothing moved for
//! `--drain-timeout`), stop everyone, and add up the reports into an `Outcome`.

use crate::client::{Conn, Error, Result, Uri};
use crate::consumer::{self, ConsumerCfg, ConsumerReport, Progress};
use crate::methods::field_table;
use crate::producer::{self, ProducerCfg, ProducerReport};
use crate::stats::{Histogram, SeqTracker};
use crate::{now_ns, proc_stat, Args, ExchangeType, Outcome};
use amq_protocol::types::{AMQPValue, LongString};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Names derived from the arguments.
pub struct Topology {
    pub exchange: String,
    pub routing_key: String,
    pub binding_key: String,
    pub queues: Vec<String>,
    pub durable: bool,
}

impl Topology {
    pub fn new(a: &Args) -> Topology {
        let queues: Vec<String> = if a.queues <= 1 {
            vec![a.queue_name.clone()]
        } else {
            (0..a.queues)
                .map(|i| format!("{}-{i}", a.queue_name))
                .collect()
        };
        let kind = a.exchange_type.name();
        let durable = a.persistent || a.stream;
        // Durable and transient runs use different exchanges: redeclaring one with the other
        // durability is a 406.
        let suffix = if durable { ".durable" } else { "" };
        let exchange = a
            .exchange
            .clone()
            .unwrap_or_else(|| format!("perf.{kind}{suffix}"));
        let (routing_key, binding_key) = match (exchange.is_empty(), a.exchange_type) {
            (true, _) => (queues[0].clone(), String::new()),
            (false, ExchangeType::Direct) => ("perf.rk".into(), "perf.rk".into()),
            (false, ExchangeType::Fanout) => ("perf.rk".into(), String::new()),
            (false, ExchangeType::Topic) => ("perf.rk".into(), "perf.*".into()),
        };
        Topology {
            exchange,
            routing_key,
            binding_key,
            queues,
            durable: a.persistent || a.stream,
        }
    }
}

/// Declare (after deleting, for a fresh start, unless consume-only) exchange, queues, bindings.
pub async fn setup(c: &mut Conn, a: &Args, t: &Topology) -> Result<()> {
    let mut ch = 1;
    c.open_channel(ch).await?;
    if !a.consume_only {
        for q in &t.queues {
            if let Err(e) = c.delete_queue(ch, q).await {
                // Brokers that refuse to delete a missing queue close the channel: reopen it.
                if !matches!(
                    e,
                    Error::Closed {
                        scope: "channel",
                        ..
                    }
                ) {
                    return Err(e);
                }
                ch += 1;
                c.open_channel(ch).await?;
            }
        }
    }
    if !t.exchange.is_empty() && !t.exchange.starts_with("amq.") {
        c.declare_exchange(ch, &t.exchange, a.exchange_type.name(), t.durable)
            .await?;
    }
    let mut args = field_table(&a.queue_args)?;
    if a.stream {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(&b"stream"[..])),
        );
    }
    for q in &t.queues {
        c.declare_queue(ch, q, t.durable, false, args.clone())
            .await?;
        if !t.exchange.is_empty() {
            c.bind_queue(ch, q, &t.exchange, &t.binding_key).await?;
        }
    }
    Ok(())
}

/// Run the scenario against a broker.
pub async fn run(a: &Args) -> Result<Outcome> {
    let uri: Uri = a.uri.parse().map_err(Error::Protocol)?;
    let t = Topology::new(a);
    let mut admin = Conn::connect(&uri, "warren-perf setup").await?;
    setup(&mut admin, a, &t).await?;
    let cpu_before = a.broker_pid.and_then(proc_stat::cpu_seconds);
    let self_before = proc_stat::self_cpu_seconds();
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress: Vec<Arc<Progress>> = t.queues.iter().map(|_| Arc::default()).collect();
    let consumer_args = field_table(&a.consumer_args)?;
    let mut consumers = Vec::new();
    if !a.publish_only {
        for (g, q) in t.queues.iter().enumerate() {
            for i in 0..a.consumers {
                let cfg = ConsumerCfg {
                    id: g * usize::from(a.consumers) + usize::from(i),
                    group: g,
                    queue: q.clone(),
                    autoack: a.autoack,
                    prefetch: a.prefetch,
                    ack_every: a.multiple_ack_every,
                    args: consumer_args.clone(),
                    producers: a.producers.max(1),
                    latency: !a.consume_only,
                };
                let conn = consumer::connect(&uri, &cfg).await?;
                consumers.push(tokio::spawn(consumer::run(
                    conn,
                    cfg,
                    progress[g].clone(),
                    stop_rx.clone(),
                )));
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut producer_conns = Vec::new();
    if !a.consume_only {
        for id in 0..a.producers {
            let cfg = ProducerCfg {
                id,
                exchange: t.exchange.clone(),
                routing_key: t.routing_key.clone(),
                size: a.size,
                persistent: a.persistent,
                count: a.count,
                deadline: None,
                rate: a.rate,
                confirm: a.confirm,
                batch: a.batch as usize,
                own_thread: false,
            };
            producer_conns.push((producer::connect(&uri, &cfg).await?, cfg));
        }
    }
    let t0 = now_ns();
    let start = Instant::now();
    let deadline = a.run_duration().map(|d| start + d);
    let mut producers = Vec::new();
    for (conn, mut cfg) in producer_conns {
        cfg.deadline = deadline;
        producers.push(producer::spawn(conn, cfg, stop.clone()));
    }

    // Watch until done.
    let drain = Duration::from_secs_f64(a.drain_timeout);
    let mut reports: Option<Vec<ProducerReport>> = None;
    let (mut last_total, mut last_move) = (0u64, Instant::now());
    let expected_consume_only = a.count.map(|c| c * u64::from(a.producers));
    let mut errors = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if reports.is_none() && producers.iter().all(|h| h.is_finished()) {
            let mut v = Vec::new();
            for h in producers.drain(..) {
                v.push(h.await.unwrap_or_else(|e| ProducerReport {
                    error: Some(e.to_string()),
                    ..Default::default()
                }));
            }
            if v.iter().any(|r| r.error.is_some()) {
                reports = Some(v);
                break;
            }
            reports = Some(v);
            last_move = Instant::now();
        }
        if consumers.is_empty() {
            if reports.is_some() {
                break;
            }
            continue;
        }
        if consumers.iter().any(|h| h.is_finished()) {
            break; // a consumer failed
        }
        let total: u64 = progress.iter().map(|p| p.received.load(Relaxed)).sum();
        if total != last_total {
            (last_total, last_move) = (total, Instant::now());
        }
        let expected = match (&reports, a.consume_only) {
            (_, true) => expected_consume_only,
            (Some(r), false) => Some(r.iter().map(|r| r.sent).sum()),
            (None, false) => None,
        };
        if let Some(e) = expected {
            if progress.iter().all(|p| p.received.load(Relaxed) >= e) {
                break;
            }
        }
        let sending_done = reports.is_some() || a.consume_only;
        if sending_done && last_move.elapsed() >= drain {
            break;
        }
        if a.consume_only && deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    stop.store(true, Relaxed);
    let _ = stop_tx.send(true);
    let reports = match reports {
        Some(r) => r,
        None => {
            let mut v = Vec::new();
            for h in producers {
                v.push(h.await.unwrap_or_default());
            }
            v
        }
    };
    let mut creports = Vec::new();
    for h in consumers {
        creports.push(h.await.unwrap_or_else(|e| ConsumerReport {
            error: Some(e.to_string()),
            ..Default::default()
        }));
    }
    let cpu = cpu_before.and_then(|b| Some(a.broker_pid.and_then(proc_stat::cpu_seconds)? - b));
    let client_cpu = proc_stat::self_cpu_seconds()
        .zip(self_before)
        .map(|(x, y)| x - y);
    let rss = a.broker_pid.and_then(proc_stat::peak_rss_kb);
    if !a.publish_only && !a.keep {
        for q in &t.queues {
            if let Err(e) = admin.delete_queue(1, q).await {
                errors.push(format!("cleanup: {e}"));
                break;
            }
        }
    }
    admin.close().await;

    errors.extend(
        reports
            .iter()
            .filter_map(|r| r.error.clone())
            .map(|e| format!("producer: {e}")),
    );
    errors.extend(
        creports
            .iter()
            .filter_map(|r| r.error.clone())
            .map(|e| format!("consumer: {e}")),
    );
    let mut o = Outcome {
        errors,
        broker_cpu_s: cpu,
        client_cpu_s: client_cpu,
        broker_peak_rss_kb: rss,
        ..Default::default()
    };
    o.sent = reports.iter().map(|r| r.sent).sum();
    o.confirmed = reports.iter().map(|r| r.confirmed).sum();
    o.nacked = reports.iter().map(|r| r.nacked).sum();
    o.blocked = reports.iter().map(|r| r.blocked).sum();
    let pub_end = reports.iter().map(|r| r.end_ns).max().unwrap_or(t0);
    o.publish_s = (pub_end.saturating_sub(t0)) as f64 / 1e9;
    let mut hist = Histogram::default();
    for (g, p) in progress.iter().enumerate() {
        let mut tracker = SeqTracker::default();
        for r in creports.iter().filter(|r| r.group == g) {
            tracker.merge(&r.tracker);
            hist.merge(&r.hist);
            o.received += r.received;
            o.redelivered += r.redelivered;
            o.invalid += r.invalid;
        }
        if a.publish_only {
            continue;
        }
        let sent = |i: usize| {
            if a.consume_only {
                None
            } else {
                reports.get(i).map(|r| r.sent)
            }
        };
        o.lost += tracker.lost(sent, usize::from(a.producers));
        o.duplicates += tracker.duplicates;
        o.out_of_order += tracker.out_of_order;
        let (first, last) = (p.first_ns.load(Relaxed), p.last_ns.load(Relaxed));
        let from = if a.consume_only { first } else { t0 };
        o.consume_s = o.consume_s.max(last.saturating_sub(from) as f64 / 1e9);
    }
    o.elapsed_s = start.elapsed().as_secs_f64();
    o.latency = (hist.count() > 0).then_some(hist);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    async fn run_against(broker: &warren::ServerHandle, extra: &[&str]) -> Outcome {
        let uri = format!("--uri=amqp://guest:guest@{}/%2f", broker.amqp_addr());
        let mut args = vec!["warren-perf", uri.as_str(), "--drain-timeout=5"];
        args.extend_from_slice(extra);
        let mut a = Args::parse_from(args);
        a.check().expect("valid arguments");
        run(&a).await.expect("run")
    }

    /// End to end against an in-process warren: every message arrives exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_against_warren() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = warren::start(warren::Config::for_tests(dir.path()))
            .await
            .expect("broker");
        let o = run_against(&broker, &["--count=20000", "--autoack"]).await;
        assert_eq!(
            (o.sent, o.received, o.lost, o.duplicates),
            (20_000, 20_000, 0, 0),
            "{:?}",
            o.errors
        );
        assert!(o.latency.is_some() && o.errors.is_empty());
        let o = run_against(
            &broker,
            &[
                "--count=5000",
                "--producers=2",
                "--consumers=2",
                "--prefetch=100",
                "--multiple-ack-every=10",
                "--exchange-type=fanout",
                "--queues=3",
                "--confirm=50",
                "--size=300",
            ],
        )
        .await;
        assert_eq!(
            (o.sent, o.confirmed, o.received),
            (10_000, 10_000, 30_000),
            "{:?}",
            o.errors
        );
        assert_eq!((o.lost, o.duplicates, o.invalid), (0, 0, 0));
        let o = run_against(
            &broker,
            &["--count=3000", "--publish-only", "--queue-name=backlog"],
        )
        .await;
        assert_eq!((o.sent, o.received), (3000, 0));
        let o = run_against(
            &broker,
            &[
                "--count=3000",
                "--consume-only",
                "--queue-name=backlog",
                "--autoack",
            ],
        )
        .await;
        assert_eq!(
            (o.received, o.lost, o.duplicates),
            (3000, 0, 0),
            "{:?}",
            o.errors
        );
        broker.shutdown().await;
    }
}
