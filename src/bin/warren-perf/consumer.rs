//! A consumer: one connection, one channel, one basic.consume. The loop reads as much as the
//! socket has (up to 256 KiB), cuts frames out of the buffer with warren's splitter, decodes
//! basic.deliver by hand, checks each body's stamp (loss, duplicates, order, latency) and queues
//! acks (single, or `multiple` every N) into one buffer written once per read.

use crate::client::{check_close, is_close_ok, Conn, Error, Result, Uri};
use crate::now_ns;
use crate::stats::{Histogram, SeqTracker};
use crate::wire::{decode_deliver, encode_ack, is_deliver, read_stamp};
use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::FieldTable;
use bytes::BytesMut;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use warren::protocol::frame::{decode_method, RawFrame};
use warren::protocol::{FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};

/// What one consumer does.
#[derive(Clone)]
pub struct ConsumerCfg {
    pub id: usize,
    /// Index of the queue it consumes from.
    pub group: usize,
    pub queue: String,
    pub autoack: bool,
    pub prefetch: u16,
    /// Ack with `multiple` every N messages (≤ 1: ack each one).
    pub ack_every: u64,
    pub args: FieldTable,
    /// Number of producers (valid producer ids are below it).
    pub producers: u16,
    /// Record latency (the stamp's clock is this process's).
    pub latency: bool,
}

/// Progress of all consumers of one queue, read by the coordinator while the run goes on.
#[derive(Default)]
pub struct Progress {
    pub received: AtomicU64,
    /// ns since start of the first and the latest read that brought a message.
    pub first_ns: AtomicU64,
    pub last_ns: AtomicU64,
}

/// The outcome of one consumer.
#[derive(Default)]
pub struct ConsumerReport {
    pub group: usize,
    pub received: u64,
    pub redelivered: u64,
    pub invalid: u64,
    pub tracker: SeqTracker,
    pub hist: Histogram,
    pub error: Option<String>,
}

/// Where we are in the deliver → header → body sequence.
enum Expect {
    Method,
    Header {
        tag: u64,
    },
    Body {
        tag: u64,
        remaining: u64,
        first: bool,
    },
}

struct State<'a> {
    cfg: &'a ConsumerCfg,
    expect: Expect,
    unacked: u64,
    report: ConsumerReport,
}

impl State<'_> {
    #[inline]
    fn on_frame(&mut self, f: RawFrame, now: u64, out: &mut BytesMut) -> Result<()> {
        match (f.kind, &mut self.expect) {
            (FRAME_METHOD, Expect::Method) if is_deliver(&f.payload) => {
                let d = decode_deliver(&f.payload).map_err(|e| Error::Protocol(e.into()))?;
                self.report.redelivered += u64::from(d.redelivered);
                self.expect = Expect::Header {
                    tag: d.delivery_tag,
                };
            }
            (FRAME_METHOD, _) if is_deliver(&f.payload) => {
                return Err(Error::Protocol(
                    "basic.deliver before the previous body ended".into(),
                ));
            }
            (FRAME_METHOD, _) => {
                let m = decode_method(&f.payload).map_err(|e| Error::Protocol(e.to_string()))?;
                if let AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) = m {
                    return Err(Error::Protocol("consumer cancelled by the broker".into()));
                }
                check_close(m)?;
            }
            (FRAME_HEADER, Expect::Header { tag }) => {
                let size = f
                    .payload
                    .get(4..12)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                let size = size.ok_or_else(|| Error::Protocol("short content header".into()))?;
                let tag = *tag;
                self.expect = Expect::Body {
                    tag,
                    remaining: size,
                    first: true,
                };
                if size == 0 {
                    self.report.invalid += 1;
                    self.complete(tag, out);
                }
            }
            (
                FRAME_BODY,
                Expect::Body {
                    tag,
                    remaining,
                    first,
                },
            ) => {
                if *first {
                    *first = false;
                    match read_stamp(&f.payload) {
                        Some((p, seq, ts))
                            if self.report.tracker.record(p, seq, self.cfg.producers) =>
                        {
                            if self.cfg.latency {
                                self.report.hist.record(now.saturating_sub(ts));
                            }
                        }
                        _ => self.report.invalid += 1,
                    }
                }
                let (tag, left) = (*tag, remaining.saturating_sub(f.payload.len() as u64));
                *remaining = left;
                if left == 0 {
                    self.complete(tag, out);
                }
            }
            (FRAME_HEARTBEAT, _) => {}
            (kind, _) => return Err(Error::Protocol(format!("unexpected frame type {kind}"))),
        }
        Ok(())
    }

    #[inline]
    fn complete(&mut self, tag: u64, out: &mut BytesMut) {
        self.expect = Expect::Method;
        self.report.received += 1;
        if self.cfg.autoack {
            return;
        }
        self.unacked += 1;
        let cap = if self.cfg.prefetch == 0 {
            u64::MAX
        } else {
            u64::from(self.cfg.prefetch)
        };
        if self.cfg.ack_every <= 1 {
            encode_ack(out, 1, tag, false);
            self.unacked = 0;
        } else if self.unacked >= self.cfg.ack_every.min(cap) {
            encode_ack(out, 1, tag, true);
            self.unacked = 0;
        }
    }
}

/// Connect, open channel 1, set qos, start consuming: done before the clock starts.
pub async fn connect(uri: &Uri, cfg: &ConsumerCfg) -> Result<Conn> {
    let mut c = Conn::connect(uri, &format!("warren-perf consumer {}", cfg.id)).await?;
    c.open_channel(1).await?;
    if cfg.prefetch > 0 {
        c.qos(1, cfg.prefetch).await?;
    }
    c.consume(
        1,
        &cfg.queue,
        &format!("perf-{}", cfg.id),
        cfg.autoack,
        cfg.args.clone(),
    )
    .await?;
    Ok(c)
}

/// Consume until `stop` turns true (or an error), then close the connection.
pub async fn run(
    conn: Conn,
    cfg: ConsumerCfg,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> ConsumerReport {
    let Conn {
        mut reader,
        mut wr,
        mut out,
    } = conn;
    let mut st = State {
        cfg: &cfg,
        expect: Expect::Method,
        unacked: 0,
        report: ConsumerReport::default(),
    };
    st.report.group = cfg.group;
    let res: Result<()> = async {
        loop {
            let now = now_ns();
            let before = st.report.received;
            while let Some(f) = reader.try_frame()? {
                st.on_frame(f, now, &mut out)?;
            }
            if !out.is_empty() {
                wr.write_all(&out).await?;
                out.clear();
            }
            if st.report.received > before {
                progress
                    .received
                    .fetch_add(st.report.received - before, Relaxed);
                let _ = progress.first_ns.compare_exchange(0, now, Relaxed, Relaxed);
                progress.last_ns.store(now, Relaxed);
            }
            if *stop.borrow() {
                return Ok(());
            }
            tokio::select! {
                r = reader.fill() => r?,
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = res {
        st.report.error = Some(e.to_string());
        return st.report;
    }
    // Ack what is still pending (so nothing is requeued), then close, ignoring further deliveries.
    if !cfg.autoack && st.unacked > 0 {
        // Tag 0 with multiple = true acks everything outstanding (RabbitMQ's and warren's rule).
        encode_ack(&mut out, 1, 0, true);
    }
    warren::protocol::frame::encode_method(&mut out, 0, crate::client::close_method());
    if wr.write_all(&out).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(f) = reader.next_frame().await {
                if f.kind == FRAME_METHOD && f.channel == 0 && is_close_ok(&f.payload) {
                    break;
                }
            }
        })
        .await;
    }
    st.report
}
