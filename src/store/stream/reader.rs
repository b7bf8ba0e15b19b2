//! The read path: locating an offset, walking chunks, and the per-log cache that makes
//! sequential reads cheap.
//!
//! The cache is the "cursor" of the design, kept by the log rather than handed out: after each
//! `read` the log remembers the returned `next` together with where it lies (segment, chunk,
//! byte position in the chunk), for the last [`MAX_HINTS`] reads. A `read` from one of those
//! offsets resumes there without any search; any other offset is located by binary search.
//! Decoded chunks are also kept (the last [`MAX_CHUNKS`]), so many readers near the tail, or a
//! reader taking a few records per call, share one read and one checksum per chunk. Records are
//! slices of the cached chunk, so nothing is copied per record.

use super::format::{self, HEADER_LEN};
use super::index;
use super::{FilterFn, ReadBatch, StreamLog, StreamRecord};
use bytes::Bytes;
use std::collections::VecDeque;
use std::io;
use std::ops::Range;

/// Sequential readers whose position is remembered (consumers of one stream).
const MAX_HINTS: usize = 32;
/// Decoded chunks kept (~64 KiB each).
const MAX_CHUNKS: usize = 8;
/// Record bytes one `read` examines at most, so a filter that rejects nearly everything does
/// not scan the whole stream in one call; the caller continues while `next < next_offset()`.
const SCAN_LIMIT: usize = 8 << 20;

/// Where a reader is: in a closed chunk (segment first offset, chunk number) or the open one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Closed { seg: u64, chunk: u64 },
    Open,
}

#[derive(Clone, Copy, Debug)]
struct Cursor {
    place: Place,
    /// First offset of the chunk, to check a remembered cursor still means the same chunk.
    chunk_first: u64,
    /// Byte position of the record `offset` within the chunk's data.
    rec_pos: usize,
    offset: u64,
}

impl Cursor {
    /// Moves to the start of another chunk; its offsets are taken from its header on load.
    fn enter(&mut self, place: Place) {
        self.place = place;
        self.rec_pos = 0;
    }
}

#[derive(Clone, Debug)]
struct LoadedChunk {
    seg: u64,
    chunk: u64,
    first: u64,
    ts: i64,
    data: Bytes,
}

#[derive(Default)]
pub(super) struct Cache {
    /// (returned `next`, where it lies), most recent last.
    hints: VecDeque<(u64, Cursor)>,
    chunks: VecDeque<LoadedChunk>,
    /// Reads that had to search (no usable hint); tests check sequential readers do not.
    pub(super) searches: u64,
}

impl Cache {
    /// The open chunk just became chunk `chunk` of segment `seg`: repoint readers inside it.
    pub(super) fn chunk_closed(&mut self, first: u64, seg: u64, chunk: u64) {
        for (_, c) in &mut self.hints {
            if c.place == Place::Open && c.chunk_first == first {
                c.place = Place::Closed { seg, chunk };
            }
        }
    }

    pub(super) fn forget_segment(&mut self, seg: u64) {
        self.hints
            .retain(|(_, c)| !matches!(c.place, Place::Closed { seg: s, .. } if s == seg));
        self.chunks.retain(|c| c.seg != seg);
    }
}

/// Limits of one `read`.
struct Budget<'a> {
    max_records: usize,
    max_bytes: usize,
    bytes: usize,
    scanned: usize,
    filter: Option<&'a FilterFn<'a>>,
}

/// Reads records of one chunk's `data` from `cur` into `out`; true if a limit stopped it.
fn scan(
    data: &[u8],
    chunk_ts: i64,
    from: u64,
    cur: &mut Cursor,
    out: &mut Vec<StreamRecord>,
    b: &mut Budget,
    field: &dyn Fn(Range<usize>) -> Bytes,
) -> bool {
    while cur.rec_pos < data.len() {
        if out.len() >= b.max_records || b.scanned >= SCAN_LIMIT {
            return true;
        }
        let Some(l) = format::decode_record(data, cur.rec_pos) else {
            // Only a bug can get here: chunks are checksummed before they are decoded.
            tracing::error!(
                offset = cur.offset,
                "undecodable stream record; rest of chunk skipped"
            );
            cur.rec_pos = data.len();
            return false;
        };
        let offset = cur.offset;
        if offset >= from {
            let filter = l.filter.clone().map(|r| &data[r]);
            if b.filter.map_or(true, |f| f(filter)) {
                if !out.is_empty() && b.bytes + l.size() > b.max_bytes {
                    return true; // not consumed: the next read starts with it
                }
                b.bytes += l.size();
                let [ex, rk, props, body] = l.fields.clone().map(field);
                out.push(StreamRecord {
                    offset,
                    timestamp_ms: chunk_ts.wrapping_add(l.ts_delta),
                    filter: l.filter.clone().map(field),
                    exchange: ex,
                    routing_key: rk,
                    properties: props,
                    body,
                });
            }
            b.scanned += l.end - cur.rec_pos;
        }
        cur.rec_pos = l.end;
        cur.offset += 1;
    }
    false
}

