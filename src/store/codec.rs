//! The record format: encoding, decoding and the replay scanner shared by both logs.
//!
//! The scanner validates a candidate record cheaply (length bound, kind, and the payload's
//! own length fields adding up exactly) before computing its checksum, so scanning forward
//! through garbage to resynchronise costs a few byte reads per position, not a checksum.

use super::{Location, RecordMeta, Recovered, StoredMessage};
use bytes::Bytes;
use std::fmt::Display;
use std::io;

/// Largest `len` field accepted (kind+payload). Bounds what a garbage length can make replay read.
pub const MAX_RECORD_LEN: u32 = 512 << 20;
pub(crate) const HEADER_LEN: u32 = 8;
const KIND_PUBLISH: u8 = 1;
pub(crate) const KIND_ACKS: u8 = 2;
pub(crate) const KIND_DELIVERED: u8 = 3;
/// kind, seq, flags and the four length fields of a publish payload.
const PUBLISH_FIXED: u64 = 1 + 8 + 1 + 1 + 1 + 4 + 4;
/// Publish flag bits: persistent, an expiry follows, a lane follows, dead-lettered.
const FLAG_PERSISTENT: u8 = 1;
const FLAG_EXPIRES: u8 = 2;
const FLAG_LANE: u8 = 4;
const FLAG_DEAD_LETTERED: u8 = 8;
const FLAG_BCC: u8 = 16;
const FLAGS_KNOWN: u8 = 0b1_1111;

/// The flags byte of a record with this persistence and metadata.
fn flags_of(persistent: bool, m: &RecordMeta) -> u8 {
    let mut f = u8::from(persistent);
    if m.expires != 0 {
        f |= FLAG_EXPIRES;
    }
    if m.lane.is_some() {
        f |= FLAG_LANE;
    }
    if m.dead_lettered {
        f |= FLAG_DEAD_LETTERED;
    }
    if m.bcc {
        f |= FLAG_BCC;
    }
    f
}

/// Bytes of optional fields between the flags and the exchange that `flags` announces.
fn extension_len(flags: u64) -> u64 {
    let mut n = 0;
    if flags & u64::from(FLAG_EXPIRES) != 0 {
        n += 8;
    }
    if flags & u64::from(FLAG_LANE) != 0 {
        n += 1;
    }
    n
}

/// The metadata of a publish payload whose layout was validated.
fn meta_of(payload: &[u8]) -> RecordMeta {
    let flags = payload[9];
    let mut at = 10;
    let mut m = RecordMeta {
        dead_lettered: flags & FLAG_DEAD_LETTERED != 0,
        bcc: flags & FLAG_BCC != 0,
        ..RecordMeta::default()
    };
    if flags & FLAG_EXPIRES != 0 {
        m.expires = le(&payload[at..at + 8]);
        at += 8;
    }
    if flags & FLAG_LANE != 0 {
        m.lane = Some(payload[at]);
    }
    m
}
/// Seqs per Acks/Delivered record: keeps such a record (128 KiB) inside the write buffer.
pub(crate) const MAX_SEQS_PER_RECORD: usize = 16 * 1024;
/// How much of a replay window is read at once.
const SCAN_WINDOW: usize = 1 << 20;

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |acc, &b| acc << 8 | u64::from(b))
}

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Whole record length (header included) of `m`, or an error if it cannot be encoded.
pub(crate) fn publish_len(m: &StoredMessage) -> io::Result<u32> {
    if m.exchange.len() > 255 || m.routing_key.len() > 255 {
        let e = "exchange or routing key longer than 255 bytes";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
    }
    let var = [&m.exchange, &m.routing_key, &m.properties, &m.body];
    let ext = extension_len(u64::from(flags_of(m.persistent, &m.meta)));
    let len = PUBLISH_FIXED + ext + var.iter().map(|b| b.len() as u64).sum::<u64>();
    if len > u64::from(MAX_RECORD_LEN) {
        let e = "message larger than the maximum record length";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
    }
    Ok(len as u32 + HEADER_LEN)
}

/// Whole record length of an Acks/Delivered record of `n` seqs (n <= MAX_SEQS_PER_RECORD).
pub(crate) fn seqs_len(n: usize) -> u32 {
    HEADER_LEN + 5 + 8 * n as u32
}

