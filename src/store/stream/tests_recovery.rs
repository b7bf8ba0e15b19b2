//! Tests of what happens to files: reopen, kill, torn and corrupt tails, lost or lagging
//! indexes, stray files, and retention.

use super::format::HEADER_LEN;
use super::tests::{append, cfg, check, read_all, reopen, small_log};
use super::*;

/// Sorted (segment, index) paths of the log in `dir`.
fn files(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut firsts: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| index::parse_seg_name(&e.unwrap().file_name()))
        .collect();
    firsts.sort_unstable();
    firsts
        .iter()
        .map(|&f| (index::seg_path(dir, f), index::idx_path(dir, f)))
        .collect()
}

/// 120 records of 40 bytes in chunks of ~4 records, several segments, all synced.
fn synced_log(dir: &Path) -> StreamLog {
    let mut log = small_log(dir, 150, 1000);
    for i in 0..120 {
        append(&mut log, i, 40);
    }
    log.sync().unwrap();
    assert!(log.segment_count() >= 4);
    log
}

fn assert_all(log: &mut StreamLog, from: u64, to: u64) {
    let recs = read_all(log, from, 9);
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (from..to).collect::<Vec<_>>()
    );
    recs.iter().for_each(|r| check(r, r.offset, 40));
}

#[test]
fn reopen_after_sync_sees_everything_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = synced_log(dir.path());
    let stats = |l: &StreamLog| {
        (
            l.first_offset(),
            l.next_offset(),
            l.last_chunk_offset(),
            l.segment_count(),
            l.size_bytes(),
        )
    };
    let before = stats(&log);
    let mut log = reopen(log);
    assert_eq!(stats(&log), before);
    assert_all(&mut log, 0, 120);
    for i in 120..130 {
        assert_eq!(append(&mut log, i, 40), i);
    }
    let mut log = reopen(log); // a clean close flushes
    assert_all(&mut log, 0, 130);
}

#[test]
fn killed_process_keeps_what_was_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = synced_log(dir.path());
    for i in 120..125 {
        append(&mut log, i, 40);
    }
    log.flush().unwrap();
    for i in 125..140 {
        append(&mut log, i, 40);
    }
    // Rotations wrote some of these out; the open chunk and the write buffer are lost.
    let written = log.segs.back().unwrap().first;
    log.discard_buffers();
    let mut log = reopen(log);
    let next = log.next_offset();
    assert!(next >= 125.max(written) && next < 140, "{next}");
    assert_all(&mut log, 0, next);
    assert_eq!(append(&mut log, next, 40), next);
}

#[test]
fn torn_or_corrupt_tail_of_newest_segment_is_truncated() {
    // Each damages the newest segment, given the position of its last chunk.
    type Damage = fn(&mut Vec<u8>, usize);
    let cases: [(&str, Damage, bool); 4] = [
        (
            "cut inside the last chunk",
            |b, _| b.truncate(b.len() - 5),
            false,
        ),
        (
            "cut inside the last header",
            |b, at| b.truncate(at + 20),
            false,
        ),
        (
            "bit flip in the last chunk",
            |b, _| *b.last_mut().unwrap() ^= 1,
            false,
        ),
        ("zeros after the end", |b, _| b.extend([0; 300]), true),
    ];
    for (what, damage, keeps_last) in cases {
        let dir = tempfile::tempdir().unwrap();
        let log = synced_log(dir.path());
        let last = log.segs.back().unwrap().last.unwrap();
        let survivors = if keeps_last { 120 } else { last.offset };
        drop(log);
        let (seg, idx) = files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        damage(&mut bytes, last.pos as usize);
        fs::write(&seg, &bytes).unwrap();
        let mut log = reopen(small_log(dir.path(), 150, 1000));
        assert_eq!(log.next_offset(), survivors, "{what}");
        assert_all(&mut log, 0, survivors);
        let seg_len = fs::metadata(&seg).unwrap().len();
        assert_eq!(
            seg_len,
            log.segs.back().unwrap().size,
            "{what}: truncated to the last good chunk"
        );
        assert_eq!(
            fs::metadata(&idx).unwrap().len(),
            log.segs.back().unwrap().chunks * 24,
            "{what}"
        );
        for i in survivors..survivors + 20 {
            assert_eq!(append(&mut log, i, 40), i, "{what}");
        }
        let mut log = reopen(log);
        assert_all(&mut log, 0, survivors + 20);
    }
}

