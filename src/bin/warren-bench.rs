//! `warren-bench`: small helpers for `bench/compare.sh` that `warren-perf` does not cover.
//!
//! ```text
//! warren-bench idle  --uri URI --broker-pid PID --connections 10000 --queues 10000
//! warren-bench depth --uri URI --queue NAME --expect 1000000 --t0 <epoch seconds> --timeout 600
//! ```
//! `idle` opens N connections (handshake, heartbeats off, one channel each) and leaves them idle,
//! then declares M queues, and reports the broker's resident set (VmRSS from /proc) before and
//! after each step: bytes per idle connection and per empty queue. `depth` waits until the broker
//! accepts connections and a passive `queue.declare` reports at least `--expect` messages (for
//! recovery timing: `--t0` is when the broker process was started). Both print one JSON line.
//!
//! The AMQP client is warren-perf's (`client.rs`, `methods.rs`), shared by path.

#[allow(dead_code)]
#[path = "warren-perf/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "warren-perf/methods.rs"]
mod methods;

use amq_protocol::protocol::{queue, AMQPClass};
use amq_protocol::types::FieldTable;
use clap::{Parser, Subcommand};
use client::{short, Conn, Error, Result, Uri};
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

#[derive(Parser, Debug)]
#[command(name = "warren-bench", version)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// RSS per idle connection and per empty queue.
    Idle {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        uri: String,
        /// Broker process whose VmRSS is read.
        #[arg(long)]
        broker_pid: u32,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[arg(long, default_value_t = 10_000)]
        queues: usize,
        /// Handshakes (or declares) in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to let the broker settle before each RSS reading.
        #[arg(long, default_value_t = 3.0)]
        settle: f64,
    },
    /// Wait until a passive queue.declare reports at least --expect messages.
    Depth {
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        uri: String,
        #[arg(long)]
        queue: String,
        #[arg(long, default_value_t = 0)]
        expect: u64,
        /// Broker start time, seconds since the epoch (elapsed times are measured from it).
        #[arg(long)]
        t0: Option<f64>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600.0)]
        timeout: f64,
    },
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:").unwrap_or(0)
}

async fn passive_declare(c: &mut Conn, name: &str) -> Result<u32> {
    let m = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: short(name)?,
        passive: true,
        durable: false,
        exclusive: false,
        auto_delete: false,
        nowait: false,
        arguments: FieldTable::default(),
    }));
    match c.rpc(1, m).await? {
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => Ok(ok.message_count),
        other => client::proto(format!("expected queue.declare-ok, got {other:?}")),
    }
}

