//! Stream queues: an append-only log inside a queue. Publishing appends (each message stamped
//! with its `x-stream-offset` header once, at append); acks never delete; every consumer is a
//! cursor with its own reader task that reads batches from the log, pushes them to the consumer's
//! connection within the consumer's prefetch credit, and waits for new appends when it catches up.

pub mod args;
mod consumer;
mod tracking;

use crate::broker::message::Message;
use crate::broker::persist::{ConfirmWaiter, SyncGuard, SyncTicket};
use crate::broker::queue::consumer::ClientEvent;
use crate::broker::queue::Queue;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::header_insert::{insert_header_into, long_value};
use crate::protocol::properties;
use crate::store::commit::{GroupCommit, Syncable};
use crate::store::stream::{StreamConfig, StreamLog};
use amq_protocol::types::{AMQPValue, FieldTable};
use consumer::StreamConsumer;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tracking::Tracking;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Removed tracked consumers whose late acks still count (see `StreamQueue::retired`).
const RETIRED: usize = 1024;

/// A running reader task, counted in [`StreamQueue::readers`] for as long as it lives (however
/// it ends). A stale count only costs a wake-up nobody waits for.
struct Reader(Arc<StreamQueue>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// The property list of the message being appended, with its `x-stream-offset` added:
    /// reused, so that an append allocates nothing.
    static PROPS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a new stream consumer asked for.
pub struct StreamConsumerSpec {
    pub id: u64,
    pub channel: u16,
    pub tag: String,
    pub tx: UnboundedSender<ClientEvent>,
    pub prefetch: u16,
    pub arguments: FieldTable,
}

/// One stream queue's log, consumers and offset tracking.
pub struct StreamQueue {
    log: Mutex<StreamLog>,
    /// Woken on every append while any reader runs, so tailing readers never poll.
    appended: Notify,
    /// Reader tasks running. Raised under the log's lock before a reader's first read, so that
    /// an append either comes before that read or sees the reader and wakes it (lowered
    /// without the lock: a stale count only costs a wake-up).
    readers: AtomicUsize,
    consumers: Mutex<HashMap<u64, Arc<StreamConsumer>>>,
    /// Tracking names of the last [`RETIRED`] tracked consumers removed: acks for their
    /// deliveries may still come (cancel, finish the work in hand, ack, close) and still count.
    retired: Mutex<VecDeque<(u64, String)>>,
    tracking: Tracking,
    dirty: AtomicBool,
    /// Which appends a failed sync may have lost.
    guard: SyncGuard,
    commit: GroupCommit<ConfirmWaiter>,
    dir: PathBuf,
    /// Publisher confirms wait for an fsync (else they go out once appended).
    pub fsync_confirms: bool,
}

impl std::fmt::Debug for StreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamQueue")
            .field("dir", &self.dir)
            .finish()
    }
}

impl Syncable for StreamQueue {
    fn prepare_sync(&self) -> io::Result<Vec<File>> {
        let mut log = self.log.lock();
        self.dirty.store(false, Ordering::Relaxed);
        self.guard.prepared();
        log.prepare_sync()
    }

    fn sync_failed(&self) {
        self.guard.failed();
        self.log.lock().sync_failed();
    }
}

/// Stream statistics for the stats endpoint.
#[derive(Debug, Clone, Copy)]
pub struct StreamStats {
    pub first_offset: u64,
    pub next_offset: u64,
    pub segments: usize,
    pub bytes: u64,
}

