//! Stream log: an append-only, offset-addressed log that is read, never consumed.
//!
//! Records get offsets 0, 1, 2, … over the stream's life. Appends are batched into chunks
//! (closed on [`StreamLog::flush`] or once ~64 KiB of records accumulated); chunks go into
//! segment files named by their first offset, each with a sparse index of one entry per chunk.
//! Retention drops whole segments, oldest first, never the one being written. The store knows
//! nothing of AMQP; `format.rs` and `index.rs` describe the on-disk layout.
//!
//! # Durability contract
//! `append` only buffers (in the open chunk); `flush` closes the open chunk and hands every
//! buffered chunk and index entry to the OS; `sync` does that and fdatasyncs every segment and
//! index written since, and the directory if segments were created or deleted, so everything
//! appended before a successful `sync` survives a crash. After a failed sync the segment being
//! written is retired (the kernel may have dropped its dirty pages), so later chunks go to a
//! new file. For group commit, `prepare_sync` does the flush and returns the files to
//! fdatasync outside the caller's lock (`sync_failed` if that fails), as `FileLog` does.
//! Reads include records not yet flushed: a reader may see records that a crash then loses,
//! after which their offsets are reused. A caller that must not expose unsynced records caps
//! `max_records` at (offset it last synced up to − `from`).
//!
//! # Recovery
//! [`StreamLog::open`] lists the segments, trusts each index up to its last entry that points at a
//! valid chunk, scans the segment forward from there to add what the index lacks (index lost or
//! lagging after a crash), and truncates (with a warning) a torn or corrupt tail of the newest
//! segment. A sealed segment's bad tail is logged and left alone; its records after it are lost.
//! Files that are not `{offset:020}.seg` are ignored. Only the newest segment's last chunks are
//! checksummed at open; a chunk that fails its checksum when read later is skipped (error log).
//!
//! # Reading
//! [`StreamLog::read`] finds the segment by binary search over first offsets, the chunk by
//! binary search over the index file (positional reads, so indexes are never loaded), then
//! walks the chunk's records. To spare sequential readers that search, the log remembers where
//! its last few reads stopped (see `reader.rs`): a `read` whose `from` is a `next` it returned
//! recently continues at that byte position, and recently read chunks are kept decoded, so a
//! reader taking a few records per call does not re-read its chunk each time.

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod format;
mod index;
mod reader;
mod recover;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_recovery;
mod write;

use index::IndexEntry;

/// One record as read back. Fields are slices of the chunk they were read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub filter: Option<Bytes>,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: Bytes,
    pub body: Bytes,
}

/// Segment size and retention limits. `max_bytes` counts segment bytes (chunks closed,
/// written or not), not indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub max_segment_size: u64,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

/// RabbitMQ's default `x-stream-max-segment-size-bytes`.
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 500_000_000;

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
            max_bytes: None,
            max_age: None,
        }
    }
}

/// A reader's filter: gets a record's filter value, says whether to deliver it.
/// (`Option<&FilterFn>` is `Option<&dyn Fn(Option<&[u8]>) -> bool>`, borrowing closures.)
pub type FilterFn<'a> = dyn Fn(Option<&[u8]>) -> bool + 'a;

/// What [`StreamLog::read`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    pub records: Vec<StreamRecord>,
    /// Offset to pass to the next `read`.
    pub next: u64,
    /// `from` was below the first offset (retention dropped it); reading started at the first.
    pub skipped_to_first: bool,
}

/// A chunk is closed once its records reach this many bytes, bounding what a read of one
/// record costs while keeping index entries few.
const CHUNK_TARGET: usize = 64 * 1024;

/// A segment as the log keeps it in memory: a few numbers, never its index.
#[derive(Clone, Debug)]
struct Seg {
    first: u64,
    /// Offset just past its last chunk (`first` if it has none).
    next: u64,
    /// Bytes of its chunks, buffered ones included.
    size: u64,
    chunks: u64,
    /// Index entry of its last chunk.
    last: Option<IndexEntry>,
    /// Newest record timestamp, for age retention.
    max_ts: i64,
}

/// The newest segment, which chunks are appended to.
struct Writer {
    first: u64,
    seg: File,
    idx: File,
    /// Segment bytes handed to the OS; `buf` continues from here.
    flushed: u64,
    /// Index entries handed to the OS; `idx_buf` continues from here.
    idx_flushed: u64,
    buf: Vec<u8>,
    idx_buf: Vec<IndexEntry>,
    /// Written since its last fdatasync.
    dirty: bool,
    /// A sync failed; the next chunk goes to a new segment.
    retire: bool,
}

/// The chunk being filled by appends.
struct OpenChunk {
    first: u64,
    count: u32,
    ts: i64,
    max_ts: i64,
    data: Vec<u8>,
}

/// Read handles of a sealed segment.
struct SegFiles {
    seg: File,
    idx: File,
}

/// Sealed segments whose handles are kept open; readers mostly sit near the head or the tail.
const MAX_HANDLES: usize = 16;

/// One stream's log in one directory. See the module docs.
pub struct StreamLog {
    dir: PathBuf,
    cfg: StreamConfig,
    chunk_target: usize,
    segs: VecDeque<Seg>,
    /// Some exactly when `segs` is not empty; writes to `segs.back()`.
    writer: Option<Writer>,
    open: Option<OpenChunk>,
    next: u64,
    /// Timestamp of the newest chunk; chunk timestamps never go below it, so the index stays
    /// sorted by time even if the caller's clock steps back.
    last_chunk_ts: i64,
    /// Sealed segment and index files written since the last sync, for its fdatasync.
    unsynced: Vec<(u64, File, File)>,
    dir_dirty: bool,
    handles: HashMap<u64, SegFiles>,
    cache: reader::Cache,
}

