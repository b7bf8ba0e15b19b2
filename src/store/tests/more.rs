//! The rest of the suite: more generic cases (instantiated for both logs in `tests.rs`),
//! file-only tests, the model-based proptest (both logs) and on-demand measurements
//! (`cargo test --release --lib store::tests::more::measure -- --ignored --nocapture`).

use super::{msg, publishes, replay_all, Harness, Make};
use crate::store::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::time::Instant;

pub(super) fn clear_drops_everything<L: Harness>(make: Make<L>) {
    let mut log = make(2048);
    for i in 0..20 {
        log.append(&msg(i, 400)).unwrap();
    }
    log.sync().unwrap();
    log.clear().unwrap();
    assert_eq!(
        (log.segment_count(), log.disk_bytes(), log.ids().len()),
        (0, 0, 0)
    );
    let loc = log.append(&msg(100, 4)).unwrap();
    log.sync().unwrap();
    let (recs, _) = replay_all(&mut log.reopen());
    assert_eq!(publishes(&recs), [(100, loc)]);
}

pub(super) fn disk_returns_to_near_zero<L: Harness>(make: Make<L>) {
    let mut log = make(4096);
    let mut locs = Vec::new();
    for i in 0..1200 {
        locs.push(log.append(&msg(i, 200)).unwrap());
        if i % 100 == 99 {
            log.sync().unwrap();
        }
    }
    assert!(log.segment_count() > 50);
    // Release out of order in chunks, acking as a queue would.
    for chunk in locs.chunks(64).rev() {
        chunk.iter().for_each(|l| log.release(*l));
        log.append_acks(&[1, 2, 3]).unwrap();
    }
    log.sync().unwrap();
    assert!(log.disk_bytes() <= 4096, "{} bytes left", log.disk_bytes());
    assert!(log.segment_count() <= 1 && log.ids().len() <= 1);
}

pub(super) fn kill_keeps_synced_prefix<L: Harness>(make: Make<L>) {
    let mut log = make(1 << 20);
    for i in 0..5 {
        log.append(&msg(i, 50)).unwrap();
    }
    log.sync().unwrap();
    for i in 5..10 {
        log.append(&msg(i, 50)).unwrap();
    }
    let (recs, report) = replay_all(&mut log.kill());
    let seqs: Vec<u64> = publishes(&recs).iter().map(|p| p.0).collect();
    assert!(
        seqs.len() >= 5 && seqs.iter().enumerate().all(|(i, &s)| s == i as u64),
        "{seqs:?}"
    );
    assert_eq!((report.corrupt_records, report.truncated_bytes), (0, 0));
}

