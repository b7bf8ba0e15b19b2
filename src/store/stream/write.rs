//! The write path: appends into the open chunk, chunks into the newest segment, segment
//! rotation, flush and sync.
//!
//! A full chunk is closed at the start of the next append rather than at the end of the one
//! that filled it, so an append that returns an error has appended nothing: every fallible
//! step (rotation, writing a full buffer) happens before the record is encoded.

use super::format::{self, HEADER_LEN};
use super::index::{self, IndexEntry, ENTRY_LEN};
use super::{OpenChunk, Seg, StreamLog, Writer};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

/// Closed chunks are handed to the OS once this many bytes are buffered, without a flush.
const WRITE_BUF: usize = 1 << 20;

impl StreamLog {
    /// Appends one record to the open chunk and returns its offset. Not written until a flush
    /// (or until enough chunks are buffered), not durable until a sync; readable at once.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        filter: Option<&[u8]>,
        exchange: &[u8],
        routing_key: &[u8],
        properties: &[u8],
        body: &[u8],
    ) -> io::Result<u64> {
        let fields = [exchange, routing_key, properties, body];
        let len = format::record_len(&[
            filter.unwrap_or(&[]),
            exchange,
            routing_key,
            properties,
            body,
        ])?;
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.data.len() >= self.chunk_target)
        {
            self.close_chunk()?;
        }
        let offset = self.next;
        let ts = timestamp_ms.max(self.last_chunk_ts);
        let open = self.open.get_or_insert_with(|| OpenChunk {
            first: offset,
            count: 0,
            ts,
            max_ts: timestamp_ms,
            data: Vec::new(),
        });
        open.data.reserve(len);
        format::encode_record(
            &mut open.data,
            timestamp_ms.wrapping_sub(open.ts),
            filter,
            fields,
        );
        open.count += 1;
        open.max_ts = open.max_ts.max(timestamp_ms);
        self.next += 1;
        Ok(offset)
    }

    /// Closes the open chunk and hands every buffered chunk and index entry to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.close_chunk()?;
        self.write_out()
    }

    /// Flushes, then fdatasyncs every segment and index written since the last sync and the
    /// directory if files were created or deleted. On failure the newest segment is retired.
    pub fn sync(&mut self) -> io::Result<()> {
        let files = self.prepare_sync()?;
        // Synced in order (segments before their indexes); each handle is synced once.
        let result = files.iter().try_for_each(File::sync_data);
        if result.is_err() {
            self.sync_failed();
        }
        result
    }

    /// Group commit, step one, under the caller's lock: flush, and return the handles whose
    /// fdatasync makes everything appended so far durable, so the slow part can run without
    /// the lock. The files count as clean from here on; if an fdatasync fails, call
    /// [`StreamLog::sync_failed`].
    pub fn prepare_sync(&mut self) -> io::Result<Vec<File>> {
        let result = (|| {
            self.flush()?;
            let mut files = Vec::new();
            for (_, seg, idx) in self.unsynced.drain(..) {
                files.extend([seg, idx]);
            }
            if let Some(w) = self.writer.as_mut().filter(|w| w.dirty) {
                files.extend([w.seg.try_clone()?, w.idx.try_clone()?]);
                w.dirty = false;
            }
            if self.dir_dirty {
                files.push(File::open(&self.dir)?);
                self.dir_dirty = false;
            }
            Ok(files)
        })();
        if result.is_err() {
            self.sync_failed();
        }
        result
    }

    /// A sync failed: the kernel may have dropped dirty pages, so retire the segment being
    /// written (later chunks go to a new file) and sync it and the directory again next time.
    pub fn sync_failed(&mut self) {
        if let Some(w) = &mut self.writer {
            w.retire = true;
            w.dirty = true;
        }
        self.dir_dirty = true;
    }

    /// Moves the open chunk (if any) into the newest segment's write buffer, rotating first if
    /// that segment is full or retired.
    pub(super) fn close_chunk(&mut self) -> io::Result<()> {
        let Some(first) = self.open.as_ref().map(|o| o.first) else {
            return Ok(());
        };
        let rotate = match &self.writer {
            None => true,
            // A segment without chunks is reused rather than followed by one of the same name.
            Some(w) => {
                let size = w.flushed + w.buf.len() as u64;
                size > 0 && (w.retire || size >= self.cfg.max_segment_size)
            }
        };
        if rotate {
            self.rotate(first)?;
        }
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.buf.len() >= WRITE_BUF)
        {
            self.write_out()?;
        }
        let (Some(w), Some(seg)) = (self.writer.as_mut(), self.segs.back_mut()) else {
            return Err(io::Error::other("stream has no segment to write to"));
        };
        let Some(o) = self.open.take() else {
            return Ok(());
        };
        let pos = w.flushed + w.buf.len() as u64;
        format::encode_chunk(&mut w.buf, o.first, o.count, o.ts, o.max_ts, &o.data);
        let entry = IndexEntry {
            offset: o.first,
            pos,
            timestamp_ms: o.ts,
        };
        w.idx_buf.push(entry);
        seg.size += (HEADER_LEN + o.data.len()) as u64;
        seg.next = o.first + u64::from(o.count);
        seg.max_ts = seg.max_ts.max(o.max_ts); // starts at i64::MIN
        seg.last = Some(entry);
        seg.chunks += 1;
        self.last_chunk_ts = o.ts;
        let (seg_first, chunk) = (seg.first, seg.chunks - 1);
        self.cache.chunk_closed(o.first, seg_first, chunk);
        Ok(())
    }

    /// Seals the newest segment (if any) and starts a new one named `first`.
    fn rotate(&mut self, first: u64) -> io::Result<()> {
        self.write_out()?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create_new(true);
        let seg = options.open(index::seg_path(&self.dir, first))?;
        let idx = match options.open(index::idx_path(&self.dir, first)) {
            Ok(idx) => idx,
            Err(e) => {
                // Leave no segment without an index behind (it would be rebuilt, but why).
                let _ = std::fs::remove_file(index::seg_path(&self.dir, first));
                return Err(e);
            }
        };
        if let Some(old) = self.writer.take() {
            if old.dirty {
                self.unsynced.push((old.first, old.seg, old.idx));
            }
        }
        self.writer = Some(Writer {
            first,
            seg,
            idx,
            flushed: 0,
            idx_flushed: 0,
            buf: Vec::new(),
            idx_buf: Vec::new(),
            dirty: false,
            retire: false,
        });
        self.segs.push_back(Seg {
            first,
            next: first,
            size: 0,
            chunks: 0,
            last: None,
            max_ts: i64::MIN,
        });
        self.dir_dirty = true;
        Ok(())
    }

    /// Writes the newest segment's buffered chunks, then their index entries, with positional
    /// writes, so a failed or partial write is simply redone at the same place next time.
    pub(super) fn write_out(&mut self) -> io::Result<()> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if !w.buf.is_empty() {
            w.seg.write_all_at(&w.buf, w.flushed)?;
            w.flushed += w.buf.len() as u64;
            w.dirty = true;
            w.buf.clear();
            // A huge record grew the buffer; do not keep that memory per stream.
            if w.buf.capacity() > 4 * WRITE_BUF {
                w.buf = Vec::new();
            }
        }
        if !w.idx_buf.is_empty() {
            let mut raw = Vec::with_capacity(w.idx_buf.len() * ENTRY_LEN as usize);
            for e in &w.idx_buf {
                e.encode(&mut raw);
            }
            w.idx.write_all_at(&raw, w.idx_flushed * ENTRY_LEN)?;
            w.idx_flushed += w.idx_buf.len() as u64;
            w.dirty = true;
            w.idx_buf.clear();
        }
        Ok(())
    }

    /// Test hook: forget everything not handed to the OS, as a killed process would.
    #[cfg(test)]
    pub(super) fn discard_buffers(&mut self) {
        self.open = None;
        if let Some(w) = &mut self.writer {
            w.buf.clear();
            w.idx_buf.clear();
        }
    }
}
