//! Publisher confirms as RabbitMQ documents them: every publish on a confirm channel is acked
//! (possibly with `multiple`), a mandatory unroutable message is returned (312 NO_ROUTE) before
//! its ack, a non-mandatory one is acked and dropped, and confirm/tx modes exclude each other.
use crate::common;
use crate::raw_amqp;
use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, confirm, AMQPClass};
use common::*;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use raw_amqp::Raw;

/// The reply code of a channel or connection close carried by a lapin error.
fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

async fn confirm_channel(b: &Broker) -> (lapin::Connection, Channel) {
    let (c, ch) = b.channel().await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    (c, ch)
}

async fn publish_confirmed(
    ch: &Channel,
    ex: &str,
    key: &str,
    mandatory: bool,
    body: &[u8],
) -> Confirmation {
    let pc = within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions {
                mandatory,
                ..Default::default()
            },
            body,
            BasicProperties::default(),
        ),
    )
    .await
    .expect("basic.publish");
    within(5, pc).await.expect("confirmation")
}

async fn ready(ch: &Channel, queue: &str) -> u32 {
    within(
        5,
        ch.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("passive declare")
    .message_count()
}

#[tokio::test]
async fn every_publish_is_acked() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare(&ch, "confirmed").await;
    for i in 0..3u8 {
        let c = publish_confirmed(&ch, "", "confirmed", false, &[i]).await;
        assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    }
    assert_eq!(ready(&ch, "confirmed").await, 3);
    b.stop().await;
}

#[tokio::test]
async fn without_confirm_select_nothing_is_confirmed() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "plain").await;
    let c = publish_confirmed(&ch, "", "plain", false, b"x").await;
    assert!(matches!(c, Confirmation::NotRequested), "got {c:?}");
    b.stop().await;
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_before_its_ack() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    let props = BasicProperties::default()
        .with_message_id("m-1".into())
        .with_content_type("text/plain".into());
    let pc = within(
        5,
        ch.basic_publish(
            "amq.direct".into(),
            "nobody-bound".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            props.clone(),
        ),
    )
    .await
    .expect("publish");
    // lapin attaches a basic.return to the ack that follows it: Ack(Some(..)) proves the order.
    match within(5, pc).await.expect("confirmation") {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.exchange.as_str(), "amq.direct");
            assert_eq!(ret.delivery.routing_key.as_str(), "nobody-bound");
            assert_eq!(ret.delivery.data, b"lost");
            assert_eq!(ret.delivery.properties, props);
        }
        other => panic!("expected an ack carrying the returned message, got {other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn returns_match_the_right_publish_in_a_batch() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare(&ch, "some").await;
    let mut pending = Vec::new();
    for (key, body) in [("some", "1"), ("none", "2"), ("some", "3"), ("none", "4")] {
        let pc = within(
            5,
            ch.basic_publish(
                "".into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .expect("publish");
        pending.push(pc);
    }
    let mut returned = Vec::new();
    for pc in pending {
        match within(5, pc).await.expect("confirmation") {
            Confirmation::Ack(Some(r)) => returned.push(Some(r.delivery.data)),
            Confirmation::Ack(None) => returned.push(None),
            other => panic!("expected ack, got {other:?}"),
        }
    }
    assert_eq!(
        returned,
        [None, Some(b"2".to_vec()), None, Some(b"4".to_vec())]
    );
    assert_eq!(ready(&ch, "some").await, 2);
    b.stop().await;
}

#[tokio::test]
async fn mandatory_routable_is_acked_without_return() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare(&ch, "there").await;
    let c = publish_confirmed(&ch, "", "there", true, b"m").await;
    assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    assert_eq!(ready(&ch, "there").await, 1);
    b.stop().await;
}

#[tokio::test]
async fn non_mandatory_unroutable_is_acked_and_dropped() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    let c = publish_confirmed(&ch, "amq.topic", "no.route", false, b"gone").await;
    assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
    let returned = within(5, ch.wait_for_confirms())
        .await
        .expect("wait_for_confirms");
    assert!(returned.is_empty(), "nothing may be returned: {returned:?}");
    b.stop().await;
}

