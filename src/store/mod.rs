//! Message store: an append-only, segmented log of one queue's records.
//!
//! The store knows nothing about AMQP. A queue appends `Publish` records (a message with its
//! queue sequence number), `Acks` records ("these seqs are settled") and `Delivered` records
//! ("these seqs went out to a consumer", so that a restart can set `redelivered=true`), and
//! later `release`s the location of every publish it no longer needs. Whole segments are
//! deleted once they and every older segment hold nothing but released records, so the disk
//! is reclaimed by unlinking files, never by rewriting them.
//!
//! # Format
//! A log is a directory of segment files named by a zero-padded segment number
//! (`00000000000000000001.seg`), numbers increasing. A segment is a sequence of records:
//!
//! ```text
//! u32 len | u32 crc32(kind+payload) | u8 kind | payload          (integers little-endian)
//! Publish   (1): u64 seq, u8 flags, [u64 expires], [u8 lane], u8 len + exchange,
//!                u8 len + routing key, u32 len + properties, u32 len + body
//!                flags: bit0 persistent, bit1 `expires` follows, bit2 `lane` follows,
//!                bit3 dead-lettered, bit4 `BCC` kept (see [`RecordMeta`]); a record without bits 1-4 is
//!                byte-identical to the first version of the format
//! Acks      (2): u32 count, count x u64 seq
//! Delivered (3): u32 count, count x u64 seq
//! ```
//!
//! `len` covers kind+payload and is at most [`MAX_RECORD_LEN`]. A segment is rotated before a
//! record that would take it past `segment_size`, so a record larger than that sits alone.
//!
//! # Durability contract
//! `append*` only buffer; `flush` hands bytes to the OS; `sync` makes everything appended so far
//! durable (so a publisher confirm may be sent for every publish appended before a successful
//! `sync`). After a failed `sync`, nothing appended since the last successful one is known to be
//! durable (the caller nacks those); buffered bytes are kept and retried, and the segment being
//! written is retired so no new record lands behind pages the kernel may have dropped.
//! Deleting a segment is not synced on its own; if the unlink is lost in a crash the segment
//! comes back and its records are replayed again, which the caller's ack records settle.
//!
//! Replay scans every segment: a torn or corrupt tail of the newest non-empty segment is
//! truncated (warning), a corrupt region anywhere else is skipped by scanning forward for the
//! next record whose length, structure and checksum validate (error log naming the log, the
//! segment and the offset; counted once per region in `corrupt_records`).

use bytes::Bytes;
use std::collections::VecDeque;
use std::io;

mod codec;
pub mod commit;
pub mod definitions;
mod memory;
mod segment;
pub mod stream;
#[cfg(test)]
mod tests;

pub use codec::MAX_RECORD_LEN;
pub use memory::MemoryLog;
pub use segment::FileLog;

/// One message as the store keeps it; the header frame's properties stay pre-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub persistent: bool,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: Bytes,
    pub body: Bytes,
    pub meta: RecordMeta,
}

/// What the broker keeps with a publish record besides the message. The store only carries
/// these values; a default `RecordMeta` adds nothing to the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta {
    /// Absolute expiry in unix milliseconds (0: never), so a TTL survives a restart.
    pub expires: u64,
    /// The message's lane in a priority queue (present when `Some`).
    pub lane: Option<u8>,
    /// The broker dead-lettered this message and wrote its death headers.
    pub dead_lettered: bool,
    /// The properties keep a `BCC` header that consumers must not see.
    pub bcc: bool,
}

/// Where a publish record lives: segment number, byte offset, whole record length (header included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub segment: u64,
    pub offset: u32,
    pub len: u32,
}

/// One record found by [`MessageLog::replay`], in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovered {
    Publish {
        loc: Location,
        seq: u64,
        persistent: bool,
        meta: RecordMeta,
    },
    Acks(Vec<u64>),
    Delivered(Vec<u64>),
}

/// What replay found: bytes cut off the newest segment's tail, corrupt regions skipped elsewhere,
/// segments scanned and valid records replayed.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub truncated_bytes: u64,
    pub corrupt_records: u64,
    pub segments: usize,
    pub records: u64,
}