impl StreamQueue {
    /// Open (or create) the stream in `dir` and start its retention timer.
    pub fn open(
        dir: &Path,
        cfg: StreamConfig,
        commit: GroupCommit<ConfirmWaiter>,
        fsync_confirms: bool,
    ) -> io::Result<Arc<StreamQueue>> {
        std::fs::create_dir_all(dir)?;
        let log = StreamLog::open(dir, cfg)?;
        let s = Arc::new(StreamQueue {
            log: Mutex::new(log),
            appended: Notify::new(),
            readers: AtomicUsize::new(0),
            consumers: Mutex::new(HashMap::new()),
            retired: Mutex::new(VecDeque::new()),
            tracking: Tracking::load(dir),
            dirty: AtomicBool::new(false),
            guard: SyncGuard::default(),
            commit,
            dir: dir.to_path_buf(),
            fsync_confirms,
        });
        let weak = Arc::downgrade(&s);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(s) = weak.upgrade() else { return };
                    let r = s.log.lock().enforce_retention(now_ms());
                    if let Err(e) = r {
                        tracing::warn!("stream retention failed: {e}");
                    }
                }
            });
        }
        Ok(s)
    }

    pub fn stats(&self) -> StreamStats {
        let log = self.log.lock();
        StreamStats {
            first_offset: log.first_offset(),
            next_offset: log.next_offset(),
            segments: log.segment_count(),
            bytes: log.size_bytes(),
        }
    }

    /// Messages in the log (declare-ok's message_count).
    pub fn message_count(&self) -> u32 {
        let s = self.stats();
        u32::try_from(s.next_offset - s.first_offset).unwrap_or(u32::MAX)
    }

    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.consumers.lock().len()).unwrap_or(u32::MAX)
    }

    /// Append a message; the caller registers a confirm waiter if it needs one.
    /// Returns the ticket a confirm waiter for this append needs.
    pub fn publish(self: &Arc<Self>, msg: &Message) -> io::Result<SyncTicket> {
        let filter = filter_value(&msg.properties);
        let mut log = self.log.lock();
        let offset = i64::try_from(log.next_offset()).unwrap_or(i64::MAX);
        let before = log.segment_count();
        PROPS.with_borrow_mut(|props| {
            props.clear();
            insert_header_into(
                &msg.properties,
                "x-stream-offset",
                &long_value(offset),
                props,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            log.append(
                now_ms(),
                filter.as_deref(),
                &msg.exchange,
                &msg.routing_key,
                props,
                &msg.body,
            )
        })?;
        let ticket = self.guard.appended();
        if log.segment_count() != before {
            // The message is stored whatever happens here: a failure must not fail its publish
            // (a retry would duplicate it); the retention timer tries again.
            if let Err(e) = log.enforce_retention(now_ms()) {
                tracing::warn!("stream retention failed: {e}");
            }
        }
        let wake = self.readers.load(Ordering::Relaxed) > 0;
        drop(log);
        if !self.dirty.swap(true, Ordering::Relaxed) {
            self.commit.sync(self.clone(), None);
        }
        if wake {
            self.appended.notify_waiters();
        }
        Ok(ticket)
    }

    /// Tell `w` once everything appended so far is on disk.
    pub fn sync_then(self: &Arc<Self>, w: ConfirmWaiter) {
        self.dirty.store(true, Ordering::Relaxed);
        self.commit.sync(self.clone(), Some(w));
    }

    /// Attach a consumer: resolve where it starts and start its reader.
    pub fn add_consumer(
        self: &Arc<Self>,
        queue: Arc<Queue>,
        spec: StreamConsumerSpec,
    ) -> AmqpResult<()> {
        let bad = |e: String| AmqpError::precondition_failed(e);
        let tracking = args::tracking_name(&spec.arguments, &spec.tag).map_err(bad)?;
        let explicit = spec.arguments.inner().contains_key("x-stream-offset");
        let start = args::start(&spec.arguments).map_err(bad)?;
        let filters = args::filters(&spec.arguments).map_err(bad)?;
        let next = match tracking.as_deref().and_then(|n| self.tracking.resume_at(n)) {
            Some(o) if !explicit => o,
            _ => self.resolve(&start),
        };
        let c = Arc::new(StreamConsumer::new(
            spec.id,
            spec.channel,
            spec.tx,
            u32::from(spec.prefetch),
            filters,
            args::match_unfiltered(&spec.arguments),
            tracking,
        ));
        self.consumers.lock().insert(spec.id, c.clone());
        {
            let _log = self.log.lock();
            self.readers.fetch_add(1, Ordering::Relaxed);
        }
        let reader = Reader(self.clone());
        tokio::spawn(async move {
            let _counted = reader;
            consumer::run(_counted.0.clone(), queue, c, next).await;
        });
        Ok(())
    }

    /// The offset a start specification means now.
    fn resolve(&self, start: &args::Start) -> u64 {
        let log = self.log.lock();
        let (first, next) = (log.first_offset(), log.next_offset());
        match *start {
            args::Start::First => first,
            args::Start::Last => log.last_chunk_offset(),
            args::Start::Next => next,
            args::Start::Offset(n) if n < 0 => next.saturating_sub(n.unsigned_abs()).max(first),
            args::Start::Offset(n) => (n as u64).clamp(first, next),
            args::Start::Timestamp(ms) => log.offset_at(ms),
            args::Start::Ago(d) => {
                log.offset_at(now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            }
        }
    }

    pub fn remove_consumer(&self, id: u64) {
        let Some(c) = self.consumers.lock().remove(&id) else {
            return;
        };
        c.cancel();
        if let Some(name) = &c.tracking {
            let mut r = self.retired.lock();
            if r.len() >= RETIRED {
                r.pop_front();
            }
            r.push_back((id, name.clone()));
        }
    }

    /// `n` deliveries to consumer `id` were acked (up to `max_offset`) or given back: credit
    /// returns, and a tracked consumer's offset moves on.
    pub fn settle(&self, id: u64, n: u32, acked: Option<&[u64]>, max_offset: Option<u64>) {
        let c = self.consumers.lock().get(&id).cloned();
        if let Some(c) = c {
            if let (Some(name), Some(acked), Some(max)) = (c.tracking.as_deref(), acked, max_offset)
            {
                let mut inflight = c.inflight.lock();
                for o in acked {
                    inflight.remove(o);
                }
                // Everything below the oldest unacked delivery is done.
                let safe = match inflight.first() {
                    Some(&low) => low.checked_sub(1),
                    None => Some(max),
                };
                drop(inflight);
                if let Some(o) = safe {
                    self.tracking.acked(name, o);
                }
            }
            c.add_credit(n);
        } else if let Some(o) = max_offset {
            // Acks after basic.cancel still move a tracked consumer's offset.
            let r = self.retired.lock();
            let name = r
                .iter()
                .rev()
                .find(|(i, _)| *i == id)
                .map(|(_, n)| n.clone());
            drop(r);
            if let Some(name) = name {
                self.tracking.acked(&name, o);
            }
        }
    }

    /// The queue is deleted: stop every reader and remove the files. Returns the consumers to
    /// notify with basic.cancel.
    pub fn delete(&self) -> Vec<(UnboundedSender<ClientEvent>, u16, u64)> {
        let cs: Vec<_> = self.consumers.lock().drain().map(|(_, c)| c).collect();
        for c in &cs {
            c.cancel();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("could not remove stream {}: {e}", self.dir.display());
        }
        cs.iter().map(|c| (c.tx.clone(), c.channel, c.id)).collect()
    }
}

/// The `x-stream-filter-value` header, if the message has one.
fn filter_value(props: &[u8]) -> Option<Vec<u8>> {
    let h = properties::headers(props).ok()??;
    match h.inner().get("x-stream-filter-value")? {
        AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
        _ => None,
    }
}
