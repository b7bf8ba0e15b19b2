//! Direct reply-to, as RabbitMQ's guide describes it: an RPC client consumes from the
//! `amq.rabbitmq.reply-to` pseudo-queue in no-ack mode, the `reply_to` of its requests is
//! rewritten to `amq.rabbitmq.reply-to.<token>`, and a reply published to the default exchange
//! with that routing key goes straight to the client. Consuming with acks, a second reply
//! consumer, or a request without a reply consumer are 406s; declaring the names probes whether
//! the requester is still there.
use crate::common;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::BasicProperties;

const PSEUDO: &str = "amq.rabbitmq.reply-to";

async fn publish_props(ch: &lapin::Channel, key: &str, body: &[u8], props: BasicProperties) {
    within(
        5,
        ch.basic_publish(
            "".into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("basic.publish");
}

#[tokio::test]
async fn an_rpc_round_trip_goes_straight_back_to_the_requester() {
    let b = Broker::start().await;
    // The RPC server, on a connection of its own.
    let (_sc, server) = b.channel().await;
    declare(&server, "rpc").await;
    let mut requests = consume(&server, "rpc", false).await;
    // The client consumes from the pseudo-queue, then publishes on the same channel.
    let (_cc, client) = b.channel().await;
    let mut replies = consume_args(&client, PSEUDO, true, args(&[]))
        .await
        .expect("consume from the pseudo-queue");
    publish_props(
        &client,
        "rpc",
        b"2+2",
        BasicProperties::default()
            .with_reply_to(PSEUDO.into())
            .with_correlation_id("call-1".into()),
    )
    .await;
    let req = next(&mut requests).await;
    let reply_to = req
        .properties
        .reply_to()
        .as_ref()
        .expect("reply_to")
        .to_string();
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > PSEUDO.len() + 1,
        "reply_to not rewritten: {reply_to}"
    );
    assert_eq!(
        req.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("call-1")
    );
    publish_props(
        &server,
        &reply_to,
        b"4",
        BasicProperties::default().with_correlation_id("call-1".into()),
    )
    .await;
    within(5, req.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    let reply = next(&mut replies).await;
    assert_eq!(&reply.data[..], b"4");
    assert_eq!(reply.routing_key.as_str(), reply_to);
    assert_eq!(reply.exchange.as_str(), "");
    assert_eq!(
        reply
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("call-1")
    );
    b.stop().await;
}

#[tokio::test]
async fn consuming_the_pseudo_queue_with_acks_is_a_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let e = consume_args(&ch, PSEUDO, false, args(&[]))
        .await
        .expect_err("manual-ack reply consumer");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - reply consumer cannot acknowledge"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_second_reply_consumer_on_a_channel_is_a_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let _first = consume_args(&ch, PSEUDO, true, args(&[]))
        .await
        .expect("first");
    let e = consume_args(&ch, PSEUDO, true, args(&[]))
        .await
        .expect_err("second");
    assert_eq!(code(&e), Some(406));
    assert_eq!(
        close_text(&e),
        "PRECONDITION_FAILED - reply consumer already set"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_request_without_a_reply_consumer_on_its_channel_is_a_406() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let consuming = c.create_channel().await.expect("channel");
    let _replies = consume_args(&consuming, PSEUDO, true, args(&[]))
        .await
        .expect("consume");
    declare(&consuming, "rpc2").await;
    // Another channel of the same connection: the reply consumer must be on the publishing one.
    let other = c.create_channel().await.expect("channel");
    publish_props(
        &other,
        "rpc2",
        b"x",
        BasicProperties::default().with_reply_to(PSEUDO.into()),
    )
    .await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        "PRECONDITION_FAILED - fast reply consumer does not exist"
    );
    assert_eq!(
        counts(&consuming, "rpc2").await.0,
        0,
        "the request was routed"
    );
    b.stop().await;
}

#[tokio::test]
async fn after_cancelling_the_reply_consumer_requests_are_refused() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    let consumer = consume_args(&ch, PSEUDO, true, args(&[]))
        .await
        .expect("consume");
    within(
        5,
        ch.basic_cancel(
            consumer.tag().as_str().into(),
            BasicCancelOptions::default(),
        ),
    )
    .await
    .expect("cancel");
    publish_props(
        &ch,
        "anywhere",
        b"x",
        BasicProperties::default().with_reply_to(PSEUDO.into()),
    )
    .await;
    let (code, _) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    b.stop().await;
}

