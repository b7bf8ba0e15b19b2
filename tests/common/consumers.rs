//! Helpers for the consumer-feature tests (priorities, single active consumer, timeouts, direct
//! reply-to, transactions): consumes with arguments, argument tables, prefetch, and the text of
//! a channel or connection close.
use super::within;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Consumer};

/// A field table from (key, value) pairs.
pub fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

pub fn long(n: i64) -> AMQPValue {
    AMQPValue::LongLongInt(n)
}

pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// basic.consume with arguments; the result, so that refusals can be checked.
pub async fn consume_args(
    ch: &Channel,
    queue: &str,
    no_ack: bool,
    arguments: FieldTable,
) -> lapin::Result<Consumer> {
    within(
        5,
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            arguments,
        ),
    )
    .await
}

pub async fn qos(ch: &Channel, n: u16) {
    within(5, ch.basic_qos(n, BasicQosOptions::default()))
        .await
        .expect("basic.qos");
}

/// Declare a queue with arguments.
pub async fn declare_args(
    ch: &Channel,
    name: &str,
    arguments: FieldTable,
) -> lapin::Result<lapin::Queue> {
    within(
        5,
        ch.queue_declare(name.into(), QueueDeclareOptions::default(), arguments),
    )
    .await
}

/// The reply text of the close a lapin error carries ("" for other errors).
pub fn close_text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => a.get_message().to_string(),
        _ => String::new(),
    }
}
