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

/// A connection's stream of lapin events (errors included).
pub type Events = std::pin::Pin<Box<dyn futures_lite::Stream<Item = lapin::Event> + Send>>;

pub fn events(c: &lapin::Connection) -> Events {
    Box::pin(c.events_listener())
}

/// The next channel or connection close lapin reports: (reply code, reply text).
pub async fn next_close(events: &mut Events, secs: u64) -> (u16, String) {
    use futures_lite::StreamExt;
    within(secs, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => {
                    let code = match e.kind() {
                        lapin::ErrorKind::ProtocolError(a) => a.get_id(),
                        _ => 0,
                    };
                    return (code, close_text(&e));
                }
                Some(_) => continue,
                None => panic!("lapin's event stream ended without an error"),
            }
        }
    })
    .await
}
