//! Queue length limits as RabbitMQ documents them: `x-max-length` (ready messages) and
//! `x-max-length-bytes` (their body bytes); `x-overflow` drop-head (the default: the oldest go,
//! dead-lettered with reason `maxlen`), reject-publish (refused: a confirming publisher gets
//! basic.nack, others lose it silently; other queues the message reaches still take it) and
//! reject-publish-dlx (refused and dead-lettered); unacked messages do not count; limits hold
//! across a restart of a durable queue.
use crate::common;
use common::durability::{restart, start};
use common::features::*;
use common::*;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};

#[tokio::test]
async fn drop_head_keeps_the_newest_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "two", args(&[("x-max-length", int(2))])).await;
    for m in ["1", "2", "3", "4", "5"] {
        send(&ch, "", "two", m, BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, "two").await, 2);
    assert_eq!(bodies(&ch, "two").await, ["4", "5"]);
    b.stop().await;
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "ten", args(&[("x-max-length-bytes", int(10))])).await;
    for m in ["aaaaa", "bbbbb", "c"] {
        send(&ch, "", "ten", m, BasicProperties::default()).await;
    }
    assert_eq!(bodies(&ch, "ten").await, ["bbbbb", "c"]);
    b.stop().await;
}

#[tokio::test]
async fn dropped_head_is_dead_lettered_as_maxlen() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "dropped", args(&[])).await;
    let a = args(&[
        ("x-max-length", int(1)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dropped")),
    ]);
    declare_args(&ch, "one", a).await;
    send(&ch, "", "one", "old", BasicProperties::default()).await;
    send(&ch, "", "one", "new", BasicProperties::default()).await;
    wait_count(&ch, "dropped", 1, 5).await;
    let m = get(&ch, "dropped").await.expect("dead letter");
    assert_eq!(text(&m), "old");
    let d = deaths(&m.delivery.properties);
    assert_eq!(field_str(&d[0], "reason").as_deref(), Some("maxlen"));
    assert_eq!(bodies(&ch, "one").await, ["new"]);
    b.stop().await;
}

#[tokio::test]
async fn reject_publish_nacks_a_confirming_publisher() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    let a = args(&[
        ("x-max-length", int(2)),
        ("x-overflow", s("reject-publish")),
    ]);
    declare_args(&ch, "full", a).await;
    let p = BasicProperties::default;
    assert!(send_confirmed(&ch, "full", "1", p()).await);
    assert!(send_confirmed(&ch, "full", "2", p()).await);
    assert!(
        !send_confirmed(&ch, "full", "3", p()).await,
        "expected a nack"
    );
    assert_eq!(bodies(&ch, "full").await, ["1", "2"]);
    assert!(send_confirmed(&ch, "full", "4", p()).await, "room again");
    b.stop().await;
}

#[tokio::test]
async fn reject_publish_without_confirms_drops_silently() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let a = args(&[
        ("x-max-length", int(1)),
        ("x-overflow", s("reject-publish")),
    ]);
    declare_args(&ch, "quiet", a).await;
    for m in ["1", "2", "3"] {
        send(&ch, "", "quiet", m, BasicProperties::default()).await;
    }
    assert_eq!(
        bodies(&ch, "quiet").await,
        ["1"],
        "channel still open, newest refused"
    );
    b.stop().await;
}

#[tokio::test]
async fn reject_publish_dlx_dead_letters_the_refused_message() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    declare_args(&ch, "overflowed", args(&[])).await;
    let a = args(&[
        ("x-max-length", int(1)),
        ("x-overflow", s("reject-publish-dlx")),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("overflowed")),
    ]);
    declare_args(&ch, "small", a).await;
    assert!(send_confirmed(&ch, "small", "kept", BasicProperties::default()).await);
    assert!(!send_confirmed(&ch, "small", "refused", BasicProperties::default()).await);
    let m = get(&ch, "overflowed").await.expect("dead-lettered");
    assert_eq!(text(&m), "refused");
    let d = deaths(&m.delivery.properties);
    assert_eq!(field_str(&d[0], "reason").as_deref(), Some("maxlen"));
    assert_eq!(bodies(&ch, "small").await, ["kept"]);
    b.stop().await;
}

#[tokio::test]
async fn unacked_messages_do_not_count_towards_the_limit() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    let a = args(&[
        ("x-max-length", int(1)),
        ("x-overflow", s("reject-publish")),
    ]);
    declare_args(&ch, "u", a).await;
    assert!(send_confirmed(&ch, "u", "1", BasicProperties::default()).await);
    let taken = within(
        5,
        ch.basic_get("u".into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("get");
    assert!(taken.is_some());
    assert!(send_confirmed(&ch, "u", "2", BasicProperties::default()).await);
    b.stop().await;
}

#[tokio::test]
async fn a_full_queue_does_not_keep_the_message_from_the_others() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    within(
        5,
        ch.exchange_declare(
            "fan".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange");
    let a = args(&[
        ("x-max-length", int(0)),
        ("x-overflow", s("reject-publish")),
    ]);
    declare_args(&ch, "never", a).await;
    declare_args(&ch, "always", args(&[])).await;
    for q in ["never", "always"] {
        within(
            5,
            ch.queue_bind(
                q.into(),
                "fan".into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("bind");
    }
    let pc = within(
        5,
        ch.basic_publish(
            "fan".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let c = within(5, pc).await.expect("confirm");
    assert!(matches!(c, lapin::Confirmation::Nack(_)), "got {c:?}");
    assert_eq!(count(&ch, "always").await, 1);
    assert_eq!(count(&ch, "never").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn limits_hold_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_with(&ch, "cap", durable(), args(&[("x-max-length", int(2))]))
        .await
        .expect("declare");
    let persistent = || BasicProperties::default().with_delivery_mode(2);
    // Confirmed publishes: lapin may send a later method (the passive declare of `count`)
    // ahead of unconfirmed publish frames.
    confirm_mode(&ch).await;
    for m in ["1", "2", "3"] {
        assert!(send_confirmed(&ch, "cap", m, persistent()).await);
    }
    assert_eq!(count(&ch, "cap").await, 2);
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(count(&ch, "cap").await, 2);
    confirm_mode(&ch).await;
    assert!(send_confirmed(&ch, "cap", "4", persistent()).await);
    assert_eq!(bodies(&ch, "cap").await, ["3", "4"]);
    b.stop().await;
}
