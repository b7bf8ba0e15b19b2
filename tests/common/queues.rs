//! Helpers for the queue_* and channel_multiplexing tests: reply codes, (passive) queue
//! declares and the (ready, consumers) counts they report, consumers and their next delivery,
//! basic.get with manual ack, draining a queue, and polling for requeues and deletions that
//! another connection's teardown makes asynchronously.
use super::{publish, within};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use std::time::Duration;

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

pub fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

pub async fn declare_opts(
    ch: &Channel,
    name: &str,
    opts: QueueDeclareOptions,
) -> lapin::Result<lapin::Queue> {
    within(
        5,
        ch.queue_declare(name.into(), opts, FieldTable::default()),
    )
    .await
}

/// (ready messages, consumers) as a passive declare reports them.
pub async fn counts(ch: &Channel, name: &str) -> (u32, u32) {
    let q = declare_opts(ch, name, passive())
        .await
        .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
    (q.message_count(), q.consumer_count())
}

pub async fn consume(ch: &Channel, queue: &str, no_ack: bool) -> Consumer {
    within(
        5,
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume")
}

pub async fn next(c: &mut Consumer) -> Delivery {
    within(5, c.next())
        .await
        .expect("consumer stream ended")
        .expect("delivery error")
}

/// True if nothing arrives on the consumer for a short while.
pub async fn stays_quiet(c: &mut Consumer) -> bool {
    tokio::time::timeout(Duration::from_millis(300), c.next())
        .await
        .is_err()
}

pub async fn publish_n(ch: &Channel, queue: &str, n: u32) {
    for i in 1..=n {
        publish(ch, queue, i.to_string().as_bytes()).await;
    }
}

pub fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

/// basic.get with manual ack: (body, redelivered, delivery tag, message_count).
pub async fn get_manual(ch: &Channel, queue: &str) -> Option<(String, bool, u64, u32)> {
    within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .map(|m| {
        (
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
            m.delivery.delivery_tag,
            m.message_count,
        )
    })
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

pub fn msgs(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(b, r)| (b.to_string(), *r)).collect()
}

/// Poll until the queue reports `n` ready messages (state changes made by another connection's
/// teardown are asynchronous).
pub async fn wait_ready(ch: &Channel, queue: &str, n: u32) {
    within(5, async {
        while counts(ch, queue).await.0 != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

pub async fn wait_gone(ch: &Channel, queue: &str) {
    within(5, async {
        loop {
            match declare_opts(ch, queue, passive()).await {
                Err(e) => {
                    assert_eq!(code(&e), Some(404), "unexpected error {e}");
                    return;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
}