#[tokio::test]
async fn declaring_the_names_probes_whether_the_requester_is_there() {
    let b = Broker::start().await;
    let (_sc, server) = b.channel().await;
    // The bare name can always be declared, passively or not, and is never created.
    let q = declare_opts(&server, PSEUDO, passive())
        .await
        .expect("passive declare of the pseudo-queue");
    assert_eq!((q.message_count(), q.consumer_count()), (0, 1));
    declare_opts(&server, PSEUDO, QueueDeclareOptions::default())
        .await
        .expect("declare of the pseudo-queue");
    declare(&server, "probe").await;
    let mut requests = consume(&server, "probe", true).await;
    let (cc, client) = b.channel().await;
    // Kept: lapin cancels a consumer it drops.
    let _replies = consume_args(&client, PSEUDO, true, args(&[]))
        .await
        .expect("consume");
    publish_props(
        &client,
        "probe",
        b"?",
        BasicProperties::default().with_reply_to(PSEUDO.into()),
    )
    .await;
    let req = next(&mut requests).await;
    let name = req
        .properties
        .reply_to()
        .as_ref()
        .expect("reply_to")
        .to_string();
    let q = declare_opts(&server, &name, passive())
        .await
        .expect("the requester is there");
    assert_eq!((q.message_count(), q.consumer_count()), (0, 1));
    within(5, cc.close(200, "done".into()))
        .await
        .expect("close");
    let e = declare_opts(&server, &name, passive())
        .await
        .expect_err("the requester is gone");
    assert_eq!(code(&e), Some(404));
    assert_eq!(
        close_text(&e),
        format!("NOT_FOUND - no queue '{name}' in vhost '/'")
    );
    b.stop().await;
}

/// A reply whose token no consumer holds (never issued, or its requester gone) is unroutable,
/// as RabbitMQ 3.10 answers it: returned when mandatory, then confirmed; dropped otherwise.
#[tokio::test]
async fn a_mandatory_reply_to_a_gone_requester_is_returned() {
    let b = Broker::start().await;
    let (_rc, requester) = b.channel().await;
    let (_sc, server) = b.channel().await;
    declare(&server, "rpc").await;
    let _replies = within(
        5,
        requester.basic_consume(
            PSEUDO.into(),
            "replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            Default::default(),
        ),
    )
    .await
    .expect("consume the pseudo-queue");
    publish_props(
        &requester,
        "rpc",
        b"req",
        BasicProperties::default().with_reply_to(PSEUDO.into()),
    )
    .await;
    let req = within(
        5,
        server.basic_get("rpc".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get")
    .expect("request");
    let reply_to = req
        .delivery
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .to_string();
    within(
        5,
        requester.basic_cancel("replies".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("cancel");
    within(5, server.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    for key in [reply_to.as_str(), "amq.rabbitmq.reply-to.no-such-token"] {
        let confirm = within(
            5,
            server.basic_publish(
                "".into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                b"late",
                BasicProperties::default(),
            ),
        )
        .await
        .expect("publish");
        let c = within(5, confirm).await.expect("confirm");
        assert!(c.is_ack(), "{c:?}");
        let returned = c.take_message().expect("the reply was not returned");
        assert_eq!(returned.reply_code, 312, "{key}");
    }
    b.stop().await;
}

#[tokio::test]
async fn the_bare_name_as_a_routing_key_is_an_ordinary_unroutable_message() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            "".into(),
            PSEUDO.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"x",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let c = within(5, confirm).await.expect("confirm");
    assert!(c.take_message().is_some(), "not returned");
    b.stop().await;
}
