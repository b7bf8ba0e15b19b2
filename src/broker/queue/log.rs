//! A durable queue's message log as the queue uses it: appends under the queue's lock, settles and
//! delivery marks, the bookkeeping group commit needs, and rebuilding the queue at start-up.

use crate::broker::message::{Message, QueuedMessage};
use crate::broker::persist::{ConfirmWaiter, SyncGuard, SyncTicket};
use crate::broker::queue::paging::Paged;
use crate::store::commit::{GroupCommit, Syncable};
use crate::store::{FileLog, Location, MessageLog, RecordMeta, Recovered, StoredMessage};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A durable queue's message log. Lock order: the queue's state lock, then this log's lock.
pub struct QueueLog {
    log: Mutex<FileLog>,
    /// Appended since the commit thread last flushed it: the first append after a flush asks for
    /// a sync, so messages published without confirms are made durable at group-commit pace too.
    dirty: AtomicBool,
    /// Which appends a failed sync may have lost.
    guard: SyncGuard,
    commit: GroupCommit<ConfirmWaiter>,
}

impl std::fmt::Debug for QueueLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueLog")
    }
}

impl Syncable for QueueLog {
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

/// What replay rebuilt for a queue.
pub struct Restored {
    /// The oldest messages, read back up to the memory limit.
    pub messages: Vec<QueuedMessage>,
    /// The rest, left on disk, each with its lane (priority queues).
    pub paged: Vec<(u8, Paged)>,
    /// Some of `paged` have an expiry.
    pub expiring: bool,
    pub next_seq: u64,
}

impl QueueLog {
    pub fn open(
        dir: &Path,
        segment_size: u64,
        commit: GroupCommit<ConfirmWaiter>,
    ) -> io::Result<Arc<QueueLog>> {
        Ok(Arc::new(QueueLog {
            log: Mutex::new(FileLog::open(dir, segment_size)?),
            dirty: AtomicBool::new(false),
            guard: SyncGuard::default(),
            commit,
        }))
    }

    /// Ask the commit thread for a sync (no waiter) unless one is already due.
    fn mark_dirty(self: &Arc<Self>) {
        if !self.dirty.swap(true, Ordering::Relaxed) {
            self.commit.sync(self.clone(), None);
        }
    }

    /// Register a confirm waiter for everything appended so far.
    pub fn sync_then(self: &Arc<Self>, w: ConfirmWaiter) {
        self.dirty.store(true, Ordering::Relaxed);
        self.commit.sync(self.clone(), Some(w));
    }

    /// Append a persistent message (buffered). The caller holds the queue's lock.
    pub fn append(
        self: &Arc<Self>,
        seq: u64,
        msg: &Message,
        persistent: bool,
        meta: RecordMeta,
    ) -> io::Result<(Location, SyncTicket)> {
        let rec = StoredMessage {
            seq,
            persistent,
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
            properties: msg.properties.clone(),
            body: msg.body.clone(),
            meta,
        };
        let mut log = self.log.lock();
        let loc = log.append(&rec)?;
        let ticket = self.guard.appended();
        drop(log);
        self.mark_dirty();
        Ok((loc, ticket))
    }

    /// Record that these messages are settled and let their records go.
    pub fn settle(self: &Arc<Self>, seqs: &[u64], locs: &[Location]) {
        if seqs.is_empty() {
            return;
        }
        let mut log = self.log.lock();
        if let Err(e) = log.append_acks(seqs) {
            // The message is gone from the queue either way; at worst it comes back once after a
            // crash, which at-least-once delivery allows.
            tracing::error!("could not record acks: {e}");
        }
        for l in locs {
            log.release(*l);
        }
        drop(log);
        self.mark_dirty();
    }

    /// Let records go without writing anything (paged-out transient copies read back in).
    pub fn release(&self, locs: &[Location]) {
        if !locs.is_empty() {
            let mut log = self.log.lock();
            for l in locs {
                log.release(*l);
            }
        }
    }

    /// Read a paged-out message back.
    pub fn read(&self, loc: Location) -> io::Result<StoredMessage> {
        self.log.lock().read(loc)
    }

    /// Record first deliveries, so a restart marks them redelivered. Flushed at group-commit
    /// pace like acks: left in the buffer, a kill -9 in a quiet moment would lose them.
    pub fn delivered(self: &Arc<Self>, seqs: &[u64]) {
        if !seqs.is_empty() {
            if let Err(e) = self.log.lock().append_delivered(seqs) {
                tracing::warn!("could not record deliveries: {e}");
            }
            self.mark_dirty();
        }
    }

