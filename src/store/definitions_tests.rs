//! Tests for the definitions store (a child module, so they can check the private tables too).

use super::*;
use amq_protocol::types::{AMQPValue, FieldArray, LongString, ShortString};
use redb::ReadableTableMetadata;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Instant;

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Arguments with every shape that matters: nested table, array, floats, bytes, big ints.
fn rich_args() -> FieldTable {
    let inner = args(&[
        ("x-flag", AMQPValue::Boolean(true)),
        ("weight", AMQPValue::Double(0.1)),
        ("ratio", AMQPValue::Float(1.0e-3)),
    ]);
    let list = FieldArray::from(vec![
        AMQPValue::LongString(LongString::from(vec![0u8, 255, b'/'])),
        AMQPValue::FieldTable(inner.clone()),
        AMQPValue::Timestamp(u64::MAX),
    ]);
    args(&[
        ("x-message-ttl", AMQPValue::LongInt(60_000)),
        ("x-max-length", AMQPValue::LongLongInt(i64::MIN)),
        ("nested", AMQPValue::FieldTable(inner)),
        ("list", AMQPValue::FieldArray(list)),
        ("void", AMQPValue::Void),
    ])
}

fn exchange(vhost: &str, name: &str) -> ExchangeDef {
    ExchangeDef {
        vhost: vhost.into(),
        name: name.into(),
        kind: "topic".into(),
        durable: true,
        auto_delete: false,
        internal: false,
        arguments: rich_args(),
    }
}

fn queue(vhost: &str, name: &str, id: u64) -> QueueDef {
    QueueDef {
        vhost: vhost.into(),
        name: name.into(),
        durable: true,
        auto_delete: false,
        arguments: rich_args(),
        id,
    }
}

fn binding(vhost: &str, source: &str, kind: DestKind, dest: &str, rk: &str) -> BindingDef {
    BindingDef {
        vhost: vhost.into(),
        source: source.into(),
        dest_kind: kind,
        dest: dest.into(),
        routing_key: rk.into(),
        arguments: rich_args(),
    }
}

fn fresh() -> (tempfile::TempDir, PathBuf, Definitions) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("definitions.redb");
    let defs = Definitions::open(&path).unwrap();
    (dir, path, defs)
}

/// Sorted so comparisons do not depend on key order.
fn bindings(defs: &Definitions) -> Vec<String> {
    let mut v: Vec<_> = defs
        .load()
        .unwrap()
        .bindings
        .iter()
        .map(|b| format!("{b:?}"))
        .collect();
    v.sort();
    v
}

/// The reverse index must hold exactly one entry per binding, or cascades go wrong.
fn assert_index_consistent(defs: &Definitions) {
    let txn = defs.db.begin_read().unwrap();
    let fwd = txn.open_table(BINDINGS).unwrap();
    let rev = txn.open_table(BINDINGS_BY_DEST).unwrap();
    assert_eq!(fwd.len().unwrap(), rev.len().unwrap());
    for entry in rev.iter().unwrap() {
        let (_, fwd_key) = entry.unwrap();
        assert!(fwd.get(fwd_key.value()).unwrap().is_some());
    }
}

#[test]
fn round_trip_each_kind() {
    let (_dir, _path, defs) = fresh();
    let e = exchange("/", "logs");
    let q = queue("/", "jobs", 7);
    let bq = binding("/", "logs", DestKind::Queue, "jobs", "a.*.c");
    let be = binding("/", "logs", DestKind::Exchange, "other", "#");
    defs.put_vhost("/").unwrap();
    defs.put_exchange(&e).unwrap();
    defs.put_queue(&q).unwrap();
    defs.put_binding(&bq).unwrap();
    defs.put_binding(&be).unwrap();
    defs.put_binding(&be).unwrap(); // idempotent
    let l = defs.load().unwrap();
    assert_eq!(l.vhosts, vec!["/".to_string()]);
    assert_eq!(l.exchanges, vec![e.clone()]);
    assert_eq!(l.queues, vec![q]);
    assert_eq!(l.bindings.len(), 2);
    assert!(l.bindings.contains(&bq) && l.bindings.contains(&be));
    // put replaces
    let e2 = ExchangeDef {
        kind: "fanout".into(),
        ..e
    };
    defs.put_exchange(&e2).unwrap();
    assert_eq!(defs.load().unwrap().exchanges, vec![e2]);
    assert_index_consistent(&defs);
}

