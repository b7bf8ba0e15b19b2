//! Bindings and their lifecycle: exchange-to-exchange chains, cycles and diamonds deliver one
//! copy per queue; queue and exchange unbind stop routing; exchange delete (if-unused, and taking
//! its bindings along); auto-delete exchanges going with their last binding; bindings that
//! differ only in their arguments are distinct; unbinding from a missing queue or exchange is ok.
use crate::common;
use common::routing::*;
use common::*;

use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::ExchangeKind;

#[tokio::test]
async fn exchange_to_exchange_chain() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "front", ExchangeKind::Direct).await;
    exchange(&ch, "middle", ExchangeKind::Topic).await;
    exchange(&ch, "back", ExchangeKind::Fanout).await;
    e2e(&ch, "middle", "front", "orders.eu").await;
    e2e(&ch, "back", "middle", "orders.*").await;
    declare(&ch, "sink").await;
    bind(&ch, "sink", "back", "").await;
    send(&ch, "front", "orders.eu", b"through").await;
    send(&ch, "front", "orders.us", b"not bound at front").await;
    send(&ch, "middle", "orders.us", b"enters at middle").await;
    assert_eq!(
        drain(&ch, "sink").await,
        [&b"through"[..], b"enters at middle"]
    );
    b.stop().await;
}

#[tokio::test]
async fn exchange_binding_cycle_delivers_one_copy_per_queue() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "cyc_a", ExchangeKind::Fanout).await;
    exchange(&ch, "cyc_b", ExchangeKind::Fanout).await;
    e2e(&ch, "cyc_b", "cyc_a", "").await;
    e2e(&ch, "cyc_a", "cyc_b", "").await;
    declare(&ch, "qa").await;
    declare(&ch, "qb").await;
    bind(&ch, "qa", "cyc_a", "").await;
    bind(&ch, "qb", "cyc_b", "").await;
    send(&ch, "cyc_a", "", b"from a").await;
    send(&ch, "cyc_b", "", b"from b").await;
    assert_eq!(drain(&ch, "qa").await, [&b"from a"[..], b"from b"]);
    assert_eq!(drain(&ch, "qb").await, [&b"from a"[..], b"from b"]);
    b.stop().await;
}

#[tokio::test]
async fn diamond_of_exchanges_delivers_one_copy() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for x in ["top", "left", "right"] {
        exchange(&ch, x, ExchangeKind::Fanout).await;
    }
    e2e(&ch, "left", "top", "").await;
    e2e(&ch, "right", "top", "").await;
    declare(&ch, "bottom").await;
    bind(&ch, "bottom", "left", "").await;
    bind(&ch, "bottom", "right", "").await;
    send(&ch, "top", "", b"once").await;
    assert_eq!(drain(&ch, "bottom").await, [b"once"]);
    b.stop().await;
}

#[tokio::test]
async fn unbind_stops_routing() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "ub", ExchangeKind::Direct).await;
    declare(&ch, "ubq").await;
    bind(&ch, "ubq", "ub", "k").await;
    send(&ch, "ub", "k", b"before").await;
    within(
        5,
        ch.queue_unbind("ubq".into(), "ub".into(), "k".into(), table(&[])),
    )
    .await
    .expect("queue.unbind");
    send(&ch, "ub", "k", b"after").await;
    assert_eq!(drain(&ch, "ubq").await, [b"before"]);
    b.stop().await;
}

#[tokio::test]
async fn exchange_unbind_stops_routing() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "src", ExchangeKind::Fanout).await;
    exchange(&ch, "dst", ExchangeKind::Fanout).await;
    e2e(&ch, "dst", "src", "").await;
    declare(&ch, "dq").await;
    bind(&ch, "dq", "dst", "").await;
    send(&ch, "src", "", b"before").await;
    within(
        5,
        ch.exchange_unbind(
            "dst".into(),
            "src".into(),
            "".into(),
            ExchangeUnbindOptions::default(),
            table(&[]),
        ),
    )
    .await
    .expect("exchange.unbind");
    send(&ch, "src", "", b"after").await;
    assert_eq!(drain(&ch, "dq").await, [b"before"]);
    b.stop().await;
}

#[tokio::test]
async fn exchange_delete_if_unused() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    exchange(&ch, "used", ExchangeKind::Direct).await;
    declare(&ch, "uq").await;
    bind(&ch, "uq", "used", "k").await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    expect_code(
        within(5, ch.exchange_delete("used".into(), if_unused)).await,
        406,
    );
    let ch = c.create_channel().await.expect("channel");
    passive_exchange(&ch, "used")
        .await
        .expect("still there after the failed delete");
    within(
        5,
        ch.queue_unbind("uq".into(), "used".into(), "k".into(), table(&[])),
    )
    .await
    .expect("unbind");
    within(5, ch.exchange_delete("used".into(), if_unused))
        .await
        .expect("if-unused delete of an unbound exchange");
    expect_code(passive_exchange(&ch, "used").await, 404);
    b.stop().await;
}

