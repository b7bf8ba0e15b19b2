//! Opening a stream: listing segments, validating index tails against their segments,
//! rebuilding what an index lacks and truncating a torn tail of the newest segment.
//!
//! Each segment's index is trusted up to its last entry that points at a valid chunk (the
//! index may run ahead of the segment when a crash kept index pages but lost segment pages, or
//! lag behind it when the index write was lost). From there the segment is scanned forward,
//! chunk by chunk, each checked for magic, expected first offset, bounds and checksum. The
//! newest segment's anchor chunk is checksummed too; a sealed segment's is checked by header
//! only, so opening a long stream reads a few bytes per segment, not every segment's tail.

use super::format::{self, ChunkHeader, HEADER_LEN};
use super::index::{self, IndexEntry};
use super::{reader, Seg, StreamConfig, StreamLog, Writer, CHUNK_TARGET};
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(super) fn open(dir: &Path, cfg: StreamConfig) -> io::Result<StreamLog> {
    let created = !dir.exists();
    fs::create_dir_all(dir)?;
    // Absolute, so logs name it fully and it always has a parent to sync.
    let dir = fs::canonicalize(dir)?;
    if created {
        index::sync_dir(dir.parent().unwrap_or(&dir))?;
    }
    let mut firsts = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        match index::parse_seg_name(&entry.file_name()) {
            Some(first) => firsts.push(first),
            None if entry.path().extension().is_some_and(|e| e == "idx") => {}
            None => tracing::debug!(file = ?entry.path(), "ignoring non-segment file in stream"),
        }
    }
    firsts.sort_unstable();
    let mut segs = VecDeque::new();
    let mut writer = None;
    let mut created_idx = false;
    for (i, &first) in firsts.iter().enumerate() {
        let newest = i + 1 == firsts.len();
        created_idx |= !index::idx_path(&dir, first).exists();
        let (seg, seg_file, idx_file) = recover_segment(&dir, first, newest)?;
        if newest {
            writer = Some(Writer {
                first,
                seg: seg_file,
                idx: idx_file,
                flushed: seg.size,
                idx_flushed: seg.chunks,
                buf: Vec::new(),
                idx_buf: Vec::new(),
                dirty: false,
                retire: false,
            });
        }
        segs.push_back(seg);
    }
    if created_idx {
        // A rebuilt index's directory entry must not be lost to the next crash either.
        index::sync_dir(&dir)?;
    }
    let next = segs.back().map_or(0, |s| s.next);
    let last_chunk_ts = segs
        .iter()
        .rev()
        .find_map(|s| s.last)
        .map_or(i64::MIN, |e| e.timestamp_ms);
    Ok(StreamLog {
        dir,
        cfg,
        chunk_target: CHUNK_TARGET,
        segs,
        writer,
        open: None,
        next,
        last_chunk_ts,
        unsynced: Vec::new(),
        dir_dirty: false,
        handles: HashMap::new(),
        cache: reader::Cache::default(),
    })
}

/// The header of a chunk at `pos` if it is one that starts at `offset` and fits in `len`,
/// checksummed if `full`.
fn chunk_at(
    file: &File,
    len: u64,
    pos: u64,
    offset: u64,
    full: bool,
) -> io::Result<Option<ChunkHeader>> {
    if pos + HEADER_LEN as u64 > len {
        return Ok(None);
    }
    let mut raw = [0; HEADER_LEN];
    file.read_exact_at(&mut raw, pos)?;
    let Some(h) =
        format::decode_header(&raw).filter(|h| h.first == offset && pos + h.disk_len() <= len)
    else {
        return Ok(None);
    };
    if full {
        let mut data = vec![0; h.data_len as usize];
        file.read_exact_at(&mut data, pos + HEADER_LEN as u64)?;
        if !format::verify(&h, &raw, &data) {
            return Ok(None);
        }
    }
    Ok(Some(h))
}

/// Length of the prefix of `entries` that is structurally possible for a segment of `len`
/// bytes starting at offset `first`.
fn plausible_prefix(entries: &[IndexEntry], first: u64, len: u64) -> usize {
    let mut prev: Option<&IndexEntry> = None;
    let ok = |e: &IndexEntry, prev: Option<&IndexEntry>| {
        let ordered = match prev {
            None => e.offset == first && e.pos == 0,
            Some(p) => e.offset > p.offset && e.pos > p.pos && e.timestamp_ms >= p.timestamp_ms,
        };
        ordered && e.pos + HEADER_LEN as u64 <= len
    };
    entries
        .iter()
        .take_while(|e| {
            let good = ok(e, prev);
            prev = Some(e);
            good
        })
        .count()
}

/// Recovers one segment: returns its bookkeeping and its (read-write) segment and index files.
fn recover_segment(dir: &Path, first: u64, newest: bool) -> io::Result<(Seg, File, File)> {
    let seg_path = index::seg_path(dir, first);
    let file = OpenOptions::new().read(true).write(true).open(&seg_path)?;
    let len = file.metadata()?.len();
    let idx = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(index::idx_path(dir, first))?;
    let mut entries = index::read_all(&idx)?;
    let on_disk = entries.len();
    entries.truncate(plausible_prefix(&entries, first, len));
    // Anchor: the last indexed chunk that really is there.
    let mut last: Option<ChunkHeader> = None;
    while let Some(e) = entries.last() {
        if let Some(h) = chunk_at(&file, len, e.pos, e.offset, newest)? {
            last = Some(h);
            break;
        }
        entries.pop();
    }
    let kept = entries.len();
    let mut pos = entries
        .last()
        .zip(last)
        .map_or(0, |(e, h)| e.pos + h.disk_len());
    // Scan what the index does not cover.
    loop {
        let expected = last.map_or(first, |h| h.end_offset());
        let Some(h) = chunk_at(&file, len, pos, expected, true)? else {
            break;
        };
        entries.push(IndexEntry {
            offset: h.first,
            pos,
            timestamp_ms: h.timestamp_ms,
        });
        pos += h.disk_len();
        last = Some(h);
    }
    let label = seg_path.display();
    if pos < len {
        if newest {
            tracing::warn!(segment = %label, offset = pos, bytes = len - pos, "truncating torn stream tail");
            file.set_len(pos)?;
            file.sync_data()?;
        } else {
            tracing::error!(segment = %label, offset = pos, bytes = len - pos, "corrupt end of sealed stream segment ignored");
        }
    }
    if kept != on_disk || entries.len() != kept {
        tracing::warn!(segment = %label, dropped = on_disk - kept, added = entries.len() - kept, "stream index repaired");
        index::rewrite_tail(&idx, &entries, kept)?;
    }
    let seg = Seg {
        first,
        next: last.map_or(first, |h| h.end_offset()),
        size: pos,
        chunks: entries.len() as u64,
        last: entries.last().copied(),
        max_ts: last.map_or(i64::MIN, |h| h.max_timestamp_ms),
    };
    Ok((seg, file, idx))
}