#[test]
fn delete_cascades_to_bindings() {
    let (_dir, _path, defs) = fresh();
    for x in ["x", "xy", "y"] {
        defs.put_exchange(&exchange("/", x)).unwrap();
    }
    for q in ["q1", "q2"] {
        defs.put_queue(&queue("/", q, 1)).unwrap();
    }
    let keep = [
        binding("/", "xy", DestKind::Queue, "q1", "k"), // source "xy" shares a prefix with "x"
        binding("/", "y", DestKind::Exchange, "xy", "k"),
        binding("v2", "y", DestKind::Queue, "q2", "k"), // same names, other vhost
        binding("v2", "x", DestKind::Queue, "q2", "k"),
        binding("/", "y", DestKind::Queue, "x", "k"), // a queue named like the exchange
    ];
    let doomed = [
        binding("/", "x", DestKind::Queue, "q1", "k"),
        binding("/", "x", DestKind::Queue, "q2", ""),
        binding("/", "y", DestKind::Exchange, "x", "k"), // x as destination
        binding("/", "x", DestKind::Exchange, "x", "k"), // x to itself
    ];
    for b in keep.iter().chain(&doomed) {
        defs.put_binding(b).unwrap();
    }
    defs.delete_exchange("/", "x").unwrap();
    let mut want: Vec<_> = keep.iter().map(|b| format!("{b:?}")).collect();
    want.sort();
    assert_eq!(bindings(&defs), want);
    assert_index_consistent(&defs);
    let mut names: Vec<_> = defs
        .load()
        .unwrap()
        .exchanges
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(names, ["xy", "y"]);

    defs.delete_queue("/", "q1").unwrap();
    assert_eq!(defs.load().unwrap().bindings.len(), 4);
    assert_eq!(defs.load().unwrap().queues.len(), 1);
    assert_index_consistent(&defs);

    // Deleting what is not there is fine.
    defs.delete_queue("/", "q1").unwrap();
    defs.delete_exchange("nowhere", "x").unwrap();
    defs.delete_binding(&doomed[0]).unwrap();
}

#[test]
fn binding_identity_includes_arguments() {
    let (_dir, _path, defs) = fresh();
    let a = binding("/", "h", DestKind::Queue, "q", "");
    let b = BindingDef {
        arguments: args(&[("x-match", AMQPValue::LongString("any".into()))]),
        ..a.clone()
    };
    defs.put_binding(&a).unwrap();
    defs.put_binding(&b).unwrap();
    assert_eq!(defs.load().unwrap().bindings.len(), 2);
    // A binding as loaded (after a JSON round trip) still deletes its stored record.
    let loaded = defs.load().unwrap().bindings;
    let a_loaded = loaded.iter().find(|x| **x == a).unwrap();
    defs.delete_binding(a_loaded).unwrap();
    assert_eq!(defs.load().unwrap().bindings, vec![b]);
    assert_index_consistent(&defs);
}

