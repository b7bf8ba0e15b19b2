//! Durability of topology across a graceful restart (`stop()`, then `warren::start` again on the
//! same data dir): durable exchanges of every type, queues and bindings (queue, exchange to
//! exchange, an alternate exchange) come back with their flags and arguments, transient ones do
//! not; an exclusive durable queue does not come back; unbind, exchange delete (with its
//! bindings) and auto-delete exchanges are durable. Messages are tests/durability_messages.rs,
//! purge, delete and disk space tests/durability_disk.rs, kill -9 tests/crash.rs.
use crate::common;
use common::durability::*;
use common::*;

use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::ExchangeKind;

#[tokio::test]
async fn durable_topology_survives_restart_and_transient_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = b.channel().await;
    let ae = table(&[("alternate-exchange", lstr("d.fanout"))]);
    declare_exchange(
        &ch,
        "d.direct",
        ExchangeKind::Direct,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(&ch, "d.topic", ExchangeKind::Topic, durable_x(), ae.clone()).await;
    declare_exchange(
        &ch,
        "d.fanout",
        ExchangeKind::Fanout,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(
        &ch,
        "d.headers",
        ExchangeKind::Headers,
        durable_x(),
        table(&[]),
    )
    .await;
    let transient_x = ExchangeDeclareOptions::default();
    declare_exchange(
        &ch,
        "t.direct",
        ExchangeKind::Direct,
        transient_x,
        table(&[]),
    )
    .await;
    let qargs = table(&[("x-custom", AMQPValue::LongInt(7)), ("x-note", lstr("hi"))]);
    declare_queue(&ch, "dq", durable(), qargs.clone()).await;
    declare_queue(&ch, "dq2", durable(), table(&[])).await;
    declare_queue(&ch, "tq", QueueDeclareOptions::default(), table(&[])).await;
    let hargs = table(&[("x-match", lstr("all")), ("h", AMQPValue::LongInt(1))]);
    bind(&ch, "dq", "d.direct", "k1", table(&[])).await;
    bind(&ch, "dq2", "d.topic", "a.*", table(&[])).await;
    bind(&ch, "dq", "d.headers", "", hargs.clone()).await;
    bind(&ch, "dq", "amq.direct", "amq-k", table(&[])).await;
    bind(&ch, "tq", "d.direct", "k1", table(&[])).await; // transient queue: not kept
    bind(&ch, "dq", "t.direct", "k1", table(&[])).await; // transient exchange: not kept
    within(
        5,
        ch.exchange_bind(
            "d.direct".into(),
            "d.fanout".into(),
            "".into(),
            ExchangeBindOptions::default(),
            table(&[]),
        ),
    )
    .await
    .expect("exchange.bind");
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    for x in ["d.direct", "d.topic", "d.fanout", "d.headers"] {
        assert!(exchange_exists(&c, x).await, "{x} did not come back");
    }
    assert!(
        !exchange_exists(&c, "t.direct").await,
        "transient exchange came back"
    );
    assert!(queue_exists(&c, "dq").await);
    assert!(queue_exists(&c, "dq2").await);
    assert!(!queue_exists(&c, "tq").await, "transient queue came back");

    // Every durable binding routes again (each path lands one message in dq).
    publish_confirmed(&ch, "d.direct", "k1", b"direct", persistent()).await;
    let h = table(&[("h", AMQPValue::LongInt(1))]);
    publish_confirmed(
        &ch,
        "d.headers",
        "",
        b"headers",
        persistent().with_headers(h),
    )
    .await;
    publish_confirmed(&ch, "amq.direct", "amq-k", b"amq", persistent()).await;
    publish_confirmed(&ch, "d.fanout", "k1", b"e2e", persistent()).await;
    // d.topic has no match for k1: its alternate exchange d.fanout takes it on to d.direct.
    publish_confirmed(&ch, "d.topic", "k1", b"alternate", persistent()).await;
    publish_confirmed(&ch, "d.topic", "a.b", b"topic", persistent()).await;
    let got = drain(&ch, "dq").await;
    assert_eq!(
        bodies(&got),
        ["direct", "headers", "amq", "e2e", "alternate"],
        "dq after restart"
    );
    assert_eq!(bodies(&drain(&ch, "dq2").await), ["topic"]);

    // Redeclaring exactly as before is equivalent: no 406.
    declare_exchange(
        &ch,
        "d.direct",
        ExchangeKind::Direct,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(&ch, "d.topic", ExchangeKind::Topic, durable_x(), ae).await;
    declare_exchange(
        &ch,
        "d.fanout",
        ExchangeKind::Fanout,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_exchange(
        &ch,
        "d.headers",
        ExchangeKind::Headers,
        durable_x(),
        table(&[]),
    )
    .await;
    declare_queue(&ch, "dq", durable(), qargs).await;
    declare_queue(&ch, "dq2", durable(), table(&[])).await;
    // ... and the flags did come back: a transient redeclare is refused.
    let e = within(
        5,
        ch.queue_declare("dq".into(), QueueDeclareOptions::default(), table(&[])),
    )
    .await
    .expect_err("durable mismatch must fail");
    assert_eq!(code(&e), Some(406), "{e}");
    let ch = within(5, c.create_channel()).await.unwrap();
    let r = ch.exchange_declare(
        "d.topic".into(),
        ExchangeKind::Topic,
        durable_x(),
        table(&[]),
    );
    let e = within(5, r)
        .await
        .expect_err("arguments mismatch must fail");
    assert_eq!(code(&e), Some(406), "{e}");
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn exclusive_durable_queue_does_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    let opts = QueueDeclareOptions {
        durable: true,
        exclusive: true,
        ..Default::default()
    };
    declare_queue(&ch, "excl", opts, table(&[])).await;
    declare_exchange(&ch, "ex.x", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    bind(&ch, "excl", "ex.x", "", table(&[])).await;
    publish_confirmed(&ch, "", "excl", b"m", persistent()).await;
    assert!(
        queue_dirs(&b.data_dir).is_empty(),
        "an exclusive queue got a log"
    );
    // Still connected (the queue is alive) when the broker stops.
    let b = restart(b).await;
    drop((ch, c));
    let (c, ch) = b.channel().await;
    assert!(!queue_exists(&c, "excl").await, "exclusive queue came back");
    assert!(exchange_exists(&c, "ex.x").await);
    // Nothing routes from ex.x any more: the binding to the exclusive queue is gone too.
    declare_queue(&ch, "excl", durable(), table(&[])).await;
    publish(&ch, "ex.x", b"x").await;
    assert_eq!(ready(&ch, "excl").await, 0);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn unbind_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "ub.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    declare_exchange(&ch, "ub.h", ExchangeKind::Headers, durable_x(), table(&[])).await;
    declare_exchange(&ch, "ub.src", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    declare_queue(&ch, "ub.q", durable(), table(&[])).await;
    bind(&ch, "ub.q", "ub.x", "a", table(&[])).await;
    bind(&ch, "ub.q", "ub.x", "b", table(&[])).await;
    let h1 = table(&[("x-match", lstr("any")), ("h", lstr("1"))]);
    let h2 = table(&[("x-match", lstr("any")), ("h", lstr("2"))]);
    bind(&ch, "ub.q", "ub.h", "", h1.clone()).await;
    bind(&ch, "ub.q", "ub.h", "", h2.clone()).await;
    let e2e = |unbind: bool| {
        let ch = ch.clone();
        async move {
            let r = if unbind {
                ch.exchange_unbind(
                    "ub.x".into(),
                    "ub.src".into(),
                    "a".into(),
                    ExchangeUnbindOptions::default(),
                    table(&[]),
                )
                .await
            } else {
                ch.exchange_bind(
                    "ub.x".into(),
                    "ub.src".into(),
                    "a".into(),
                    ExchangeBindOptions::default(),
                    table(&[]),
                )
                .await
            };
            r.expect("exchange (un)bind");
        }
    };
    within(5, e2e(false)).await;
    within(
        5,
        ch.queue_unbind("ub.q".into(), "ub.x".into(), "a".into(), table(&[])),
    )
    .await
    .unwrap();
    // Unbind matches arguments: only the h=1 binding goes.
    within(
        5,
        ch.queue_unbind("ub.q".into(), "ub.h".into(), "".into(), h1),
    )
    .await
    .unwrap();
    within(5, e2e(true)).await;
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    let hdr = |v: &str| persistent().with_headers(table(&[("h", lstr(v))]));
    publish_confirmed(&ch, "ub.x", "a", b"x-a", persistent()).await;
    publish_confirmed(&ch, "ub.x", "b", b"x-b", persistent()).await;
    publish_confirmed(&ch, "ub.h", "", b"h-1", hdr("1")).await;
    publish_confirmed(&ch, "ub.h", "", b"h-2", hdr("2")).await;
    publish_confirmed(&ch, "ub.src", "a", b"src", persistent()).await;
    assert_eq!(bodies(&drain(&ch, "ub.q").await), ["x-b", "h-2"]);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn durable_auto_delete_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    let ad = ExchangeDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    declare_exchange(&ch, "ad.x", ExchangeKind::Direct, ad, table(&[])).await;
    declare_exchange(&ch, "ad2.x", ExchangeKind::Direct, ad, table(&[])).await;
    declare_queue(&ch, "ad.q", durable(), table(&[])).await;
    declare_queue(&ch, "ad2.q", durable(), table(&[])).await;
    bind(&ch, "ad.q", "ad.x", "k", table(&[])).await;
    bind(&ch, "ad2.q", "ad2.x", "k", table(&[])).await;
    drop((ch, c));

    // With its binding, an auto-delete exchange comes back (and routes).
    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    assert!(exchange_exists(&c, "ad.x").await);
    assert!(exchange_exists(&c, "ad2.x").await);
    publish_confirmed(&ch, "ad.x", "k", b"routed", persistent()).await;
    assert_eq!(ready(&ch, "ad.q").await, 1);
    // Redeclare is equivalent (auto_delete came back too).
    declare_exchange(&ch, "ad.x", ExchangeKind::Direct, ad, table(&[])).await;
    // Last binding gone, by unbind or by deleting the queue: the exchange goes, durably.
    within(
        5,
        ch.queue_unbind("ad.q".into(), "ad.x".into(), "k".into(), table(&[])),
    )
    .await
    .unwrap();
    within(
        5,
        ch.queue_delete("ad2.q".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert!(!exchange_exists(&c, "ad.x").await);
    assert!(!exchange_exists(&c, "ad2.x").await);
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = b.channel().await;
    assert!(!exchange_exists(&c, "ad.x").await);
    assert!(!exchange_exists(&c, "ad2.x").await);
    assert_eq!(ready(&ch, "ad.q").await, 1);
    drop((ch, c));
    b.stop().await;
}

#[tokio::test]
async fn exchange_delete_is_durable_with_its_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path()).await;
    let (c, ch) = confirm_channel(&b).await;
    declare_exchange(&ch, "xd.src", ExchangeKind::Fanout, durable_x(), table(&[])).await;
    declare_exchange(&ch, "xd.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    declare_queue(&ch, "xd.q", durable(), table(&[])).await;
    bind(&ch, "xd.q", "xd.x", "k", table(&[])).await;
    within(
        5,
        ch.exchange_bind(
            "xd.x".into(),
            "xd.src".into(),
            "".into(),
            ExchangeBindOptions::default(),
            table(&[]),
        ),
    )
    .await
    .unwrap();
    within(
        5,
        ch.exchange_delete("xd.x".into(), ExchangeDeleteOptions::default()),
    )
    .await
    .unwrap();
    drop((ch, c));

    let b = restart(b).await;
    let (c, ch) = confirm_channel(&b).await;
    assert!(!exchange_exists(&c, "xd.x").await);
    assert!(exchange_exists(&c, "xd.src").await);
    // Declared again, it has none of the old bindings (from xd.src, or to xd.q).
    declare_exchange(&ch, "xd.x", ExchangeKind::Direct, durable_x(), table(&[])).await;
    publish_confirmed(&ch, "xd.x", "k", b"direct", persistent()).await;
    publish_confirmed(&ch, "xd.src", "k", b"fanout", persistent()).await;
    assert_eq!(ready(&ch, "xd.q").await, 0);
    drop((ch, c));
    b.stop().await;
}
