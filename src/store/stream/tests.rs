//! Unit tests of the stream log: offsets, chunk and segment boundaries, unflushed reads,
//! timestamps, filters, reader hints. Recovery, damage and retention are in `tests_recovery.rs`,
//! the model-based proptest and the measurements in `tests_model.rs`.

use super::*;

pub(super) fn cfg(max_segment_size: u64) -> StreamConfig {
    StreamConfig {
        max_segment_size,
        max_bytes: None,
        max_age: None,
    }
}

/// A log with small chunks so that few records span many chunks and segments.
pub(super) fn small_log(dir: &Path, chunk: usize, seg: u64) -> StreamLog {
    let mut log = StreamLog::open(dir, cfg(seg)).unwrap();
    log.chunk_target = chunk;
    log
}

/// Clean close (flushes), then open again with the same settings.
pub(super) fn reopen(log: StreamLog) -> StreamLog {
    let (dir, cfg, chunk) = (
        log.dir().to_path_buf(),
        log.config().clone(),
        log.chunk_target,
    );
    drop(log);
    let mut log = StreamLog::open(&dir, cfg).unwrap();
    log.chunk_target = chunk;
    log
}

/// Deterministic body of record `i`: its length varies and its content names it.
pub(super) fn body(i: u64, len: usize) -> Vec<u8> {
    let mut b = format!("m{i}:").into_bytes();
    b.resize(len.max(b.len()), (i % 251) as u8);
    b
}

pub(super) fn append(log: &mut StreamLog, i: u64, len: usize) -> u64 {
    let filter = (i % 3 != 0).then(|| if i % 3 == 1 { &b"a"[..] } else { &b"b"[..] });
    let rk = format!("rk{i}");
    let o = log.append(
        1_000 + i as i64,
        filter,
        b"ex",
        rk.as_bytes(),
        b"props",
        &body(i, len),
    );
    o.unwrap()
}

/// Checks that `r` is what `append(_, i, len)` wrote.
pub(super) fn check(r: &StreamRecord, i: u64, len: usize) {
    assert_eq!(r.offset, i);
    assert_eq!(r.body, body(i, len), "offset {i}");
    assert_eq!(r.routing_key, format!("rk{i}").as_bytes());
    assert_eq!(
        (&r.exchange[..], &r.properties[..]),
        (&b"ex"[..], &b"props"[..])
    );
    assert_eq!(r.timestamp_ms, 1_000 + i as i64);
    let want = (i % 3 != 0).then_some(if i % 3 == 1 { "a" } else { "b" });
    assert_eq!(r.filter.as_deref(), want.map(str::as_bytes));
}

/// Everything from `from` on, in batches of `batch` records.
pub(super) fn read_all(log: &mut StreamLog, from: u64, batch: usize) -> Vec<StreamRecord> {
    let (mut out, mut next) = (Vec::new(), from);
    while next < log.next_offset() {
        let b = log.read(next, batch, usize::MAX, None).unwrap();
        assert!(
            b.next > next || !b.records.is_empty(),
            "read made no progress at {next}"
        );
        next = b.next;
        out.extend(b.records);
    }
    out
}

#[test]
fn append_read_round_trip_with_offsets() {
    fn send<T: Send>() {}
    send::<StreamLog>(); // the broker keeps a log behind a mutex shared across threads

    let dir = tempfile::tempdir().unwrap();
    let mut log = StreamLog::open(dir.path(), StreamConfig::default()).unwrap();
    assert_eq!(
        (log.first_offset(), log.next_offset(), log.segment_count()),
        (0, 0, 0)
    );
    assert_eq!(
        log.read(0, 10, usize::MAX, None).unwrap(),
        ReadBatch::default()
    );
    for i in 0..100 {
        assert_eq!(append(&mut log, i, i as usize * 3), i);
    }
    let recs = read_all(&mut log, 0, 1000);
    assert_eq!(recs.len(), 100);
    recs.iter()
        .enumerate()
        .for_each(|(i, r)| check(r, i as u64, i * 3));
    log.flush().unwrap();
    assert_eq!(read_all(&mut log, 0, 1000), recs);
    assert_eq!(
        (log.first_offset(), log.next_offset(), log.segment_count()),
        (0, 100, 1)
    );
}

