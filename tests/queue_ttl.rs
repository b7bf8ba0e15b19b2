//! Message TTL (`x-message-ttl`, the `expiration` property) and queue TTL (`x-expires`), as
//! RabbitMQ's classic queues do them: expired messages are never delivered (consume or
//! basic.get); at the head they leave on their own, counts dropping with no consumer around;
//! in the middle they leave when they reach the head; the lower of the two TTLs applies; TTL 0
//! means "now or never"; an invalid `expiration` closes the channel; expiry times and queue
//! leases survive a restart; an unused queue with `x-expires` is deleted.
use crate::common;
use common::durability::{restart, start};
use common::features::*;
use common::queues::{consume, next, stays_quiet, wait_gone};
use common::*;

use lapin::options::*;
use lapin::BasicProperties;
use std::time::Duration;

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test]
async fn expired_head_leaves_without_any_consumer() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "t", args(&[("x-message-ttl", int(150))])).await;
    for m in ["a", "b", "c"] {
        send(&ch, "", "t", m, BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, "t").await, 3);
    wait_count(&ch, "t", 0, 3).await;
    b.stop().await;
}

#[tokio::test]
async fn basic_get_never_returns_an_expired_message() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "g", args(&[("x-message-ttl", int(100))])).await;
    send(&ch, "", "g", "fresh", BasicProperties::default()).await;
    assert_eq!(
        get(&ch, "g").await.map(|m| text(&m)).as_deref(),
        Some("fresh")
    );
    send(&ch, "", "g", "stale", BasicProperties::default()).await;
    sleep_ms(250).await;
    assert!(
        get(&ch, "g").await.is_none(),
        "an expired message was returned"
    );
    b.stop().await;
}

#[tokio::test]
async fn expired_message_is_never_delivered_to_a_consumer() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "d", args(&[])).await;
    send(&ch, "", "d", "short", expiring("50")).await;
    send(&ch, "", "d", "long", expiring("60000")).await;
    sleep_ms(200).await;
    let mut consumer = consume(&ch, "d", true).await;
    assert_eq!(
        String::from_utf8_lossy(&next(&mut consumer).await.data),
        "long"
    );
    assert!(stays_quiet(&mut consumer).await);
    b.stop().await;
}

#[tokio::test]
async fn expired_message_in_the_middle_leaves_when_it_reaches_the_head() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "m", args(&[])).await;
    send(&ch, "", "m", "first", BasicProperties::default()).await;
    send(&ch, "", "m", "middle", expiring("50")).await;
    send(&ch, "", "m", "last", BasicProperties::default()).await;
    sleep_ms(200).await;
    // As in RabbitMQ's classic queues: behind a live head it still counts.
    assert_eq!(count(&ch, "m").await, 3);
    let m = get(&ch, "m").await.expect("first");
    assert_eq!(text(&m), "first");
    // Taking the head uncovers the expired one, which leaves at once: the count left is 1,
    // as RabbitMQ reports it.
    assert_eq!(m.message_count, 1);
    assert_eq!(
        get(&ch, "m").await.map(|m| text(&m)).as_deref(),
        Some("last")
    );
    assert_eq!(count(&ch, "m").await, 0);
    b.stop().await;
}

#[tokio::test]
async fn per_message_ttl_lower_than_the_queue_ttl_applies() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "low", args(&[("x-message-ttl", int(60_000))])).await;
    send(&ch, "", "low", "x", expiring("100")).await;
    wait_count(&ch, "low", 0, 3).await;
    b.stop().await;
}

#[tokio::test]
async fn queue_ttl_lower_than_the_per_message_ttl_applies() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "qlow", args(&[("x-message-ttl", int(100))])).await;
    send(&ch, "", "qlow", "x", expiring("60000")).await;
    wait_count(&ch, "qlow", 0, 3).await;
    b.stop().await;
}

#[tokio::test]
async fn ttl_zero_is_now_or_never() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "z", args(&[("x-message-ttl", int(0))])).await;
    send(&ch, "", "z", "nobody", BasicProperties::default()).await;
    assert_eq!(count(&ch, "z").await, 0, "no consumer: expired at once");
    let mut consumer = consume(&ch, "z", true).await;
    send(&ch, "", "z", "taken", BasicProperties::default()).await;
    assert_eq!(
        String::from_utf8_lossy(&next(&mut consumer).await.data),
        "taken"
    );
    b.stop().await;
}

