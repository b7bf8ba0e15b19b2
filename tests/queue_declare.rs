//! Queue declaration and lifecycle as RabbitMQ documents them: server-named queues and the
//! reserved `amq.` prefix, declare-ok counts, passive declares and equivalent or conflicting
//! redeclares, exclusive queues (locked to their connection, gone when it ends, even abruptly)
//! and auto-delete queues (gone after their last consumer).
use crate::common;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::FieldTable;
use std::time::Duration;

#[tokio::test]
async fn server_named_queue_gets_amq_gen_name() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let q1 = declare(&ch, "").await;
    let q2 = declare(&ch, "").await;
    assert!(q1.name().as_str().starts_with("amq.gen-"), "{}", q1.name());
    assert_ne!(q1.name(), q2.name());
    // The returned name is a real queue.
    publish(&ch, q1.name().as_str(), b"x").await;
    assert_eq!(counts(&ch, q1.name().as_str()).await, (1, 0));
    b.stop().await;
}

#[tokio::test]
async fn declaring_reserved_amq_prefix_is_refused() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    expect_code(
        declare_opts(&ch, "amq.mine", QueueDeclareOptions::default()).await,
        403,
    );
    b.stop().await;
}

#[tokio::test]
async fn declare_ok_reports_ready_messages_and_consumers() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let q = declare(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
    publish_n(&ch, "counted", 3).await;
    let q = declare(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (3, 0));
    let cch = c.create_channel().await.expect("channel");
    within(5, cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&cch, "counted", false).await;
    let _held = next(&mut consumer).await;
    // One message is unacked: only ready messages count.
    let q = declare(&ch, "counted").await;
    assert_eq!((q.message_count(), q.consumer_count()), (2, 1));
    b.stop().await;
}

#[tokio::test]
async fn passive_declare_checks_existence() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "exists").await;
    publish(&ch, "exists", b"m").await;
    assert_eq!(counts(&ch, "exists").await, (1, 0));
    expect_code(declare_opts(&ch, "missing", passive()).await, 404);
    // The 404 closed that channel only.
    let ch = c.create_channel().await.expect("channel");
    assert_eq!(counts(&ch, "exists").await, (1, 0));
    b.stop().await;
}

#[tokio::test]
async fn redeclare_with_same_properties_is_ok() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(10));
    within(5, ch.queue_declare("same".into(), opts, args.clone()))
        .await
        .expect("declare");
    publish(&ch, "same", b"kept").await;
    let q = within(5, ch.queue_declare("same".into(), opts, args))
        .await
        .expect("equal redeclare");
    assert_eq!(q.message_count(), 1, "redeclare must not reset the queue");
    b.stop().await;
}

#[tokio::test]
async fn redeclare_with_different_durability_is_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "plain").await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    expect_code(declare_opts(&ch, "plain", durable).await, 406);
    b.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_locked_to_its_connection() {
    let b = Broker::start().await;
    let (owner, och) = b.channel().await;
    let excl = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    declare_opts(&och, "mine", excl).await.expect("declare");
    publish(&och, "mine", b"private").await;
    let other = b.connect().await;
    // Every kind of access from another connection: 405 RESOURCE_LOCKED.
    let ch = other.create_channel().await.expect("channel");
    expect_code(declare_opts(&ch, "mine", passive()).await, 405);
    let ch = other.create_channel().await.expect("channel");
    expect_code(declare_opts(&ch, "mine", excl).await, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(5, ch.basic_get("mine".into(), BasicGetOptions::default())).await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.queue_purge("mine".into(), QueuePurgeOptions::default()),
    )
    .await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.queue_bind(
            "mine".into(),
            "amq.fanout".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 405);
    let ch = other.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.queue_delete("mine".into(), QueueDeleteOptions::default()),
    )
    .await;
    expect_code(r, 405);
    // The owner still uses it normally.
    assert_eq!(counts(&och, "mine").await, (1, 0));
    within(5, owner.close(200, "bye".into()))
        .await
        .expect("close");
    let ch = other.create_channel().await.expect("channel");
    wait_gone(&ch, "mine").await;
    b.stop().await;
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_connection_drops() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let mut raw = raw::Client::open(&b).await;
    raw.declare_exclusive(1, "ephemeral").await;
    expect_code(declare_opts(&ch, "ephemeral", passive()).await, 405);
    raw.abort();
    let ch = _c.create_channel().await.expect("channel");
    wait_gone(&ch, "ephemeral").await;
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_after_its_last_consumer_cancels() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let ad = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_opts(&ch, "ad", ad).await.expect("declare");
    // No consumer yet: it stays, even across other use.
    publish(&ch, "ad", b"m").await;
    assert!(within(5, get_body(&ch, "ad")).await.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counts(&ch, "ad").await, (0, 0));
    let c1 = consume(&ch, "ad", false).await;
    let c2 = consume(&ch, "ad", false).await;
    within(5, ch.basic_cancel(c1.tag(), BasicCancelOptions::default()))
        .await
        .expect("cancel c1");
    assert_eq!(counts(&ch, "ad").await, (0, 1), "one consumer left");
    within(5, ch.basic_cancel(c2.tag(), BasicCancelOptions::default()))
        .await
        .expect("cancel c2");
    let ch2 = c.create_channel().await.expect("channel");
    wait_gone(&ch2, "ad").await;
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_queue_goes_when_its_consumers_channel_closes() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let ad = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_opts(&ch, "ad2", ad).await.expect("declare");
    let cch = c.create_channel().await.expect("channel");
    let _consumer = consume(&cch, "ad2", false).await;
    within(5, cch.close(200, "bye".into()))
        .await
        .expect("close");
    wait_gone(&ch, "ad2").await;
    b.stop().await;
}