#[test]
fn reads_cross_chunk_and_segment_boundaries_and_start_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 200, 1000);
    for i in 0..500 {
        append(&mut log, i, 40 + (i % 7) as usize);
        if i % 37 == 0 {
            log.flush().unwrap();
        }
    }
    assert!(log.segment_count() > 10, "{} segments", log.segment_count());
    for batch in [1, 7, 1000] {
        let recs = read_all(&mut log, 0, batch);
        assert_eq!(recs.len(), 500);
        recs.iter()
            .for_each(|r| check(r, r.offset, 40 + (r.offset % 7) as usize));
    }
    for n in [0, 1, 36, 37, 38, 199, 250, 498, 499] {
        let b = log.read(n, 3, usize::MAX, None).unwrap();
        let offsets: Vec<u64> = b.records.iter().map(|r| r.offset).collect();
        let want: Vec<u64> = (n..500).take(3).collect();
        assert_eq!((offsets, b.next), (want, (n + 3).min(500)), "from {n}");
    }
    let end = log.read(500, 10, usize::MAX, None).unwrap();
    assert_eq!((end.records.len(), end.next), (0, 500));
}

#[test]
fn reads_include_unflushed_and_unwritten_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 100, 1 << 20);
    for i in 0..10 {
        append(&mut log, i, 30); // chunks close (buffered, not written) every few records
    }
    assert_eq!(read_all(&mut log, 0, 4).len(), 10);
    assert_eq!(
        log.writer.as_ref().unwrap().flushed,
        0,
        "nothing written yet"
    );
    log.flush().unwrap();
    for i in 10..15 {
        append(&mut log, i, 30);
    }
    let recs = read_all(&mut log, 8, 100);
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (8..15).collect::<Vec<_>>()
    );
    recs.iter().for_each(|r| check(r, r.offset, 30));
}

#[test]
fn tailing_reader_follows_appends_flushes_and_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 150, 600);
    let mut next = 0;
    let mut got = Vec::new();
    for i in 0..300u64 {
        append(&mut log, i, 20);
        if i % 5 == 0 {
            log.flush().unwrap();
        }
        if i % 3 == 0 {
            let b = log.read(next, 2, usize::MAX, None).unwrap();
            next = b.next;
            got.extend(b.records);
        }
    }
    got.extend(read_all(&mut log, next, 2));
    assert_eq!(
        got.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    got.iter().for_each(|r| check(r, r.offset, 20));
}

#[test]
fn sequential_readers_resume_without_searching() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 200, 1000);
    for i in 0..300 {
        append(&mut log, i, 30);
        if i % 50 == 0 {
            log.flush().unwrap();
        }
    }
    // Three interleaved readers, each through chunks, segments, buffered chunks and the open one.
    let mut next = [0, 100, 200];
    while next.iter().any(|&n| n < 300) {
        for n in &mut next {
            let b = log.read(*n, 3, usize::MAX, None).unwrap();
            assert_eq!(
                b.records.first().map(|r| r.offset),
                (*n < 300).then_some(*n)
            );
            *n = b.next;
        }
    }
    assert_eq!(
        log.cache.searches, 3,
        "one search per reader, at its first read"
    );
    // A tailing reader keeps its place while its open chunk is closed and written.
    let tail = log.read(300, 10, usize::MAX, None).unwrap().next;
    append(&mut log, 300, 30);
    let b = log.read(tail, 10, usize::MAX, None).unwrap();
    append(&mut log, 301, 30);
    log.flush().unwrap();
    append(&mut log, 302, 30);
    let b = log.read(b.next, 10, usize::MAX, None).unwrap();
    assert_eq!(
        b.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [301, 302]
    );
    assert_eq!(
        log.cache.searches, 3,
        "resumed where the readers above stopped"
    );
}