#[tokio::test]
async fn a_thousand_publishes_are_all_acked() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    declare(&ch, "bulk").await;
    let mut pending = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        let pc = within(
            5,
            ch.basic_publish(
                "".into(),
                "bulk".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .expect("publish");
        pending.push(pc);
    }
    within(30, async {
        for pc in pending {
            let c = pc.await.expect("confirmation");
            assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
        }
    })
    .await;
    assert_eq!(ready(&ch, "bulk").await, 1000);
    b.stop().await;
}

#[tokio::test]
async fn confirm_sequence_numbers_are_per_channel() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch1 = c.create_channel().await.expect("channel");
    let ch2 = c.create_channel().await.expect("channel");
    declare(&ch1, "pc").await;
    within(5, ch1.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    // ch2 publishes in between without confirms: it must not shift ch1's numbering.
    for i in 0..5u8 {
        publish(&ch2, "pc", &[i]).await;
        let conf = publish_confirmed(&ch1, "", "pc", false, &[i]).await;
        assert!(matches!(conf, Confirmation::Ack(None)), "got {conf:?}");
    }
    within(5, ch2.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    for i in 0..3u8 {
        let conf = publish_confirmed(&ch2, "", "pc", false, &[i]).await;
        assert!(matches!(conf, Confirmation::Ack(None)), "got {conf:?}");
    }
    assert_eq!(ready(&ch1, "pc").await, 13);
    b.stop().await;
}

#[tokio::test]
async fn confirm_then_tx_select_is_406() {
    let b = Broker::start().await;
    let (c, ch) = confirm_channel(&b).await;
    let e = within(5, ch.tx_select())
        .await
        .expect_err("tx.select on a confirm channel");
    assert_eq!(code(&e), Some(406), "{e}");
    // A channel error: the connection goes on.
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "after").await;
    b.stop().await;
}

#[tokio::test]
async fn publish_to_a_missing_exchange_fails_the_confirm_with_404() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    let pc = within(
        5,
        ch.basic_publish(
            "no-such-exchange".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let e = within(5, pc).await.expect_err("the channel is closed");
    assert_eq!(code(&e), Some(404), "{e}");
    b.stop().await;
}

/// Publish `n` messages on channel 1 in one write (default exchange, routing key `queue`).
async fn raw_publish_burst(raw: &mut Raw, queue: &str, n: usize, mandatory: bool) {
    let mut wire = Vec::new();
    for i in 0..n {
        let body = i.to_string();
        wire.extend(raw_amqp::method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "".into(),
                routing_key: queue.into(),
                mandatory,
                immediate: false,
            })),
        ));
        wire.extend(raw_amqp::content_header(1, body.len() as u64));
        wire.extend(raw_amqp::body(1, body.as_bytes()));
    }
    raw.send(&wire).await;
}

/// Read basic.ack frames on channel 1 until `upto` is confirmed, checking the acks cover
/// 1..=upto exactly once and in order; returns how many ack frames that took.
async fn raw_read_acks(raw: &mut Raw, upto: u64) -> usize {
    let mut confirmed = 0u64;
    let mut frames = 0;
    while confirmed < upto {
        match within(10, raw.read_method()).await {
            Some((1, AMQPClass::Basic(basic::AMQPMethod::Ack(a)))) => {
                frames += 1;
                if a.multiple {
                    assert!(a.delivery_tag > confirmed, "stale multiple ack {a:?}");
                } else {
                    assert_eq!(a.delivery_tag, confirmed + 1, "acks out of order");
                }
                confirmed = a.delivery_tag;
            }
            other => panic!("expected basic.ack on channel 1, got {other:?}"),
        }
    }
    assert_eq!(confirmed, upto, "acked past the last publish");
    frames
}