#[test]
fn file_names_stray_files_and_empty_head_segment() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("q");
    let mut log = FileLog::open(&dir, 1000).unwrap();
    let locs: Vec<_> = (0..6).map(|i| log.append(&msg(i, 600)).unwrap()).collect();
    log.sync().unwrap();
    drop(log);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6);
    assert_eq!(names[0].to_str().unwrap(), "00000000000000000001.seg");
    // An empty oldest segment (crash right after creating it) and files that are not segments.
    fs::write(dir.join("00000000000000000000.seg"), b"").unwrap();
    fs::write(dir.join("notes.txt"), b"hello").unwrap();
    fs::write(dir.join("1.seg"), b"not a segment name").unwrap();
    let mut log = FileLog::open(&dir, 1000).unwrap();
    let (recs, report) = replay_all(&mut log);
    assert_eq!((report.segments, report.records), (7, 6));
    assert_eq!(
        publishes(&recs).iter().map(|p| p.1).collect::<Vec<_>>(),
        locs
    );
    assert!(
        !dir.join("00000000000000000000.seg").exists(),
        "released head segment deleted"
    );
    assert!(dir.join("notes.txt").exists() && dir.join("1.seg").exists());
    log.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn many_segments_read_through_few_handles_and_tiny_segment_size() {
    let root = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(root.path(), 0).unwrap();
    let locs: Vec<_> = (0..40).map(|i| log.append(&msg(i, 10)).unwrap()).collect();
    assert!(
        locs.iter().all(|l| l.offset == 0),
        "segment_size 0: one record per segment"
    );
    log.flush().unwrap();
    for round in 0..3 {
        for i in (round..40).step_by(3).chain((0..40).rev()) {
            assert_eq!(log.read(locs[i]).unwrap(), msg(i as u64, 10));
        }
    }
    log.release(locs[0]);
    assert_eq!(
        log.read(locs[0]).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn segments_are_kept_until_replayed() {
    let root = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(root.path(), 1 << 20).unwrap();
    log.append(&msg(0, 10)).unwrap();
    let mut log = log.reopen();
    // No replay yet: nothing is known about the old segment, so nothing may delete it.
    let loc = log.append(&msg(1, 10)).unwrap();
    log.release(loc);
    assert_eq!(log.segment_count(), 2);
    let (recs, _) = replay_all(&mut log);
    assert_eq!(publishes(&recs).len(), 2);
}

#[test]
fn torn_tail_before_an_empty_newest_segment_is_truncated() {
    let root = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(root.path(), 1000).unwrap();
    let locs: Vec<_> = (0..4).map(|i| log.append(&msg(i, 600)).unwrap()).collect();
    log.sync().unwrap();
    drop(log);
    // Crash after rotating: the new segment's entry survived, the old one's last write did not.
    let last = root.path().join(format!("{:020}.seg", locs[3].segment));
    fs::write(&last, &fs::read(&last).unwrap()[..300]).unwrap();
    fs::write(
        root.path().join(format!("{:020}.seg", locs[3].segment + 1)),
        b"",
    )
    .unwrap();
    let mut log = FileLog::open(root.path(), 1000).unwrap();
    let (recs, report) = replay_all(&mut log);
    assert_eq!(publishes(&recs).len(), 3);
    assert_eq!((report.truncated_bytes, report.corrupt_records), (300, 0));
}

#[test]
fn memory_power_loss_keeps_what_sync_covered() {
    let mut log = MemoryLog::new(1000);
    let locs: Vec<_> = (0..6).map(|i| log.append(&msg(i, 600)).unwrap()).collect();
    log.sync().unwrap();
    (6..9).for_each(|i| assert!(log.append(&msg(i, 600)).is_ok()));
    log.restart(true);
    let (recs, _) = replay_all(&mut log);
    let got: Vec<_> = publishes(&recs).into_iter().map(|p| p.1).collect();
    assert_eq!(
        got, locs,
        "everything synced, including rotated segments; nothing else"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Append(u16),
    Release(usize),
    Acks(u8),
    Sync,
    Reopen,
    Kill,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u16..3000).prop_map(Op::Append),
        4 => any::<usize>().prop_map(Op::Release),
        1 => any::<u8>().prop_map(Op::Acks),
        2 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Kill),
    ]
}

