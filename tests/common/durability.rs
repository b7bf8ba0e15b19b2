//! Helpers for the durability_* tests: start a broker on a data dir the test keeps (1 MiB
//! segments) and restart it gracefully, declare durable exchanges, queues and bindings, publish
//! and wait for the confirm, and look at what came back: whether a queue or exchange exists,
//! ready counts, drained bodies, and the queues' log directories and their size on disk.
use super::{within, Broker};

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ExchangeKind};
use std::path::{Path, PathBuf};
use warren::Config;

/// 1 MiB segments, so a few thousand messages already span several files.
pub fn small(c: &mut Config) {
    c.store.segment_size = 1 << 20;
}

pub async fn start(dir: &Path) -> Broker {
    Broker::start_in(dir, small).await
}

/// Graceful stop, then a new broker on the same data dir.
pub async fn restart(b: Broker) -> Broker {
    let dir = b.data_dir.clone();
    within(10, b.stop()).await;
    within(10, start(&dir)).await
}

/// The reply code of a channel or connection close carried by a lapin error.
pub fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

pub async fn confirm_channel(b: &Broker) -> (Connection, Channel) {
    let (c, ch) = b.channel().await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    (c, ch)
}

pub fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

pub fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

pub async fn declare_queue(ch: &Channel, name: &str, opts: QueueDeclareOptions, args: FieldTable) {
    within(5, ch.queue_declare(name.into(), opts, args))
        .await
        .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

pub async fn declare_exchange(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    opts: ExchangeDeclareOptions,
    args: FieldTable,
) {
    within(5, ch.exchange_declare(name.into(), kind, opts, args))
        .await
        .unwrap_or_else(|e| panic!("declare exchange {name}: {e}"));
}

pub fn durable_x() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(
        5,
        ch.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("bind {queue} to {exchange}: {e}"));
}

/// Publish and wait for the broker's confirm, which must be an ack.
pub async fn publish_confirmed(ch: &Channel, ex: &str, key: &str, body: &[u8], p: BasicProperties) {
    let pc = within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            p,
        ),
    )
    .await
    .expect("basic.publish");
    let c = within(5, pc).await.expect("confirmation");
    assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
}

/// Does the queue exist? (A passive declare on a fresh channel; 404 means no.)
pub async fn queue_exists(c: &Connection, name: &str) -> bool {
    let ch = within(5, c.create_channel()).await.expect("channel");
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match within(
        5,
        ch.queue_declare(name.into(), opts, FieldTable::default()),
    )
    .await
    {
        Ok(_) => true,
        Err(e) if code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of {name}: {e}"),
    }
}

pub async fn exchange_exists(c: &Connection, name: &str) -> bool {
    let ch = within(5, c.create_channel()).await.expect("channel");
    let opts = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let r = ch.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        opts,
        FieldTable::default(),
    );
    match within(5, r).await {
        Ok(()) => true,
        Err(e) if code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of exchange {name}: {e}"),
    }
}

/// Ready messages as declare-ok reports them.
pub async fn ready(ch: &Channel, name: &str) -> u32 {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(
        5,
        ch.queue_declare(name.into(), opts, FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"))
    .message_count()
}

/// Every ready message as (body, redelivered), taken with no-ack.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    loop {
        let m = within(
            5,
            ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
        )
        .await
        .expect("basic.get");
        match m {
            Some(m) => out.push((
                String::from_utf8_lossy(&m.delivery.data).into_owned(),
                m.delivery.redelivered,
            )),
            None => return out,
        }
    }
}

pub fn bodies(list: &[(String, bool)]) -> Vec<&str> {
    list.iter().map(|(b, _)| b.as_str()).collect()
}

/// basic.get with manual ack: (body, delivery tag).
pub async fn get_manual(ch: &Channel, queue: &str) -> (String, u64) {
    let m = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("a message");
    (
        String::from_utf8_lossy(&m.delivery.data).into_owned(),
        m.delivery.delivery_tag,
    )
}

/// The log directories of durable queues (data_dir/queues/<id>).
pub fn queue_dirs(data_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(data_dir.join("queues")) {
        Ok(rd) => rd.map(|e| e.expect("dir entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Bytes of every file under `p`.
pub fn du(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.map(|e| {
        let e = e.expect("dir entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            du(&e.path())
        } else {
            m.len()
        }
    })
    .sum()
}