#[tokio::test]
async fn confirm_select_nowait_gets_no_reply_but_acks() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "nowait").await;
    let mut raw = Raw::open(b.addr()).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: true,
        })),
    )
    .await;
    raw_publish_burst(&mut raw, "nowait", 3, false).await;
    // The first thing back is an ack, not a select-ok.
    raw_read_acks(&mut raw, 3).await;
    assert_eq!(ready(&ch, "nowait").await, 3);
    drop(raw);
    b.stop().await;
}

#[tokio::test]
async fn burst_of_confirms_covers_every_sequence_number_once() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "burst").await;
    let mut raw = Raw::open(b.addr()).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
    )
    .await;
    match within(5, raw.read_method()).await {
        Some((1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))) => {}
        other => panic!("expected confirm.select-ok, got {other:?}"),
    }
    raw_publish_burst(&mut raw, "burst", 1000, false).await;
    let frames = raw_read_acks(&mut raw, 1000).await;
    assert!(frames <= 1000);
    assert_eq!(ready(&ch, "burst").await, 1000);
    drop(raw);
    b.stop().await;
}

#[tokio::test]
async fn return_precedes_ack_on_the_wire() {
    let b = Broker::start().await;
    let mut raw = Raw::open(b.addr()).await;
    raw.open_channel(1).await;
    raw.send_method(
        1,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
    )
    .await;
    match within(5, raw.read_method()).await {
        Some((1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))) => {}
        other => panic!("expected confirm.select-ok, got {other:?}"),
    }
    raw_publish_burst(&mut raw, "no-such-queue", 1, true).await;
    match within(5, raw.read_method()).await {
        Some((1, AMQPClass::Basic(basic::AMQPMethod::Return(r)))) => {
            assert_eq!(r.reply_code, 312);
            assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(r.exchange.as_str(), "");
            assert_eq!(r.routing_key.as_str(), "no-such-queue");
        }
        other => panic!("expected basic.return first, got {other:?}"),
    }
    match within(5, raw.read_frame()).await {
        Some(AMQPFrame::Header(1, h)) => assert_eq!(h.body_size, 1),
        other => panic!("expected the returned message's header, got {other:?}"),
    }
    match within(5, raw.read_frame()).await {
        Some(AMQPFrame::Body(1, data)) => assert_eq!(data, b"0"),
        other => panic!("expected the returned message's body, got {other:?}"),
    }
    assert_eq!(raw_read_acks(&mut raw, 1).await, 1);
    drop(raw);
    b.stop().await;
}

/// Publish `n` persistent messages to `queue` without waiting in between, then wait for every
/// confirm: the broker reads them in batches, each batch's publishes into one log waiting on one
/// sync between them.
async fn pipelined_persistent_all_acked(ch: &Channel, queue: &str, n: u32) {
    let mut pending = Vec::with_capacity(n as usize);
    for i in 0..n {
        let pc = within(
            5,
            ch.basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            ),
        )
        .await
        .expect("publish");
        pending.push(pc);
    }
    within(30, async {
        for pc in pending {
            let c = pc.await.expect("confirmation");
            assert!(matches!(c, Confirmation::Ack(None)), "got {c:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn pipelined_persistent_publishes_to_a_durable_queue_and_a_stream_are_all_acked() {
    let b = Broker::start().await;
    let (_c, ch) = confirm_channel(&b).await;
    ch.queue_declare(
        "durable-bulk".into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare durable");
    let mut stream_args = FieldTable::default();
    stream_args.insert("x-queue-type".into(), raw_amqp::long("stream"));
    ch.queue_declare(
        "stream-bulk".into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        stream_args,
    )
    .await
    .expect("declare stream");
    pipelined_persistent_all_acked(&ch, "durable-bulk", 5000).await;
    pipelined_persistent_all_acked(&ch, "stream-bulk", 5000).await;
    assert_eq!(ready(&ch, "durable-bulk").await, 5000);
    b.stop().await;
}
