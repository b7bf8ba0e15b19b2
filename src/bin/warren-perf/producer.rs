//! A producer: one connection, one channel, publishing stamped messages in batches (many publishes
//! encoded into one buffer, one write per batch) until a count, a deadline or a stop signal, at full
//! speed or at a fixed rate, optionally with publisher confirms bounded by a window. A reader task
//! per connection takes confirms (multiple or not, in any order) and broker errors off the socket.

use crate::client::{check_close, is_close_ok, Conn, Reader, Result};
use crate::now_ns;
use crate::wire::PublishTemplate;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use warren::protocol::frame::decode_method;
use warren::protocol::hot::decode_ack;
use warren::protocol::{BASIC_ACK, BASIC_NACK, CLASS_BASIC, FRAME_METHOD};

/// What one producer does.
#[derive(Clone)]
pub struct ProducerCfg {
    pub id: u16,
    pub exchange: String,
    pub routing_key: String,
    pub size: usize,
    pub persistent: bool,
    /// Messages to publish, or None for "until the deadline / stop".
    pub count: Option<u64>,
    pub deadline: Option<Instant>,
    /// Messages per second, or None for as fast as possible.
    pub rate: Option<f64>,
    /// Max unconfirmed messages (confirm mode), or None.
    pub confirm: Option<u64>,
    /// Messages per write at full speed.
    pub batch: usize,
    /// Running on its own thread (see `spawn`): rate pacing may block it.
    pub own_thread: bool,
}

/// State shared by the publishing loop and the connection's reader task.
#[derive(Default)]
pub struct Shared {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub blocked: AtomicU64,
    /// The reader ended (error or close-ok).
    pub reader_done: AtomicBool,
    pub error: Mutex<Option<String>>,
    pub wake: Notify,
}

impl Shared {
    fn fail(&self, e: String) {
        self.error.lock().get_or_insert(e);
    }
    fn settled(&self) -> u64 {
        self.confirmed.load(Relaxed) + self.nacked.load(Relaxed)
    }
}

/// The outcome of one producer.
#[derive(Debug, Default, Clone)]
pub struct ProducerReport {
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub blocked: u64,
    /// When the last message was written (or confirmed, in confirm mode), ns since start.
    pub end_ns: u64,
    pub error: Option<String>,
}

/// Publish at full speed or at `cfg.rate` into `wr`. Returns the number of messages written.
/// `shared` gives the confirm window and the reader's errors; `stop` ends the loop early.
pub async fn publish_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    tpl: &mut PublishTemplate,
    cfg: &ProducerCfg,
    shared: &Shared,
    stop: &AtomicBool,
) -> Result<u64> {
    let mut out = BytesMut::with_capacity(cfg.batch.max(1) * tpl.wire_len() + 1024);
    let start = Instant::now();
    let mut seq = 0u64;
    loop {
        if stop.load(Relaxed) || shared.reader_done.load(Relaxed) {
            break;
        }
        let now = Instant::now();
        if cfg.deadline.is_some_and(|d| now >= d) {
            break;
        }
        let mut n = cfg.batch.max(1) as u64;
        if let Some(count) = cfg.count {
            n = n.min(count - seq);
            if n == 0 {
                break;
            }
        }
        if let Some(rate) = cfg.rate {
            let due = (now.duration_since(start).as_secs_f64() * rate) as u64 + 1;
            if due <= seq {
                let next = start + Duration::from_secs_f64(seq as f64 / rate);
                if cfg.own_thread {
                    // A dedicated thread sleeps with the kernel's precision (tens of µs), so
                    // messages go out evenly spaced instead of in bursts per 1 ms timer tick.
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                } else {
                    tokio::time::sleep_until(next.into()).await;
                }
                continue;
            }
            n = n.min(due - seq);
        }
        if let Some(window) = cfg.confirm {
            let notified = shared.wake.notified();
            let outstanding = seq.saturating_sub(shared.settled());
            if outstanding >= window {
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                continue;
            }
            n = n.min(window - outstanding);
        }
        let ts = now_ns();
        for _ in 0..n {
            tpl.encode(&mut out, cfg.id, seq, ts);
            seq += 1;
        }
        // Publish the count first: the reader checks confirm tags against it.
        shared.published.store(seq, Relaxed);
        wr.write_all(&out).await?;
        out.clear();
    }
    Ok(seq)
}

/// Connect, open channel 1, select confirms if asked: done before the clock starts.
pub async fn connect(uri: &crate::client::Uri, cfg: &ProducerCfg) -> Result<Conn> {
    let mut c = Conn::connect(uri, &format!("warren-perf producer {}", cfg.id)).await?;
    c.open_channel(1).await?;
    if cfg.confirm.is_some() {
        c.confirm_select(1).await?;
    }
    Ok(c)
}