/// Encodes straight into `buf` (no intermediate allocation); `publish_len` must have passed.
pub(crate) fn encode_publish(buf: &mut Vec<u8>, m: &StoredMessage) {
    let start = begin_record(buf, KIND_PUBLISH);
    buf.extend_from_slice(&m.seq.to_le_bytes());
    buf.push(flags_of(m.persistent, &m.meta));
    if m.meta.expires != 0 {
        buf.extend_from_slice(&m.meta.expires.to_le_bytes());
    }
    if let Some(lane) = m.meta.lane {
        buf.push(lane);
    }
    for short in [&m.exchange, &m.routing_key] {
        buf.push(short.len() as u8);
        buf.extend_from_slice(short);
    }
    for long in [&m.properties, &m.body] {
        buf.extend_from_slice(&(long.len() as u32).to_le_bytes());
        buf.extend_from_slice(long);
    }
    finish_record(buf, start);
}

pub(crate) fn encode_seqs(buf: &mut Vec<u8>, kind: u8, seqs: &[u64]) {
    let start = begin_record(buf, kind);
    buf.extend_from_slice(&(seqs.len() as u32).to_le_bytes());
    for s in seqs {
        buf.extend_from_slice(&s.to_le_bytes());
    }
    finish_record(buf, start);
}

fn begin_record(buf: &mut Vec<u8>, kind: u8) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN as usize]);
    buf.push(kind);
    start
}

fn finish_record(buf: &mut [u8], start: usize) {
    let body = start + HEADER_LEN as usize;
    let len = (buf.len() - body) as u32;
    let crc = crc32fast::hash(&buf[body..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..body].copy_from_slice(&crc.to_le_bytes());
}

/// Ranges (relative to the kind byte) of exchange, routing key, properties and body in a
/// publish payload of length `len`, or None if the length fields do not add up exactly. `num`
/// reads a little-endian integer at a relative offset; it is only asked for bytes below `len`,
/// so this is both the decoder and replay's cheap plausibility check before the checksum.
type Ranges = [(u64, u64); 4];
fn publish_layout(
    len: u64,
    num: &mut dyn FnMut(u64, usize) -> io::Result<u64>,
) -> io::Result<Option<Ranges>> {
    if len < PUBLISH_FIXED {
        return Ok(None);
    }
    let flags = num(9, 1)?;
    if flags & !u64::from(FLAGS_KNOWN) != 0 {
        return Ok(None);
    }
    let mut at = 10 + extension_len(flags);
    let mut out = [(0, 0); 4];
    for (slot, width) in out.iter_mut().zip([1, 1, 4, 4]) {
        if at + width as u64 > len {
            return Ok(None);
        }
        let start = at + width as u64;
        let end = start + num(at, width)?;
        if end > len {
            return Ok(None);
        }
        *slot = (start, end);
        at = end;
    }
    Ok((at == len).then_some(out))
}

/// Decodes a whole publish record (header included), checking length, checksum and structure.
pub(crate) fn decode_publish(rec: Bytes) -> io::Result<StoredMessage> {
    if rec.len() < HEADER_LEN as usize + 1 {
        return Err(invalid_data("record too short"));
    }
    let (head, payload) = rec.split_at(HEADER_LEN as usize);
    if le(&head[..4]) != payload.len() as u64
        || le(&head[4..]) != u64::from(crc32fast::hash(payload))
    {
        return Err(invalid_data("record length or checksum mismatch"));
    }
    if payload[0] != KIND_PUBLISH {
        return Err(invalid_data("not a publish record"));
    }
    let mut num = |at: u64, w: usize| Ok(le(&payload[at as usize..at as usize + w]));
    let ranges = publish_layout(payload.len() as u64, &mut num)?
        .ok_or_else(|| invalid_data("malformed publish record"))?;
    let field = |(s, e): (u64, u64)| {
        rec.slice(HEADER_LEN as usize + s as usize..HEADER_LEN as usize + e as usize)
    };
    Ok(StoredMessage {
        seq: le(&payload[1..9]),
        persistent: payload[9] & FLAG_PERSISTENT != 0,
        exchange: field(ranges[0]),
        routing_key: field(ranges[1]),
        properties: field(ranges[2]),
        body: field(ranges[3]),
        meta: meta_of(payload),
    })
}

/// What scanning one segment found.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    pub records: u64,
    pub publishes: u64,
    /// Corrupt regions skipped before a valid record (each counted once).
    pub corrupt: u64,
    /// Offset from which nothing valid follows, if the segment does not end on a record.
    pub bad_tail: Option<u64>,
}

