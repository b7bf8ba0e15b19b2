//! Kill -9 under load. The real broker binary runs as a child process; three publishers (one
//! connection each, confirms, a window of 100 in flight) publish persistent messages into one
//! durable queue while two consumers (manual ack, prefetch 50) ack what they get. At a random
//! moment the broker gets SIGKILL and is started again on the same data dir; after several rounds
//! the queue is drained and checked:
//!
//! - every confirmed message was acked (ack sent) before a crash or is in the queue at the end;
//! - nothing is in the queue twice, and each publisher's messages are in publish order;
//! - the headers of every message left still match its body;
//! - within one broker lifetime no message is delivered twice unless flagged redelivered;
//! - durable exchange, queue and binding come back each time, transient ones do not.
//!
//! Unconfirmed messages may or may not be there; a message whose ack was sent just before a
//! crash may come back (acks are not waited for). Both are counted, not failed.
//!
//! A churn task meanwhile declares, binds, publishes to and deletes durable queues: whatever got
//! its `*-ok` (or confirm) must be there after the crash, whatever was deleted must stay gone.
//! The broker runs with 1 MiB segments and a 256 KiB queue memory limit, so segment rotation,
//! segment deletion and paging to disk all happen under the load.
//!
//! By default (3 rounds, under ~5 s) the kill comes 200–800 ms into each round's load. For a
//! longer run: `CRASH_ROUNDS=20 CRASH_MSGS=50000 cargo test --release --test crash -- --nocapture`
//! where `CRASH_MSGS` makes each round's kill come once a random number between half of it and
//! all of it of messages have been confirmed in that round.

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use rand::Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PUBLISHERS: u32 = 3;
const CONSUMERS: u32 = 2;
const WINDOW: usize = 100;
const PREFETCH: u16 = 50;
const EXCHANGE: &str = "crash.x";
const QUEUE: &str = "crash.q";
const KEY: &str = "crash";