async fn depth(uri: &Uri, q: &str, expect: u64, t0: Option<f64>, timeout: f64) -> u8 {
    let start = Instant::now();
    let t0 = t0.unwrap_or_else(epoch);
    let (mut first_connect, mut last_count, mut last_err) = (None::<f64>, None::<u32>, None);
    while start.elapsed().as_secs_f64() < timeout {
        match Conn::connect(uri, "warren-bench depth").await {
            Ok(mut c) => {
                first_connect.get_or_insert_with(|| epoch() - t0);
                let r = async {
                    c.open_channel(1).await?;
                    passive_declare(&mut c, q).await
                }
                .await;
                match r {
                    Ok(n) => {
                        last_count = Some(n);
                        if u64::from(n) >= expect {
                            let ready = epoch() - t0;
                            c.close().await;
                            println!(
                                "{}",
                                json!({"queue": q, "message_count": n, "ok": true,
                                    "connect_s": first_connect.map(|s| (s * 1000.0).round() / 1000.0),
                                    "ready_s": (ready * 1000.0).round() / 1000.0})
                            );
                            return 0;
                        }
                        c.close().await;
                    }
                    Err(e) => last_err = Some(e.to_string()),
                }
            }
            Err(e) => last_err = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{}",
        json!({"queue": q, "message_count": last_count, "ok": false,
            "connect_s": first_connect, "ready_s": null, "error": last_err})
    );
    1
}

async fn idle(
    uri: Uri,
    pid: u32,
    conns: usize,
    queues: usize,
    concurrency: usize,
    settle: f64,
) -> Result<serde_json::Value> {
    let settle = Duration::from_secs_f64(settle);
    let uri = Arc::new(uri);
    tokio::time::sleep(settle).await;
    let rss0 = rss_kb(pid);

    // Idle connections, each with one open channel.
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        let (uri, sem) = (uri.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            let mut c = Conn::connect(&uri, &format!("idle-{i}")).await?;
            c.open_channel(1).await?;
            Ok::<Conn, Error>(c)
        }));
    }
    let mut held = Vec::with_capacity(conns);
    for h in tasks {
        match h.await {
            Ok(Ok(c)) => held.push(c),
            Ok(Err(e)) => return Err(e),
            Err(e) => return client::proto(format!("task: {e}")),
        }
    }
    let connect_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss1 = rss_kb(pid);

    // Empty queues, declared over a few of the connections (one rpc at a time on each).
    if held.is_empty() && queues > 0 {
        let mut c = Conn::connect(&uri, "idle-declare").await?;
        c.open_channel(1).await?;
        held.push(c);
    }
    let t = Instant::now();
    let lanes = concurrency.clamp(1, held.len().max(1)).min(16);
    let mut lane_conns: Vec<Conn> = held.drain(..lanes.min(held.len())).collect();
    let mut tasks = Vec::new();
    for (l, mut c) in lane_conns.drain(..).enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut i = l;
            while i < queues {
                c.declare_queue(
                    1,
                    &format!("idle-q-{i}"),
                    false,
                    false,
                    FieldTable::default(),
                )
                .await?;
                i += lanes;
            }
            Ok::<Conn, Error>(c)
        }));
    }
    for h in tasks {
        match h.await {
            Ok(Ok(c)) => held.push(c),
            Ok(Err(e)) => return Err(e),
            Err(e) => return client::proto(format!("task: {e}")),
        }
    }
    let declare_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss2 = rss_kb(pid);
    let peak = status_kb(pid, "VmHWM:");

    // Clean up: delete the queues, close the connections.
    if let Some(c) = held.first_mut() {
        for i in 0..queues {
            if c.delete_queue(1, &format!("idle-q-{i}")).await.is_err() {
                break;
            }
        }
    }
    drop(held);
    let per = |a: u64, b: u64, n: usize| {
        (n > 0).then(|| ((b as f64 - a as f64) * 1024.0 / n as f64).round() as i64)
    };
    Ok(json!({
        "connections": conns, "queues": queues,
        "rss_base_kb": rss0, "rss_connections_kb": rss1, "rss_queues_kb": rss2,
        "peak_rss_kb": peak,
        "bytes_per_connection": per(rss0, rss1, conns),
        "bytes_per_queue": per(rss1, rss2, queues),
        "connect_s": (connect_s * 100.0).round() / 100.0,
        "declare_s": (declare_s * 100.0).round() / 100.0,
        "ok": true,
    }))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let parse = |u: &str| u.parse::<Uri>().map_err(|e| eprintln!("warren-bench: {e}"));
    match args.cmd {
        Cmd::Depth {
            uri,
            queue,
            expect,
            t0,
            timeout,
        } => {
            let Ok(uri) = parse(&uri) else {
                return ExitCode::from(1);
            };
            ExitCode::from(rt.block_on(depth(&uri, &queue, expect, t0, timeout)))
        }
        Cmd::Idle {
            uri,
            broker_pid,
            connections,
            queues,
            concurrency,
            settle,
        } => {
            let Ok(uri) = parse(&uri) else {
                return ExitCode::from(1);
            };
            match rt.block_on(idle(
                uri,
                broker_pid,
                connections,
                queues,
                concurrency,
                settle,
            )) {
                Ok(v) => {
                    println!("{v}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("{}", json!({"ok": false, "error": e.to_string()}));
                    ExitCode::from(1)
                }
            }
        }
    }
}
