//! Queue arguments are checked at declare as RabbitMQ 4 checks them: a wrong type or a value out
//! of range is a 406 with RabbitMQ's text (the Erlang error term included), an argument the queue
//! type does not take is a 406, unknown arguments pass; arguments of a durable queue are kept
//! with it, so after a restart an equal redeclare passes and a different one is a 406.
use crate::common;
use common::durability::{restart, start};
use common::features::*;
use common::*;

use lapin::options::QueueDeclareOptions;
use lapin::types::AMQPValue;

#[tokio::test]
async fn invalid_arguments_are_406_with_rabbitmq_texts() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let q = "for queue 'q' in vhost '/'";
    let cases: Vec<(&str, AMQPValue, String)> = vec![
        (
            "x-message-ttl",
            int(-1),
            format!("invalid arg 'x-message-ttl' {q}: {{value_negative,-1}}"),
        ),
        (
            "x-message-ttl",
            s("1000"),
            format!("invalid arg 'x-message-ttl' {q}: \"expected integer, got longstr\""),
        ),
        (
            "x-expires",
            int(0),
            format!("invalid arg 'x-expires' {q}: {{value_zero,0}}"),
        ),
        (
            "x-max-length",
            int(-5),
            format!("invalid arg 'x-max-length' {q}: {{value_negative,-5}}"),
        ),
        (
            "x-max-length-bytes",
            AMQPValue::Boolean(true),
            format!("invalid arg 'x-max-length-bytes' {q}: \"expected integer, got bool\""),
        ),
        (
            "x-max-priority",
            int(256),
            format!("invalid arg 'x-max-priority' {q}: {{max_value_exceeded,256}}"),
        ),
        (
            "x-overflow",
            s("drop-tail"),
            format!("invalid arg 'x-overflow' {q}: invalid_overflow"),
        ),
        (
            "x-dead-letter-exchange",
            int(1),
            // Checked by RabbitMQ's channel before the queue's own checks, in its own words.
            "invalid type 'long' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'".into(),
        ),
        (
            "x-dead-letter-routing-key",
            s("k"),
            format!("invalid arg 'x-dead-letter-routing-key' {q}: routing_key_but_no_dlx_defined"),
        ),
        (
            "x-queue-mode",
            s("eager"),
            format!("invalid arg 'x-queue-mode' {q}: \"unsupported queue mode 'eager'\""),
        ),
        (
            "x-delivery-limit",
            int(3),
            format!("invalid arg 'x-delivery-limit' {q} of queue type rabbit_classic_queue"),
        ),
    ];
    for (key, value, text) in cases {
        let ch = c.create_channel().await.expect("channel");
        let r = declare_with(&ch, "q", Default::default(), args(&[(key, value)])).await;
        expect_close(r, 406, &format!("PRECONDITION_FAILED - {text}"));
    }
    b.stop().await;
}

/// Redeclaring with other arguments: RabbitMQ compares every argument the queue type takes,
/// an absent one included, and words each case its own way (`rabbit_misc:assert_args_equivalence`).
#[tokio::test]
async fn inequivalent_redeclare_texts_are_rabbitmq_s() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let q = "for queue 'q' in vhost '/'";
    type Args = Vec<(&'static str, AMQPValue)>;
    let cases: Vec<(Args, Args, String)> = vec![
        (
            vec![("x-message-ttl", int(1000))],
            vec![("x-message-ttl", int(2000))],
            format!("inequivalent arg 'x-message-ttl' {q}: received '2000' but current is '1000'"),
        ),
        (
            vec![("x-message-ttl", AMQPValue::LongInt(1000))],
            vec![],
            format!("inequivalent arg 'x-message-ttl' {q}: received none but current is the value '1000' of type 'signedint'"),
        ),
        (
            vec![],
            vec![("x-max-priority", AMQPValue::LongInt(5))],
            format!("inequivalent arg 'x-max-priority' {q}: received the value '5' of type 'signedint' but current is none"),
        ),
        (
            vec![("x-overflow", s("drop-head"))],
            vec![("x-overflow", s("reject-publish"))],
            format!("inequivalent arg 'x-overflow' {q}: received 'reject-publish' but current is 'drop-head'"),
        ),
        (
            vec![("x-single-active-consumer", AMQPValue::Boolean(false))],
            vec![],
            format!("inequivalent arg 'x-single-active-consumer' {q}: received none but current is the value 'false' of type 'bool'"),
        ),
        (
            vec![("x-max-length", int(10))],
            vec![("x-max-length", s("10"))],
            // An existing queue is only compared, not validated again (values of other types
            // differ even when they print the same).
            format!("inequivalent arg 'x-max-length' {q}: received '10' but current is '10'"),
        ),
    ];
    for (first, second, text) in cases {
        let ch = c.create_channel().await.expect("channel");
        declare_with(&ch, "q", Default::default(), args(&first))
            .await
            .expect("first declare");
        let r = declare_with(&ch, "q", Default::default(), args(&second)).await;
        expect_close(r, 406, &format!("PRECONDITION_FAILED - {text}"));
        let ch = c.create_channel().await.expect("channel");
        ch.queue_delete("q".into(), Default::default())
            .await
            .expect("delete");
    }
    b.stop().await;
}