#[tokio::test]
async fn requeued_message_keeps_its_expiry() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "rq", args(&[("x-message-ttl", int(300))])).await;
    send(&ch, "", "rq", "x", BasicProperties::default()).await;
    let m = within(
        5,
        ch.basic_get("rq".into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("get")
    .expect("message");
    sleep_ms(400).await;
    within(
        5,
        ch.basic_reject(
            m.delivery.delivery_tag,
            BasicRejectOptions { requeue: true },
        ),
    )
    .await
    .expect("reject");
    // Back past its expiry: it never comes out again.
    wait_count(&ch, "rq", 0, 3).await;
    assert!(get(&ch, "rq").await.is_none());
    b.stop().await;
}

#[tokio::test]
async fn invalid_expiration_closes_the_channel_with_406() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let cases = [
        ("abc", "invalid expiration 'abc': no_integer"),
        ("-1", "invalid expiration '-1': {value_negative,-1}"),
        ("10s", "invalid expiration '10s': {leftover_string,\"s\"}"),
        (
            "315360000001",
            "invalid expiration '315360000001': {value_too_large,315360000001}",
        ),
    ];
    for (value, why) in cases {
        let (code, text) = publish_error(&c, "nowhere", expiring(value)).await;
        assert_eq!(code, 406);
        assert_eq!(text, format!("PRECONDITION_FAILED - {why}"));
    }
    b.stop().await;
}

#[tokio::test]
async fn an_expiration_of_more_than_2_pow_32_ms_is_accepted() {
    // RabbitMQ takes expirations up to ten years (a 60-day TTL is common enough).
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "long", args(&[])).await;
    send(&ch, "", "long", "m", expiring("5184000000")).await;
    assert_eq!(count(&ch, "long").await, 1);
    b.stop().await;
}

#[tokio::test]
async fn ttl_keeps_running_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_with(
        &ch,
        "dt",
        durable(),
        args(&[("x-message-ttl", int(60_000))]),
    )
    .await
    .expect("declare");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    send(
        &ch,
        "",
        "dt",
        "short",
        persistent.clone().with_expiration("2000".into()),
    )
    .await;
    send(&ch, "", "dt", "long", persistent).await;
    assert_eq!(count(&ch, "dt").await, 2);
    within(10, b.stop()).await;
    // Down for longer than the short TTL: its clock ran on, so it is gone at once after the
    // restart (a clock restarted by recovery would keep it for another 2 s).
    sleep_ms(2200).await;
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    tokio::time::timeout(Duration::from_millis(1000), async {
        while count(&ch, "dt").await != 1 {
            sleep_ms(20).await;
        }
    })
    .await
    .expect("the expired message was still there a second after the restart");
    assert_eq!(
        get(&ch, "dt").await.map(|m| text(&m)).as_deref(),
        Some("long")
    );
    b.stop().await;
}

#[tokio::test]
async fn unused_queue_with_x_expires_is_deleted() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    declare_args(&ch, "lease", args(&[("x-expires", int(300))])).await;
    send(
        &ch,
        "",
        "lease",
        "lost with the queue",
        BasicProperties::default(),
    )
    .await;
    wait_gone(&ch, "lease").await;
    let _ = c;
    b.stop().await;
}

#[tokio::test]
async fn a_consumer_keeps_an_expiring_queue_alive() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "kept", args(&[("x-expires", int(200))])).await;
    let consumer = consume(&ch, "kept", true).await;
    sleep_ms(600).await;
    assert_eq!(count(&ch, "kept").await, 0, "still there while consumed");
    within(
        5,
        ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .expect("cancel");
    wait_gone(&ch, "kept").await;
    b.stop().await;
}

#[tokio::test]
async fn redeclaring_renews_the_lease() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let a = args(&[("x-expires", int(400))]);
    declare_args(&ch, "renew", a.clone()).await;
    for _ in 0..4 {
        sleep_ms(200).await;
        declare_args(&ch, "renew", a.clone()).await;
    }
    assert_eq!(count(&ch, "renew").await, 0, "renewed, so still there");
    wait_gone(&ch, "renew").await;
    b.stop().await;
}

#[tokio::test]
async fn durable_queue_expires_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    let a = args(&[("x-expires", int(800))]);
    declare_with(&ch, "dx", durable(), a)
        .await
        .expect("declare");
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(count(&ch, "dx").await, 0, "recovered");
    wait_gone(&ch, "dx").await;
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    let e = declare_with(&ch, "dx", passive_opts(), Default::default()).await;
    assert_eq!(close_of(&e.expect_err("deleted for good")).0, 404);
    b.stop().await;
}

fn passive_opts() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn paged_out_backlog_expires_and_is_dead_lettered() {
    let b = Broker::start_with(|c| c.store.queue_memory_limit = 32 * 1024).await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    declare_args(&ch, "dead", args(&[])).await;
    let a = args(&[
        ("x-message-ttl", int(300)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("dead")),
    ]);
    declare_args(&ch, "big", a).await;
    let body = "x".repeat(1024);
    for _ in 0..300 {
        assert!(send_confirmed(&ch, "big", &body, BasicProperties::default()).await);
    }
    // Far past the memory limit: most of it sits on disk, and all of it expires.
    wait_count(&ch, "big", 0, 10).await;
    wait_count(&ch, "dead", 300, 10).await;
    b.stop().await;
}
