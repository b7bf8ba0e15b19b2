//! `x-queue-type=quorum` with RabbitMQ 4's rules: durable only (non-durable, exclusive and
//! auto-delete declares are refused with its texts), no message priorities, the queue type fixed
//! at declare; every message is kept on disk whatever its delivery mode; redeliveries carry
//! `x-delivery-count`, and past the delivery limit (20 unless `x-delivery-limit` says otherwise,
//! -1 for none) a message is dead-lettered with reason `delivery_limit`, or dropped.
use crate::common;
use common::durability::{restart, start};
use common::features::*;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

fn quorum(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut all = vec![("x-queue-type", s("quorum"))];
    all.extend(extra.iter().cloned());
    args(&all)
}

async fn declare_quorum(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) {
    declare_with(ch, name, durable(), quorum(extra))
        .await
        .unwrap_or_else(|e| panic!("declare {name}: {e}"));
}

/// basic.get with manual ack, then nack with requeue; the message's x-delivery-count (if any).
/// None when the queue was empty.
async fn get_and_return(ch: &Channel, queue: &str) -> Option<Option<i64>> {
    let m = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")?;
    let dc = match header(&m.delivery.properties, "x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => Some(*n),
        None => None,
        Some(other) => panic!("x-delivery-count is {other:?}"),
    };
    let opts = BasicNackOptions {
        multiple: false,
        requeue: true,
    };
    within(5, ch.basic_nack(m.delivery.delivery_tag, opts))
        .await
        .expect("nack");
    Some(dc)
}

#[tokio::test]
async fn quorum_queues_are_durable_only() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let what = "for queue 'qq' in vhost '/'";
    let cases = [
        (QueueDeclareOptions::default(), "non-durable"),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            "exclusive-owner",
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            "auto-delete",
        ),
    ];
    for (opts, property) in cases {
        let ch = c.create_channel().await.expect("channel");
        expect_close(
            declare_with(&ch, "qq", opts, quorum(&[])).await,
            406,
            &format!("PRECONDITION_FAILED - invalid property '{property}' {what}"),
        );
    }
    b.stop().await;
}

#[tokio::test]
async fn message_priorities_are_refused() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let r = declare_with(&ch, "qq", durable(), quorum(&[("x-max-priority", int(5))])).await;
    expect_close(
        r,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'qq' in vhost '/' of queue type rabbit_quorum_queue",
    );
    b.stop().await;
}

#[tokio::test]
async fn an_unknown_dead_letter_strategy_is_refused_with_rabbitmq_s_term() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let r = declare_with(
        &ch,
        "qq",
        durable(),
        quorum(&[("x-dead-letter-strategy", s("sometimes"))]),
    )
    .await;
    expect_close(
        r,
        406,
        "PRECONDITION_FAILED - invalid arg 'x-dead-letter-strategy' for queue 'qq' in vhost '/': invalid_dlx_strategy",
    );
    b.stop().await;
}

#[tokio::test]
async fn the_queue_type_cannot_change_on_redeclare() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare_quorum(&ch, "qq", &[]).await;
    expect_close(
        declare_with(&ch, "qq", durable(), args(&[("x-queue-type", s("classic"))])).await,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost '/': received 'classic' but current is 'quorum'",
    );
    let ch = c.create_channel().await.expect("channel");
    expect_close(
        declare_with(&ch, "qq", durable(), args(&[])).await,
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq' in vhost '/': received none but current is the value 'quorum' of type 'longstr'",
    );
    let ch = c.create_channel().await.expect("channel");
    declare_quorum(&ch, "qq", &[]).await;
    b.stop().await;
}

#[tokio::test]
async fn a_consumer_s_first_delivery_has_no_delivery_count() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "fresh", &[]).await;
    send(&ch, "", "fresh", "m", BasicProperties::default()).await;
    let mut c = within(
        5,
        ch.basic_consume(
            "fresh".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("consume");
    let d = within(5, futures_lite::StreamExt::next(&mut c))
        .await
        .expect("a delivery")
        .expect("delivery");
    assert_eq!(header(&d.properties, "x-delivery-count"), None);
    b.stop().await;
}

#[tokio::test]
async fn redeliveries_carry_x_delivery_count() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "dc", &[]).await;
    send(&ch, "", "dc", "m", BasicProperties::default()).await;
    assert_eq!(
        get_and_return(&ch, "dc").await,
        Some(Some(0)),
        "basic.get shows the count from the first time, as RabbitMQ"
    );
    assert_eq!(get_and_return(&ch, "dc").await, Some(Some(1)));
    assert_eq!(get_and_return(&ch, "dc").await, Some(Some(2)));
    b.stop().await;
}

