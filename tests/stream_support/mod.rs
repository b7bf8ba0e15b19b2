//! Helpers of the stream_* tests: stream declares, confirmed publishing (pipelined, or one
//! message per chunk), readers (a connection, a prefetch and a consumer with stream arguments),
//! deliveries as (offset, body), and reply codes. Every await is bounded by `within`.
#![allow(dead_code)]

use crate::common::{within, Broker};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer};
use std::time::Duration;

/// A long-string argument value.
pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

/// An array of long strings (`x-stream-filter` as a list).
pub fn list(vs: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(FieldArray::from(
        vs.iter().map(|v| s(v)).collect::<Vec<_>>(),
    ))
}

pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// `x-queue-type=stream` plus `extra`.
pub fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = table(extra);
    t.insert("x-queue-type".into(), s("stream"));
    t
}

pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

pub fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

/// Declare a durable stream with the extra arguments; panics on an error.
pub async fn declare_stream(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) -> lapin::Queue {
    within(
        5,
        ch.queue_declare(name.into(), durable(), stream_args(extra)),
    )
    .await
    .unwrap_or_else(|e| panic!("declare stream {name}: {e}"))
}

/// Messages in the stream as a passive declare reports them (next offset − first offset).
pub async fn stream_len(ch: &Channel, name: &str) -> u32 {
    within(
        5,
        ch.queue_declare(name.into(), passive(), FieldTable::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"))
    .message_count()
}

/// The reply code of a channel or connection close carried by a lapin error.
pub fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

pub fn expect_code<T: std::fmt::Debug>(r: lapin::Result<T>, want: u16) {
    match r {
        Ok(v) => panic!("expected reply code {want}, got Ok({v:?})"),
        Err(e) => assert_eq!(code(&e), Some(want), "wrong error: {e}"),
    }
}

/// A new connection with a channel in confirm mode.
pub async fn confirm_channel(b: &Broker) -> (Connection, Channel) {
    within(5, async {
        let (c, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        (c, ch)
    })
    .await
}

/// Publish on a confirm channel and wait for the broker's ack.
pub async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    let conf = within(5, async {
        ch.basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirmation")
    })
    .await;
    assert!(matches!(conf, Confirmation::Ack(None)), "got {conf:?}");
}

/// Publish every body to `queue` pipelined (all in flight at once) on a confirm channel, then
/// wait for every ack: afterwards all of them are in the log, in this order.
pub async fn publish_all<B: AsRef<[u8]>>(
    ch: &Channel,
    queue: &str,
    bodies: impl IntoIterator<Item = B>,
) {
    within(30, async {
        let mut pending = Vec::new();
        for b in bodies {
            let pc = ch
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    b.as_ref(),
                    BasicProperties::default(),
                )
                .await
                .expect("basic.publish");
            pending.push(pc);
        }
        for pc in pending {
            let conf = pc.await.expect("confirmation");
            assert!(matches!(conf, Confirmation::Ack(None)), "got {conf:?}");
        }
    })
    .await;
}

/// Publish the bodies one at a time, each confirmed before the next is sent. A confirm means
/// the stream synced, and a sync closes the open chunk, so each message is a chunk of its own.
pub async fn publish_each<B: AsRef<[u8]>>(
    ch: &Channel,
    queue: &str,
    bodies: impl IntoIterator<Item = B>,
) {
    for b in bodies {
        publish_confirmed(ch, "", queue, b.as_ref(), BasicProperties::default()).await;
    }
}

/// "{prefix}{i}" for i in the range.
pub fn bodies(prefix: &str, r: std::ops::Range<u32>) -> Vec<String> {
    r.map(|i| format!("{prefix}{i}")).collect()
}

/// A consumer of its own: a connection, a channel with prefetch `prefetch`, and basic.consume
/// on `queue` with `tag` (empty: generated) and the consumer arguments.
pub struct Reader {
    pub conn: Connection,
    pub ch: Channel,
    pub consumer: Consumer,
}

impl Reader {
    pub async fn open(
        b: &Broker,
        queue: &str,
        tag: &str,
        prefetch: u16,
        args: &[(&str, AMQPValue)],
    ) -> Reader {
        within(5, async {
            let (conn, ch) = b.channel().await;
            ch.basic_qos(prefetch, BasicQosOptions::default())
                .await
                .expect("basic.qos");
            let consumer = ch
                .basic_consume(
                    queue.into(),
                    tag.into(),
                    BasicConsumeOptions::default(),
                    table(args),
                )
                .await
                .expect("basic.consume");
            Reader { conn, ch, consumer }
        })
        .await
    }

    /// The next delivery (within 5 s), not acked.
    pub async fn next(&mut self) -> Delivery {
        next(&mut self.consumer).await
    }

    /// The next `n` deliveries as (offset, body), each acked.
    pub async fn take(&mut self, n: usize) -> Vec<(i64, String)> {
        take(&mut self.consumer, n).await
    }

    /// Nothing arrives for `ms` milliseconds.
    pub async fn quiet(&mut self, ms: u64) -> bool {
        quiet(&mut self.consumer, ms).await
    }

    pub async fn close(self) {
        within(5, self.conn.close(200, "bye".into()))
            .await
            .expect("connection.close");
    }
}

pub async fn next(c: &mut Consumer) -> Delivery {
    within(5, c.next())
        .await
        .expect("consumer stream ended")
        .expect("delivery error")
}

pub async fn ack(d: &Delivery) {
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("basic.ack");
}

pub async fn take(c: &mut Consumer, n: usize) -> Vec<(i64, String)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let d = next(c).await;
        ack(&d).await;
        out.push((offset(&d), body(&d)));
    }
    out
}

pub async fn quiet(c: &mut Consumer, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), c.next())
        .await
        .is_err()
}

/// The `x-stream-offset` header the broker stamped on the delivery.
pub fn offset(d: &Delivery) -> i64 {
    let h = d.properties.headers().as_ref().expect("headers");
    match h.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-stream-offset header: {other:?}"),
    }
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

/// (offset, "{prefix}{offset}") for each offset in the range: what a stream whose message at
/// offset i is "{prefix}{i}" delivers.
pub fn expected(prefix: &str, r: std::ops::Range<i64>) -> Vec<(i64, String)> {
    r.map(|i| (i, format!("{prefix}{i}"))).collect()
}

/// Poll `f` every 50 ms until it holds (within `secs`).
pub async fn eventually<F, Fut>(secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(secs, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// `Broker::start`, bounded.
pub async fn start_broker() -> Broker {
    within(10, Broker::start()).await
}

/// `Broker::stop`, bounded.
pub async fn stop_broker(b: Broker) {
    within(10, b.stop()).await
}