impl StreamLog {
    /// Opens (creating it if needed) the stream in `dir` and recovers it; see the module docs.
    pub fn open(dir: &Path, cfg: StreamConfig) -> io::Result<StreamLog> {
        recover::open(dir, cfg)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &StreamConfig {
        &self.cfg
    }

    /// Changes limits (a policy update); takes effect at the next chunk and retention run.
    pub fn set_config(&mut self, cfg: StreamConfig) {
        self.cfg = cfg;
    }

    /// The oldest readable offset; equals `next_offset` when the stream holds nothing.
    pub fn first_offset(&self) -> u64 {
        let open = self.open.as_ref().map(|o| o.first);
        self.segs
            .front()
            .map(|s| s.first)
            .or(open)
            .unwrap_or(self.next)
    }

    /// The offset the next append gets.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// First offset of the newest chunk, the open one included ("last" for a consumer);
    /// `next_offset` when the stream holds nothing.
    pub fn last_chunk_offset(&self) -> u64 {
        if let Some(o) = &self.open {
            return o.first;
        }
        let last = self.segs.iter().rev().find_map(|s| s.last);
        last.map_or(self.next, |e| e.offset)
    }

    pub fn segment_count(&self) -> usize {
        self.segs.len()
    }

    /// Bytes of all segments, chunks buffered but not yet written included.
    pub fn size_bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.size).sum()
    }

    /// Drops whole segments, oldest first and never the newest, while the stream is larger
    /// than `max_bytes` or the oldest segment's newest record is older than `max_age` at
    /// `now_ms`. Returns how many were dropped. Unlinks are synced by the next `sync`.
    pub fn enforce_retention(&mut self, now_ms: i64) -> io::Result<usize> {
        let cutoff = self.cfg.max_age.map(|age| {
            let ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            now_ms.saturating_sub(ms)
        });
        let mut dropped = 0;
        while self.segs.len() > 1 {
            let oldest = &self.segs[0];
            let too_big = self.cfg.max_bytes.is_some_and(|m| self.size_bytes() > m);
            let too_old = cutoff.is_some_and(|c| oldest.chunks > 0 && oldest.max_ts < c);
            // An empty sealed segment (left by a crash) holds nothing worth keeping.
            if !(too_big || too_old || oldest.chunks == 0) {
                break;
            }
            let first = oldest.first;
            self.handles.remove(&first);
            self.unsynced.retain(|(f, _, _)| *f != first);
            self.cache.forget_segment(first);
            for path in [
                index::seg_path(&self.dir, first),
                index::idx_path(&self.dir, first),
            ] {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            self.segs.pop_front();
            self.dir_dirty = true;
            dropped += 1;
        }
        if dropped > 0 {
            tracing::debug!(dir = %self.dir.display(), dropped, first = self.first_offset(), "stream retention");
        }
        Ok(dropped)
    }

    /// Index of the segment holding `offset` (the last one starting at or before it; 0 if
    /// `offset` is below every segment). None if there are no segments.
    fn seg_for(&self, offset: u64) -> Option<usize> {
        let n = self.segs.partition_point(|s| s.first <= offset);
        (!self.segs.is_empty()).then(|| n.saturating_sub(1))
    }

    /// Index entry `i` of segment `si`, buffered entries of the newest segment included.
    fn entry(&mut self, si: usize, i: u64) -> io::Result<IndexEntry> {
        let first = self.segs[si].first;
        match &self.writer {
            Some(w) if w.first == first && i >= w.idx_flushed => {
                let e = w.idx_buf.get((i - w.idx_flushed) as usize);
                e.copied()
                    .ok_or_else(|| io::Error::other("index entry out of range"))
            }
            Some(w) if w.first == first => index::read_entry(&w.idx, i),
            _ => index::read_entry(&self.files(first)?.idx, i),
        }
    }

    /// `buf.len()` bytes of segment `si` at `pos`, buffered bytes of the newest included.
    fn read_seg(&mut self, si: usize, pos: u64, buf: &mut [u8]) -> io::Result<()> {
        let first = self.segs[si].first;
        match &self.writer {
            Some(w) if w.first == first && pos >= w.flushed => {
                let at = (pos - w.flushed) as usize;
                let src = w.buf.get(at..at + buf.len());
                buf.copy_from_slice(
                    src.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?,
                );
                Ok(())
            }
            Some(w) if w.first == first => w.seg.read_exact_at(buf, pos),
            _ => self.files(first)?.seg.read_exact_at(buf, pos),
        }
    }

    /// Read handles of sealed segment `first`, opened on demand.
    fn files(&mut self, first: u64) -> io::Result<&SegFiles> {
        if self.handles.len() >= MAX_HANDLES && !self.handles.contains_key(&first) {
            self.handles.clear(); // reopening costs microseconds; no LRU needed
        }
        if !self.handles.contains_key(&first) {
            let seg = File::open(index::seg_path(&self.dir, first))?;
            let idx = File::open(index::idx_path(&self.dir, first))?;
            self.handles.insert(first, SegFiles { seg, idx });
        }
        self.handles
            .get(&first)
            .ok_or_else(|| io::Error::other("segment handle vanished"))
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "stream flush on close failed");
        }
    }
}
