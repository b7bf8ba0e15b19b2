//! The store's test suite. Every generic case runs against both [`FileLog`] and [`MemoryLog`]
//! (through [`Harness`], which adds restart and damage), so the in-memory log is held to the
//! file log's semantics. More cases, file-only tests, the model-based proptest and the
//! on-demand measurements are in `tests/more.rs`.

use super::codec::publish_len;
use super::*;
use std::fs;

mod more;
use more::{clear_drops_everything, disk_returns_to_near_zero, kill_keeps_synced_prefix};

/// Restart and damage, which the production API has no business offering.
pub(super) trait Harness: MessageLog + Sized {
    /// Clean shutdown (buffer flushed, no sync), then open again.
    fn reopen(self) -> Self;
    /// Process killed: the userspace buffer is lost; then open again.
    fn kill(self) -> Self;
    fn ids(&self) -> Vec<u64>;
    /// Shutdown, edit segment `id` with `f`, open again.
    fn damage(self, id: u64, f: impl FnOnce(&mut Vec<u8>)) -> Self;
}

impl Harness for FileLog {
    fn reopen(self) -> Self {
        let (dir, size) = (self.dir().to_path_buf(), self.segment_size());
        drop(self);
        FileLog::open(&dir, size).unwrap()
    }
    fn kill(mut self) -> Self {
        self.discard_buffer();
        self.reopen()
    }
    fn ids(&self) -> Vec<u64> {
        let names = fs::read_dir(self.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name());
        let mut ids: Vec<u64> = names
            .filter_map(|n| n.to_str()?.strip_suffix(".seg")?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }
    fn damage(self, id: u64, f: impl FnOnce(&mut Vec<u8>)) -> Self {
        let path = self.dir().join(format!("{id:020}.seg"));
        let log = self.reopen();
        let mut bytes = fs::read(&path).unwrap();
        f(&mut bytes);
        fs::write(&path, bytes).unwrap();
        log.reopen()
    }
}

impl Harness for MemoryLog {
    fn reopen(mut self) -> Self {
        self.flush().unwrap();
        self.restart(false);
        self
    }
    fn kill(mut self) -> Self {
        self.restart(false);
        self
    }
    fn ids(&self) -> Vec<u64> {
        self.segment_ids()
    }
    fn damage(mut self, id: u64, f: impl FnOnce(&mut Vec<u8>)) -> Self {
        MemoryLog::damage(&mut self, id, f);
        self
    }
}

pub(super) fn msg(seq: u64, body_len: usize) -> StoredMessage {
    StoredMessage {
        seq,
        persistent: seq % 3 != 0,
        exchange: Bytes::from_static(b"amq.direct"),
        routing_key: Bytes::from(format!("key.{seq}")),
        properties: Bytes::from(vec![seq as u8; (seq % 5) as usize]),
        body: (0..body_len)
            .map(|i| (i as u64).wrapping_mul(31).wrapping_add(seq) as u8)
            .collect(),
        meta: RecordMeta::default(),
    }
}

pub(super) fn replay_all(log: &mut impl MessageLog) -> (Vec<Recovered>, RecoveryReport) {
    let mut recs = Vec::new();
    let report = log.replay(&mut |r| recs.push(r)).unwrap();
    (recs, report)
}

pub(super) fn publishes(recs: &[Recovered]) -> Vec<(u64, Location)> {
    let publish = |r: &Recovered| match *r {
        Recovered::Publish { seq, loc, .. } => Some((seq, loc)),
        _ => None,
    };
    recs.iter().filter_map(publish).collect()
}

pub(super) type Make<'a, L> = &'a dyn Fn(u64) -> L;

fn round_trip<L: Harness>(make: Make<L>) {
    let mut log = make(64 << 20);
    let sizes = [0, 1, 100, 1 << 20, 7];
    let locs: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| log.append(&msg(i as u64, n)).unwrap())
        .collect();
    for (i, &n) in sizes.iter().enumerate() {
        // Straight from the (unflushed) write buffer, or whatever the big record forced out.
        assert_eq!(log.read(locs[i]).unwrap(), msg(i as u64, n));
        assert_eq!(locs[i].len, publish_len(&msg(i as u64, n)).unwrap());
    }
    let tiny = log.append(&msg(9, 3)).unwrap();
    assert_eq!(
        log.read(tiny).unwrap(),
        msg(9, 3),
        "record still in the buffer"
    );
    log.sync().unwrap();
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(log.read(locs[i]).unwrap(), msg(i as u64, n));
    }
    let long_key = StoredMessage {
        routing_key: vec![b'k'; 256].into(),
        ..msg(1, 1)
    };
    assert_eq!(
        log.append(&long_key).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

fn rotation<L: Harness>(make: Make<L>) {
    let mut log = make(4096);
    let locs: Vec<_> = (0..50).map(|i| log.append(&msg(i, 500)).unwrap()).collect();
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    assert!(locs.windows(2).all(|w| w[0].segment <= w[1].segment));
    assert!(locs
        .iter()
        .all(|l| u64::from(l.offset) + u64::from(l.len) <= 4096));
    // A record larger than a segment goes alone into a fresh one.
    let big = log.append(&msg(50, 10_000)).unwrap();
    let after = log.append(&msg(51, 10)).unwrap();
    assert_eq!((big.offset, after.offset), (0, 0));
    assert!(big.segment > locs[49].segment && after.segment > big.segment);
    log.flush().unwrap();
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(log.read(*loc).unwrap(), msg(i as u64, 500));
    }
    assert_eq!(log.read(big).unwrap(), msg(50, 10_000));
    assert_eq!(log.ids().len(), log.segment_count());
}