#[tokio::test]
async fn exchange_delete_removes_its_bindings() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "gone", ExchangeKind::Fanout).await;
    declare(&ch, "gq").await;
    bind(&ch, "gq", "gone", "").await;
    within(
        5,
        ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default()),
    )
    .await
    .expect("delete");
    // Redeclared under the same name it starts without bindings.
    exchange(&ch, "gone", ExchangeKind::Fanout).await;
    send(&ch, "gone", "", b"x").await;
    assert!(drain(&ch, "gq").await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    exchange_with(&ch, "ad", ExchangeKind::Direct, opts, table(&[])).await;
    // Never bound: it stays.
    passive_exchange(&ch, "ad")
        .await
        .expect("unbound auto-delete");
    declare(&ch, "adq1").await;
    declare(&ch, "adq2").await;
    bind(&ch, "adq1", "ad", "a").await;
    bind(&ch, "adq2", "ad", "b").await;
    within(
        5,
        ch.queue_unbind("adq1".into(), "ad".into(), "a".into(), table(&[])),
    )
    .await
    .expect("unbind");
    passive_exchange(&ch, "ad")
        .await
        .expect("one binding is left");
    within(
        5,
        ch.queue_unbind("adq2".into(), "ad".into(), "b".into(), table(&[])),
    )
    .await
    .expect("unbind");
    expect_code(passive_exchange(&ch, "ad").await, 404);
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_bound_queue_is_deleted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    exchange_with(&ch, "ad2", ExchangeKind::Fanout, opts, table(&[])).await;
    declare(&ch, "adq").await;
    bind(&ch, "adq", "ad2", "").await;
    within(
        5,
        ch.queue_delete("adq".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete");
    expect_code(passive_exchange(&ch, "ad2").await, 404);
    b.stop().await;
}

#[tokio::test]
async fn bindings_with_different_arguments_are_distinct() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "args_x", ExchangeKind::Direct).await;
    declare(&ch, "aq").await;
    let a1 = table(&[("v", AMQPValue::LongInt(1))]);
    let a2 = table(&[("v", AMQPValue::LongInt(2))]);
    bind_args(&ch, "aq", "args_x", "k", a1.clone()).await;
    bind_args(&ch, "aq", "args_x", "k", a2.clone()).await;
    // Two bindings to the same queue: still one copy.
    send(&ch, "args_x", "k", b"1").await;
    assert_eq!(drain(&ch, "aq").await, [b"1"]);
    // Removing one leaves the other in place.
    within(
        5,
        ch.queue_unbind("aq".into(), "args_x".into(), "k".into(), a1),
    )
    .await
    .expect("unbind a1");
    send(&ch, "args_x", "k", b"2").await;
    assert_eq!(drain(&ch, "aq").await, [b"2"]);
    within(
        5,
        ch.queue_unbind("aq".into(), "args_x".into(), "k".into(), a2),
    )
    .await
    .expect("unbind a2");
    send(&ch, "args_x", "k", b"3").await;
    assert!(drain(&ch, "aq").await.is_empty());
    b.stop().await;
}

/// As RabbitMQ: unbinding from a queue or exchange that does not exist is unbind-ok, not 404.
#[tokio::test]
async fn unbinding_missing_ends_is_ok() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "here").await;
    for (queue, ex) in [
        ("gone", "amq.direct"),
        ("here", "gone-x"),
        ("gone", "gone-x"),
    ] {
        within(
            5,
            ch.queue_unbind(queue.into(), ex.into(), "k".into(), table(&[])),
        )
        .await
        .unwrap_or_else(|e| panic!("queue.unbind {queue} from {ex}: {e}"));
    }
    for (dest, src) in [("gone-x", "amq.direct"), ("amq.fanout", "gone-x")] {
        within(
            5,
            ch.exchange_unbind(
                dest.into(),
                src.into(),
                "k".into(),
                ExchangeUnbindOptions::default(),
                table(&[]),
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("exchange.unbind {dest} from {src}: {e}"));
    }
    // The channel is still usable.
    send(&ch, "", "here", b"m").await;
    assert_eq!(get_body(&ch, "here").await.as_deref(), Some(&b"m"[..]));
    b.stop().await;
}
