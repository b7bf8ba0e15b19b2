//! Helpers for the queue feature tests (queue_args, queue_ttl, queue_dlx, queue_limits,
//! queue_priority, queue_quorum): argument tables, declares that may fail with the broker's
//! text, publishes with properties (and their confirm), basic.get of whole messages, header
//! lookups in `x-death`, and polling for a queue's count to reach a value.
use super::within;

use lapin::message::BasicGetMessage;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use std::time::Duration;

pub fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

pub fn int(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

/// Declare a (non-durable unless `opts` says otherwise) queue with arguments.
pub async fn declare_with(
    ch: &Channel,
    name: &str,
    opts: QueueDeclareOptions,
    a: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within(5, ch.queue_declare(name.into(), opts, a)).await
}

/// Declare a plain queue with arguments, which must succeed.
pub async fn declare_args(ch: &Channel, name: &str, a: FieldTable) {
    declare_with(ch, name, QueueDeclareOptions::default(), a)
        .await
        .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// The (code, text) of a channel or connection close carried by a lapin error.
pub fn close_of(e: &lapin::Error) -> (u16, String) {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => (a.get_id(), a.get_message().to_string()),
        other => panic!("not a protocol error: {other:?}"),
    }
}

/// Expect a failure with this code and exactly this text.
pub fn expect_close<T: std::fmt::Debug>(r: lapin::Result<T>, code: u16, text: &str) {
    match r {
        Ok(v) => panic!("expected {code} {text}, got Ok({v:?})"),
        Err(e) => assert_eq!(close_of(&e), (code, text.to_string())),
    }
}

/// Publish (no confirm mode needed).
pub async fn send(ch: &Channel, ex: &str, key: &str, body: &str, p: BasicProperties) {
    within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            p,
        ),
    )
    .await
    .expect("basic.publish");
}

/// Publish on a confirm-mode channel; true for an ack, false for a nack.
pub async fn send_confirmed(ch: &Channel, key: &str, body: &str, p: BasicProperties) -> bool {
    let pc = within(
        5,
        ch.basic_publish(
            "".into(),
            key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            p,
        ),
    )
    .await
    .expect("basic.publish");
    match within(5, pc).await.expect("confirmation") {
        Confirmation::Ack(_) => true,
        Confirmation::Nack(_) => false,
        Confirmation::NotRequested => panic!("channel not in confirm mode"),
    }
}

pub async fn confirm_mode(ch: &Channel) {
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
}

pub fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

pub fn prio(p: u8) -> BasicProperties {
    BasicProperties::default().with_priority(p)
}

/// basic.get with no-ack: the whole message.
pub async fn get(ch: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
}

pub fn text(m: &BasicGetMessage) -> String {
    String::from_utf8_lossy(&m.delivery.data).into_owned()
}

/// Every ready body, taken with no-ack.
pub async fn bodies(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, queue).await {
        out.push(text(&m));
    }
    out
}

/// Ready messages as a passive declare reports them.
pub async fn count(ch: &Channel, queue: &str) -> u32 {
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    within(
        5,
        ch.queue_declare(queue.into(), opts, FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare of {queue}: {e}"))
    .message_count()
}

/// Poll until `queue` reports `n` ready messages (within `secs`).
pub async fn wait_count(ch: &Channel, queue: &str, n: u32, secs: u64) {
    within(secs, async {
        while count(ch, queue).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A header of a message.
pub fn header<'a>(p: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    p.headers().as_ref().and_then(|h| h.inner().get(key))
}

pub fn header_str(p: &BasicProperties, key: &str) -> Option<String> {
    match header(p, key) {
        Some(AMQPValue::LongString(v)) => Some(v.to_string()),
        _ => None,
    }
}

/// The `x-death` tables, most recent first.
pub fn deaths(p: &BasicProperties) -> Vec<FieldTable> {
    match header(p, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

pub fn field_str(t: &FieldTable, key: &str) -> Option<String> {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(v)) => Some(v.to_string()),
        _ => None,
    }
}

pub fn field_int(t: &FieldTable, key: &str) -> Option<i64> {
    match t.inner().get(key) {
        Some(AMQPValue::LongLongInt(v)) => Some(*v),
        _ => None,
    }
}

/// Publish on a fresh channel of `conn` and return the (code, text) of the channel close the
/// publish provokes (the broker closes channels asynchronously after a bad publish).
pub async fn publish_error(
    conn: &lapin::Connection,
    key: &str,
    p: BasicProperties,
) -> (u16, String) {
    use futures_lite::StreamExt;
    let mut events = Box::pin(conn.events_listener());
    let ch = within(5, conn.create_channel()).await.expect("channel");
    let _ = ch
        .basic_publish(
            "".into(),
            key.into(),
            BasicPublishOptions::default(),
            b"m",
            p,
        )
        .await;
    within(5, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return close_of(&e),
                Some(_) => continue,
                None => panic!("event stream ended without an error"),
            }
        }
    })
    .await
}