impl StreamLog {
    /// Records with offset `>= from`, up to `max_records` and `max_bytes` of payload (at least
    /// one record if any is there), skipping (but passing) those `filter` rejects. If `from`
    /// is below the first offset, reading starts at the first and `skipped_to_first` says so.
    /// Unflushed records are included. Continue with the returned `next`; more may be there
    /// while `next < next_offset()`, even when no records came back (filtered out).
    pub fn read(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        filter: Option<&FilterFn>,
    ) -> io::Result<ReadBatch> {
        let first = self.first_offset();
        let skipped_to_first = from < first;
        let from = from.max(first);
        let mut batch = ReadBatch {
            records: Vec::new(),
            next: from,
            skipped_to_first,
        };
        if max_records == 0 || from >= self.next {
            return Ok(batch);
        }
        let hint = self.cache.hints.iter().rposition(|(n, _)| *n == from);
        let hint = hint
            .and_then(|i| self.cache.hints.remove(i))
            .map(|(_, c)| c);
        let mut cur = match hint {
            Some(c) if self.still_valid(&c)? => c,
            _ => self.locate(from)?,
        };
        let mut b = Budget {
            max_records,
            max_bytes,
            bytes: 0,
            scanned: 0,
            filter,
        };
        let out = &mut batch.records;
        let full = loop {
            match cur.place {
                Place::Open => {
                    let Some(o) = self.open.as_ref().filter(|o| o.first == cur.chunk_first) else {
                        break false;
                    };
                    let field = |r: Range<usize>| Bytes::copy_from_slice(&o.data[r]);
                    break scan(&o.data, o.ts, from, &mut cur, out, &mut b, &field);
                }
                Place::Closed { seg, chunk } => {
                    let Some(si) = self.seg_index(seg) else {
                        break false; // cannot happen: retention needs &mut self too
                    };
                    if chunk >= self.segs[si].chunks {
                        match (self.segs.get(si + 1), &self.open) {
                            (Some(s), _) => cur.enter(Place::Closed {
                                seg: s.first,
                                chunk: 0,
                            }),
                            (None, Some(o)) => {
                                cur.enter(Place::Open);
                                (cur.chunk_first, cur.offset) = (o.first, o.first);
                            }
                            (None, None) => break false,
                        }
                        continue;
                    }
                    let Some(c) = self.load_chunk(si, chunk)? else {
                        cur.enter(Place::Closed {
                            seg,
                            chunk: chunk + 1,
                        });
                        continue;
                    };
                    if cur.rec_pos == 0 {
                        (cur.chunk_first, cur.offset) = (c.first, c.first);
                    }
                    let field = |r: Range<usize>| c.data.slice(r);
                    if scan(&c.data, c.ts, from, &mut cur, out, &mut b, &field) {
                        break true;
                    }
                    cur.enter(Place::Closed {
                        seg,
                        chunk: chunk + 1,
                    });
                }
            }
        };
        // At the end, gaps left by lost records are behind us: continue from the stream's end.
        batch.next = if full {
            cur.offset
        } else {
            self.next.max(cur.offset)
        };
        if self.cache.hints.len() >= MAX_HINTS {
            self.cache.hints.pop_front();
        }
        self.cache.hints.push_back((batch.next, cur));
        Ok(batch)
    }

    /// Whether a remembered cursor still points into the chunk it was made in.
    fn still_valid(&mut self, c: &Cursor) -> io::Result<bool> {
        match c.place {
            Place::Open => Ok(self
                .open
                .as_ref()
                .is_some_and(|o| o.first == c.chunk_first && c.rec_pos <= o.data.len())),
            Place::Closed { seg, chunk } => {
                let Some(si) = self.seg_index(seg) else {
                    return Ok(false);
                };
                if c.rec_pos == 0 {
                    return Ok(true);
                }
                let loaded = match chunk < self.segs[si].chunks {
                    true => self.load_chunk(si, chunk)?,
                    false => None,
                };
                Ok(loaded.is_some_and(|l| l.first == c.chunk_first && c.rec_pos <= l.data.len()))
            }
        }
    }

