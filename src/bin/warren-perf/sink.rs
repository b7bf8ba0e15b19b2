//! `--sink-test`: the client's own ceiling, with no broker. Publishing: producers run the real
//! publish loop into local TCP sockets whose other end a task drains. Consuming: a task plays a
//! broker at full speed (fresh basic.deliver + header + body frames, encoded with warren's codec)
//! into the real consumer loop, which checks every stamp as in a run.

use crate::client::{Conn, Reader, Result, READ_CHUNK};
use crate::consumer::{self, ConsumerCfg, Progress};
use crate::producer::{self, ProducerCfg, Shared};
use crate::wire::{stamp, PublishTemplate};
use crate::{now_ns, proc_stat, Args};
use bytes::BytesMut;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warren::protocol::hot::{encode_body, encode_content_header, encode_deliver};

const FRAME_MAX: u32 = 131_072;

/// A connected pair of local sockets: (ours, the far end).
async fn pair() -> Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let ours = TcpStream::connect(l.local_addr()?).await?;
    let (far, _) = l.accept().await?;
    ours.set_nodelay(true)?;
    Ok((ours, far))
}

/// Read and discard until EOF.
async fn drain(mut s: impl AsyncReadExt + Unpin) {
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Publish throughput of `n` producers into sinks for `dur`: (messages, bytes, seconds).
async fn publish(a: &Args, dur: Duration) -> Result<(u64, u64, f64)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..a.producers.max(1) {
        let (ours, far) = pair().await?;
        tokio::spawn(drain(far));
        let cfg = ProducerCfg {
            id,
            exchange: "perf.direct".into(),
            routing_key: "perf.rk".into(),
            size: a.size,
            persistent: a.persistent,
            count: a.count,
            deadline: Some(start + dur),
            rate: a.rate,
            confirm: None,
            batch: a.batch as usize,
            own_thread: false,
        };
        tasks.push(tokio::spawn(async move {
            let (_rd, mut wr) = ours.into_split();
            let mut tpl = PublishTemplate::new(
                1,
                &cfg.exchange,
                &cfg.routing_key,
                cfg.size,
                cfg.persistent,
                FRAME_MAX,
            );
            let wire = tpl.wire_len() as u64;
            let sent = producer::publish_loop(
                &mut wr,
                &mut tpl,
                &cfg,
                &Shared::default(),
                &AtomicBool::new(false),
            )
            .await?;
            Ok::<_, crate::client::Error>((sent, sent * wire))
        }));
    }
    let (mut msgs, mut bytes) = (0, 0);
    for t in tasks {
        let (m, b) = t
            .await
            .map_err(|e| crate::client::Error::Protocol(e.to_string()))??;
        msgs += m;
        bytes += b;
    }
    Ok((msgs, bytes, start.elapsed().as_secs_f64()))
}

/// Play a broker delivering as fast as it can until `stop`.
async fn fake_broker(far: TcpStream, size: usize, stop: Arc<AtomicBool>) {
    let (rd, mut wr) = far.into_split();
    tokio::spawn(drain(rd));
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    let mut body = vec![0u8; size];
    let (mut tag, mut seq) = (1u64, 0u64);
    while !stop.load(Relaxed) {
        let ts = now_ns();
        for _ in 0..256 {
            encode_deliver(
                &mut out,
                1,
                b"perf-0",
                tag,
                false,
                b"perf.direct",
                b"perf.rk",
            );
            encode_content_header(&mut out, 1, size as u64, &[0, 0]);
            stamp(&mut body, 0, seq, ts);
            encode_body(&mut out, 1, &body, FRAME_MAX);
            tag += 1;
            seq += 1;
        }
        if wr.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

/// Consume throughput of the real consumer loop for `dur`: (messages, seconds, ok).
async fn consume(a: &Args, dur: Duration) -> Result<(u64, f64, bool)> {
    let (ours, far) = pair().await?;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(fake_broker(far, a.size, stop.clone()));
    let (rd, wr) = ours.into_split();
    let conn = Conn {
        reader: Reader {
            rd,
            buf: BytesMut::with_capacity(READ_CHUNK),
            frame_max: FRAME_MAX,
        },
        wr,
        out: BytesMut::with_capacity(64 * 1024),
    };
    let cfg = ConsumerCfg {
        id: 0,
        group: 0,
        queue: "perf".into(),
        autoack: a.autoack,
        prefetch: a.prefetch,
        ack_every: a.multiple_ack_every,
        args: Default::default(),
        producers: 1,
        latency: true,
    };
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let task = tokio::spawn(consumer::run(conn, cfg, progress.clone(), stop_rx));
    tokio::time::sleep(dur).await;
    let n = progress.received.load(Relaxed);
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let _ = stop_tx.send(true);
    let r = task
        .await
        .map_err(|e| crate::client::Error::Protocol(e.to_string()))?;
    let ok = r.error.is_none()
        && r.invalid == 0
        && r.tracker.duplicates == 0
        && r.tracker.out_of_order == 0;
    Ok((n, secs, ok))
}

/// Run both halves and return the JSON line.
pub async fn run(a: &Args) -> Result<String> {
    let dur = Duration::from_secs_f64(a.duration.unwrap_or(3.0));
    let cpu0 = proc_stat::self_cpu_seconds();
    let mut j = json!({"sink_test": true, "size": a.size, "producers": a.producers.max(1), "batch": a.batch});
    if !a.consume_only {
        let (msgs, bytes, secs) = publish(a, dur).await?;
        j["publish_rate"] = json!((msgs as f64 / secs).round() as u64);
        j["publish_mb_s"] = json!((bytes as f64 / secs / 1e6).round() as u64);
    }
    let cpu1 = proc_stat::self_cpu_seconds();
    if !a.publish_only {
        let (msgs, secs, ok) = consume(a, dur).await?;
        j["consume_rate"] = json!((msgs as f64 / secs).round() as u64);
        j["consume_checks_ok"] = json!(ok);
        j["autoack"] = json!(a.autoack);
    }
    let cpu2 = proc_stat::self_cpu_seconds();
    if let (Some(c0), Some(c1), Some(c2)) = (cpu0, cpu1, cpu2) {
        j["client_cpu_s_publish"] = json!(((c1 - c0) * 100.0).round() / 100.0);
        j["client_cpu_s_consume"] = json!(((c2 - c1) * 100.0).round() / 100.0);
    }
    Ok(j.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sink_round_trip() {
        let a = Args::parse_from([
            "warren-perf",
            "--sink-test",
            "--duration=0.2",
            "--prefetch=10",
        ]);
        let j: serde_json::Value =
            serde_json::from_str(&run(&a).await.expect("sink run")).expect("json");
        assert!(j["publish_rate"].as_u64().is_some_and(|r| r > 0), "{j}");
        assert!(j["consume_rate"].as_u64().is_some_and(|r| r > 0), "{j}");
        assert_eq!(j["consume_checks_ok"], true, "{j}");
    }
}
