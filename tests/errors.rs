//! Error replies through a real client (lapin): each error has RabbitMQ's reply code, scope and
//! text, and after a channel error the connection and its other channels go on working.

use crate::common;
use crate::raw_amqp;

use common::*;
use futures_lite::{Stream, StreamExt};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use raw_amqp::*;
use std::pin::Pin;

type Events = Pin<Box<dyn Stream<Item = lapin::Event> + Send>>;

/// A connection with a bystander channel (and its queue) and the channel under test.
struct Fx {
    b: Broker,
    conn: Connection,
    other: Channel,
    ch: Channel,
    events: Events,
}

async fn fixture() -> Fx {
    fixture_with(Broker::start().await).await
}

async fn fixture_with(b: Broker) -> Fx {
    within(5, async {
        let conn = b.connect().await;
        let events: Events = Box::pin(conn.events_listener());
        let other = conn.create_channel().await.expect("channel");
        declare(&other, "other-q").await;
        let ch = conn.create_channel().await.expect("channel");
        Fx {
            b,
            conn,
            other,
            ch,
            events,
        }
    })
    .await
}

/// The next error lapin reports on the connection (channel or connection close).
async fn next_error(events: &mut Events) -> lapin::Error {
    within(5, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("lapin's event stream ended without an error"),
            }
        }
    })
    .await
}

impl Fx {
    /// The channel under test was closed with `code`; returns the reply text.
    async fn channel_closed_with(&mut self, code: u16) -> String {
        let e = next_error(&mut self.events).await;
        assert_eq!(reply_code(&e), Some(code), "{e:?}");
        assert!(e.is_amqp_soft_error(), "expected a channel error: {e:?}");
        reply_text(&e).unwrap_or_default()
    }

    /// The whole connection was closed with `code`; returns the reply text.
    async fn connection_closed_with(&mut self, code: u16) -> String {
        let e = next_error(&mut self.events).await;
        assert_eq!(reply_code(&e), Some(code), "{e:?}");
        assert!(e.is_amqp_hard_error(), "expected a connection error: {e:?}");
        reply_text(&e).unwrap_or_default()
    }