/// Model: seq -> (body length, location, released). Checks that live records survive restarts
/// (a kill may lose an unsynced suffix, never a hole), that nothing unknown appears, that every
/// live record reads back, and that draining the log empties the disk.
fn run_model<L: Harness>(mut log: L, ops: &[Op]) -> Result<(), TestCaseError> {
    const SEGMENT: u64 = 2048;
    let mut model: BTreeMap<u64, (usize, Location, bool)> = BTreeMap::new();
    let (mut next, mut synced_below) = (0u64, 0u64);
    for op in ops {
        match *op {
            Op::Append(n) => {
                let loc = log.append(&msg(next, n.into())).unwrap();
                model.insert(next, (n.into(), loc, false));
                next += 1;
            }
            Op::Release(i) => {
                let mut live: Vec<_> = model.iter_mut().filter(|e| !e.1 .2).collect();
                let len = live.len().max(1);
                if let Some(entry) = live.get_mut(i % len) {
                    log.release(entry.1 .1);
                    entry.1 .2 = true;
                }
            }
            Op::Acks(s) => log.append_acks(&[s.into()]).unwrap(),
            Op::Sync => {
                log.sync().unwrap();
                synced_below = next;
            }
            Op::Reopen | Op::Kill => {
                let clean = matches!(op, Op::Reopen);
                log = if clean { log.reopen() } else { log.kill() };
                let (recs, report) = replay_all(&mut log);
                prop_assert_eq!((report.corrupt_records, report.truncated_bytes), (0, 0));
                let got = publishes(&recs);
                prop_assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "log order");
                let last = got.last().map(|p| p.0);
                let got: BTreeMap<u64, Location> = got.into_iter().collect();
                for (seq, &(_, _, released)) in &model {
                    let must = clean || *seq < synced_below || last.is_some_and(|l| *seq < l);
                    prop_assert!(
                        released || !must || got.contains_key(seq),
                        "lost seq {}",
                        seq
                    );
                }
                let mut survivors = BTreeMap::new();
                for (seq, loc) in got {
                    let Some(&(n, _, released)) = model.get(&seq) else {
                        return Err(TestCaseError::fail(format!("unknown seq {seq}")));
                    };
                    if released {
                        log.release(loc); // the caller would have seen its ack
                    }
                    survivors.insert(seq, (n, loc, released));
                }
                model = survivors;
                synced_below = next;
            }
        }
    }
    for (seq, &(n, loc, released)) in &model {
        if !released {
            prop_assert_eq!(log.read(loc).unwrap(), msg(*seq, n));
            log.release(loc);
        }
    }
    prop_assert!(
        log.segment_count() <= 1,
        "{} segments left",
        log.segment_count()
    );
    prop_assert!(
        log.disk_bytes() <= SEGMENT.max(3100),
        "{} bytes left",
        log.disk_bytes()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn model_file(ops in prop::collection::vec(op(), 1..80)) {
        let root = tempfile::tempdir().unwrap();
        run_model(FileLog::open(root.path(), 2048).unwrap(), &ops)?;
    }
    #[test]
    fn model_memory(ops in prop::collection::vec(op(), 1..80)) {
        run_model(MemoryLog::new(2048), &ops)?;
    }
}

fn kib_message(seq: u64) -> StoredMessage {
    StoredMessage {
        body: Bytes::from(vec![0x5a; 1024]),
        ..msg(seq, 0)
    }
}

#[test]
#[ignore = "measurement; run with --ignored --nocapture in release mode"]
fn measure_append_sync_throughput() {
    let root = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(root.path(), 64 << 20).unwrap();
    let mut m = kib_message(0);
    let (n, batch) = (100_000u64, 1000);
    let start = Instant::now();
    for seq in 0..n {
        m.seq = seq;
        log.append(&m).unwrap();
        if seq % batch == batch - 1 {
            log.sync().unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "append+sync: {n} x 1 KiB, sync every {batch}: {secs:.3} s, {:.0} msg/s",
        n as f64 / secs
    );
}

#[test]
#[ignore = "measurement; writes 1 GiB; run with --ignored --nocapture in release mode"]
fn measure_replay_1m() {
    let root = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(root.path(), 64 << 20).unwrap();
    let mut m = kib_message(0);
    let start = Instant::now();
    for seq in 0..1_000_000 {
        m.seq = seq;
        log.append(&m).unwrap();
    }
    log.sync().unwrap();
    let write = start.elapsed().as_secs_f64();
    let (bytes, segments) = (log.disk_bytes(), log.segment_count());
    let mut log = log.reopen();
    let start = Instant::now();
    let mut publishes = 0u64;
    let report = log
        .replay(&mut |r| publishes += u64::from(matches!(r, Recovered::Publish { .. })))
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((publishes, report.records), (1_000_000, 1_000_000));
    println!("write+sync 1M x 1 KiB: {write:.2} s ({bytes} bytes, {segments} segments)");
    println!(
        "replay 1M x 1 KiB (page cache warm): {secs:.3} s, {:.0} records/s",
        1e6 / secs
    );
}
