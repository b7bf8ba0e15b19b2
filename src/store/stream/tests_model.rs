//! The model-based proptest (random appends, flushes, syncs, reopens, kills, reads and
//! retention against a `Vec` of everything appended) and on-demand measurements:
//! `cargo test --release --lib store::stream::tests_model::measure -- --ignored --nocapture`.

use super::tests::{reopen, small_log};
use super::*;
use proptest::prelude::*;
use std::time::Instant;

#[derive(Clone, Debug)]
enum Op {
    Append {
        n: u8,
        len: u16,
        filtered: bool,
    },
    Flush,
    Sync,
    Reopen,
    Kill,
    /// Read from `from` (taken modulo a little past the end).
    Read {
        from: u64,
        max: u8,
    },
    /// A sequential reader continues from where it stopped.
    Tail {
        max: u8,
    },
    Retain {
        max_bytes: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..40u8, 0..600u16, any::<bool>()).prop_map(|(n, len, filtered)| Op::Append { n, len, filtered }),
        2 => Just(Op::Flush),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::Kill),
        3 => (any::<u64>(), 1..50u8).prop_map(|(from, max)| Op::Read { from, max }),
        3 => (1..20u8).prop_map(|max| Op::Tail { max }),
        1 => (0..6000u16).prop_map(|max_bytes| Op::Retain { max_bytes }),
    ]
}

/// What was appended at each offset: (timestamp, filter, body).
type Model = Vec<(i64, Option<Vec<u8>>, Vec<u8>)>;

fn check_batch(model: &Model, first: u64, from: u64, max: usize, b: &ReadBatch) {
    let start = from.max(first);
    assert_eq!(b.skipped_to_first, from < first);
    let want: Vec<u64> = (start..model.len() as u64).take(max).collect();
    let got: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
    assert_eq!(got, want, "read from {from} (first {first})");
    assert_eq!(b.next, want.last().map_or(start, |l| l + 1).max(start));
    for r in &b.records {
        let (ts, filter, body) = &model[r.offset as usize];
        assert_eq!(
            (r.timestamp_ms, r.filter.as_deref(), &r.body[..]),
            (*ts, filter.as_deref(), &body[..])
        );
    }
}

fn run(chunk: usize, seg: u64, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), chunk, seg);
    let mut model: Model = Vec::new();
    let (mut flushed, mut first, mut tail) = (0u64, 0u64, 0u64);
    for op in ops {
        match op {
            Op::Append { n, len, filtered } => {
                for _ in 0..n {
                    let i = model.len() as u64;
                    let filter = filtered.then(|| format!("f{}", i % 4).into_bytes());
                    let body = super::tests::body(i, len as usize);
                    let ts = i as i64 * 10;
                    assert_eq!(
                        log.append(ts, filter.as_deref(), b"x", b"k", b"", &body)
                            .unwrap(),
                        i
                    );
                    model.push((ts, filter, body));
                }
            }
            Op::Flush | Op::Sync | Op::Reopen => {
                match op {
                    Op::Flush => log.flush().unwrap(),
                    Op::Sync => log.sync().unwrap(),
                    _ => log = reopen(log),
                }
                flushed = model.len() as u64;
            }
            Op::Kill => {
                log.discard_buffers();
                log = reopen(log);
                let next = log.next_offset();
                assert!(
                    next >= flushed && next <= model.len() as u64,
                    "{flushed} <= {next}"
                );
                model.truncate(next as usize);
                (flushed, tail) = (next, tail.min(next));
            }
            Op::Read { from, max } => {
                let from = from % (model.len() as u64 + 3);
                let b = log.read(from, max as usize, usize::MAX, None).unwrap();
                check_batch(&model, first, from, max as usize, &b);
            }
            Op::Tail { max } => {
                let b = log.read(tail, max as usize, usize::MAX, None).unwrap();
                check_batch(&model, first, tail, max as usize, &b);
                tail = b.next;
            }
            Op::Retain { max_bytes } => {
                log.set_config(StreamConfig {
                    max_bytes: Some(u64::from(max_bytes)),
                    ..log.config().clone()
                });
                log.enforce_retention(0).unwrap();
            }
        }
        assert_eq!(log.next_offset(), model.len() as u64);
        assert!(log.first_offset() >= first, "first offset went back");
        first = log.first_offset();
        assert!(first <= log.next_offset() && log.last_chunk_offset() >= first);
    }
    // A filtered replay of everything left sees exactly the matching records.
    let f1 = |f: Option<&[u8]>| f == Some(&b"f1"[..]);
    let (mut next, mut got) = (first, Vec::new());
    while next < log.next_offset() {
        let b = log.read(next, 7, 5000, Some(&f1)).unwrap();
        next = b.next;
        got.extend(b.records.iter().map(|r| r.offset));
    }
    let want: Vec<u64> = (first..model.len() as u64)
        .filter(|&o| model[o as usize].1.as_deref() == Some(&b"f1"[..]))
        .collect();
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_ops_match_a_vec_model(chunk in 1..3000usize, seg in 1..8000u64, ops in proptest::collection::vec(op(), 1..60)) {
        run(chunk, seg, ops);
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

fn measure_one(n: u64, size: usize) {
    let dir =
        tempfile::tempdir_in(std::env::var("STREAM_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
            .unwrap();
    let mut log = StreamLog::open(dir.path(), StreamConfig::default()).unwrap();
    let body = vec![0x5a; size];
    let mb = |secs: f64| (n as usize * size) as f64 / secs / 1e6;
    let t = Instant::now();
    for i in 0..n {
        log.append(now_ms(), None, b"amq.direct", b"ledger", b"", &body)
            .unwrap();
        if (i + 1) % 10_000 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "append {n} x {size} B, sync every 10k: {:.2} s, {:.0} msgs/s, {:.1} MB/s ({} segments, {} MB on disk)",
        s, n as f64 / s, mb(s), log.segment_count(), log.size_bytes() / 1_000_000
    );
    for batch in [1000, 10] {
        let t = Instant::now();
        let (mut next, mut count, mut bytes) = (0, 0u64, 0usize);
        while next < log.next_offset() {
            let b = log.read(next, batch, usize::MAX, None).unwrap();
            next = b.next;
            count += b.records.len() as u64;
            bytes += b.records.iter().map(|r| r.body.len()).sum::<usize>();
        }
        let s = t.elapsed().as_secs_f64();
        assert_eq!((count, bytes), (n, n as usize * size));
        println!(
            "read from 0, {batch} per call (page cache): {:.2} s, {:.0} msgs/s, {:.1} MB/s",
            s,
            n as f64 / s,
            mb(s)
        );
    }
}

#[test]
#[ignore = "measurement; writes ~1.1 GB; run with --ignored --nocapture in release mode"]
fn measure() {
    measure_one(1_000_000, 16);
    measure_one(1_000_000, 1024);
}