#[test]
fn missing_short_or_overlong_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    drop(synced_log(dir.path()));
    let paths = files(dir.path());
    let sizes: Vec<u64> = paths
        .iter()
        .map(|(_, i)| fs::metadata(i).unwrap().len())
        .collect();
    // Oldest: missing. Second: one and a half entries. Newest: entries past the segment's end,
    // as when a crash kept index pages but lost the segment's last chunk.
    fs::remove_file(&paths[0].1).unwrap();
    let idx1 = fs::read(&paths[1].1).unwrap();
    fs::write(&paths[1].1, &idx1[..36]).unwrap();
    let (seg_n, idx_n) = paths.last().unwrap();
    let last_entry = fs::read(idx_n).unwrap();
    let last_pos = u64::from_le_bytes(
        last_entry[last_entry.len() - 16..last_entry.len() - 8]
            .try_into()
            .unwrap(),
    );
    let f = fs::OpenOptions::new().write(true).open(seg_n).unwrap();
    f.set_len(last_pos).unwrap();
    let mut log = StreamLog::open(dir.path(), cfg(1000)).unwrap();
    let lost = log.next_offset();
    assert!(
        (110..120).contains(&lost),
        "the newest segment's last chunk is gone: {lost}"
    );
    assert_all(&mut log, 0, lost);
    let now: Vec<u64> = paths
        .iter()
        .map(|(_, i)| fs::metadata(i).unwrap().len())
        .collect();
    assert_eq!(now[..now.len() - 1], sizes[..sizes.len() - 1]);
    assert_eq!(now[now.len() - 1], sizes[sizes.len() - 1] - 24);
    // Reads locate by binary search over the rebuilt indexes, not only sequentially.
    for n in [3, 50, lost - 1] {
        assert_eq!(
            log.read(n, 1, usize::MAX, None).unwrap().records[0].offset,
            n
        );
    }
}

#[test]
fn stray_files_and_an_empty_newest_segment_are_harmless() {
    let dir = tempfile::tempdir().unwrap();
    drop(synced_log(dir.path()));
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::write(dir.path().join("1.seg"), b"not a segment name").unwrap();
    fs::write(dir.path().join("00000000000000099999.idx"), b"orphan").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    // A crash right after a rotation created the next segment.
    fs::write(index::seg_path(dir.path(), 120), b"").unwrap();
    let mut log = StreamLog::open(dir.path(), cfg(1000)).unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (0, 120));
    assert_all(&mut log, 0, 120);
    assert_eq!(append(&mut log, 120, 40), 120);
    let mut log = reopen(log);
    assert_all(&mut log, 0, 121);
    assert!(dir.path().join("notes.txt").exists() && dir.path().join("1.seg").exists());
}

#[test]
fn a_corrupt_chunk_in_a_sealed_segment_is_skipped_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    drop(synced_log(dir.path()));
    let (seg, _) = &files(dir.path())[1];
    let mut bytes = fs::read(seg).unwrap();
    bytes[HEADER_LEN + 10] ^= 0xff; // inside the segment's first chunk
    fs::write(seg, &bytes).unwrap();
    let mut log = StreamLog::open(dir.path(), cfg(1000)).unwrap();
    let first_of_seg = log.segs[1].first;
    let recs = read_all(&mut log, 0, 1000);
    let offsets: Vec<u64> = recs.iter().map(|r| r.offset).collect();
    assert!(offsets.len() < 120 && offsets.len() >= 110);
    assert!(!offsets.contains(&first_of_seg) && offsets.contains(&(first_of_seg - 1)));
    assert_eq!(offsets.last(), Some(&119));
    recs.iter().for_each(|r| check(r, r.offset, 40));
}