#[test]
fn odd_names_do_not_collide() {
    let (_dir, _path, defs) = fresh();
    // Pairs that a separator-joined key would confuse, plus empty and non-ASCII names.
    let pairs = [
        ("a\0b", "c"),
        ("a", "b\0c"),
        ("a/b", "c"),
        ("a", "b/c"),
        ("", ""),
        ("/", "é\u{10FFFF}"),
    ];
    for (i, (v, n)) in pairs.iter().enumerate() {
        defs.put_vhost(v).unwrap();
        defs.put_queue(&queue(v, n, i as u64)).unwrap();
        defs.put_exchange(&exchange(v, n)).unwrap();
        defs.put_binding(&binding(v, n, DestKind::Queue, n, "\0"))
            .unwrap();
    }
    let l = defs.load().unwrap();
    assert_eq!(l.queues.len(), pairs.len());
    assert_eq!(l.exchanges.len(), pairs.len());
    assert_eq!(l.bindings.len(), pairs.len());
    assert_eq!(l.vhosts.len(), 5); // "a" appears twice
    defs.delete_queue("a", "b\0c").unwrap();
    let l = defs.load().unwrap();
    assert!(l.queues.iter().any(|q| q.vhost == "a\0b" && q.name == "c"));
    assert!(!l.queues.iter().any(|q| q.vhost == "a" && q.name == "b\0c"));
    assert_eq!(l.bindings.len(), pairs.len() - 1);
    assert_index_consistent(&defs);
}

#[test]
fn reopen_after_drop_keeps_everything() {
    let (_dir, path, defs) = fresh();
    defs.put_vhost("/").unwrap();
    let e = exchange("/", "ex");
    let q = queue("/", "q", 3);
    let b = binding("/", "ex", DestKind::Queue, "q", "rk");
    defs.put_exchange(&e).unwrap();
    defs.put_queue(&q).unwrap();
    defs.put_binding(&b).unwrap();
    drop(defs); // no explicit close: a dropped handle must not lose committed writes
    let defs = Definitions::open(&path).unwrap();
    let l = defs.load().unwrap();
    assert_eq!(
        (l.exchanges, l.queues, l.bindings),
        (vec![e], vec![q], vec![b])
    );
    assert_eq!(l.vhosts, ["/"]);
    defs.delete_queue("/", "q").unwrap(); // the reverse index survived too
    assert!(defs.load().unwrap().bindings.is_empty());
}

#[test]
fn next_queue_id_is_monotonic_across_reopen() {
    let (_dir, path, defs) = fresh();
    assert_eq!(defs.next_queue_id().unwrap(), 1);
    assert_eq!(defs.next_queue_id().unwrap(), 2);
    // A queue stored with an id from elsewhere pushes the counter past it.
    defs.put_queue(&queue("/", "imported", 10)).unwrap();
    assert_eq!(defs.next_queue_id().unwrap(), 11);
    drop(defs);
    let defs = Definitions::open(&path).unwrap();
    assert_eq!(defs.next_queue_id().unwrap(), 12);
    defs.put_queue(&queue("/", "low", 5)).unwrap(); // never moves it back
    assert_eq!(defs.next_queue_id().unwrap(), 13);
}

#[test]
fn non_finite_float_is_refused_not_stored() {
    let (_dir, _path, defs) = fresh();
    let mut q = queue("/", "nan", 1);
    q.arguments = args(&[("x", AMQPValue::Double(f64::NAN))]);
    let err = defs.put_queue(&q).unwrap_err();
    assert!(
        matches!(
            err,
            DefinitionsError::Encode {
                op: "put_queue",
                ..
            }
        ),
        "{err}"
    );
    let mut b = binding("/", "e", DestKind::Queue, "q", "");
    b.arguments = args(&[("x", AMQPValue::Float(f32::INFINITY))]);
    assert!(defs.put_binding(&b).is_err());
    let l = defs.load().unwrap(); // and the store still loads
    assert!(l.queues.is_empty() && l.bindings.is_empty());
}

