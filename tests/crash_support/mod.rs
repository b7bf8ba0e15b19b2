//! Support for the kill -9 tests (crash.rs, crash_regressions.rs): the real broker binary as a
//! child process (`BrokerProc`: started on a data dir with 1 MiB segments and a 256 KiB queue
//! memory limit, waited for until its port accepts connections, SIGKILLed, reaped on drop), the
//! durable topology the tests share, message identity (body, properties and their consistency),
//! and the check that the brokers logged no errors. The client load is in [`load`], the topology
//! churn in [`churn`].
#![allow(dead_code)]
pub mod churn;
pub mod load;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const EXCHANGE: &str = "crash.x";
pub const QUEUE: &str = "crash.q";
pub const KEY: &str = "crash";

/// (publisher, sequence number): the identity of a message.
pub type Id = (u32, u64);

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The broker child process; killed (SIGKILL) and reaped on drop, so a failing test leaves
/// nothing running.
pub struct BrokerProc {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl BrokerProc {
    /// Start the broker on `data` and wait until its port accepts connections.
    pub async fn spawn(data: &Path, logs: &Path, round: u32) -> BrokerProc {
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

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful stop: 320 to every client, writes flushed), then reap.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait broker");
    }

    /// The broker's resident memory now, KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

pub async fn connect(url: &str) -> Connection {
    tokio::time::timeout(
        Duration::from_secs(10),
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .expect("connect timed out")
    .expect("connect")
}

/// Body: "publisher:seq:" then padding of a varying length.
pub fn body(id: Id) -> Vec<u8> {
    let mut b = format!("{}:{}:", id.0, id.1).into_bytes();
    let pad = (id.1 as usize * 37 + id.0 as usize * 101) % 700;
    b.resize(b.len() + pad, b'.');
    b
}

pub fn parse(data: &[u8]) -> Id {
    let s = std::str::from_utf8(data).expect("utf-8 body");
    let mut it = s.split(':');
    let p = it.next().and_then(|v| v.parse().ok()).expect("publisher");
    let q = it.next().and_then(|v| v.parse().ok()).expect("seq");
    (p, q)
}

pub fn properties(id: Id) -> BasicProperties {
    let mut h = FieldTable::default();
    h.insert("publisher".into(), AMQPValue::LongUInt(id.0));
    h.insert("seq".into(), AMQPValue::LongLongInt(id.1 as i64));
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(ShortString::from(format!("{}-{}", id.0, id.1)))
        .with_headers(h)
}

/// Do body, message id and headers agree?
pub fn consistent(d: &lapin::message::Delivery) -> bool {
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

pub async fn declare_topology(ch: &Channel) {
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

pub fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

/// The brokers' logs (warn and up) hold no error: warnings (a torn tail cut off after a kill)
/// are expected, errors (a corrupt record, a lost paged-out message, a failed write) are not.
pub fn assert_no_errors_logged(logs: &Path) {
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