    /// Position in `segs` of the segment starting at `first`.
    fn seg_index(&self, first: u64) -> Option<usize> {
        let i = self.segs.partition_point(|s| s.first < first);
        self.segs.get(i).filter(|s| s.first == first).map(|_| i)
    }

    /// A cursor at the chunk holding `from` (or the first chunk after it, across a gap).
    fn locate(&mut self, from: u64) -> io::Result<Cursor> {
        self.cache.searches += 1;
        let at = |place, offset| Cursor {
            place,
            chunk_first: offset,
            rec_pos: 0,
            offset,
        };
        if let Some(o) = self.open.as_ref().filter(|o| from >= o.first) {
            return Ok(at(Place::Open, o.first));
        }
        let Some(si) = self.seg_for(from) else {
            return Ok(at(Place::Open, self.next));
        };
        let (seg, n) = (self.segs[si].first, self.segs[si].chunks);
        let chunk = index::search_last_le(n, from, |e| e.offset, |i| self.entry(si, i))?;
        Ok(at(Place::Closed { seg, chunk }, seg))
    }

    /// Chunk `chunk` of segment `si`, read and checksummed, or from the cache; None (error
    /// logged) if it is corrupt, so readers skip it.
    fn load_chunk(&mut self, si: usize, chunk: u64) -> io::Result<Option<LoadedChunk>> {
        let seg = self.segs[si].first;
        let cached = self
            .cache
            .chunks
            .iter()
            .position(|c| c.seg == seg && c.chunk == chunk);
        if let Some(c) = cached.and_then(|i| self.cache.chunks.get(i)) {
            return Ok(Some(c.clone()));
        }
        let e = self.entry(si, chunk)?;
        let mut raw = [0; HEADER_LEN];
        self.read_seg(si, e.pos, &mut raw)?;
        let header = format::decode_header(&raw).filter(|h| h.first == e.offset);
        let mut data = vec![0; header.map_or(0, |h| h.data_len as usize)];
        if let Some(h) = &header {
            self.read_seg(si, e.pos + HEADER_LEN as u64, &mut data)?;
            if format::verify(h, &raw, &data) {
                let c = LoadedChunk {
                    seg,
                    chunk,
                    first: h.first,
                    ts: h.timestamp_ms,
                    data: data.into(),
                };
                if self.cache.chunks.len() >= MAX_CHUNKS {
                    self.cache.chunks.pop_front();
                }
                self.cache.chunks.push_back(c.clone());
                return Ok(Some(c));
            }
        }
        tracing::error!(dir = %self.dir.display(), segment = seg, chunk, offset = e.offset, "corrupt stream chunk skipped");
        Ok(None)
    }

    /// The first offset whose chunk timestamp is `>= timestamp_ms` (chunk timestamps are
    /// those of their first record, kept monotonic), clamped to `[first, next]`: `next` if
    /// every chunk is older. On an I/O error (logged) it errs early: the segment's first offset.
    pub fn offset_at(&self, timestamp_ms: i64) -> u64 {
        let (first, next) = (self.first_offset(), self.next);
        let Some(si) = self
            .segs
            .iter()
            .position(|s| s.last.is_some_and(|e| e.timestamp_ms >= timestamp_ms))
        else {
            let open = self.open.as_ref().filter(|o| o.ts >= timestamp_ms);
            return open.map_or(next, |o| o.first).clamp(first, next);
        };
        let seg = &self.segs[si];
        let found = (|| -> io::Result<u64> {
            let sealed = match &self.writer {
                Some(w) if w.first == seg.first => None,
                _ => Some(std::fs::File::open(index::idx_path(&self.dir, seg.first))?),
            };
            let get = |i: u64| match (&sealed, &self.writer) {
                (Some(f), _) => index::read_entry(f, i),
                (None, Some(w)) if i >= w.idx_flushed => {
                    let e = w.idx_buf.get((i - w.idx_flushed) as usize);
                    e.copied()
                        .ok_or_else(|| io::Error::other("index entry out of range"))
                }
                (None, Some(w)) => index::read_entry(&w.idx, i),
                (None, None) => Err(io::Error::other("no index")),
            };
            let i = index::search_first_ts(seg.chunks, timestamp_ms, get)?;
            Ok(get(i)?.offset)
        })();
        found
            .unwrap_or_else(|e| {
                tracing::warn!(dir = %self.dir.display(), segment = seg.first, error = %e, "stream index search failed");
                seg.first
            })
            .clamp(first, next)
    }
}
