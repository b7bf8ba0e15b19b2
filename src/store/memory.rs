//! In-memory implementation of [`MessageLog`], byte-for-byte the same format as the files.
//!
//! Segments are `Vec<u8>`s. Each remembers how much of it was flushed ("handed to the OS") and
//! synced, so tests can simulate a killed process (unflushed bytes lost) or a power loss
//! (unsynced bytes lost) and damage segments, and the same suite runs against both logs.

use super::codec::{
    decode_publish, encode_publish, encode_seqs, publish_len, scan_segment, seqs_len, HEADER_LEN,
    KIND_ACKS, KIND_DELIVERED, MAX_SEQS_PER_RECORD,
};
use super::{retire_threshold, Ledger};
use super::{Location, MessageLog, Recovered, RecoveryReport, StoredMessage};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io;

/// A log held in memory; for brokers without a data directory and for tests.
pub struct MemoryLog {
    segment_size: u64,
    segs: BTreeMap<u64, MemSegment>,
    ledger: Ledger,
    /// The segment being written.
    current: Option<u64>,
    next_id: u64,
}

#[derive(Default)]
struct MemSegment {
    data: Vec<u8>,
    flushed: usize,
    synced: usize,
}

impl MemoryLog {
    pub fn new(segment_size: u64) -> MemoryLog {
        MemoryLog {
            segment_size: segment_size.min(1 << 31),
            segs: BTreeMap::new(),
            ledger: Ledger::default(),
            current: None,
            next_id: 1,
        }
    }

    /// Rotates if needed and returns the segment the next record of `len` bytes goes to.
    fn prepare(&mut self, len: u32) -> (u64, &mut Vec<u8>) {
        if let Some(id) = self.current {
            let size = self.segs.get(&id).map_or(0, |s| s.data.len() as u64);
            if size > 0 && size + u64::from(len) > self.segment_size {
                self.flush_current();
                self.current = None;
                self.collect();
            }
        }
        let id = match self.current {
            Some(id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.ledger.push(id, 0, false);
                self.current = Some(id);
                id
            }
        };
        (id, &mut self.segs.entry(id).or_default().data)
    }

    fn flush_current(&mut self) {
        if let Some(s) = self.current.and_then(|id| self.segs.get_mut(&id)) {
            s.flushed = s.data.len();
        }
    }

    fn collect(&mut self) {
        while let Some(id) = self.ledger.pop_deletable(self.current) {
            self.segs.remove(&id);
        }
    }

    fn append_seqs(&mut self, kind: u8, seqs: &[u64]) {
        for chunk in seqs.chunks(MAX_SEQS_PER_RECORD) {
            let len = seqs_len(chunk.len());
            encode_seqs(self.prepare(len).1, kind, chunk);
            self.ledger.record(len, false);
        }
    }
}

#[cfg(test)]
impl MemoryLog {
    /// Simulates a restart: after a power loss only synced bytes survive, after a killed
    /// process the flushed ones. The log then behaves as freshly opened (replay next).
    pub(crate) fn restart(&mut self, power_loss: bool) {
        self.current = None;
        self.ledger = Ledger::default();
        for (&id, s) in &mut self.segs {
            s.data
                .truncate(if power_loss { s.synced } else { s.flushed });
            s.flushed = s.data.len();
            s.synced = s.synced.min(s.flushed);
            self.ledger.push(id, s.data.len() as u64, true);
        }
    }

    pub(crate) fn segment_ids(&self) -> Vec<u64> {
        self.segs.keys().copied().collect()
    }

    /// Cleanly restarts with segment `id` edited by `f`, as if the file had been damaged.
    pub(crate) fn damage(&mut self, id: u64, f: impl FnOnce(&mut Vec<u8>)) {
        if let Some(s) = self.segs.get_mut(&id) {
            f(&mut s.data);
            (s.flushed, s.synced) = (s.data.len(), s.data.len());
        }
        self.flush_current();
        self.restart(false);
    }
}

impl MessageLog for MemoryLog {
    fn append(&mut self, msg: &StoredMessage) -> io::Result<Location> {
        let len = publish_len(msg)?;
        let (segment, data) = self.prepare(len);
        let offset = data.len() as u32;
        encode_publish(data, msg);
        self.ledger.record(len, true);
        Ok(Location {
            segment,
            offset,
            len,
        })
    }

    fn append_acks(&mut self, seqs: &[u64]) -> io::Result<()> {
        self.append_seqs(KIND_ACKS, seqs);
        Ok(())
    }

    fn append_delivered(&mut self, seqs: &[u64]) -> io::Result<()> {
        self.append_seqs(KIND_DELIVERED, seqs);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_current();
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush_current();
        for s in self.segs.values_mut() {
            s.synced = s.flushed;
        }
        Ok(())
    }

    fn read(&mut self, loc: Location) -> io::Result<StoredMessage> {
        let seg = self
            .segs
            .get(&loc.segment)
            .filter(|_| self.ledger.contains(loc.segment));
        let seg = seg.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "segment deleted"))?;
        let start = loc.offset as usize;
        let rec = seg
            .data
            .get(start..start + loc.len as usize)
            .filter(|_| loc.len > HEADER_LEN);
        decode_publish(Bytes::copy_from_slice(
            rec.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?,
        ))
    }

    fn release(&mut self, loc: Location) {
        if !self.ledger.release(loc.segment) {
            return;
        }
        if self.ledger.all_released() {
            let size = self
                .current
                .and_then(|id| self.segs.get(&id))
                .map_or(0, |s| s.data.len());
            if size as u64 >= retire_threshold(self.segment_size) {
                self.current = None;
            }
        }
        self.collect();
    }

    fn replay(&mut self, f: &mut dyn FnMut(Recovered)) -> io::Result<RecoveryReport> {
        self.flush_current();
        let ids = self.ledger.ids();
        let mut report = RecoveryReport::default();
        for (i, &id) in ids.iter().enumerate() {
            let Some(seg) = self.segs.get_mut(&id) else {
                continue;
            };
            let data = &seg.data;
            let mut read_at = |at: u64, buf: &mut [u8]| {
                let src = data.get(at as usize..at as usize + buf.len());
                buf.copy_from_slice(
                    src.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?,
                );
                Ok(())
            };
            let out = scan_segment(&"memory", id, data.len() as u64, &mut read_at, f)?;
            report.records += out.records;
            report.corrupt_records += out.corrupt;
            if let Some(tail) = out.bad_tail {
                let cut = (seg.data.len() as u64 - tail) as usize;
                if ids[i + 1..]
                    .iter()
                    .all(|&later| self.ledger.bytes(later) == 0)
                {
                    tracing::warn!(
                        segment = id,
                        offset = tail,
                        bytes = cut,
                        "truncating torn tail"
                    );
                    seg.data.truncate(tail as usize);
                    seg.flushed = seg.flushed.min(seg.data.len());
                    seg.synced = seg.synced.min(seg.data.len());
                    report.truncated_bytes += cut as u64;
                } else {
                    tracing::error!(
                        segment = id,
                        offset = tail,
                        bytes = cut,
                        "corrupt end of segment skipped"
                    );
                    report.corrupt_records += 1;
                }
            }
            self.ledger
                .set_scanned(id, seg.data.len() as u64, out.publishes);
        }
        self.collect();
        Ok(RecoveryReport {
            segments: ids.len(),
            ..report
        })
    }

    fn clear(&mut self) -> io::Result<()> {
        self.segs.clear();
        self.ledger = Ledger::default();
        self.current = None;
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        self.ledger.total_bytes()
    }

    fn segment_count(&self) -> usize {
        self.ledger.len()
    }
}