#[test]
fn max_bytes_limits_a_batch_but_one_record_always_comes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 1000, 1 << 20);
    for i in 0..10 {
        append(&mut log, i, 100);
    }
    // Payload per record: 2 (ex) + 3 (rk) + 5 (props) + 100 + filter (0 or 1).
    let b = log.read(0, 100, 300, None).unwrap();
    assert_eq!((b.records.len(), b.next), (2, 2));
    let b = log.read(2, 100, 1, None).unwrap();
    assert_eq!((b.records.len(), b.next), (1, 3));
    assert_eq!(log.read(3, 0, 1000, None).unwrap().records.len(), 0);
}

#[test]
fn offset_at_finds_first_chunk_at_or_after_a_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 1 << 20, 300);
    assert_eq!(log.offset_at(5), 0);
    // Chunk k holds offsets 10k..10k+10 with timestamps 100k.. (one flush per chunk).
    for k in 0..10i64 {
        for j in 0..10 {
            log.append(100 * k + j, None, b"", b"", b"", &[0; 20])
                .unwrap();
        }
        log.flush().unwrap();
    }
    log.append(5000, None, b"", b"", b"", b"open").unwrap();
    assert!(log.segment_count() > 3);
    let cases = [
        (i64::MIN, 0),
        (0, 0),
        (1, 10),
        (100, 10),
        (150, 20),
        (900, 90),
        (901, 100),
        (5000, 100),
        (5001, 101),
    ];
    for (ts, want) in cases {
        assert_eq!(log.offset_at(ts), want, "ts {ts}");
    }
    log.sync().unwrap();
    drop(log);
    let log = StreamLog::open(dir.path(), cfg(300)).unwrap();
    for (ts, want) in cases {
        assert_eq!(log.offset_at(ts), want.min(101), "after reopen, ts {ts}");
    }
}

#[test]
fn chunk_timestamps_stay_monotonic_when_the_clock_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 1 << 20, 1 << 20);
    for ts in [100, 50, 200, 10] {
        log.append(ts, None, b"", b"", b"", b"x").unwrap();
        log.flush().unwrap();
    }
    // Chunk timestamps are 100, 100, 200, 200; records keep their own.
    assert_eq!(
        [log.offset_at(60), log.offset_at(101), log.offset_at(201)],
        [0, 2, 4]
    );
    let ts: Vec<i64> = read_all(&mut log, 0, 10)
        .iter()
        .map(|r| r.timestamp_ms)
        .collect();
    assert_eq!(ts, [100, 50, 200, 10]);
}

#[test]
fn last_chunk_offset_is_the_newest_chunk_open_or_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 1 << 20, 1 << 20);
    assert_eq!(log.last_chunk_offset(), 0);
    for i in 0..5 {
        append(&mut log, i, 10);
    }
    assert_eq!(log.last_chunk_offset(), 0);
    log.flush().unwrap();
    assert_eq!(log.last_chunk_offset(), 0);
    for i in 5..8 {
        append(&mut log, i, 10);
    }
    assert_eq!(log.last_chunk_offset(), 5);
    log.flush().unwrap();
    drop(log);
    let log = StreamLog::open(dir.path(), cfg(1 << 20)).unwrap();
    assert_eq!((log.last_chunk_offset(), log.next_offset()), (5, 8));
}

#[test]
fn filter_skips_rejected_records_but_advances() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 300, 2000);
    for i in 0..200 {
        append(&mut log, i, 20);
        if i % 50 == 0 {
            log.flush().unwrap();
        }
    }
    let only_a = |f: Option<&[u8]>| f == Some(&b"a"[..]);
    let (mut next, mut got) = (0, Vec::new());
    while next < log.next_offset() {
        let b = log.read(next, 5, usize::MAX, Some(&only_a)).unwrap();
        next = b.next;
        got.extend(b.records.into_iter().map(|r| r.offset));
    }
    assert_eq!(got, (0..200).filter(|i| i % 3 == 1).collect::<Vec<_>>());
    let none = |f: Option<&[u8]>| f.is_none();
    let b = log.read(190, 100, usize::MAX, Some(&none)).unwrap();
    assert_eq!(
        b.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        [192, 195, 198]
    );
    assert_eq!(b.next, 200);
    let nothing = |_: Option<&[u8]>| false;
    assert_eq!(
        log.read(0, 10, usize::MAX, Some(&nothing)).unwrap().next,
        200
    );
}