#[tokio::test]
async fn default_delivery_limit_is_twenty() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "poison", &[]).await;
    send(&ch, "", "poison", "m", BasicProperties::default()).await;
    let mut deliveries = 0;
    while get_and_return(&ch, "poison").await.is_some() {
        deliveries += 1;
        assert!(deliveries <= 21, "looping past the limit");
    }
    assert_eq!(deliveries, 21, "the first delivery and 20 redeliveries");
    b.stop().await;
}

#[tokio::test]
async fn past_the_delivery_limit_the_message_is_dead_lettered() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "parked", args(&[])).await;
    let extra = [
        ("x-delivery-limit", int(1)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("parked")),
    ];
    declare_quorum(&ch, "work", &extra).await;
    send(&ch, "", "work", "poison", BasicProperties::default()).await;
    assert_eq!(get_and_return(&ch, "work").await, Some(Some(0)));
    assert_eq!(get_and_return(&ch, "work").await, Some(Some(1)));
    wait_count(&ch, "parked", 1, 5).await;
    assert_eq!(count(&ch, "work").await, 0);
    let m = get(&ch, "parked").await.expect("dead letter");
    let d = deaths(&m.delivery.properties);
    assert_eq!(
        field_str(&d[0], "reason").as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(field_str(&d[0], "queue").as_deref(), Some("work"));
    // The count of returns is the queue's own: RabbitMQ does not carry it into the dead letter.
    assert_eq!(header(&m.delivery.properties, "x-delivery-count"), None);
    b.stop().await;
}

#[tokio::test]
async fn delivery_limit_zero_dead_letters_on_the_first_return() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "parked", args(&[])).await;
    let extra = [
        ("x-delivery-limit", int(0)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("parked")),
    ];
    declare_quorum(&ch, "strict", &extra).await;
    send(&ch, "", "strict", "m", BasicProperties::default()).await;
    assert_eq!(get_and_return(&ch, "strict").await, Some(Some(0)));
    wait_count(&ch, "parked", 1, 5).await;
    b.stop().await;
}

#[tokio::test]
async fn delivery_limit_minus_one_is_unlimited() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "forever", &[("x-delivery-limit", int(-1))]).await;
    send(&ch, "", "forever", "m", BasicProperties::default()).await;
    for i in 0..30 {
        let dc = get_and_return(&ch, "forever").await.expect("still there");
        assert_eq!(dc, Some(i));
    }
    b.stop().await;
}

#[tokio::test]
async fn transient_messages_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "kept", &[]).await;
    send(&ch, "", "kept", "transient", BasicProperties::default()).await;
    assert_eq!(count(&ch, "kept").await, 1);
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    let m = get(&ch, "kept")
        .await
        .expect("a quorum queue keeps every message");
    assert_eq!(text(&m), "transient");
    assert_eq!(
        m.delivery.properties.delivery_mode(),
        &None,
        "delivery mode unchanged"
    );
    b.stop().await;
}

#[tokio::test]
async fn delivery_counts_survive_a_restart() {
    // A quorum queue keeps each message's delivery count across a restart, so a poison
    // message cannot escape its delivery limit by crashing the broker.
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_with(&ch, "parked", durable(), args(&[]))
        .await
        .expect("declare parked");
    let extra = [
        ("x-delivery-limit", int(2)),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("parked")),
    ];
    declare_quorum(&ch, "work", &extra).await;
    send(&ch, "", "work", "poison", BasicProperties::default()).await;
    assert_eq!(get_and_return(&ch, "work").await, Some(Some(0)));
    assert_eq!(get_and_return(&ch, "work").await, Some(Some(1)));
    // A confirmed publish into the same log: its sync covers the delivery records before it
    // (the harness's stop does not wait for buffered records of unconfirmed work).
    confirm_mode(&ch).await;
    assert!(send_confirmed(&ch, "work", "marker", BasicProperties::default()).await);
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(get_and_return(&ch, "work").await, Some(Some(2)));
    wait_count(&ch, "parked", 1, 5).await;
    assert_eq!(count(&ch, "work").await, 1, "only the marker is left");
    b.stop().await;
}