/// A read cache over one segment, so replay does large reads and byte-wise resync is cheap.
struct Window<'a> {
    read_at: &'a mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    fn get(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let end = off + n as u64;
        if end > self.len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if off < self.start || end > self.start + self.buf.len() as u64 {
            let want = (n.max(SCAN_WINDOW) as u64).min(self.len - off) as usize;
            self.buf.clear();
            self.buf.resize(want, 0);
            (self.read_at)(off, &mut self.buf)?;
            self.start = off;
        }
        let at = (off - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }

    /// The `len` field of a valid record at `pos`, if there is one.
    fn valid_at(&mut self, pos: u64) -> io::Result<Option<u32>> {
        if pos + u64::from(HEADER_LEN) + 1 > self.len {
            return Ok(None);
        }
        let head = self.get(pos, HEADER_LEN as usize)?;
        let (len, crc) = (le(&head[..4]), le(&head[4..]));
        let base = pos + u64::from(HEADER_LEN);
        if len == 0 || len > u64::from(MAX_RECORD_LEN) || base + len > self.len {
            return Ok(None);
        }
        let plausible = match self.get(base, 1)?[0] {
            KIND_PUBLISH => {
                let mut num = |at: u64, w: usize| Ok(le(self.get(base + at, w)?));
                publish_layout(len, &mut num)?.is_some()
            }
            KIND_ACKS | KIND_DELIVERED => len >= 5 && le(self.get(base + 1, 4)?) * 8 + 5 == len,
            _ => false,
        };
        let ok = plausible && u64::from(crc32fast::hash(self.get(base, len as usize)?)) == crc;
        Ok(ok.then_some(len as u32))
    }

    /// The next valid record after the invalid one at `pos`, if any.
    fn resync(&mut self, pos: u64) -> io::Result<Option<u64>> {
        // A damaged payload usually leaves the length intact: try the next boundary first,
        // which also avoids mistaking a record embedded in a message body for a real one.
        if pos + u64::from(HEADER_LEN) <= self.len {
            let len = le(self.get(pos, 4)?);
            let next = pos + u64::from(HEADER_LEN) + len;
            if (1..=u64::from(MAX_RECORD_LEN)).contains(&len)
                && next < self.len
                && self.valid_at(next)?.is_some()
            {
                return Ok(Some(next));
            }
        }
        for p in pos + 1..self.len {
            if self.valid_at(p)?.is_some() {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}

fn decode_seqs(payload: &[u8]) -> Vec<u64> {
    payload[5..].chunks_exact(8).map(le).collect()
}

/// Scans one segment of `len` bytes read through `read_at`, handing each valid record to `f`.
/// Corrupt regions followed by a valid record are skipped and error-logged; what to do with a
/// bad tail (truncate or count) is the caller's decision, as only it knows which segment is last.
pub(crate) fn scan_segment(
    label: &dyn Display,
    segment: u64,
    len: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    f: &mut dyn FnMut(Recovered),
) -> io::Result<ScanOutcome> {
    // Offsets are u32; anything beyond cannot have been written by us and counts as bad tail.
    let len = len.min(u64::from(u32::MAX));
    let mut w = Window {
        read_at,
        len,
        start: 0,
        buf: Vec::new(),
    };
    let mut out = ScanOutcome::default();
    let mut pos = 0;
    while pos < len {
        if let Some(rec_len) = w.valid_at(pos)? {
            let payload = w.get(pos + u64::from(HEADER_LEN), rec_len as usize)?;
            f(match payload[0] {
                KIND_PUBLISH => {
                    out.publishes += 1;
                    let loc = Location {
                        segment,
                        offset: pos as u32,
                        len: rec_len + HEADER_LEN,
                    };
                    Recovered::Publish {
                        loc,
                        seq: le(&payload[1..9]),
                        persistent: payload[9] & FLAG_PERSISTENT != 0,
                        meta: meta_of(payload),
                    }
                }
                KIND_ACKS => Recovered::Acks(decode_seqs(payload)),
                _ => Recovered::Delivered(decode_seqs(payload)),
            });
            out.records += 1;
            pos += u64::from(rec_len + HEADER_LEN);
            continue;
        }
        match w.resync(pos)? {
            Some(next) => {
                tracing::error!(store = %label, segment, offset = pos, skipped = next - pos, "corrupt record skipped");
                out.corrupt += 1;
                pos = next;
            }
            None => {
                out.bad_tail = Some(pos);
                break;
            }
        }
    }
    Ok(out)
}