/// Arguments the queue type does not compare (and same values of other integer types) may
/// differ on redeclare, as in RabbitMQ.
#[tokio::test]
async fn uncompared_arguments_may_differ_on_redeclare() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(
        &ch,
        "q",
        args(&[
            ("x-consumer-timeout", int(1000)),
            ("x-custom", s("a")),
            ("x-message-ttl", AMQPValue::LongInt(500)),
        ]),
    )
    .await;
    declare_args(
        &ch,
        "q",
        args(&[
            ("x-consumer-timeout", int(2000)),
            ("x-custom", s("b")),
            ("x-message-ttl", AMQPValue::ShortInt(500)),
            ("x-queue-type", s("classic")),
        ]),
    )
    .await;
    b.stop().await;
}

#[tokio::test]
async fn valid_and_unknown_arguments_are_accepted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let all = args(&[
        ("x-message-ttl", AMQPValue::ShortShortUInt(0)),
        ("x-expires", AMQPValue::LongInt(60_000)),
        ("x-max-length", AMQPValue::ShortInt(10)),
        ("x-max-length-bytes", AMQPValue::LongUInt(1 << 20)),
        ("x-overflow", s("reject-publish-dlx")),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dlq")),
        ("x-max-priority", int(0)),
        ("x-queue-mode", s("lazy")),
        ("x-custom", s("anything")),
    ]);
    declare_args(&ch, "all", all.clone()).await;
    declare_args(&ch, "all", all).await;
    b.stop().await;
}

/// RabbitMQ bounds only a message's `expiration`, not the queue arguments: Celery 5.5's native
/// delayed delivery declares quorum queues with `x-message-ttl` up to 2^27 seconds.
#[tokio::test]
async fn ttl_and_expires_arguments_have_no_upper_bound() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(
        &ch,
        "long-ttl",
        args(&[("x-message-ttl", int(1 << 33)), ("x-expires", int(1 << 33))]),
    )
    .await;
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let celery_delayed_27 = args(&[
        ("x-queue-type", s("quorum")),
        ("x-message-ttl", int(134_217_728_000)),
        ("x-dead-letter-strategy", s("at-least-once")),
        ("x-overflow", s("reject-publish")),
        ("x-dead-letter-exchange", s("celery_delayed_26")),
    ]);
    within(
        5,
        ch.queue_declare("celery_delayed_27".into(), opts, celery_delayed_27),
    )
    .await
    .expect("quorum queue with a TTL of 2^27 s");
    // A message in the long-TTL queue is delivered (its expiry did not overflow to "now").
    publish(&ch, "long-ttl", b"m").await;
    assert_eq!(get_body(&ch, "long-ttl").await.as_deref(), Some(&b"m"[..]));
    b.stop().await;
}

#[tokio::test]
async fn arguments_of_a_durable_queue_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    let a = args(&[
        ("x-max-length", int(3)),
        ("x-message-ttl", int(60_000)),
        ("x-dead-letter-exchange", s("")),
    ]);
    declare_with(&ch, "kept", durable(), a.clone())
        .await
        .expect("declare");
    let b = restart(b).await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare_with(&ch, "kept", durable(), a)
        .await
        .expect("equal redeclare");
    let other = args(&[("x-max-length", int(4))]);
    let r = declare_with(&ch, "kept", durable(), other).await;
    assert_eq!(close_of(&r.expect_err("different arguments")).0, 406);
    b.stop().await;
}
