//! Redeclaring an existing queue or exchange with other arguments, judged as RabbitMQ judges it:
//! only the arguments the type defines are compared (a queue's `x-message-ttl`, `x-expires`…, an
//! exchange's `alternate-exchange`), one present on one side and absent on the other differs,
//! and the 406 says so in RabbitMQ's words. Arguments RabbitMQ does not define never fail a
//! redeclare.
use crate::common;

use common::*;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

async fn queue(ch: &Channel, a: FieldTable) -> lapin::Result<lapin::Queue> {
    within(
        5,
        ch.queue_declare("q".into(), QueueDeclareOptions::default(), a),
    )
    .await
}

async fn exchange(ch: &Channel, a: FieldTable) -> lapin::Result<()> {
    within(
        5,
        ch.exchange_declare(
            "x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            a,
        ),
    )
    .await
}

/// The text of a refused redeclare (which must have been refused with 406).
fn refused<T>(r: lapin::Result<T>) -> String {
    match r {
        Ok(_) => panic!("the redeclare was accepted"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("PRECONDITION_FAILED - "), "{text}");
            text
        }
    }
}

#[tokio::test]
async fn a_queue_redeclared_without_its_ttl_is_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let ttl = args(&[("x-message-ttl", AMQPValue::LongInt(1000))]);
    queue(&ch, ttl).await.expect("declare");
    let (_c2, ch2) = b.channel().await;
    let text = refused(queue(&ch2, FieldTable::default()).await);
    assert!(
        text.contains("inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received none but current is the value '1000' of type 'signedint'"),
        "{text}"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_queue_redeclared_with_another_ttl_names_both_values() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    queue(&ch, args(&[("x-message-ttl", AMQPValue::LongInt(1000))]))
        .await
        .expect("declare");
    // Same value in another integer type: equivalent.
    queue(
        &ch,
        args(&[("x-message-ttl", AMQPValue::LongLongInt(1000))]),
    )
    .await
    .expect("same ttl as a long");
    let text = refused(queue(&ch, args(&[("x-message-ttl", AMQPValue::LongInt(2000))])).await);
    assert!(
        text.contains("received '2000' but current is '1000'"),
        "{text}"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_queue_redeclared_with_a_string_argument_changed_prints_the_strings() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let dlx = |v: &str| args(&[("x-dead-letter-exchange", AMQPValue::LongString(v.into()))]);
    queue(&ch, dlx("a")).await.expect("declare");
    let text = refused(queue(&ch, dlx("b")).await);
    assert!(
        text.contains("inequivalent arg 'x-dead-letter-exchange' for queue 'q' in vhost '/': received 'b' but current is 'a'"),
        "{text}"
    );
    b.stop().await;
}

#[tokio::test]
async fn arguments_rabbitmq_does_not_define_never_fail_a_redeclare() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    queue(&ch, args(&[("x-custom", AMQPValue::LongInt(1))]))
        .await
        .expect("declare");
    queue(&ch, args(&[("x-custom", AMQPValue::LongInt(2))]))
        .await
        .expect("other custom value");
    queue(&ch, FieldTable::default())
        .await
        .expect("no custom value");
    exchange(&ch, args(&[("x-custom", AMQPValue::LongInt(1))]))
        .await
        .expect("exchange");
    exchange(&ch, args(&[("x-custom", AMQPValue::LongInt(2))]))
        .await
        .expect("exchange, other custom value");
    b.stop().await;
}

#[tokio::test]
async fn an_exchange_redeclared_without_its_alternate_exchange_is_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let ae = |v: &str| args(&[("alternate-exchange", AMQPValue::LongString(v.into()))]);
    exchange(&ch, ae("a")).await.expect("declare");
    exchange(&ch, ae("a"))
        .await
        .expect("same alternate exchange");
    let text = refused(exchange(&ch, FieldTable::default()).await);
    assert!(
        text.contains("inequivalent arg 'alternate-exchange' for exchange 'x' in vhost '/': received none but current is the value 'a' of type 'longstr'"),
        "{text}"
    );
    let (_c2, ch2) = b.channel().await;
    let text = refused(exchange(&ch2, ae("b")).await);
    assert!(text.contains("received 'b' but current is 'a'"), "{text}");
    b.stop().await;
}