fn release_deletes_head_only<L: Harness>(make: Make<L>) {
    let mut log = make(4096);
    // Three records per segment: segments A, B, C (C is being written).
    let locs: Vec<_> = (0..9).map(|i| log.append(&msg(i, 1000)).unwrap()).collect();
    let seg = |i: usize| locs[i].segment;
    assert_eq!((seg(0), seg(3), seg(6)), (seg(2), seg(5), seg(8)));
    let release = |log: &mut L, which: &[usize]| which.iter().for_each(|&i| log.release(locs[i]));
    release(&mut log, &[3, 4, 5, 0, 1]);
    assert_eq!(
        log.segment_count(),
        3,
        "B is fully released but A (older) is not"
    );
    release(&mut log, &[2]);
    assert_eq!(log.ids(), [seg(6)], "A and B deleted, oldest first");
    release(&mut log, &[6, 7]);
    assert_eq!(log.read(locs[8]).unwrap(), msg(8, 1000));
    release(&mut log, &[8]);
    assert_eq!(
        log.segment_count(),
        0,
        "drained and past half a segment: C is retired"
    );
    // A fully released segment being written is kept while small.
    let mut log = make(1 << 20);
    let a = log.append(&msg(1, 10)).unwrap();
    log.release(a);
    assert_eq!(log.segment_count(), 1);
    let b = log.append(&msg(2, 10)).unwrap();
    log.release(a); // double release is ignored
    log.flush().unwrap();
    assert_eq!((log.read(b).unwrap(), log.ids().len()), (msg(2, 10), 1));
}