/// (publisher, sequence number): the identity of a message.
type Id = (u32, u64);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The broker child process; killed (SIGKILL) and reaped on drop, so a failing test leaves
/// nothing running.
struct BrokerProc {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl BrokerProc {
    /// Start the broker on `data` and wait until its port accepts connections.
    async fn spawn(data: &Path, logs: &Path, round: u32) -> BrokerProc {
        for attempt in 0..10 {
            let port = free_port();
            let log = logs.join(format!("broker-{round}-{attempt}.log"));
            let out = std::fs::File::create(&log).expect("log file");
            // Small segments and a small queue memory limit, so that segment rotation and
            // deletion and paging to disk all happen under the load.
            let config = logs.join("crash.toml");
            std::fs::write(
                &config,
                "[store]\nsegment_size = 1048576\nqueue_memory_limit = 262144\n",
            )
            .expect("config file");
            let child = Command::new(env!("CARGO_BIN_EXE_warren"))
                .arg("--config")
                .arg(&config)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--http-port", "0", "--log-level", "warn", "--data-dir"])
                .arg(data)
                // No ./config.toml and no WARREN_* settings from the environment.
                .current_dir(logs)
                .env_remove("WARREN_CONFIG")
                .env_remove("WARREN_BIND")
                .env_remove("WARREN_PORT")
                .env_remove("WARREN_HTTP_PORT")
                .env_remove("WARREN_DATA_DIR")
                .env_remove("WARREN_LOG_LEVEL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(out)
                .spawn()
                .expect("spawn warren");
            let mut p = BrokerProc { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = p.child.try_wait().expect("try_wait") {
                    eprintln!(
                        "broker exited at start ({status}), port {port}:\n{}",
                        p.log_text()
                    );
                    break; // most likely the port was taken meanwhile: another one
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return p;
                }
                assert!(
                    Instant::now() < deadline,
                    "broker did not listen in time:\n{}",
                    p.log_text()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("could not start the broker");
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        self.child.kill().expect("kill broker");
        self.child.wait().expect("wait broker");
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

async fn connect(url: &str) -> Connection {
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

/// Body: "publisher:seq:" then padding of a varying length.
fn body(id: Id) -> Vec<u8> {
    let mut b = format!("{}:{}:", id.0, id.1).into_bytes();
    let pad = (id.1 as usize * 37 + id.0 as usize * 101) % 700;
    b.resize(b.len() + pad, b'.');
    b
}

fn parse(data: &[u8]) -> Id {
    let s = std::str::from_utf8(data).expect("utf-8 body");
    let mut it = s.split(':');
    let p = it.next().and_then(|v| v.parse().ok()).expect("publisher");
    let q = it.next().and_then(|v| v.parse().ok()).expect("seq");
    (p, q)
}

fn properties(id: Id) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("publisher".into(), AMQPValue::LongUInt(id.0));
    h.insert("seq".into(), AMQPValue::LongLongInt(id.1 as i64));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(format!("{}-{}", id.0, id.1)))
        .with_headers(h)
}

/// Do body, message id and headers agree?
fn consistent(d: &lapin::message::Delivery) -> bool {
    let id = parse(&d.data);
    let p = &d.properties;
    let h = p.headers().as_ref();
    let get = |k: &str| h.and_then(|h| h.inner().get(k).cloned());
    d.data == body(id)
        && p.delivery_mode() == &Some(2)
        && p.message_id().as_ref().map(|m| m.as_str().to_string())
            == Some(format!("{}-{}", id.0, id.1))
        && get("publisher") == Some(AMQPValue::LongUInt(id.0))
        && get("seq") == Some(AMQPValue::LongLongInt(id.1 as i64))
}

/// What the clients saw, over all rounds.
#[derive(Default)]
struct Ledger {
    confirmed: HashSet<Id>,
    nacked: u64,
    /// Acks sent (whether the broker handled them before dying is unknown).
    acked: HashSet<Id>,
    /// Delivered in the current broker lifetime.
    seen_this_life: HashSet<Id>,
    /// Delivered in an earlier lifetime and not acked then.
    delivered_unacked_before: HashSet<Id>,
    /// Round counters.
    round_confirmed: u64,
    round_acked: u64,
    /// Delivered again although an ack for it had been sent in an earlier lifetime.
    round_back_after_ack: u64,
    /// Delivered before a crash without an ack, then again without the redelivered flag.
    round_lost_redelivered: u64,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Ledger>>;

async fn declare_topology(ch: &Channel) {
    let x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        lapin::ExchangeKind::Direct,
        x,
        FieldTable::default(),
    )
    .await
    .expect("declare exchange");
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), q, FieldTable::default())
        .await
        .expect("declare queue");
    ch.queue_bind(
        QUEUE.into(),
        EXCHANGE.into(),
        KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    // Transient ones, which must be gone after the crash.
    ch.exchange_declare(
        "crash.tx".into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare transient exchange");
    ch.queue_declare(
        "crash.tq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare transient queue");
}

fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

/// Checks the definitions after a restart: the durable ones are back with their flags (an
/// identical redeclare passes, a transient one is refused), the binding routes, the transient
/// ones are gone. Returns the recovered message count.
async fn check_definitions(c: &Connection) -> u32 {
    let ch = c.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let recovered = ch
        .queue_declare(QUEUE.into(), passive, FieldTable::default())
        .await
        .expect("durable queue is back")
        .message_count();
    let ex_passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        lapin::ExchangeKind::Direct,
        ex_passive,
        FieldTable::default(),
    )
    .await
    .expect("durable exchange is back");
    let x = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE.into(),
        lapin::ExchangeKind::Direct,
        x,
        FieldTable::default(),
    )
    .await
    .expect("identical exchange redeclare");
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), q, FieldTable::default())
        .await
        .expect("identical queue redeclare");
    let r = ch
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        r.as_ref().err().and_then(code),
        Some(406),
        "a transient redeclare of the durable queue: {r:?}"
    );
    let ch = c.create_channel().await.expect("channel");
    let r = ch
        .queue_declare("crash.tq".into(), passive, FieldTable::default())
        .await;
    assert_eq!(
        r.as_ref().err().and_then(code),
        Some(404),
        "transient queue: {r:?}"
    );
    let ch = c.create_channel().await.expect("channel");
    let r = ch
        .exchange_declare(
            "crash.tx".into(),
            lapin::ExchangeKind::Fanout,
            ex_passive,
            FieldTable::default(),
        )
        .await;
    assert_eq!(
        r.as_ref().err().and_then(code),
        Some(404),
        "transient exchange: {r:?}"
    );
    recovered
}

/// Publish persistent messages with confirms until `stop` or an error.
/// Returns the next sequence number to use.
async fn publisher(
    url: String,
    id: u32,
    mut seq: u64,
    stop: Arc<AtomicBool>,
    ledger: Shared,
) -> u64 {
    let Ok(Ok(c)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    else {
        return seq;
    };
    let Ok(ch) = c.create_channel().await else {
        return seq;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return seq;
    }
    let mut window: VecDeque<(Id, lapin::PublisherConfirm)> = VecDeque::new();
    let record = |r: Result<Result<Confirmation, lapin::Error>, _>, mid: Id| match r {
        Ok(Ok(Confirmation::Ack(_))) => {
            let mut l = ledger.lock().unwrap();
            l.confirmed.insert(mid);
            l.round_confirmed += 1;
            true
        }
        Ok(Ok(Confirmation::Nack(_))) => {
            ledger.lock().unwrap().nacked += 1;
            true
        }
        _ => false,
    };
    while !stop.load(Ordering::Relaxed) {
        let mid = (id, seq);
        seq += 1;
        let payload = body(mid);
        let publish = ch.basic_publish(
            EXCHANGE.into(),
            KEY.into(),
            BasicPublishOptions::default(),
            &payload,
            properties(mid),
        );
        match tokio::time::timeout(Duration::from_secs(5), publish).await {
            Ok(Ok(pc)) => window.push_back((mid, pc)),
            _ => break,
        }
        if window.len() >= WINDOW {
            let (m, pc) = window.pop_front().unwrap();
            if !record(tokio::time::timeout(Duration::from_secs(5), pc).await, m) {
                break;
            }
        }
    }
    // Confirms that came in but were not looked at yet still count.
    for (m, pc) in window {
        if !record(tokio::time::timeout(Duration::from_secs(2), pc).await, m) {
            break;
        }
    }
    seq
}

/// Consume with manual ack, acking each message, until `stop` or an error.
async fn consumer(url: String, id: u32, stop: Arc<AtomicBool>, ledger: Shared) {
    let Ok(Ok(c)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    else {
        return;
    };
    let Ok(ch) = c.create_channel().await else {
        return;
    };
    if ch
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let Ok(mut stream) = ch
        .basic_consume(
            QUEUE.into(),
            format!("crash-consumer-{id}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let d = match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(d))) => d,
            Ok(_) => return,
        };
        if stop.load(Ordering::Relaxed) {
            // The broker is dead: lapin would accept the ack, but it could never arrive.
            return;
        }
        let mid = parse(&d.data);
        {
            let mut l = ledger.lock().unwrap();
            if !consistent(&d) {
                l.errors
                    .push(format!("{mid:?}: body and properties disagree"));
            }
            // Twice in one lifetime only after a requeue (a consumer gone), so flagged.
            if !l.seen_this_life.insert(mid) && !d.redelivered {
                l.errors.push(format!(
                    "{mid:?} delivered twice in one broker lifetime, not flagged redelivered"
                ));
            }
            if l.acked.contains(&mid) {
                l.round_back_after_ack += 1;
            } else if l.delivered_unacked_before.contains(&mid) && !d.redelivered {
                l.round_lost_redelivered += 1;
            }
        }
        let ack = ch.basic_ack(d.delivery_tag, BasicAckOptions::default());
        match tokio::time::timeout(Duration::from_secs(5), ack).await {
            Ok(Ok(())) => {
                let mut l = ledger.lock().unwrap();
                l.acked.insert(mid);
                l.round_acked += 1;
            }
            _ => return,
        }
    }
}

/// What the topology churn task was told: a definition whose `*-ok` arrived must survive a
/// kill -9; one whose request was sent without an answer may or may not.
#[derive(Default)]
struct Churn {
    next: u64,
    /// queue.declare-ok (durable queue `churn.N`).
    declared: HashSet<u64>,
    /// queue.bind-ok (crash.x, key `churn.N`).
    bound: HashSet<u64>,
    /// A persistent message published through the binding was confirmed.
    confirmed: HashSet<u64>,
    /// A publish was sent (confirmed or not).
    published: HashSet<u64>,
    /// queue.delete sent / delete-ok received.
    delete_sent: HashSet<u64>,
    deleted: HashSet<u64>,
    /// Deleted ones already seen gone after a restart.
    checked_gone: HashSet<u64>,
}

fn churn_name(n: u64) -> String {
    format!("churn.{n}")
}

/// Declares durable queues, binds them, publishes one persistent message to each through the
/// binding and deletes every other one, recording each `*-ok` and confirm, until `stop`.
async fn churn(url: String, stop: Arc<AtomicBool>, state: Arc<Mutex<Churn>>) {
    let Ok(Ok(c)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    else {
        return;
    };
    let Ok(ch) = c.create_channel().await else {
        return;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let t = Duration::from_secs(5);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let n = {
            let mut s = state.lock().unwrap();
            s.next += 1;
            s.next
        };
        let name = churn_name(n);
        let r = ch.queue_declare(name.as_str().into(), durable, FieldTable::default());
        let Ok(Ok(_)) = tokio::time::timeout(t, r).await else {
            return;
        };
        state.lock().unwrap().declared.insert(n);
        let r = ch.queue_bind(
            name.as_str().into(),
            EXCHANGE.into(),
            name.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        let Ok(Ok(())) = tokio::time::timeout(t, r).await else {
            return;
        };
        state.lock().unwrap().bound.insert(n);
        state.lock().unwrap().published.insert(n);
        let id = (7, n);
        let payload = body(id);
        let r = ch.basic_publish(
            EXCHANGE.into(),
            name.as_str().into(),
            BasicPublishOptions::default(),
            &payload,
            properties(id),
        );
        let Ok(Ok(pc)) = tokio::time::timeout(t, r).await else {
            return;
        };
        match tokio::time::timeout(t, pc).await {
            Ok(Ok(Confirmation::Ack(_))) => {
                state.lock().unwrap().confirmed.insert(n);
            }
            _ => return,
        }
        if n % 2 == 0 {
            let victim = n - 1;
            state.lock().unwrap().delete_sent.insert(victim);
            let r = ch.queue_delete(
                churn_name(victim).as_str().into(),
                QueueDeleteOptions::default(),
            );
            let Ok(Ok(_)) = tokio::time::timeout(t, r).await else {
                return;
            };
            state.lock().unwrap().deleted.insert(victim);
        }
    }
}

/// After a restart: every churn queue whose declare-ok arrived and whose delete was never sent
/// is there, holding exactly its message when that was confirmed; every one whose delete-ok
/// arrived is gone (each checked once, after the first restart since its delete: a 404 costs a
/// channel). With `rebind_check`, a fresh message through each surviving binding arrives too.
/// Returns (queues checked present, checked gone).
async fn check_churn(url: &str, state: &Mutex<Churn>, rebind_check: bool) -> (usize, usize) {
    let (declared, deleted, delete_sent, bound, confirmed, published, checked) = {
        let s = state.lock().unwrap();
        (
            s.declared.clone(),
            s.deleted.clone(),
            s.delete_sent.clone(),
            s.bound.clone(),
            s.confirmed.clone(),
            s.published.clone(),
            s.checked_gone.clone(),
        )
    };
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    // A connection per few hundred channels: lapin trips over reused channel ids otherwise.
    let mut c = connect(url).await;
    let mut channels = 1;
    let mut ch = c.create_channel().await.expect("channel");
    let (mut present, mut gone) = (Vec::new(), 0);
    let mut ids: Vec<u64> = declared.iter().copied().collect();
    ids.sort_unstable();
    for n in ids {
        let name = churn_name(n);
        if deleted.contains(&n) && checked.contains(&n) {
            continue;
        }
        let r = ch
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await;
        if r.is_err() {
            if channels >= 500 {
                let _ = c.close(200, "bye".into()).await;
                c = connect(url).await;
                channels = 0;
            }
            ch = c.create_channel().await.expect("channel");
            channels += 1;
        }
        if deleted.contains(&n) {
            assert_eq!(
                r.as_ref().err().and_then(code),
                Some(404),
                "{name} was deleted (delete-ok) but is back: {r:?}"
            );
            gone += 1;
            state.lock().unwrap().checked_gone.insert(n);
        } else if !delete_sent.contains(&n) {
            let q =
                r.unwrap_or_else(|e| panic!("{name} was declared (declare-ok) but is gone: {e}"));
            let count = q.message_count();
            if confirmed.contains(&n) {
                assert_eq!(count, 1, "{name}: its confirmed message");
            } else {
                assert!(
                    count <= 1,
                    "{name}: {count} messages, at most 1 was published"
                );
                assert!(count == 0 || published.contains(&n));
            }
            present.push((n, count));
        }
    }
    if rebind_check {
        for &(n, count) in &present {
            if !bound.contains(&n) {
                continue;
            }
            let name = churn_name(n);
            ch.basic_publish(
                EXCHANGE.into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                b"7:0:",
                BasicProperties::default(),
            )
            .await
            .expect("publish");
            let after = ch
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await
                .expect("passive declare")
                .message_count();
            assert_eq!(
                after,
                count + 1,
                "{name}: binding (bind-ok) did not survive"
            );
        }
    }
    let _ = c.close(200, "bye".into()).await;
    (present.len(), gone)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kill_9() {
    let rounds = env_or("CRASH_ROUNDS", 3) as u32;
    let per_round = env_or("CRASH_MSGS", 0);
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let started = Instant::now();
    let ledger: Shared = Arc::default();
    let churn_state: Arc<Mutex<Churn>> = Arc::default();
    let mut next_seq: HashMap<u32, u64> = (0..PUBLISHERS).map(|p| (p, 0)).collect();

    let mut broker = BrokerProc::spawn(data.path(), logs.path(), 0).await;
    {
        let c = connect(&broker.url()).await;
        declare_topology(&c.create_channel().await.expect("channel")).await;
        let _ = c.close(200, "bye".into()).await;
    }
    for round in 1..=rounds {
        let url = broker.url();
        let stop = Arc::new(AtomicBool::new(false));
        let mut consumers = Vec::new();
        for id in 0..CONSUMERS {
            let f = consumer(url.clone(), id, stop.clone(), ledger.clone());
            consumers.push(tokio::spawn(f));
        }
        let churner = tokio::spawn(churn(url.clone(), stop.clone(), churn_state.clone()));
        let mut publishers = Vec::new();
        for id in 0..PUBLISHERS {
            let (seq, stop, l) = (next_seq[&id], stop.clone(), ledger.clone());
            let f = publisher(url.clone(), id, seq, stop, l);
            publishers.push((id, tokio::spawn(f)));
        }
        let load = Instant::now();
        if per_round == 0 {
            let delay = rand::thread_rng().gen_range(200..=800);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        } else {
            let goal = rand::thread_rng().gen_range(per_round / 2..=per_round);
            while ledger.lock().unwrap().round_confirmed < goal {
                assert!(load.elapsed() < Duration::from_secs(300), "load stalled");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let delay = load.elapsed();
        broker.kill();
        let killed = Instant::now();
        stop.store(true, Ordering::Relaxed);
        for (id, p) in publishers {
            let seq = tokio::time::timeout(Duration::from_secs(20), p)
                .await
                .expect("publisher did not stop")
                .expect("publisher panicked");
            next_seq.insert(id, seq);
        }
        for c in consumers {
            tokio::time::timeout(Duration::from_secs(20), c)
                .await
                .expect("consumer did not stop")
                .expect("consumer panicked");
        }
        tokio::time::timeout(Duration::from_secs(20), churner)
            .await
            .expect("churn did not stop")
            .expect("churn panicked");
        let teardown = killed.elapsed();

        let t = Instant::now();
        broker = BrokerProc::spawn(data.path(), logs.path(), round).await;
        let c = connect(&broker.url()).await;
        let recovered = check_definitions(&c).await;
        let restart = t.elapsed();
        let (present, gone) = check_churn(&broker.url(), &churn_state, false).await;
        declare_topology(&c.create_channel().await.expect("channel")).await;
        let _ = c.close(200, "bye".into()).await;

        let mut l = ledger.lock().unwrap();
        let owed = l.confirmed.difference(&l.acked).count();
        eprintln!(
            "round {round}: killed after {delay:?}; confirmed {} acked {} (sent), \
             back after ack {}, redelivered flag lost {}; nacked so far {}; \
             recovered {recovered} (confirmed and not acked: {owed}); \
             churn queues present {present} gone {gone}; \
             teardown {teardown:?}, restart+recovery {restart:?}",
            l.round_confirmed,
            l.round_acked,
            l.round_back_after_ack,
            l.round_lost_redelivered,
            l.nacked,
        );
        assert!(
            recovered as usize >= owed,
            "round {round}: {recovered} recovered but {owed} confirmed messages were not acked"
        );
        let seen = std::mem::take(&mut l.seen_this_life);
        let not_acked: Vec<Id> = seen.into_iter().filter(|m| !l.acked.contains(m)).collect();
        l.delivered_unacked_before.extend(not_acked);
        l.round_confirmed = 0;
        l.round_acked = 0;
        l.round_back_after_ack = 0;
        l.round_lost_redelivered = 0;
    }

    // Drain what is left with a no-ack consumer and check it.
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let left = ch
        .queue_declare(QUEUE.into(), passive, FieldTable::default())
        .await
        .expect("passive declare")
        .message_count();
    let mut stream = ch
        .basic_consume(
            QUEUE.into(),
            "drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut drained: Vec<Id> = Vec::new();
    let mut inconsistent = 0u64;
    loop {
        let wait = if drained.len() < left as usize {
            Duration::from_secs(10)
        } else {
            Duration::from_millis(300) // anything beyond the count would be a bug too
        };
        match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => break,
            Ok(Some(Ok(d))) => {
                inconsistent += u64::from(!consistent(&d));
                drained.push(parse(&d.data));
            }
            Ok(other) => panic!("drain consumer ended: {other:?}"),
        }
    }
    // The binding still routes.
    ch.basic_publish(
        EXCHANGE.into(),
        KEY.into(),
        BasicPublishOptions::default(),
        b"9:0:",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let routed = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("binding routes after the crashes");
    assert!(matches!(routed, Some(Ok(d)) if d.data == b"9:0:"));
    let (present, gone) = check_churn(&broker.url(), &churn_state, true).await;
    eprintln!("final: churn queues present {present} (bindings checked), gone {gone}");
    let _ = c.close(200, "bye".into()).await;

    let l = ledger.lock().unwrap();
    let mut unique = HashSet::new();
    let duplicates: Vec<Id> = drained
        .iter()
        .filter(|m| !unique.insert(**m))
        .copied()
        .collect();
    let missing: Vec<Id> = l
        .confirmed
        .iter()
        .filter(|m| !l.acked.contains(m) && !unique.contains(m))
        .copied()
        .collect();
    let unconfirmed = unique.iter().filter(|m| !l.confirmed.contains(m)).count();
    let mut out_of_order = 0usize;
    let mut last: HashMap<u32, u64> = HashMap::new();
    for &(p, s) in &drained {
        if last.get(&p).is_some_and(|&prev| prev >= s) {
            out_of_order += 1;
        }
        last.insert(p, s);
    }
    eprintln!(
        "final: {} confirmed, {} acked (sent), {} nacked, {} left in the queue \
         ({} never confirmed), {} duplicates, {} missing, {} out of order; {:?} in all",
        l.confirmed.len(),
        l.acked.len(),
        l.nacked,
        drained.len(),
        unconfirmed,
        duplicates.len(),
        missing.len(),
        out_of_order,
        started.elapsed(),
    );
    assert!(l.errors.is_empty(), "errors: {:?}", l.errors);
    assert_eq!(drained.len(), left as usize, "drain count vs declare-ok");
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert!(
        missing.is_empty(),
        "{} confirmed messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(out_of_order, 0, "publish order not kept");
    assert_eq!(inconsistent, 0, "messages whose properties do not match");
    assert!(
        !l.confirmed.is_empty(),
        "nothing was confirmed: no load ran"
    );
    drop(broker);
    assert_no_errors_logged(logs.path());
}

/// The brokers' logs (warn and up) hold no error: warnings (a torn tail cut off after a kill)
/// are expected, errors (a corrupt record, a lost paged-out message, a failed write) are not.
fn assert_no_errors_logged(logs: &Path) {
    let mut errors = Vec::new();
    for e in std::fs::read_dir(logs).expect("log dir") {
        let path = e.expect("entry").path();
        if path.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("{}: {line}", path.display());
                }
                if line.contains("ERROR") {
                    errors.push(line.to_string());
                }
            }
        }
    }
    assert!(errors.is_empty(), "the broker logged errors: {errors:#?}");
}

/// Messages delivered (and not acked) a little while before a kill -9 come back with
/// `redelivered=true`; those never delivered come back with `redelivered=false`; acked ones do
/// not come back. No other traffic runs, so nothing else pushes the delivery records to disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_unacked_come_back_redelivered_after_kill_9() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    let mut broker = BrokerProc::spawn(data.path(), logs.path(), 0).await;
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    declare_topology(&ch).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    for seq in 0..20 {
        let id = (0, seq);
        let pc = ch
            .basic_publish(
                EXCHANGE.into(),
                KEY.into(),
                BasicPublishOptions::default(),
                &body(id),
                properties(id),
            )
            .await
            .expect("publish");
        let conf = pc.await.expect("confirm");
        assert!(matches!(conf, Confirmation::Ack(_)), "{conf:?}");
    }
    // 0..3 by basic.get (1 acked), 3..8 by a consumer with prefetch 5 (4 acked with multiple).
    let getter = c.create_channel().await.expect("channel");
    let mut get_tags = Vec::new();
    for seq in 0..3 {
        let m = getter
            .basic_get(QUEUE.into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
            .expect("a message");
        assert_eq!(parse(&m.delivery.data), (0, seq));
        get_tags.push(m.delivery.delivery_tag);
    }
    getter
        .basic_ack(get_tags[1], BasicAckOptions::default())
        .await
        .expect("ack");
    let cons = c.create_channel().await.expect("channel");
    cons.basic_qos(5, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut stream = cons
        .basic_consume(
            QUEUE.into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut tags = Vec::new();
    for seq in 3..8 {
        let d = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("delivery")
            .expect("stream")
            .expect("delivery");
        assert_eq!(parse(&d.data), (0, seq));
        tags.push(d.delivery_tag);
    }
    cons.basic_ack(tags[3], BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    // The freed credit brings 8..12; wait for them so they count as delivered too.
    for seq in 8..12 {
        let d = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("delivery")
            .expect("stream")
            .expect("delivery");
        assert_eq!(parse(&d.data), (0, seq));
    }
    // Round trips: both acks have been handled; then a quiet moment before the kill.
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for chan in [&getter, &cons] {
        chan.queue_declare(QUEUE.into(), passive, FieldTable::default())
            .await
            .expect("passive declare");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.kill();
    drop((stream, cons, getter, ch, c));

    let broker = BrokerProc::spawn(data.path(), logs.path(), 1).await;
    let c = connect(&broker.url()).await;
    let ch = c.create_channel().await.expect("channel");
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get(QUEUE.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        got.push((parse(&m.delivery.data).1, m.delivery.redelivered));
    }
    let want: Vec<(u64, bool)> = [0, 2, 7, 8, 9, 10, 11]
        .into_iter()
        .map(|s| (s, true))
        .chain((12..20).map(|s| (s, false)))
        .collect();
    assert_eq!(got, want, "(seq, redelivered) after kill -9");
    let _ = c.close(200, "bye".into()).await;
    drop(broker);
    assert_no_errors_logged(logs.path());
}

/// A purge that got its purge-ok stays done after a kill -9 right behind it, with nothing
/// unacked (the log is cleared) and with a delivered-unacked message (the purged messages are
/// acked in the log; the unacked one is left and comes back), while another queue's load keeps
/// the group commit busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_ok_survives_kill_9() {
    let data = tempfile::tempdir().expect("data dir");
    let logs = tempfile::tempdir().expect("log dir");
    for round in 0..3 {
        let mut broker = BrokerProc::spawn(data.path(), logs.path(), round).await;
        let c = connect(&broker.url()).await;
        let ch = c.create_channel().await.expect("channel");
        declare_topology(&ch).await;
        let (qa, qb) = (format!("purge.a{round}"), format!("purge.b{round}"));
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let mut pending = Vec::new();
        for q in [&qa, &qb] {
            ch.queue_declare(q.as_str().into(), durable, FieldTable::default())
                .await
                .expect("declare");
            for seq in 0..2000 {
                let id = (0, seq);
                let pc = ch
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        BasicPublishOptions::default(),
                        &body(id),
                        properties(id),
                    )
                    .await
                    .expect("publish");
                pending.push(pc);
            }
        }
        for pc in pending {
            assert!(matches!(pc.await, Ok(Confirmation::Ack(_))));
        }
        let getter = c.create_channel().await.expect("channel");
        let m = getter
            .basic_get(qa.as_str().into(), BasicGetOptions::default())
            .await
            .expect("basic.get")
            .expect("a message");
        assert_eq!(parse(&m.delivery.data), (0, 0));
        let stop = Arc::new(AtomicBool::new(false));
        let ledger: Shared = Arc::default();
        let load = tokio::spawn(publisher(broker.url(), 1, 0, stop.clone(), ledger.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let purge_b = ch.queue_purge(qb.as_str().into(), QueuePurgeOptions::default());
        let nb = purge_b.await.expect("purge");
        let purge_a = ch.queue_purge(qa.as_str().into(), QueuePurgeOptions::default());
        let na = purge_a.await.expect("purge");
        broker.kill();
        assert_eq!((na, nb), (1999, 2000));
        stop.store(true, Ordering::Relaxed);
        let _ = load.await;
        drop((getter, ch, c));

        let broker = BrokerProc::spawn(data.path(), logs.path(), round + 100).await;
        let c = connect(&broker.url()).await;
        let ch = c.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        for (q, want) in [(&qa, 1), (&qb, 0)] {
            let left = ch
                .queue_declare(q.as_str().into(), passive, FieldTable::default())
                .await
                .expect("passive declare")
                .message_count();
            assert_eq!(left, want, "{q}: purged messages came back after kill -9");
        }
        let m = ch
            .basic_get(qa.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
            .expect("the unacked message");
        assert_eq!(parse(&m.delivery.data), (0, 0));
        assert!(m.delivery.redelivered);
        let _ = c.close(200, "bye".into()).await;
        drop(broker);
    }
    assert_no_errors_logged(logs.path());
}
