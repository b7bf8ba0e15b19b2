//! Helpers for the routing_* tests: reply codes, exchange declares, queue and exchange-to-
//! exchange bindings, publishing, draining a queue, header tables, passive exchange declares,
//! and observing an asynchronous publish error through a confirm channel.
use super::{get_body, within};

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

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

pub async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    exchange_with(
        ch,
        name,
        kind,
        ExchangeDeclareOptions::default(),
        table(&[]),
    )
    .await;
}

pub async fn exchange_with(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    opts: ExchangeDeclareOptions,
    args: FieldTable,
) {
    within(5, ch.exchange_declare(name.into(), kind, opts, args))
        .await
        .expect("exchange.declare");
}

pub async fn bind(ch: &Channel, queue: &str, ex: &str, key: &str) {
    bind_args(ch, queue, ex, key, table(&[])).await;
}

pub async fn bind_args(ch: &Channel, queue: &str, ex: &str, key: &str, args: FieldTable) {
    within(
        5,
        ch.queue_bind(
            queue.into(),
            ex.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .expect("queue.bind");
}

pub async fn e2e(ch: &Channel, dest: &str, source: &str, key: &str) {
    within(
        5,
        ch.exchange_bind(
            dest.into(),
            source.into(),
            key.into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.bind");
}

pub async fn send(ch: &Channel, ex: &str, key: &str, body: &[u8]) {
    send_props(ch, ex, key, body, BasicProperties::default()).await;
}

pub async fn send_props(ch: &Channel, ex: &str, key: &str, body: &[u8], props: BasicProperties) {
    within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("basic.publish");
}

/// Every ready message of `queue`, in order (basic.get until get-empty). Publishes on the same
/// channel before this call are routed before the first get: the broker handles a channel's
/// frames in order.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(b) = within(5, get_body(ch, queue)).await {
        out.push(b);
    }
    out
}

pub fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

pub fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

pub fn headers(entries: &[(&str, AMQPValue)]) -> BasicProperties {
    BasicProperties::default().with_headers(table(entries))
}

pub async fn passive_exchange(ch: &Channel, name: &str) -> lapin::Result<()> {
    within(
        5,
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

/// Publish on a confirm channel and return how the broker answered: the channel error code if
/// it closed the channel. Deterministic way to observe an asynchronous publish error.
pub async fn publish_error(
    ch: &Channel,
    ex: &str,
    key: &str,
    props: BasicProperties,
) -> Option<u16> {
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"x",
            props,
        ),
    )
    .await
    .expect("basic.publish");
    match within(5, confirm).await {
        Ok(c) => panic!("publish was confirmed: {c:?}"),
        Err(e) => code(&e),
    }
}