fn acks_and_delivered_replay_in_order<L: Harness>(make: Make<L>) {
    let mut log = make(300);
    let p1 = log.append(&msg(1, 10)).unwrap();
    log.append_delivered(&[1]).unwrap();
    let p2 = log.append(&msg(2, 10)).unwrap();
    log.append_acks(&[1]).unwrap();
    log.append_acks(&[]).unwrap();
    log.append_delivered(&[2, 3]).unwrap();
    let p3 = log.append(&msg(3, 200)).unwrap();
    let many: Vec<u64> = (0..40_000).collect(); // split over several records
    log.append_acks(&many).unwrap();
    log.sync().unwrap();
    let (recs, report) = replay_all(&mut log.reopen());
    let pubr = |loc: Location, seq| Recovered::Publish {
        loc,
        seq,
        persistent: seq % 3 != 0,
        meta: RecordMeta::default(),
    };
    let mut want = vec![pubr(p1, 1), Recovered::Delivered(vec![1]), pubr(p2, 2)];
    want.extend([
        Recovered::Acks(vec![1]),
        Recovered::Delivered(vec![2, 3]),
        pubr(p3, 3),
    ]);
    assert_eq!(recs[..6], want[..]);
    let acked: Vec<u64> = recs[6..]
        .iter()
        .flat_map(|r| {
            if let Recovered::Acks(s) = r {
                s.clone()
            } else {
                vec![]
            }
        })
        .collect();
    assert_eq!((acked, recs.len() as u64), (many, report.records));
}

fn reopen_replays_same_records<L: Harness>(make: Make<L>) {
    let mut log = make(8192);
    let locs: Vec<_> = (0..200)
        .map(|i| log.append(&msg(i, i as usize * 7)).unwrap())
        .collect();
    log.append_acks(&[5, 6]).unwrap();
    log.sync().unwrap();
    let (segments, bytes) = (log.segment_count(), log.disk_bytes());
    let mut log = log.reopen();
    let (recs, report) = replay_all(&mut log);
    let expected: Vec<_> = locs
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64, *l))
        .collect();
    assert_eq!(publishes(&recs), expected);
    assert_eq!(
        (
            report.records,
            report.corrupt_records,
            report.truncated_bytes
        ),
        (201, 0, 0)
    );
    assert_eq!(
        (report.segments, log.segment_count(), log.disk_bytes()),
        (segments, segments, bytes)
    );
    for (i, loc) in locs.iter().enumerate() {
        assert_eq!(log.read(*loc).unwrap(), msg(i as u64, i * 7));
    }
    let next = log.append(&msg(200, 1)).unwrap();
    assert!(
        next.segment > locs[199].segment,
        "a reopened log writes a new segment"
    );
    for loc in locs.iter().chain([&next]) {
        log.release(*loc);
    }
    assert!(log.segment_count() <= 1);
}

fn torn_tail_is_truncated<L: Harness>(make: Make<L>) {
    let mut log = make(1 << 20);
    let locs: Vec<_> = (0..10).map(|i| log.append(&msg(i, 300)).unwrap()).collect();
    log.sync().unwrap();
    let last = locs[9];
    let mut log = log.damage(last.segment, |b| b.truncate(last.offset as usize + 100));
    let (recs, report) = replay_all(&mut log);
    assert_eq!(
        publishes(&recs),
        (0..9).map(|i| (i, locs[i as usize])).collect::<Vec<_>>()
    );
    assert_eq!((report.truncated_bytes, report.corrupt_records), (100, 0));
    assert_eq!(log.disk_bytes(), u64::from(last.offset));
    let new = log.append(&msg(10, 5)).unwrap();
    log.sync().unwrap();
    let mut log = log.reopen();
    let (recs, report) = replay_all(&mut log);
    assert_eq!(publishes(&recs).len(), 10);
    assert_eq!((report.truncated_bytes, report.corrupt_records), (0, 0));
    assert_eq!(log.read(new).unwrap(), msg(10, 5));
}

fn corrupt_middle_record_is_skipped<L: Harness>(make: Make<L>) {
    for (name, at) in [("body byte", 40usize), ("length field", 1), ("checksum", 5)] {
        let mut log = make(1 << 20);
        let locs: Vec<_> = (0..10).map(|i| log.append(&msg(i, 100)).unwrap()).collect();
        log.sync().unwrap();
        let bad = locs[4];
        let mut log = log.damage(bad.segment, |b| b[bad.offset as usize + at] ^= 0xff);
        let (recs, report) = replay_all(&mut log);
        let seqs: Vec<u64> = publishes(&recs).iter().map(|p| p.0).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 5, 6, 7, 8, 9], "{name}");
        assert_eq!(
            (report.corrupt_records, report.truncated_bytes),
            (1, 0),
            "{name}"
        );
        assert_eq!(log.read(locs[9]).unwrap(), msg(9, 100));
        assert_eq!(
            log.read(bad).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}

