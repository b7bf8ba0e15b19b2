//! File implementation of [`MessageLog`]: one directory per queue, one file per segment.
//!
//! Appends are encoded into a userspace buffer (~256 KiB) that is written with positional
//! writes, so a failed or partial write is simply redone at the same offset by the next flush.
//! Every open starts a new segment rather than appending to the newest old one, so nothing is
//! ever written behind a tail that replay has not validated yet.

use super::codec::{
    decode_publish, encode_publish, encode_seqs, publish_len, scan_segment, seqs_len, HEADER_LEN,
    KIND_ACKS, KIND_DELIVERED, MAX_RECORD_LEN, MAX_SEQS_PER_RECORD,
};
use super::{retire_threshold, Ledger};
use super::{Location, MessageLog, Recovered, RecoveryReport, StoredMessage};
use bytes::Bytes;
use std::collections::{hash_map::Entry, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const WRITE_BUF: usize = 256 * 1024;
/// Read handles kept open; consumers mostly read the head segments, so a few suffice.
const MAX_READERS: usize = 8;

/// Segment files in a directory. See the module docs of [`super`] for format and contract.
pub struct FileLog {
    dir: PathBuf,
    segment_size: u64,
    ledger: Ledger,
    active: Option<Active>,
    /// Encoded records of the active segment not yet handed to the OS.
    buf: Vec<u8>,
    /// Rotated-away segments written since the last sync, kept open for their fdatasync.
    unsynced: Vec<(u64, File)>,
    /// A segment was created or deleted since the directory was last synced.
    dir_dirty: bool,
    readers: HashMap<u64, File>,
    next_id: u64,
}

/// The segment being written.
struct Active {
    id: u64,
    file: File,
    /// Bytes handed to the OS; `buf` continues from here.
    flushed: u64,
    /// Written since the last fdatasync.
    dirty: bool,
    /// A sync failed: the kernel may have dropped pages of this file, so write no more to it.
    retire: bool,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn parse_name(name: &std::ffi::OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_suffix(".seg")?;
    let ok = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    digits.parse().ok().filter(|_| ok)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FileLog {
    /// Opens (creating it if needed) the log in `dir`. Existing segments are only listed;
    /// call [`MessageLog::replay`] next. `segment_size` is capped at 2 GiB (offsets are u32).
    pub fn open(dir: &Path, segment_size: u64) -> io::Result<FileLog> {
        let created = !dir.exists();
        fs::create_dir_all(dir)?;
        // Absolute, so logs name it fully and it always has a parent to sync.
        let dir = fs::canonicalize(dir)?;
        if created {
            // The new directory's own entry must survive a crash like the segments in it.
            sync_dir(dir.parent().unwrap_or(&dir))?;
        }
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            match parse_name(&entry.file_name()) {
                Some(id) => ids.push((id, entry.metadata()?.len())),
                None => tracing::debug!(file = ?entry.path(), "ignoring non-segment file"),
            }
        }
        ids.sort_unstable();
        let mut ledger = Ledger::default();
        for &(id, bytes) in &ids {
            ledger.push(id, bytes, true);
        }
        Ok(FileLog {
            dir,
            segment_size: segment_size.min(1 << 31),
            next_id: ids.last().map_or(1, |&(id, _)| id + 1),
            ledger,
            active: None,
            buf: Vec::new(),
            unsynced: Vec::new(),
            dir_dirty: false,
            readers: HashMap::new(),
        })
    }

    /// Removes the whole directory (queue deleted).
    pub fn destroy(mut self) -> io::Result<()> {
        self.forget_handles();
        fs::remove_dir_all(&self.dir)?;
        sync_dir(self.dir.parent().unwrap_or(&self.dir))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Group commit, step one, called under the log's lock: hand buffered bytes to the OS and
    /// return handles whose fdatasync makes everything appended so far durable, so the slow part
    /// runs without the lock (appenders never wait for a disk flush). The files count as clean
    /// from here on; if an fdatasync fails, call [`FileLog::sync_failed`].
    pub fn prepare_sync(&mut self) -> io::Result<Vec<File>> {
        let r = (|| {
            self.flush()?;
            let mut files: Vec<File> = self.unsynced.drain(..).map(|(_, f)| f).collect();
            if let Some(a) = self.active.as_mut().filter(|a| a.dirty) {
                files.push(a.file.try_clone()?);
                a.dirty = false;
            }
            if self.dir_dirty {
                files.push(File::open(&self.dir)?);
                self.dir_dirty = false;
            }
            Ok(files)
        })();
        if r.is_err() {
            self.sync_failed();
        }
        r
    }

    /// A sync failed: the kernel may have dropped dirty pages, so retire the segment being written
    /// (as [`MessageLog::sync`] does) and sync the directory again next time.
    pub fn sync_failed(&mut self) {
        if let Some(a) = &mut self.active {
            a.retire = true;
            a.dirty = true;
        }
        self.dir_dirty = true;
    }

    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Makes room for a record of `len` bytes: rotates, flushes a full buffer, creates the
    /// segment. Returns where the record will start.
    fn prepare(&mut self, len: u32) -> io::Result<(u64, u32)> {
        if let Some(a) = &self.active {
            let size = a.flushed + self.buf.len() as u64;
            if a.retire || (size > 0 && size + u64::from(len) > self.segment_size) {
                self.seal()?;
                self.collect();
            }
        }
        if !self.buf.is_empty() && self.buf.len() + len as usize > WRITE_BUF {
            self.flush()?;
        }
        if self.active.is_none() {
            let id = self.next_id;
            let mut options = OpenOptions::new();
            let file = options
                .read(true)
                .write(true)
                .create_new(true)
                .open(seg_path(&self.dir, id))?;
            self.next_id += 1;
            self.ledger.push(id, 0, false);
            self.dir_dirty = true;
            let (flushed, dirty, retire) = (0, false, false);
            self.active = Some(Active {
                id,
                file,
                flushed,
                dirty,
                retire,
            });
        }
        let a = self
            .active
            .as_ref()
            .ok_or_else(|| io::Error::other("no segment"))?;
        Ok((a.id, (a.flushed + self.buf.len() as u64) as u32))
    }

    /// Drops the buffer and every open handle (before deleting files).
    fn forget_handles(&mut self) {
        self.buf.clear();
        self.active = None;
        self.readers.clear();
        self.unsynced.clear();
    }

    /// Stops writing to the active segment; the next append starts a new one.
    fn seal(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(a) = self.active.take().filter(|a| a.dirty) {
            self.unsynced.push((a.id, a.file));
        }
        Ok(())
    }

    /// Deletes fully released head segments.
    fn collect(&mut self) {
        let current = self.active.as_ref().map(|a| a.id);
        while let Some(id) = self.ledger.pop_deletable(current) {
            self.readers.remove(&id);
            self.unsynced.retain(|(u, _)| *u != id);
            self.dir_dirty = true;
            match fs::remove_file(seg_path(&self.dir, id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    // Harmless for correctness: its records replay again and acks settle them.
                    tracing::error!(dir = %self.dir.display(), segment = id, error = %e, "cannot delete released segment");
                }
                _ => {}
            }
        }
    }

    fn append_seqs(&mut self, kind: u8, seqs: &[u64]) -> io::Result<()> {
        for chunk in seqs.chunks(MAX_SEQS_PER_RECORD) {
            let len = seqs_len(chunk.len());
            self.prepare(len)?;
            encode_seqs(&mut self.buf, kind, chunk);
            self.ledger.record(len, false);
        }
        Ok(())
    }

    /// A read handle for a segment other than the active one.
    fn reader(&mut self, id: u64) -> io::Result<&File> {
        if self.readers.len() >= MAX_READERS && !self.readers.contains_key(&id) {
            self.readers.clear(); // reopening a handle costs microseconds; no LRU needed
        }
        Ok(match self.readers.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => v.insert(File::open(seg_path(&self.dir, id))?),
        })
    }

    /// Test hook: forget the write buffer, as a killed process would.
    #[cfg(test)]
    pub(crate) fn discard_buffer(&mut self) {
        self.buf.clear();
    }
}

impl MessageLog for FileLog {
    fn append(&mut self, msg: &StoredMessage) -> io::Result<Location> {
        let len = publish_len(msg)?;
        let (segment, offset) = self.prepare(len)?;
        encode_publish(&mut self.buf, msg);
        self.ledger.record(len, true);
        Ok(Location {
            segment,
            offset,
            len,
        })
    }

    fn append_acks(&mut self, seqs: &[u64]) -> io::Result<()> {
        self.append_seqs(KIND_ACKS, seqs)
    }

    fn append_delivered(&mut self, seqs: &[u64]) -> io::Result<()> {
        self.append_seqs(KIND_DELIVERED, seqs)
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(a) = self.active.as_mut().filter(|_| !self.buf.is_empty()) else {
            return Ok(());
        };
        a.file.write_all_at(&self.buf, a.flushed)?;
        a.flushed += self.buf.len() as u64;
        a.dirty = true;
        self.buf.clear();
        // A record larger than the buffer grew it; do not keep that memory per queue.
        if self.buf.capacity() > 2 * WRITE_BUF {
            self.buf = Vec::new();
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let result = (|| {
            self.flush()?;
            while let Some((_, file)) = self.unsynced.first() {
                file.sync_data()?;
                self.unsynced.remove(0);
            }
            if let Some(a) = self.active.as_mut().filter(|a| a.dirty) {
                a.file.sync_data()?;
                a.dirty = false;
            }
            if self.dir_dirty {
                sync_dir(&self.dir)?;
                self.dir_dirty = false;
            }
            Ok(())
        })();
        if result.is_err() {
            if let Some(a) = &mut self.active {
                a.retire = true;
            }
        }
        result
    }

    fn read(&mut self, loc: Location) -> io::Result<StoredMessage> {
        if loc.len <= HEADER_LEN || loc.len > MAX_RECORD_LEN + HEADER_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad length"));
        }
        if !self.ledger.contains(loc.segment) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "segment deleted"));
        }
        let (off, len) = (u64::from(loc.offset), loc.len as usize);
        let active = self.active.as_ref().filter(|a| a.id == loc.segment);
        if let Some(at) = active.and_then(|a| off.checked_sub(a.flushed)) {
            let rec = self.buf.get(at as usize..at as usize + len);
            let rec = rec.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            return decode_publish(Bytes::copy_from_slice(rec));
        }
        let mut rec = vec![0; len];
        match active {
            Some(a) => a.file.read_exact_at(&mut rec, off)?,
            None => self.reader(loc.segment)?.read_exact_at(&mut rec, off)?,
        }
        decode_publish(Bytes::from(rec))
    }

    fn release(&mut self, loc: Location) {
        if !self.ledger.release(loc.segment) {
            return;
        }
        let size = self
            .active
            .as_ref()
            .map_or(0, |a| a.flushed + self.buf.len() as u64);
        if self.ledger.all_released() && size >= retire_threshold(self.segment_size) {
            // Nothing in the log is needed any more, buffered acks included.
            self.buf.clear();
            self.active = None;
        }
        self.collect();
    }

    fn replay(&mut self, f: &mut dyn FnMut(Recovered)) -> io::Result<RecoveryReport> {
        self.flush()?;
        let ids = self.ledger.ids();
        let mut report = RecoveryReport::default();
        let label = self.dir.display().to_string();
        for (i, &id) in ids.iter().enumerate() {
            let path = seg_path(&self.dir, id);
            let (file, len) = match &self.active {
                Some(a) if a.id == id => (a.file.try_clone()?, a.flushed),
                _ => {
                    let file = File::open(&path)?;
                    let len = file.metadata()?.len();
                    (file, len)
                }
            };
            let out = scan_segment(&label, id, len, &mut |at, b| file.read_exact_at(b, at), f)?;
            report.records += out.records;
            report.corrupt_records += out.corrupt;
            let mut bytes = len;
            if let Some(tail) = out.bad_tail {
                // Empty later segments (created, then the crash) do not make this one "middle".
                if ids[i + 1..]
                    .iter()
                    .all(|&later| self.ledger.bytes(later) == 0)
                {
                    tracing::warn!(store = %label, segment = id, offset = tail, bytes = len - tail, "truncating torn tail");
                    let w = OpenOptions::new().write(true).open(&path)?;
                    w.set_len(tail)?;
                    w.sync_data()?;
                    if let Some(a) = self.active.as_mut().filter(|a| a.id == id) {
                        a.flushed = tail;
                    }
                    report.truncated_bytes += len - tail;
                    bytes = tail;
                } else {
                    tracing::error!(store = %label, segment = id, offset = tail, bytes = len - tail, "corrupt end of segment skipped");
                    report.corrupt_records += 1;
                }
            }
            self.ledger.set_scanned(id, bytes, out.publishes);
            self.readers.remove(&id);
        }
        self.collect();
        Ok(RecoveryReport {
            segments: ids.len(),
            ..report
        })
    }

    fn clear(&mut self) -> io::Result<()> {
        self.forget_handles();
        while let Some(id) = self.ledger.pop_front() {
            match fs::remove_file(seg_path(&self.dir, id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        // A purge must not come back after a crash.
        sync_dir(&self.dir)?;
        self.dir_dirty = false;
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.ledger.total_bytes()
    }

    fn segment_count(&self) -> usize {
        self.ledger.len()
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "flush on close failed");
        }
    }
}