#[tokio::test]
async fn a_delivery_unsettled_at_a_restart_counts_as_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = start(dir.path()).await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "held", &[]).await;
    send(&ch, "", "held", "m", BasicProperties::default()).await;
    let m = within(
        5,
        ch.basic_get("held".into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("basic.get")
    .expect("message");
    assert_eq!(
        header(&m.delivery.properties, "x-delivery-count"),
        Some(&AMQPValue::LongLongInt(0))
    );
    // Never settled: the broker stops with the delivery outstanding. (A confirmed publish into
    // the same log makes sure the delivery record is on disk.)
    let (_c2, other) = b.channel().await;
    confirm_mode(&other).await;
    assert!(send_confirmed(&other, "held", "marker", BasicProperties::default()).await);
    let b = restart(b).await;
    let (_c, ch) = b.channel().await;
    let m = get(&ch, "held").await.expect("message after the restart");
    assert!(m.delivery.redelivered);
    assert_eq!(
        header(&m.delivery.properties, "x-delivery-count"),
        Some(&AMQPValue::LongLongInt(1))
    );
    b.stop().await;
}

#[tokio::test]
async fn reject_publish_dlx_falls_back_to_drop_head() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let extra = [
        ("x-max-length", int(1)),
        ("x-overflow", s("reject-publish-dlx")),
    ];
    declare_quorum(&ch, "fallback", &extra).await;
    for m in ["old", "new"] {
        send(&ch, "", "fallback", m, BasicProperties::default()).await;
    }
    assert_eq!(bodies(&ch, "fallback").await, ["new"]);
    b.stop().await;
}

#[tokio::test]
async fn the_http_api_reports_the_quorum_type() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "reported", &[]).await;
    declare_args(&ch, "plain", args(&[])).await;
    let http = b.http();
    assert_eq!(
        http.get("/api/queues/%2F/reported").await.json()["type"],
        "quorum"
    );
    assert_eq!(
        http.get("/api/queues/%2F/plain").await.json()["type"],
        "classic"
    );
    b.stop().await;
}