/// One queue's log. Implemented by [`FileLog`] and [`MemoryLog`] with the same semantics.
pub trait MessageLog: Send {
    /// Appends a publish record to the write buffer (not written, not synced).
    fn append(&mut self, msg: &StoredMessage) -> io::Result<Location>;
    /// Appends "these seqs are settled" records (no-op for an empty slice).
    fn append_acks(&mut self, seqs: &[u64]) -> io::Result<()>;
    /// Appends "these seqs were delivered" records (no-op for an empty slice).
    fn append_delivered(&mut self, seqs: &[u64]) -> io::Result<()>;
    /// Hands buffered bytes to the OS, without fsync.
    fn flush(&mut self) -> io::Result<()>;
    /// Flushes, then fdatasyncs every segment written since the last sync and the directory
    /// if segments were created or deleted since.
    fn sync(&mut self) -> io::Result<()>;
    /// Reads a publish record back, whether it is still buffered or already on disk.
    fn read(&mut self, loc: Location) -> io::Result<StoredMessage>;
    /// The publish at `loc` is no longer needed. Deletes head segments (oldest first, never
    /// the one being written) whose publishes are all released. When every publish of the log
    /// is released and the segment being written has grown past a threshold, that segment is
    /// retired too, so a drained queue's disk use returns to (near) zero.
    fn release(&mut self, loc: Location);
    /// Scans the whole log and reports each valid record in order; call it once after open.
    /// Afterwards every replayed publish counts as live until released. Segments that existed
    /// at open are never deleted before a replay has counted their publishes.
    fn replay(&mut self, f: &mut dyn FnMut(Recovered)) -> io::Result<RecoveryReport>;
    /// Drops everything (purge, queue delete) durably and starts empty.
    fn clear(&mut self) -> io::Result<()>;
    /// Bytes held by all segments, buffered ones included.
    fn disk_bytes(&self) -> u64;
    /// Number of segments (files) currently held.
    fn segment_count(&self) -> usize;
}

/// Per-segment bookkeeping shared by both implementations: size and live publishes.
#[derive(Debug)]
pub(crate) struct SegInfo {
    pub id: u64,
    pub bytes: u64,
    live: u64,
    /// Found at open and not yet replayed: its live count is unknown, so it is never deleted.
    pinned: bool,
}

/// The segments of a log, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    segs: VecDeque<SegInfo>,
    live: u64,
}

impl Ledger {
    pub fn push(&mut self, id: u64, bytes: u64, pinned: bool) {
        self.segs.push_back(SegInfo {
            id,
            bytes,
            live: 0,
            pinned,
        });
    }
    fn find(&mut self, id: u64) -> Option<&mut SegInfo> {
        let i = self.segs.binary_search_by_key(&id, |s| s.id).ok()?;
        self.segs.get_mut(i)
    }
    pub fn contains(&self, id: u64) -> bool {
        self.segs.binary_search_by_key(&id, |s| s.id).is_ok()
    }
    /// Accounts a record appended to the newest segment.
    pub fn record(&mut self, len: u32, publish: bool) {
        if let Some(s) = self.segs.back_mut() {
            s.bytes += u64::from(len);
            s.live += u64::from(publish);
            self.live += u64::from(publish);
        }
    }
    /// Returns false (and changes nothing) for unknown, pinned or already fully released segments.
    pub fn release(&mut self, id: u64) -> bool {
        match self.find(id) {
            Some(s) if !s.pinned && s.live > 0 => {
                s.live -= 1;
                self.live -= 1;
                true
            }
            _ => false,
        }
    }
    pub fn set_scanned(&mut self, id: u64, bytes: u64, publishes: u64) {
        if let Some(s) = self.find(id) {
            let old = if s.pinned { 0 } else { s.live };
            (s.bytes, s.live, s.pinned) = (bytes, publishes, false);
            self.live = self.live - old + publishes;
        }
    }
    pub fn all_released(&self) -> bool {
        self.live == 0 && self.segs.iter().all(|s| !s.pinned)
    }
    /// Pops the oldest segment if it is fully released and not `current`.
    pub fn pop_deletable(&mut self, current: Option<u64>) -> Option<u64> {
        let s = self.segs.front()?;
        if s.pinned || s.live > 0 || Some(s.id) == current {
            return None;
        }
        self.segs.pop_front().map(|s| s.id)
    }
    pub fn pop_front(&mut self) -> Option<u64> {
        let s = self.segs.pop_front()?;
        self.live -= if s.pinned { 0 } else { s.live };
        Some(s.id)
    }
    pub fn bytes(&self, id: u64) -> u64 {
        let i = self.segs.binary_search_by_key(&id, |s| s.id);
        i.map_or(0, |i| self.segs[i].bytes)
    }
    pub fn ids(&self) -> Vec<u64> {
        self.segs.iter().map(|s| s.id).collect()
    }
    pub fn total_bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.bytes).sum()
    }
    pub fn len(&self) -> usize {
        self.segs.len()
    }
}

/// Size from which a fully released segment being written is retired rather than kept: big
/// enough that a queue hovering around empty does not create a file per message.
pub(crate) fn retire_threshold(segment_size: u64) -> u64 {
    (segment_size / 2).clamp(1, 1 << 20)
}