#[test]
fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-redb");
    std::fs::write(&path, b"definitely not a redb file, just some text here").unwrap();
    let err = Definitions::open(&path).err().unwrap();
    assert!(err.to_string().contains("not-redb"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "redb's error is the source"
    );
    println!("open error reads: {err}");

    let path = dir.path().join("future.redb");
    let defs = Definitions::open(&path).unwrap();
    let txn = defs.db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert(META_SCHEMA, 99)
        .unwrap();
    txn.commit().unwrap();
    drop(defs);
    let err = Definitions::open(&path).err().unwrap();
    assert!(
        matches!(err, DefinitionsError::Schema { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Definitions>();
    send_sync::<DefinitionsError>();

    let (_dir, _path, defs) = fresh();
    let defs = Arc::new(defs);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let defs = Arc::clone(&defs);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..10 {
                    let id = defs.next_queue_id().unwrap();
                    defs.put_queue(&queue("/", &format!("t{t}-{i}"), id))
                        .unwrap();
                    defs.put_binding(&binding(
                        "/",
                        "amq.direct",
                        DestKind::Queue,
                        &format!("t{t}-{i}"),
                        "k",
                    ))
                    .unwrap();
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 80, "every id handed out once");
    let l = defs.load().unwrap();
    assert_eq!((l.queues.len(), l.bindings.len()), (80, 80));
    assert_index_consistent(&defs);
}

const CRASH_ENV: &str = "WARREN_DEFS_CRASH_CHILD_DB";

/// A put that returned is on disk even if the process is then killed with SIGKILL: the test
/// re-runs itself as a child that commits, says so, and waits to be killed without any cleanup.
#[test]
fn committed_put_survives_sigkill() {
    if let Ok(path) = std::env::var(CRASH_ENV) {
        let defs = Definitions::open(Path::new(&path)).unwrap();
        defs.put_queue(&queue("/", "survivor", 42)).unwrap();
        // libtest may already have printed "test <name> ... " on this line.
        println!("DEFS_COMMITTED");
        // Bounded, so a parent that never kills us cannot leave a stray process behind.
        std::thread::sleep(std::time::Duration::from_secs(60));
        panic!("crash child was not killed");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("definitions.redb");
    let name =
        module_path!().split_once("::").unwrap().1.to_owned() + "::committed_put_survives_sigkill";
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let committed = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("DEFS_COMMITTED"));
    child.kill().unwrap(); // SIGKILL: no destructors, no clean shutdown of redb
    child.wait().unwrap();
    assert!(committed, "child did not commit");
    let defs = Definitions::open(&path).unwrap();
    assert_eq!(
        defs.load().unwrap().queues,
        vec![queue("/", "survivor", 42)]
    );
}

#[test]
fn measure_put_queue_commit_time() {
    let (dir, _path, defs) = fresh();
    let n = 200;
    let start = Instant::now();
    for i in 0..n {
        defs.put_queue(&queue("/", &format!("q{i}"), i)).unwrap();
    }
    let per = start.elapsed() / n as u32;
    println!(
        "put_queue: {n} commits, {per:?} per commit (fsync'd) in {}",
        dir.path().display()
    );
    assert_eq!(defs.load().unwrap().queues.len(), n as usize);
}

#[test]
fn users_vhosts_and_permissions_survive_reopen_with_tombstones() {
    use super::{PermissionDef, UserDef, VhostDef};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defs.redb");
    {
        let defs = Definitions::open(&path).unwrap();
        defs.put_vhost_def(&VhostDef {
            name: "prod".into(),
            description: "production".into(),
            ..VhostDef::default()
        })
        .unwrap();
        defs.put_user(&UserDef {
            name: "app".into(),
            password_hash: "x".into(),
            tags: vec!["management".into()],
            deleted: false,
        })
        .unwrap();
        defs.put_user(&UserDef {
            name: "guest".into(),
            deleted: true,
            ..UserDef::default()
        })
        .unwrap();
        let p = PermissionDef {
            user: "app".into(),
            vhost: "prod".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
            deleted: false,
        };
        defs.put_permission(&p).unwrap();
        // Replaced, not added.
        defs.put_permission(&PermissionDef {
            read: "^r".into(),
            ..p
        })
        .unwrap();
    }
    let l = Definitions::open(&path).unwrap().load().unwrap();
    assert_eq!(l.vhost_defs.len(), 1);
    assert_eq!(l.vhost_defs[0].description, "production");
    assert_eq!(l.users.len(), 2);
    assert!(l.users.iter().any(|u| u.name == "guest" && u.deleted));
    assert_eq!(l.permissions.len(), 1);
    assert_eq!(l.permissions[0].read, "^r");
}
