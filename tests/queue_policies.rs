//! Message-level queue features set by policies, merged with the queue's own arguments as
//! RabbitMQ merges them: the lower `message-ttl`, `expires`, `max-length` and `max-length-bytes`
//! apply; the queue's own dead-letter settings win; a policy set or deleted later changes the
//! queue at once (new messages see it); a quorum queue takes its delivery limit from a policy.
use crate::common;
use common::features::*;
use common::queues::wait_gone;
use common::*;

use lapin::options::*;
use lapin::{BasicProperties, Channel};
use serde_json::json;
use std::sync::Arc;
use warren::broker::policy::{ApplyTo, PolicyDef};
use warren::broker::vhost::VHost;

fn vhost(b: &Broker) -> Arc<VHost> {
    b.handle
        .as_ref()
        .expect("running")
        .broker()
        .vhost("/")
        .expect("vhost /")
}

fn set(b: &Broker, name: &str, pattern: &str, d: serde_json::Value) {
    let def = PolicyDef {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to: ApplyTo::Queues,
        priority: 0,
        definition: serde_json::from_value(d).expect("definition"),
    };
    vhost(b).set_policy(def).expect("set_policy");
}

async fn reject_one(ch: &Channel, queue: &str) {
    let m = within(
        5,
        ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
    )
    .await
    .expect("get")
    .expect("message");
    within(
        5,
        ch.basic_reject(
            m.delivery.delivery_tag,
            BasicRejectOptions { requeue: false },
        ),
    )
    .await
    .expect("reject");
}

#[tokio::test]
async fn a_policy_message_ttl_expires_new_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    set(&b, "ttl", "^pt\\.", json!({"message-ttl": 100}));
    declare_args(&ch, "pt.q", args(&[])).await;
    send(&ch, "", "pt.q", "m", BasicProperties::default()).await;
    wait_count(&ch, "pt.q", 0, 3).await;
    b.stop().await;
}

#[tokio::test]
async fn the_lower_of_policy_and_argument_length_limit_applies() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    set(&b, "len", "^len", json!({"max-length": 2}));
    declare_args(&ch, "len-arg10", args(&[("x-max-length", int(10))])).await;
    declare_args(&ch, "len-arg1", args(&[("x-max-length", int(1))])).await;
    for q in ["len-arg10", "len-arg1"] {
        for m in ["1", "2", "3"] {
            send(&ch, "", q, m, BasicProperties::default()).await;
        }
    }
    assert_eq!(bodies(&ch, "len-arg10").await, ["2", "3"], "the policy's 2");
    assert_eq!(bodies(&ch, "len-arg1").await, ["3"], "the argument's 1");
    b.stop().await;
}

#[tokio::test]
async fn a_policy_dead_letter_exchange_applies_and_the_argument_wins() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "by-policy", args(&[])).await;
    declare_args(&ch, "by-arg", args(&[])).await;
    within(
        5,
        ch.exchange_declare(
            "dlx".into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            Default::default(),
        ),
    )
    .await
    .expect("exchange");
    within(
        5,
        ch.queue_bind(
            "by-policy".into(),
            "dlx".into(),
            "by-policy".into(),
            QueueBindOptions::default(),
            Default::default(),
        ),
    )
    .await
    .expect("bind");
    set(
        &b,
        "dlx",
        "^src",
        json!({"dead-letter-exchange": "dlx", "dead-letter-routing-key": "by-policy"}),
    );
    declare_args(&ch, "src-plain", args(&[])).await;
    let own = args(&[
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s("by-arg")),
    ]);
    declare_args(&ch, "src-own", own).await;
    for q in ["src-plain", "src-own"] {
        send(&ch, "", q, q, BasicProperties::default()).await;
        reject_one(&ch, q).await;
    }
    wait_count(&ch, "by-policy", 1, 5).await;
    wait_count(&ch, "by-arg", 1, 5).await;
    assert_eq!(bodies(&ch, "by-policy").await, ["src-plain"]);
    assert_eq!(bodies(&ch, "by-arg").await, ["src-own"]);
    b.stop().await;
}

#[tokio::test]
async fn a_policy_set_later_applies_at_once_and_deleting_it_lifts_it() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "later", args(&[])).await;
    set(&b, "cap", "^later$", json!({"max-length": 1}));
    for m in ["1", "2"] {
        send(&ch, "", "later", m, BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, "later").await, 1);
    assert_eq!(vhost(&b).delete_policy("cap"), Ok(true));
    for m in ["3", "4"] {
        send(&ch, "", "later", m, BasicProperties::default()).await;
    }
    assert_eq!(bodies(&ch, "later").await, ["2", "3", "4"]);
    b.stop().await;
}

#[tokio::test]
async fn a_policy_expires_deletes_an_unused_queue() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "idle", args(&[])).await;
    set(&b, "exp", "^idle$", json!({"expires": 300}));
    wait_gone(&ch, "idle").await;
    b.stop().await;
}

#[tokio::test]
async fn a_quorum_queue_takes_its_delivery_limit_from_a_policy() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    set(&b, "dl", "^qq$", json!({"delivery-limit": 1}));
    let qq = args(&[("x-queue-type", s("quorum"))]);
    declare_with(&ch, "qq", durable(), qq)
        .await
        .expect("declare");
    send(&ch, "", "qq", "m", BasicProperties::default()).await;
    for _ in 0..2 {
        let m = within(
            5,
            ch.basic_get("qq".into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .expect("get")
        .expect("message");
        let opts = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        within(5, ch.basic_nack(m.delivery.delivery_tag, opts))
            .await
            .expect("nack");
    }
    assert_eq!(count(&ch, "qq").await, 0, "dropped after its second return");
    b.stop().await;
}
