//! The on-disk encoding of chunks and of the records inside them.
//!
//! ```text
//! chunk header (40 bytes, integers little-endian):
//!   0  u32 magic "WSC1"          lets recovery tell a chunk from zeros or garbage cheaply
//!   4  u64 first offset
//!   12 u32 record count
//!   16 i64 timestamp_ms          the chunk's creation (its first record's, kept monotonic)
//!   24 i64 max_timestamp_ms      newest record timestamp, for age retention
//!   32 u32 data length
//!   36 u32 crc32 of bytes 4..36 and of the data
//! data: `count` records, each
//!   u8 flags (bit0: has filter) | varint zigzag(ts - chunk ts) | [varint len, filter]
//!   | varint len, exchange | varint len, routing key | varint len, properties | varint len, body
//! ```
//!
//! Varints (LEB128) keep the per-record overhead of small messages at ~7 bytes; the checksum
//! covers the whole chunk, so records carry none of their own.

use std::io;
use std::ops::Range;

pub(crate) const HEADER_LEN: usize = 40;
const MAGIC: [u8; 4] = *b"WSC1";
const FLAG_FILTER: u8 = 1;
/// Largest encoded record accepted; with the chunk target this also bounds what a garbage
/// length field can make recovery allocate.
pub(crate) const MAX_RECORD_LEN: usize = crate::store::MAX_RECORD_LEN as usize;
pub(crate) const MAX_CHUNK_DATA: usize = MAX_RECORD_LEN + (1 << 20);

/// A decoded chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub first: u64,
    pub count: u32,
    pub timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub data_len: u32,
    pub crc: u32,
}

impl ChunkHeader {
    /// Offset just past the chunk's last record.
    pub fn end_offset(&self) -> u64 {
        self.first + u64::from(self.count)
    }
    /// Whole chunk length on disk, header included.
    pub fn disk_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.data_len)
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn crc_of(header: &[u8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&header[4..36]);
    h.update(data);
    h.finalize()
}

/// Appends a complete chunk (header and `data`) to `out`.
pub(crate) fn encode_chunk(
    out: &mut Vec<u8>,
    first: u64,
    count: u32,
    ts: i64,
    max_ts: i64,
    data: &[u8],
) {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..12].copy_from_slice(&first.to_le_bytes());
    h[12..16].copy_from_slice(&count.to_le_bytes());
    h[16..24].copy_from_slice(&ts.to_le_bytes());
    h[24..32].copy_from_slice(&max_ts.to_le_bytes());
    h[32..36].copy_from_slice(&(data.len() as u32).to_le_bytes());
    let crc = crc_of(&h, data);
    h[36..40].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
}

/// Parses a header; None if the magic or the length bound says it is not one.
pub(crate) fn decode_header(h: &[u8]) -> Option<ChunkHeader> {
    if h.len() < HEADER_LEN || h[..4] != MAGIC {
        return None;
    }
    let hdr = ChunkHeader {
        first: u64_at(h, 4),
        count: u32_at(h, 12),
        timestamp_ms: u64_at(h, 16) as i64,
        max_timestamp_ms: u64_at(h, 24) as i64,
        data_len: u32_at(h, 32),
        crc: u32_at(h, 36),
    };
    let sane = hdr.count > 0 && (hdr.data_len as usize) <= MAX_CHUNK_DATA;
    sane.then_some(hdr)
}

/// Whether `data` is the payload `h` describes (length and checksum).
pub(crate) fn verify(h: &ChunkHeader, raw_header: &[u8], data: &[u8]) -> bool {
    data.len() == h.data_len as usize && crc_of(raw_header, data) == h.crc
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Encoded length of a record, or InvalidInput if it exceeds [`MAX_RECORD_LEN`].
pub(crate) fn record_len(fields: &[&[u8]; 5]) -> io::Result<usize> {
    // flags, timestamp delta and five length prefixes at their widest.
    let len = 1 + 10 + 5 * 10 + fields.iter().map(|f| f.len()).sum::<usize>();
    if len > MAX_RECORD_LEN {
        let e = "stream record larger than the maximum record length";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
    }
    Ok(len)
}

/// Appends one record; `record_len` must have accepted its fields.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    ts_delta: i64,
    filter: Option<&[u8]>,
    fields: [&[u8]; 4],
) {
    out.push(if filter.is_some() { FLAG_FILTER } else { 0 });
    put_varint(out, ((ts_delta << 1) ^ (ts_delta >> 63)) as u64);
    for f in filter.into_iter().chain(fields) {
        put_varint(out, f.len() as u64);
        out.extend_from_slice(f);
    }
}

/// Where one record's fields lie within a chunk's data.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub ts_delta: i64,
    pub filter: Option<Range<usize>>,
    /// exchange, routing key, properties, body
    pub fields: [Range<usize>; 4],
    /// Position just past the record.
    pub end: usize,
}

impl Layout {
    /// Payload bytes of the record, what `max_bytes` limits.
    pub fn size(&self) -> usize {
        self.fields.iter().map(|r| r.len()).sum::<usize>()
            + self.filter.as_ref().map_or(0, |r| r.len())
    }
}

/// Parses the record starting at `at`; None if it runs past the data (corrupt chunk).
pub(crate) fn decode_record(data: &[u8], at: usize) -> Option<Layout> {
    let mut p = at;
    let flags = *data.get(p)?;
    p += 1;
    let z = get_varint(data, &mut p)?;
    let ts_delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
    let field = |p: &mut usize| -> Option<Range<usize>> {
        let len = usize::try_from(get_varint(data, p)?).ok()?;
        let end = p.checked_add(len).filter(|&e| e <= data.len())?;
        let r = *p..end;
        *p = end;
        Some(r)
    };
    let filter = if flags & FLAG_FILTER != 0 {
        Some(field(&mut p)?)
    } else {
        None
    };
    let fields = [
        field(&mut p)?,
        field(&mut p)?,
        field(&mut p)?,
        field(&mut p)?,
    ];
    Some(Layout {
        ts_delta,
        filter,
        fields,
        end: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_chunk_round_trip() {
        let mut data = Vec::new();
        encode_record(&mut data, -5, Some(b"f"), [b"ex", b"rk", b"", b"body"]);
        encode_record(&mut data, i64::MAX, None, [b"", b"", b"p", &[7; 300]]);
        let a = decode_record(&data, 0).unwrap();
        assert_eq!(
            (a.ts_delta, &data[a.filter.clone().unwrap()]),
            (-5, &b"f"[..])
        );
        assert_eq!(&data[a.fields[3].clone()], b"body");
        let b = decode_record(&data, a.end).unwrap();
        assert_eq!((b.ts_delta, b.filter, b.end), (i64::MAX, None, data.len()));
        assert!(decode_record(&data[..data.len() - 1], a.end).is_none());
        let mut chunk = Vec::new();
        encode_chunk(&mut chunk, 42, 2, 7, 9, &data);
        let h = decode_header(&chunk).unwrap();
        assert_eq!(
            (h.first, h.count, h.timestamp_ms, h.max_timestamp_ms),
            (42, 2, 7, 9)
        );
        assert!(verify(&h, &chunk, &chunk[HEADER_LEN..]));
        chunk[HEADER_LEN + 3] ^= 1;
        assert!(!verify(&h, &chunk, &chunk[HEADER_LEN..]));
        assert!(decode_header(&[0; HEADER_LEN]).is_none());
    }
}