fn garbage_length_and_empty_segments<L: Harness>(make: Make<L>) {
    let mut log = make(600);
    let locs: Vec<_> = (0..6).map(|i| log.append(&msg(i, 300)).unwrap()).collect();
    log.sync().unwrap();
    assert_eq!(log.segment_count(), 6);
    // Huge length in the newest segment's only record: a torn tail, not a 4 GiB allocation.
    let log = log.damage(locs[5].segment, |b| {
        b[..4].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    // An emptied middle segment and one that is pure garbage.
    let log = log.damage(locs[2].segment, |b| b.clear());
    let mut log = log.damage(locs[3].segment, |b| b.iter_mut().for_each(|x| *x = 0xa5));
    let (recs, report) = replay_all(&mut log);
    let seqs: Vec<u64> = publishes(&recs).iter().map(|p| p.0).collect();
    assert_eq!(seqs, [0, 1, 4]);
    assert_eq!(report.truncated_bytes, u64::from(locs[5].len));
    assert_eq!(report.corrupt_records, 1, "the garbage segment");
}

/// Metadata (expiry, lane, dead-lettered) survives a write, a read and a replay; a record
/// without metadata keeps the original byte layout, so logs written before it still replay.
fn metadata_round_trips<L: Harness>(make: Make<L>) {
    let mut log = make(64 << 20);
    let metas = [
        RecordMeta::default(),
        RecordMeta {
            expires: 1_700_000_000_123,
            ..RecordMeta::default()
        },
        RecordMeta {
            lane: Some(7),
            ..RecordMeta::default()
        },
        RecordMeta {
            expires: u64::MAX,
            lane: Some(255),
            dead_lettered: true,
            bcc: true,
        },
    ];
    let msgs: Vec<StoredMessage> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| StoredMessage {
            meta: *m,
            ..msg(i as u64 + 1, 10)
        })
        .collect();
    let locs: Vec<Location> = msgs.iter().map(|m| log.append(m).unwrap()).collect();
    for (m, l) in msgs.iter().zip(&locs) {
        assert_eq!(&log.read(*l).unwrap(), m);
        assert_eq!(l.len, publish_len(m).unwrap());
    }
    // Without metadata: 8-byte header, kind, seq, flags, 4 length fields and the fields.
    let plain = &msgs[0];
    let fields =
        plain.exchange.len() + plain.routing_key.len() + plain.properties.len() + plain.body.len();
    assert_eq!(locs[0].len as usize, 8 + 1 + 8 + 1 + 1 + 1 + 4 + 4 + fields);
    log.sync().unwrap();
    let (recs, _) = replay_all(&mut log.reopen());
    let found: Vec<RecordMeta> = recs
        .iter()
        .filter_map(|r| match r {
            Recovered::Publish { meta, .. } => Some(*meta),
            _ => None,
        })
        .collect();
    assert_eq!(found, metas);
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod file {
            $(#[test]
            fn $case() {
                let root = tempfile::tempdir().unwrap();
                let n = std::cell::Cell::new(0);
                let make = |size| {
                    n.set(n.get() + 1);
                    super::FileLog::open(&root.path().join(n.get().to_string()), size).unwrap()
                };
                super::$case(&make);
            })*
        }
        mod memory {
            $(#[test]
            fn $case() {
                super::$case(&super::MemoryLog::new);
            })*
        }
    };
}

suite!(
    round_trip,
    metadata_round_trips,
    rotation,
    release_deletes_head_only,
    acks_and_delivered_replay_in_order,
    reopen_replays_same_records,
    torn_tail_is_truncated,
    corrupt_middle_record_is_skipped,
    garbage_length_and_empty_segments,
    clear_drops_everything,
    disk_returns_to_near_zero,
    kill_keeps_synced_prefix,
);
