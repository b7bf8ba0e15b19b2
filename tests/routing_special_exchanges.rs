//! The special exchanges: the default exchange (routes by queue name; cannot be bound, declared
//! or deleted), the predeclared `amq.*` exchanges, alternate exchanges taking unroutable
//! messages (mandatory ones are then not returned), and internal exchanges (no publishing, but
//! reachable through an exchange-to-exchange binding).
use crate::common;
use common::routing::*;
use common::*;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "by-name").await;
    send(&ch, "", "by-name", b"direct to queue").await;
    send(&ch, "", "no-such-queue", b"dropped").await;
    assert_eq!(drain(&ch, "by-name").await, [b"direct to queue"]);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_cannot_be_bound() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "q").await;
    let r = within(
        5,
        ch.queue_bind(
            "q".into(),
            "".into(),
            "q".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    // Nor as either end of an exchange-to-exchange binding.
    let ch = c.create_channel().await.expect("channel");
    exchange(&ch, "x", ExchangeKind::Fanout).await;
    let r = within(
        5,
        ch.exchange_bind(
            "x".into(),
            "".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    let ch = c.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.exchange_bind(
            "".into(),
            "x".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_cannot_be_declared_even_passively() {
    // RabbitMQ: check_not_default_exchange runs for passive declares too (403).
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    expect_code(passive_exchange(&ch, "").await, 403);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_cannot_be_deleted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let r = within(
        5,
        ch.exchange_delete("".into(), ExchangeDeleteOptions::default()),
    )
    .await;
    expect_code(r, 403);
    b.stop().await;
}

#[tokio::test]
async fn predeclared_exchanges_exist() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for name in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        passive_exchange(&ch, name)
            .await
            .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
    }
    // And they route as their type says.
    declare(&ch, "pq").await;
    bind(&ch, "pq", "amq.direct", "k").await;
    bind(&ch, "pq", "amq.fanout", "").await;
    send(&ch, "amq.direct", "k", b"direct").await;
    send(&ch, "amq.fanout", "whatever", b"fanout").await;
    assert_eq!(drain(&ch, "pq").await, [&b"direct"[..], b"fanout"]);
    b.stop().await;
}

#[tokio::test]
async fn alternate_exchange_receives_unroutable_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "ae", ExchangeKind::Fanout).await;
    declare(&ch, "unrouted").await;
    bind(&ch, "unrouted", "ae", "").await;
    let args = table(&[("alternate-exchange", s("ae"))]);
    let opts = ExchangeDeclareOptions::default();
    exchange_with(&ch, "main", ExchangeKind::Direct, opts, args).await;
    declare(&ch, "routed").await;
    bind(&ch, "routed", "main", "good").await;
    send(&ch, "main", "good", b"routed").await;
    send(&ch, "main", "bad", b"to ae").await;
    assert_eq!(drain(&ch, "routed").await, [b"routed"]);
    assert_eq!(drain(&ch, "unrouted").await, [b"to ae"]);
    b.stop().await;
}

#[tokio::test]
async fn mandatory_message_caught_by_alternate_exchange_is_not_returned() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "ae2", ExchangeKind::Fanout).await;
    declare(&ch, "caught").await;
    bind(&ch, "caught", "ae2", "").await;
    let args = table(&[("alternate-exchange", s("ae2"))]);
    let opts = ExchangeDeclareOptions::default();
    exchange_with(&ch, "main2", ExchangeKind::Direct, opts, args).await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            "main2".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let c = within(5, confirm).await.expect("confirm");
    assert!(
        matches!(c, lapin::Confirmation::Ack(None)),
        "expected a plain ack, got {c:?}"
    );
    assert_eq!(drain(&ch, "caught").await, [b"m"]);
    b.stop().await;
}

#[tokio::test]
async fn publishing_to_internal_exchange_is_refused() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let opts = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    exchange_with(&ch, "internal_x", ExchangeKind::Fanout, opts, table(&[])).await;
    assert_eq!(
        publish_error(&ch, "internal_x", "", BasicProperties::default()).await,
        Some(403)
    );
    // The connection survives the channel error.
    let ch = c.create_channel().await.expect("channel after 403");
    declare(&ch, "still-works").await;
    b.stop().await;
}

#[tokio::test]
async fn internal_exchange_routes_through_exchange_binding() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let opts = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    exchange_with(&ch, "inner", ExchangeKind::Fanout, opts, table(&[])).await;
    exchange(&ch, "outer", ExchangeKind::Direct).await;
    e2e(&ch, "inner", "outer", "k").await;
    declare(&ch, "behind_inner").await;
    bind(&ch, "behind_inner", "inner", "").await;
    send(&ch, "outer", "k", b"via outer").await;
    assert_eq!(drain(&ch, "behind_inner").await, [b"via outer"]);
    b.stop().await;
}