#[tokio::test]
async fn consuming_with_a_global_prefetch_is_refused_with_540() {
    // RabbitMQ: quorum queues have no channel-wide limiter; a consumer on a channel with a
    // global prefetch closes the connection (Celery turns global QoS off for quorum queues).
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(&ch, "gq", &[]).await;
    within(5, ch.basic_qos(10, BasicQosOptions { global: true }))
        .await
        .expect("basic.qos");
    // A consumer prefetch set afterwards does not lift the channel's global limit (RabbitMQ
    // keeps the two apart).
    within(5, ch.basic_qos(5, BasicQosOptions { global: false }))
        .await
        .expect("basic.qos");
    let r = within(
        5,
        ch.basic_consume(
            "gq".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_close(
        r,
        540,
        "NOT_IMPLEMENTED - queue 'gq' in vhost '/' does not support global qos",
    );
    b.stop().await;
}

#[tokio::test]
async fn basic_get_on_a_single_active_consumer_quorum_queue_is_405() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_quorum(
        &ch,
        "sacq",
        &[("x-single-active-consumer", AMQPValue::Boolean(true))],
    )
    .await;
    let r = within(
        5,
        ch.basic_get("sacq".into(), BasicGetOptions { no_ack: true }),
    )
    .await;
    expect_close(
        r,
        405,
        "RESOURCE_LOCKED - cannot obtain access to locked queue 'sacq' in vhost '/'. basic.get \
         operations are not supported by quorum queues with single active consumer",
    );
    b.stop().await;
}

#[tokio::test]
async fn reject_publish_takes_the_message_that_overflows_then_refuses_until_80_percent() {
    // RabbitMQ's rabbit_fifo: a quorum queue refuses publishes once it is over its limit (the
    // message that put it over was taken) and accepts again at 80% of the limit.
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let extra = [
        ("x-max-length", int(5)),
        ("x-overflow", s("reject-publish")),
    ];
    declare_quorum(&ch, "capped", &extra).await;
    confirm_mode(&ch).await;
    for i in 0..6 {
        assert!(
            send_confirmed(&ch, "capped", &format!("m{i}"), BasicProperties::default()).await,
            "m{i} refused"
        );
    }
    assert!(!send_confirmed(&ch, "capped", "m6", BasicProperties::default()).await);
    assert_eq!(count(&ch, "capped").await, 6);
    // 5 left: still above 80% of 5 (4).
    get(&ch, "capped").await.expect("m0");
    assert!(!send_confirmed(&ch, "capped", "m7", BasicProperties::default()).await);
    get(&ch, "capped").await.expect("m1");
    assert!(send_confirmed(&ch, "capped", "m8", BasicProperties::default()).await);
    b.stop().await;
}

#[tokio::test]
async fn a_message_past_its_delivery_limit_after_a_crash_is_dead_lettered_at_start() {
    // The delivery outstanding when the broker died counts as returned, as in RabbitMQ (whose
    // quorum queue returns it when it sees its consumer gone): with delivery limit 0 that
    // return takes the message past the limit, so it is dead-lettered once the broker is back.
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, logs) = (dir.path().join("data"), dir.path().join("logs"));
    std::fs::create_dir_all(&logs).expect("logs dir");
    let mut p = crate::crash_support::BrokerProc::spawn(&data, &logs, 0).await;
    {
        let c = crate::crash_support::connect(&p.url()).await;
        let ch = c.create_channel().await.expect("channel");
        declare_with(&ch, "parked", durable(), args(&[]))
            .await
            .expect("declare parked");
        let extra = [
            ("x-delivery-limit", int(0)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("parked")),
        ];
        declare_quorum(&ch, "strict", &extra).await;
        confirm_mode(&ch).await;
        assert!(send_confirmed(&ch, "strict", "poison", BasicProperties::default()).await);
        within(
            5,
            ch.basic_get("strict".into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .expect("basic.get")
        .expect("message");
        // A confirmed publish into the same log: its sync covers the delivery record.
        let other = c.create_channel().await.expect("channel");
        confirm_mode(&other).await;
        assert!(send_confirmed(&other, "strict", "marker", BasicProperties::default()).await);
        p.kill();
    }
    let p = crate::crash_support::BrokerProc::spawn(&data, &logs, 1).await;
    let c = crate::crash_support::connect(&p.url()).await;
    let ch = c.create_channel().await.expect("channel");
    wait_count(&ch, "parked", 1, 5).await;
    let m = get(&ch, "parked").await.expect("dead letter");
    assert_eq!(text(&m), "poison");
    let d = deaths(&m.delivery.properties);
    assert_eq!(
        field_str(&d[0], "reason").as_deref(),
        Some("delivery_limit")
    );
    assert_eq!(count(&ch, "strict").await, 1, "only the marker is left");
}

/// A config-file policy that raises the delivery limit (and names the dead-letter exchange) is
/// in force before recovered messages are judged against the limit: a message delivered more
/// often than the default 20 but less than the policy's limit is still there after a restart.
#[tokio::test]
async fn a_config_policy_is_in_force_when_recovered_messages_meet_the_delivery_limit() {
    use warren::broker::policy::ApplyTo;
    use warren::config::PolicyConfig;
    fn with_policy(cfg: &mut warren::config::Config) {
        common::durability::small(cfg);
        cfg.policies.push(PolicyConfig {
            name: "limit".into(),
            vhost: "/".into(),
            pattern: "^work$".into(),
            apply_to: ApplyTo::Queues,
            priority: 0,
            definition: serde_json::from_value(serde_json::json!({
                "delivery-limit": 100,
                "dead-letter-exchange": "",
                "dead-letter-routing-key": "parked",
            }))
            .expect("definition"),
        });
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start_in(dir.path(), with_policy).await;
    let (_c, ch) = b.channel().await;
    declare_with(&ch, "parked", durable(), args(&[]))
        .await
        .expect("declare parked");
    declare_quorum(&ch, "work", &[]).await;
    send(&ch, "", "work", "m", BasicProperties::default()).await;
    for n in 0..25 {
        assert_eq!(get_and_return(&ch, "work").await, Some(Some(n)));
    }
    confirm_mode(&ch).await;
    assert!(send_confirmed(&ch, "work", "marker", BasicProperties::default()).await);
    within(10, b.stop()).await;
    let b = within(10, Broker::start_in(dir.path(), with_policy)).await;
    let (_c, ch) = b.channel().await;
    assert_eq!(get_and_return(&ch, "work").await, Some(Some(25)));
    assert_eq!(count(&ch, "parked").await, 0, "nothing was dead-lettered");
    b.stop().await;
}