    /// After a channel error: that channel is gone, the connection, the bystander channel and
    /// a new channel all work.
    async fn survives(self) {
        within(10, async {
            let mut tries = 0;
            while self.ch.status().connected() {
                tries += 1;
                assert!(tries < 100, "failed channel still reports connected");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(self.conn.status().connected(), "connection closed");
            publish(&self.other, "other-q", b"after").await;
            assert_eq!(
                get_body(&self.other, "other-q").await.as_deref(),
                Some(&b"after"[..])
            );
            let fresh = self.conn.create_channel().await.expect("new channel");
            declare(&fresh, "fresh-q").await;
            publish(&fresh, "fresh-q", b"x").await;
            assert_eq!(
                get_body(&fresh, "fresh-q").await.as_deref(),
                Some(&b"x"[..])
            );
        })
        .await;
        self.b.stop().await;
    }

    /// After a connection error: this connection is closed and the broker serves a new one.
    async fn connection_gone(self) {
        within(10, async {
            let mut tries = 0;
            while self.conn.status().connected() {
                tries += 1;
                assert!(tries < 100, "connection still reports connected");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let (_c, ch) = self.b.channel().await;
            declare(&ch, "fresh-q").await;
            publish(&ch, "fresh-q", b"x").await;
            assert_eq!(get_body(&ch, "fresh-q").await.as_deref(), Some(&b"x"[..]));
        })
        .await;
        self.b.stop().await;
    }
}

/// The reply code of a synchronous call's error.
fn code_of<T: std::fmt::Debug>(r: lapin::Result<T>) -> Option<u16> {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => reply_code(&e),
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn raw_publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    let _ = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await;
}

#[tokio::test]
async fn publish_to_missing_exchange_is_404() {
    let mut fx = fixture().await;
    raw_publish(&fx.ch, "x", "k", b"m").await;
    let text = fx.channel_closed_with(404).await;
    assert_eq!(text, "NOT_FOUND - no exchange 'x' in vhost '/'");
    fx.survives().await;
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let mut fx = fixture().await;
    let r = within(
        5,
        fx.ch
            .queue_declare("jobs".into(), passive(), FieldTable::default()),
    )
    .await;
    assert_eq!(code_of(r), Some(404));
    let text = fx.channel_closed_with(404).await;
    assert_eq!(text, "NOT_FOUND - no queue 'jobs' in vhost '/'");
    fx.survives().await;
}

#[tokio::test]
async fn queue_redeclare_with_other_durable_is_406() {
    let mut fx = fixture().await;
    declare(&fx.ch, "q").await;
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let r = within(
        5,
        fx.ch.queue_declare("q".into(), opts, FieldTable::default()),
    )
    .await;
    assert_eq!(code_of(r), Some(406));
    let text = fx.channel_closed_with(406).await;
    assert!(
        text.starts_with("PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q'"),
        "{text}"
    );
    fx.survives().await;
}

#[tokio::test]
async fn exchange_redeclare_with_other_type_is_406() {
    let mut fx = fixture().await;
    within(
        5,
        fx.ch.exchange_declare(
            "ex".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("declare");
    let r = within(
        5,
        fx.ch.exchange_declare(
            "ex".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r), Some(406));
    let text = fx.channel_closed_with(406).await;
    assert!(
        text.starts_with("PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'ex'"),
        "{text}"
    );
    fx.survives().await;
}

#[tokio::test]
async fn declare_exchange_with_amq_prefix_is_403() {
    let mut fx = fixture().await;
    let r = within(
        5,
        fx.ch.exchange_declare(
            "amq.foo".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r), Some(403));
    let text = fx.channel_closed_with(403).await;
    assert!(text.contains("amq.foo"), "{text}");
    fx.survives().await;
}

#[tokio::test]
async fn declare_queue_with_amq_prefix_is_403() {
    let mut fx = fixture().await;
    let r = within(
        5,
        fx.ch.queue_declare(
            "amq.foo".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r), Some(403));
    let text = fx.channel_closed_with(403).await;
    assert!(text.contains("amq.foo"), "{text}");
    fx.survives().await;
}

#[tokio::test]
async fn delete_amq_direct_is_403() {
    let mut fx = fixture().await;
    let r = within(
        5,
        fx.ch
            .exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default()),
    )
    .await;
    assert_eq!(code_of(r), Some(403));
    let text = fx.channel_closed_with(403).await;
    // RabbitMQ's check_exchange_deletion.
    assert_eq!(
        text,
        "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed"
    );
    fx.survives().await;
}

#[tokio::test]
async fn delete_default_exchange_is_403_with_rabbitmq_s_text() {
    let mut fx = fixture().await;
    let r = within(
        5,
        fx.ch
            .exchange_delete("".into(), ExchangeDeleteOptions::default()),
    )
    .await;
    assert_eq!(code_of(r), Some(403));
    let text = fx.channel_closed_with(403).await;
    assert_eq!(
        text,
        "ACCESS_REFUSED - operation not permitted on the default exchange"
    );
    fx.survives().await;
}

#[tokio::test]
async fn bind_to_default_exchange_is_403() {
    let mut fx = fixture().await;
    declare(&fx.ch, "q").await;
    let r = within(
        5,
        fx.ch.queue_bind(
            "q".into(),
            "".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r), Some(403));
    fx.channel_closed_with(403).await;
    fx.survives().await;
}

// 540 NOT_IMPLEMENTED is a hard error in the spec, and RabbitMQ closes the connection for every
// hard error even when a channel method raised it (rabbit_binary_generator:map_exception).

#[tokio::test]
async fn publish_immediate_is_540_connection_error() {
    let mut fx = fixture().await;
    let _ = fx
        .ch
        .basic_publish(
            "".into(),
            "other-q".into(),
            BasicPublishOptions {
                immediate: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default(),
        )
        .await;
    let text = fx.connection_closed_with(540).await;
    assert_eq!(text, "NOT_IMPLEMENTED - immediate=true");
    fx.connection_gone().await;
}

#[tokio::test]
async fn qos_with_prefetch_size_is_540_connection_error() {
    // lapin's basic_qos cannot send a prefetch_size: raw bytes.
    use amq_protocol::protocol::{basic, AMQPClass};
    let b = Broker::start().await;
    within(10, async {
        // prefetch_size 0 is fine.
        let mut r = Raw::open(b.addr()).await;
        r.open_channel(1).await;
        let mut payload = vec![0, 60, 0, 10, 0, 0, 0, 0];
        payload.extend_from_slice(&10u16.to_be_bytes());
        payload.push(0);
        r.send(&frame(1, 1, &payload)).await;
        match r.read_method().await {
            Some((1, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))) => {}
            other => panic!("expected basic.qos-ok, got {other:?}"),
        }
        // basic.qos: prefetch_size=1024, prefetch_count=10, global=false.
        let mut payload = vec![0, 60, 0, 10];
        payload.extend_from_slice(&1024u32.to_be_bytes());
        payload.extend_from_slice(&10u16.to_be_bytes());
        payload.push(0);
        r.send(&frame(1, 1, &payload)).await;
        let close = r.connection_close().await.expect("connection.close");
        assert_eq!(close.reply_code, 540, "{close:?}");
        assert_eq!((close.class_id, close.method_id), (60, 10), "{close:?}");
        assert!(r.closed_within(std::time::Duration::from_secs(5)).await);
        // The broker serves a new connection.
        let (_c, ch) = b.channel().await;
        declare(&ch, "q").await;
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn ack_of_unknown_delivery_tag_is_406() {
    let mut fx = fixture().await;
    within(5, fx.ch.basic_ack(42, BasicAckOptions::default()))
        .await
        .expect("ack sent");
    let text = fx.channel_closed_with(406).await;
    assert!(text.contains("unknown delivery tag 42"), "{text}");
    fx.survives().await;
}

#[tokio::test]
async fn double_ack_is_406() {
    let mut fx = fixture().await;
    declare(&fx.ch, "q").await;
    publish(&fx.ch, "q", b"m").await;
    let m = within(
        5,
        fx.ch
            .basic_get("q".into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("get")
    .expect("a message");
    let tag = m.delivery.delivery_tag;
    // Ack through the channel twice (lapin's Acker would refuse the second one itself).
    fx.ch
        .basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("first ack");
    fx.ch
        .basic_ack(tag, BasicAckOptions::default())
        .await
        .expect("second ack sent");
    fx.channel_closed_with(406).await;
    // The first ack took the message: it is not redelivered.
    let other = fx.other.clone();
    within(5, async {
        assert_eq!(get_body(&other, "q").await, None);
    })
    .await;
    fx.survives().await;
}

#[tokio::test]
async fn exclusive_queue_from_another_connection_is_405() {
    let fx = fixture().await;
    let opts = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    within(
        5,
        fx.ch
            .queue_declare("mine".into(), opts, FieldTable::default()),
    )
    .await
    .expect("exclusive declare");
    let b = &fx.b;
    within(10, async {
        let c2 = b.connect().await;
        let mut events: Events = Box::pin(c2.events_listener());
        // Each of these from a second connection is RESOURCE_LOCKED.
        let ch = c2.create_channel().await.expect("channel");
        let r = ch
            .queue_declare("mine".into(), passive(), FieldTable::default())
            .await;
        assert_eq!(code_of(r), Some(405));
        let e = next_error(&mut events).await;
        assert!(
            reply_text(&e).is_some_and(|t| t.starts_with("RESOURCE_LOCKED")),
            "{e:?}"
        );
        let ch = c2.create_channel().await.expect("channel");
        let r = ch
            .basic_consume(
                "mine".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        assert_eq!(code_of(r.map(|_| ())), Some(405));
        let ch = c2.create_channel().await.expect("channel");
        let r = ch
            .basic_get("mine".into(), BasicGetOptions::default())
            .await;
        assert_eq!(code_of(r.map(|_| ())), Some(405));
        let ch = c2.create_channel().await.expect("channel");
        let r = ch
            .queue_delete("mine".into(), QueueDeleteOptions::default())
            .await;
        assert_eq!(code_of(r), Some(405));
        assert!(c2.status().connected());
    })
    .await;
    // The owner still uses it.
    within(5, async {
        publish(&fx.ch, "mine", b"ok").await;
        assert_eq!(get_body(&fx.ch, "mine").await.as_deref(), Some(&b"ok"[..]));
    })
    .await;
    fx.b.stop().await;
}

#[tokio::test]
async fn exclusive_consume_on_a_queue_with_consumers_is_403() {
    let mut fx = fixture().await;
    declare(&fx.other, "shared").await;
    within(
        5,
        fx.other.basic_consume(
            "shared".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("first consumer");
    let r = within(
        5,
        fx.ch.basic_consume(
            "shared".into(),
            "c2".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r.map(|_| ())), Some(403));
    let text = fx.channel_closed_with(403).await;
    assert!(text.contains("in exclusive use"), "{text}");
    fx.survives().await;
}

#[tokio::test]
async fn consume_on_a_queue_with_an_exclusive_consumer_is_403() {
    let mut fx = fixture().await;
    declare(&fx.other, "taken").await;
    within(
        5,
        fx.other.basic_consume(
            "taken".into(),
            "c1".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("exclusive consumer");
    let r = within(
        5,
        fx.ch.basic_consume(
            "taken".into(),
            "c2".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r.map(|_| ())), Some(403));
    fx.channel_closed_with(403).await;
    fx.survives().await;
}

#[tokio::test]
async fn delete_if_unused_with_a_consumer_is_406() {
    let mut fx = fixture().await;
    declare(&fx.other, "busy").await;
    within(
        5,
        fx.other.basic_consume(
            "busy".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("consumer");
    let opts = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    let r = within(5, fx.ch.queue_delete("busy".into(), opts)).await;
    assert_eq!(code_of(r), Some(406));
    let text = fx.channel_closed_with(406).await;
    assert!(text.contains("'busy'") && text.contains("in use"), "{text}");
    // The queue is still there.
    within(
        5,
        fx.other
            .queue_declare("busy".into(), passive(), FieldTable::default()),
    )
    .await
    .expect("queue survived");
    fx.survives().await;
}

#[tokio::test]
async fn delete_if_empty_with_messages_is_406() {
    let mut fx = fixture().await;
    declare(&fx.other, "full").await;
    publish(&fx.other, "full", b"m").await;
    let opts = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    let r = within(5, fx.ch.queue_delete("full".into(), opts)).await;
    assert_eq!(code_of(r), Some(406));
    let text = fx.channel_closed_with(406).await;
    assert!(
        text.contains("'full'") && text.contains("not empty"),
        "{text}"
    );
    within(5, async {
        assert_eq!(
            get_body(&fx.other, "full").await.as_deref(),
            Some(&b"m"[..])
        );
    })
    .await;
    fx.survives().await;
}

#[tokio::test]
async fn message_over_max_message_size_is_406() {
    // RabbitMQ 3.x: PRECONDITION_FAILED - message size N is larger than configured max size M.
    let b = Broker::start_with(|c| c.limits.max_message_size = 1024).await;
    let mut fx = fixture_with(b).await;
    publish(&fx.ch, "other-q", &[7u8; 1024]).await; // exactly the limit is fine
    raw_publish(&fx.ch, "", "other-q", &[7u8; 2000]).await;
    let text = fx.channel_closed_with(406).await;
    assert_eq!(
        text,
        "PRECONDITION_FAILED - message size 2000 is larger than configured max size 1024"
    );
    within(5, async {
        assert_eq!(
            get_body(&fx.other, "other-q").await.map(|b| b.len()),
            Some(1024)
        );
        assert_eq!(get_body(&fx.other, "other-q").await, None);
    })
    .await;
    fx.survives().await;
}

#[tokio::test]
async fn consumer_tag_reuse_on_a_channel_is_530_connection_error() {
    let mut fx = fixture().await;
    declare(&fx.ch, "q").await;
    let consume = || {
        fx.ch.basic_consume(
            "q".into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
    };
    within(5, consume()).await.expect("first consume");
    let r = within(5, consume()).await;
    assert_eq!(code_of(r.map(|_| ())), Some(530));
    let text = fx.connection_closed_with(530).await;
    assert!(text.contains("reuse consumer tag 'dup'"), "{text}");
    fx.connection_gone().await;
}

#[tokio::test]
async fn unknown_exchange_type_is_503_connection_error() {
    let mut fx = fixture().await;
    let r = within(
        5,
        fx.ch.exchange_declare(
            "ex".into(),
            ExchangeKind::Custom("x-no-such-type".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_eq!(code_of(r), Some(503));
    let text = fx.connection_closed_with(503).await;
    assert!(
        text.contains("unknown exchange type 'x-no-such-type'"),
        "{text}"
    );
    fx.connection_gone().await;
}
