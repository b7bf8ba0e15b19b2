//! Segment and index files: names, the index entry format and positional access.
//!
//! A segment `{first_offset:020}.seg` holds chunks back to back; its index
//! `{first_offset:020}.idx` holds one fixed-size entry per chunk, in order:
//!
//! ```text
//! u64 chunk first offset | u64 chunk position in the segment | i64 chunk timestamp_ms
//! ```
//!
//! Entries are fixed-size so that an index is binary searched in place with positional reads
//! instead of being loaded: a stream flushed after every publish has one chunk per message, and
//! its indexes would not fit in memory. The index carries no checksum of its own: it is only a
//! hint that every read checks against the chunk header it points to, and recovery validates
//! its tail against the segment and rebuilds whatever is missing.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) const ENTRY_LEN: u64 = 24;

/// One chunk as the index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub pos: u64,
    pub timestamp_ms: i64,
}

impl IndexEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.pos.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
    }

    pub fn decode(b: &[u8; ENTRY_LEN as usize]) -> IndexEntry {
        let word = |i: usize| {
            let mut a = [0; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(a)
        };
        IndexEntry {
            offset: word(0),
            pos: word(1),
            timestamp_ms: word(2) as i64,
        }
    }
}

pub(crate) fn seg_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

pub(crate) fn idx_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.idx"))
}

/// The first offset a segment file name stands for; None for anything else (ignored files).
pub(crate) fn parse_seg_name(name: &OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_suffix(".seg")?;
    let ok = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
    digits.parse().ok().filter(|_| ok)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Entry `i` of an index file.
pub(crate) fn read_entry(idx: &File, i: u64) -> io::Result<IndexEntry> {
    let mut b = [0; ENTRY_LEN as usize];
    idx.read_exact_at(&mut b, i * ENTRY_LEN)?;
    Ok(IndexEntry::decode(&b))
}

/// Every whole entry of an index file (recovery only; a trailing partial entry is dropped).
pub(crate) fn read_all(idx: &File) -> io::Result<Vec<IndexEntry>> {
    let len = idx.metadata()?.len() / ENTRY_LEN * ENTRY_LEN;
    let mut raw = vec![0; len as usize];
    idx.read_exact_at(&mut raw, 0)?;
    Ok(raw
        .chunks_exact(ENTRY_LEN as usize)
        .filter_map(|c| c.try_into().ok().map(IndexEntry::decode))
        .collect())
}

/// Replaces the index file's content from entry `keep` on with `entries[keep..]`.
pub(crate) fn rewrite_tail(idx: &File, entries: &[IndexEntry], keep: usize) -> io::Result<()> {
    let mut raw = Vec::with_capacity((entries.len() - keep) * ENTRY_LEN as usize);
    for e in &entries[keep..] {
        e.encode(&mut raw);
    }
    idx.set_len(keep as u64 * ENTRY_LEN)?;
    idx.write_all_at(&raw, keep as u64 * ENTRY_LEN)?;
    idx.sync_data()
}

/// The last `i` in `[0, n)` with `key(entry i) <= target` (0 if none), by binary search.
/// `get` reads an entry; errors abort the search.
pub(crate) fn search_last_le(
    n: u64,
    target: u64,
    key: impl Fn(&IndexEntry) -> u64,
    mut get: impl FnMut(u64) -> io::Result<IndexEntry>,
) -> io::Result<u64> {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if key(&get(mid)?) <= target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.saturating_sub(1))
}

/// The first `i` in `[0, n)` whose timestamp is `>= ts`, or `n`.
pub(crate) fn search_first_ts(
    n: u64,
    ts: i64,
    mut get: impl FnMut(u64) -> io::Result<IndexEntry>,
) -> io::Result<u64> {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if get(mid)?.timestamp_ms < ts {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_searches() {
        assert_eq!(
            parse_seg_name(OsStr::new("00000000000000000042.seg")),
            Some(42)
        );
        for bad in [
            "42.seg",
            "00000000000000000042.idx",
            "0000000000000000004x.seg",
        ] {
            assert_eq!(parse_seg_name(OsStr::new(bad)), None, "{bad}");
        }
        let es: Vec<IndexEntry> = (0..10)
            .map(|i| IndexEntry {
                offset: i * 10,
                pos: i * 100,
                timestamp_ms: i as i64 * 5,
            })
            .collect();
        let get = |i: u64| Ok(es[i as usize]);
        assert_eq!(search_last_le(10, 0, |e| e.offset, get).unwrap(), 0);
        assert_eq!(search_last_le(10, 35, |e| e.offset, get).unwrap(), 3);
        assert_eq!(search_last_le(10, 999, |e| e.offset, get).unwrap(), 9);
        assert_eq!(search_first_ts(10, 11, get).unwrap(), 3);
        assert_eq!(search_first_ts(10, 99, get).unwrap(), 10);
        assert_eq!(search_first_ts(10, -1, get).unwrap(), 0);
    }
}