    /// Flush and fsync now, on the caller's thread: a purge's ack records must be durable before
    /// its purge-ok (as `clear` is), not only at the next group commit.
    pub fn sync_now(&self) {
        if let Err(e) = self.log.lock().sync() {
            tracing::error!("could not sync a queue log: {e}");
        }
    }

    /// Drop every record (purge with nothing unacked).
    pub fn clear(&self) {
        if let Err(e) = self.log.lock().clear() {
            tracing::error!("could not clear a queue log: {e}");
        }
    }

    /// Delete the log's files (queue deleted).
    pub fn destroy(&self) {
        let mut log = self.log.lock();
        if let Err(e) = log.clear() {
            tracing::error!("could not delete a queue log: {e}");
        }
        let _ = std::fs::remove_dir(log.dir());
    }

    pub fn disk_bytes(&self) -> u64 {
        self.log.lock().disk_bytes()
    }

    /// Rebuild the queue's messages from its log: persistent publishes not acked, in sequence
    /// order, marked redelivered when a delivery was recorded. Everything else is released.
    /// With `count_returns` (a delivery-limited queue, which records every delivery) each
    /// recorded delivery counts as a return, as a quorum queue counts the deliveries its
    /// consumers never settled: the delivery count survives a restart.
    pub fn restore(
        &self,
        queue: &str,
        mem_limit: u64,
        count_returns: bool,
    ) -> io::Result<Restored> {
        let mut log = self.log.lock();
        let mut publishes: BTreeMap<u64, (Location, RecordMeta)> = BTreeMap::new();
        let mut dropped: Vec<Location> = Vec::new();
        let mut acked: HashSet<u64> = HashSet::new();
        let mut delivered: HashMap<u64, u32> = HashMap::new();
        let mut max_seq = 0u64;
        let report = log.replay(&mut |r| match r {
            Recovered::Publish {
                loc,
                seq,
                persistent,
                meta,
            } => {
                max_seq = max_seq.max(seq + 1);
                if !persistent {
                    dropped.push(loc);
                } else if let Some((old, _)) = publishes.insert(seq, (loc, meta)) {
                    // The same message written twice (re-appended by a compaction): keep the last.
                    dropped.push(old);
                }
            }
            Recovered::Acks(s) => acked.extend(s),
            Recovered::Delivered(s) => {
                for seq in s {
                    *delivered.entry(seq).or_default() += 1;
                }
            }
        })?;
        if report.truncated_bytes > 0 || report.corrupt_records > 0 {
            tracing::warn!(
                queue,
                truncated = report.truncated_bytes,
                corrupt = report.corrupt_records,
                "queue log recovered with damage"
            );
        }
        let mut messages = Vec::new();
        let mut paged = Vec::new();
        let mut expiring = false;
        let mut mem = 0u64;
        for (seq, (loc, meta)) in publishes {
            if acked.contains(&seq) {
                dropped.push(loc);
                continue;
            }
            let marks = delivered.get(&seq).copied().unwrap_or(0);
            let returns = if count_returns { marks } else { 0 };
            // Past the memory limit, leave the rest on disk (read back as consumers get there);
            // this also keeps start-up time independent of the backlog's size.
            if mem > mem_limit || !paged.is_empty() {
                expiring |= meta.expires != 0;
                let p = Paged {
                    seq,
                    loc,
                    persistent: true,
                    redelivered: marks > 0,
                    returns: u16::try_from(returns).unwrap_or(u16::MAX),
                    size: loc.len,
                };
                paged.push((meta.lane.unwrap_or(0), p));
                continue;
            }
            mem += u64::from(loc.len) + 192;
            match log.read(loc) {
                Ok(m) => messages.push(QueuedMessage {
                    seq,
                    redelivered: marks > 0,
                    loc: Some(loc),
                    msg: Message {
                        exchange: m.exchange,
                        routing_key: m.routing_key,
                        persistent: Message::persistent_in(&m.properties),
                        properties: m.properties,
                        body: m.body,
                        dead_lettered: m.meta.dead_lettered,
                        bcc: m.meta.bcc,
                    },
                    expires: m.meta.expires,
                    returns,
                }),
                Err(e) => {
                    tracing::error!(queue, seq, "could not read a recovered message: {e}");
                    dropped.push(loc);
                }
            }
        }
        for m in messages.iter_mut().filter(|m| m.returns > 0) {
            super::limits::show_delivery_count(m);
        }
        for l in dropped {
            log.release(l);
        }
        Ok(Restored {
            messages,
            paged,
            expiring,
            next_seq: max_seq,
        })
    }
}