/// Run one producer on a connected `Conn` to the end, then close the connection.
pub async fn run(conn: Conn, cfg: ProducerCfg, stop: Arc<AtomicBool>) -> ProducerReport {
    let mut tpl = PublishTemplate::new(
        1,
        &cfg.exchange,
        &cfg.routing_key,
        cfg.size,
        cfg.persistent,
        conn.frame_max(),
    );
    let Conn { reader, mut wr, .. } = conn;
    let shared = Arc::new(Shared::default());
    let rd_task = tokio::spawn(read_loop(reader, shared.clone()));
    let res = publish_loop(&mut wr, &mut tpl, &cfg, &shared, &stop).await;
    let mut report = ProducerReport {
        end_ns: now_ns(),
        ..Default::default()
    };
    match res {
        Ok(sent) => {
            report.sent = sent;
            if cfg.confirm.is_some() {
                // Wait for the last confirms (bounded: a stuck broker must not hang the run).
                let give_up = Instant::now() + Duration::from_secs(30);
                while shared.settled() < sent
                    && !shared.reader_done.load(Relaxed)
                    && Instant::now() < give_up
                {
                    let _ = tokio::time::timeout(Duration::from_millis(50), shared.wake.notified())
                        .await;
                }
                if shared.settled() < sent && shared.error.lock().is_none() {
                    shared.fail(format!(
                        "{} publishes never confirmed",
                        sent - shared.settled()
                    ));
                }
                report.end_ns = now_ns();
            }
        }
        Err(e) => shared.fail(e.to_string()),
    }
    // connection.close; the reader task ends on close-ok (or EOF). Wait for close-ok for as long
    // as a flow-controlled broker may take to read the publishes still queued before the close:
    // closing the socket earlier makes RabbitMQ drop them ("client unexpectedly closed TCP
    // connection"), which the consumers would report as loss.
    let mut close = BytesMut::new();
    warren::protocol::frame::encode_method(&mut close, 0, crate::client::close_method());
    if wr.write_all(&close).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(60), rd_task).await;
    }
    report.confirmed = shared.confirmed.load(Relaxed);
    report.nacked = shared.nacked.load(Relaxed);
    report.blocked = shared.blocked.load(Relaxed);
    report.error = shared.error.lock().take();
    report
}

/// Run a producer as a task, or for a fixed rate on a thread of its own (a current-thread
/// runtime) so that it can pace messages more finely than tokio's 1 ms timer.
pub fn spawn(
    conn: Conn,
    mut cfg: ProducerCfg,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<ProducerReport> {
    if cfg.rate.is_none() {
        return tokio::spawn(run(conn, cfg, stop));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("producer-{}", cfg.id))
        .spawn(move || {
            cfg.own_thread = true;
            let report = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(conn, cfg, stop)),
                Err(e) => ProducerReport {
                    error: Some(format!("runtime: {e}")),
                    ..Default::default()
                },
            };
            let _ = tx.send(report);
        });
    tokio::spawn(async move {
        match thread {
            Ok(_) => rx.await.unwrap_or_else(|_| ProducerReport {
                error: Some("producer thread died".into()),
                ..Default::default()
            }),
            Err(e) => ProducerReport {
                error: Some(format!("thread: {e}")),
                ..Default::default()
            },
        }
    })
}

/// Confirms seen so far: tags from `base` on, true once acked or nacked.
struct Window {
    base: u64,
    done: VecDeque<bool>,
}

impl Window {
    /// Settle `tag` (and everything below it if `multiple`); returns how many were newly settled.
    fn settle(&mut self, tag: u64, multiple: bool) -> u64 {
        if tag < self.base {
            return 0;
        }
        let idx = (tag - self.base) as usize;
        while self.done.len() <= idx {
            self.done.push_back(false);
        }
        let mut n = 0;
        let range = if multiple { 0..=idx } else { idx..=idx };
        for i in range {
            if let Some(d) = self.done.get_mut(i) {
                if !*d {
                    *d = true;
                    n += 1;
                }
            }
        }
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.base += 1;
        }
        n
    }
}

/// Read confirms and broker errors until close-ok, EOF or an error.
async fn read_loop(mut reader: Reader, shared: Arc<Shared>) {
    let mut win = Window {
        base: 1,
        done: VecDeque::with_capacity(1024),
    };
    let res: Result<()> = async {
        loop {
            let f = reader.next_frame().await?;
            if f.kind != FRAME_METHOD {
                continue;
            }
            let p = &f.payload;
            if p.get(..2) == Some(&CLASS_BASIC.to_be_bytes()[..])
                && matches!(p.get(2..4), Some([0, m]) if u16::from(*m) == BASIC_ACK || u16::from(*m) == BASIC_NACK)
            {
                let a = decode_ack(p).map_err(|e| crate::client::Error::Protocol(e.to_string()))?;
                if a.delivery_tag > shared.published.load(Relaxed) || a.delivery_tag == 0 {
                    return crate::client::proto(format!("confirm for unpublished tag {}", a.delivery_tag));
                }
                let n = win.settle(a.delivery_tag, a.multiple);
                let is_nack = p.get(3) == Some(&(BASIC_NACK as u8));
                let counter = if is_nack { &shared.nacked } else { &shared.confirmed };
                counter.fetch_add(n, Relaxed);
                shared.wake.notify_one();
                continue;
            }
            if is_close_ok(p) {
                return Ok(());
            }
            let m = decode_method(p).map_err(|e| crate::client::Error::Protocol(e.to_string()))?;
            if p.get(..4) == Some(&[0, 10, 0, 60]) {
                shared.blocked.fetch_add(1, Relaxed); // connection.blocked
            }
            check_close(m)?;
        }
    }
    .await;
    if let Err(e) = res {
        shared.fail(e.to_string());
    }
    shared.reader_done.store(true, Relaxed);
    shared.wake.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_settles_in_any_order() {
        let mut w = Window {
            base: 1,
            done: VecDeque::new(),
        };
        assert_eq!(w.settle(3, false), 1);
        assert_eq!(w.settle(2, false), 1);
        assert_eq!(w.base, 1);
        assert_eq!(w.settle(5, true), 3); // 1, 4, 5
        assert_eq!(w.base, 6);
        assert_eq!(w.settle(4, true), 0);
        assert_eq!(w.settle(6, true), 1);
        assert!(w.done.is_empty());
    }
}