#[test]
fn records_larger_than_a_chunk_or_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = StreamLog::open(dir.path(), cfg(100_000)).unwrap();
    let big = vec![7u8; 300_000];
    for i in 0..3 {
        log.append(i, None, b"", b"", b"", &big).unwrap();
        log.append(i, Some(b"f"), b"", b"", b"", b"small").unwrap();
    }
    log.sync().unwrap();
    let mut log = reopen(log);
    let b = log.read(0, 10, usize::MAX, None).unwrap();
    assert_eq!(b.records.len(), 6);
    assert!(b.records.iter().step_by(2).all(|r| r.body == big));
    let huge = vec![0u8; format::MAX_RECORD_LEN];
    let err = log.append(0, None, b"", b"", b"", &huge).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(log.next_offset(), 6);
}

#[test]
fn retention_by_size_drops_oldest_segments_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 100, 500);
    for i in 0..200 {
        append(&mut log, i, 50);
    }
    log.sync().unwrap();
    let (segs, size) = (log.segment_count(), log.size_bytes());
    assert!(segs > 10);
    log.set_config(StreamConfig {
        max_bytes: Some(size / 2),
        ..cfg(500)
    });
    let dropped = log.enforce_retention(0).unwrap();
    assert!(
        dropped > 0 && log.size_bytes() <= size / 2,
        "{dropped} {}",
        log.size_bytes()
    );
    assert_eq!(log.segment_count(), segs - dropped);
    let first = log.first_offset();
    assert!(first > 0 && first == log.segs[0].first);
    let b = log.read(0, 5, usize::MAX, None).unwrap();
    assert!(b.skipped_to_first);
    assert_eq!(b.records[0].offset, first);
    assert_eq!(read_all(&mut log, first, 50).len() as u64, 200 - first);
    let files = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        files,
        2 * log.segment_count(),
        "segment and index files deleted"
    );
    log.set_config(StreamConfig {
        max_bytes: Some(0),
        ..cfg(500)
    });
    log.enforce_retention(0).unwrap();
    assert_eq!(log.segment_count(), 1, "the active segment stays");
    let last = log.first_offset();
    assert_eq!(read_all(&mut log, 0, 50).len() as u64, 200 - last);
    assert_eq!(append(&mut log, 200, 50), 200);
    drop(log);
    let mut log = StreamLog::open(dir.path(), cfg(500)).unwrap();
    assert_eq!((log.first_offset(), log.next_offset()), (last, 201));
    read_all(&mut log, 0, 7)
        .iter()
        .for_each(|r| check(r, r.offset, 50));
}

#[test]
fn retention_by_age_uses_each_segments_newest_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 100, 400);
    for i in 0..100 {
        append(&mut log, i, 50); // timestamp 1000 + i
    }
    log.flush().unwrap();
    let age = Duration::from_millis(30);
    log.set_config(StreamConfig {
        max_age: Some(age),
        ..cfg(400)
    });
    assert_eq!(
        log.enforce_retention(1_000).unwrap(),
        0,
        "nothing older than 30 ms"
    );
    let dropped = log.enforce_retention(1_060).unwrap();
    assert!(dropped > 0);
    // Every dropped segment held only records older than 1030; the first kept one holds one
    // at least that new.
    let first = log.first_offset();
    assert!(first <= 31 && log.segs[0].max_ts >= 1_030, "first {first}");
    assert!(first > 0);
    let rest = log.segment_count() - 1;
    assert_eq!(log.enforce_retention(i64::MAX).unwrap(), rest);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn group_commit_hands_out_files_and_a_failed_sync_retires_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = small_log(dir.path(), 150, 1000);
    for i in 0..60 {
        append(&mut log, i, 40);
    }
    let files = log.prepare_sync().unwrap();
    // Sealed segments and the newest (segment + index each), and the directory.
    assert_eq!(files.len(), 2 * log.segment_count() + 1);
    files.iter().for_each(|f| f.sync_data().unwrap());
    assert!(
        log.prepare_sync().unwrap().is_empty(),
        "nothing new to sync"
    );
    append(&mut log, 60, 40);
    log.sync_failed();
    let segs = log.segment_count();
    log.sync().unwrap();
    assert_eq!(
        log.segment_count(),
        segs + 1,
        "no chunk lands behind a failed fsync"
    );
    let mut log = reopen(log);
    assert_all(&mut log, 0, 61);
}
