//! Policies, as RabbitMQ's policies guide describes them: `[[policies]]` in the config file and
//! the vhost's set/delete/list API (for the HTTP layer) match queues and exchanges by a regular
//! expression and `apply-to`; the highest priority wins; a queue's own arguments win over the
//! policy; changes apply to existing queues at once; API-set policies survive a restart; invalid
//! definitions are refused. Observed through `Queue::effective_arg` and through features that read
//! it (consumer timeout, alternate exchange).
use crate::common;
use common::consumers::*;
use common::queues::*;
use common::*;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use std::sync::Arc;
use warren::broker::policy::{ApplyTo, PolicyDef};
use warren::broker::vhost::{PolicyError, VHost};
use warren::config::PolicyConfig;

fn def(
    name: &str,
    pattern: &str,
    apply_to: ApplyTo,
    priority: i64,
    d: serde_json::Value,
) -> PolicyDef {
    PolicyDef {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to,
        priority,
        definition: serde_json::from_value(d).expect("definition"),
    }
}

fn vhost(b: &Broker) -> Arc<VHost> {
    b.handle
        .as_ref()
        .expect("running")
        .broker()
        .vhost("/")
        .expect("vhost /")
}

fn effective(b: &Broker, queue: &str, key: &str) -> Option<AMQPValue> {
    vhost(b).queue(queue).expect("queue").effective_arg(key)
}

#[tokio::test]
async fn a_config_policy_applies_to_matching_queues_only() {
    let b = Broker::start_with(|cfg| {
        cfg.policies.push(PolicyConfig {
            name: "jobs".into(),
            vhost: "/".into(),
            pattern: "^jobs\\.".into(),
            apply_to: ApplyTo::Queues,
            priority: 0,
            definition: serde_json::from_value(
                json!({"message-ttl": 5000, "consumer-timeout": 300}),
            )
            .expect("definition"),
        })
    })
    .await;
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "jobs.a").await;
    declare(&ch, "other").await;
    assert_eq!(
        effective(&b, "jobs.a", "x-message-ttl"),
        Some(AMQPValue::LongLongInt(5000))
    );
    assert_eq!(effective(&b, "other", "x-message-ttl"), None);
    // The consumer timeout reads the policy too.
    publish(&ch, "jobs.a", b"job").await;
    let mut consumer = consume(&ch, "jobs.a", false).await;
    next(&mut consumer).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    assert!(text.contains("Timeout value used: 300 ms"), "{text}");
    b.stop().await;
}

#[tokio::test]
async fn queue_arguments_win_over_the_policy() {
    let b = Broker::start().await;
    vhost(&b)
        .set_policy(def(
            "all",
            ".*",
            ApplyTo::All,
            0,
            json!({"message-ttl": 1000, "max-length": 10}),
        ))
        .expect("set_policy");
    let (_c, ch) = b.channel().await;
    declare_args(
        &ch,
        "own",
        args(&[("x-message-ttl", AMQPValue::LongInt(42))]),
    )
    .await
    .expect("declare");
    assert_eq!(
        effective(&b, "own", "x-message-ttl"),
        Some(AMQPValue::LongInt(42))
    );
    assert_eq!(
        effective(&b, "own", "x-max-length"),
        Some(AMQPValue::LongLongInt(10))
    );
    // The whole table at once, for code that parses every argument.
    let all = vhost(&b).queue("own").expect("queue").effective_arguments();
    assert_eq!(
        all.inner().get("x-message-ttl"),
        Some(&AMQPValue::LongInt(42))
    );
    assert_eq!(
        all.inner().get("x-max-length"),
        Some(&AMQPValue::LongLongInt(10))
    );
    assert_eq!(all.inner().len(), 2);
    b.stop().await;
}

#[tokio::test]
async fn the_highest_priority_policy_applies() {
    let b = Broker::start().await;
    let v = vhost(&b);
    v.set_policy(def("low", "^p", ApplyTo::All, 1, json!({"max-length": 1})))
        .expect("set");
    v.set_policy(def(
        "high",
        "^p\\.",
        ApplyTo::Queues,
        5,
        json!({"max-length": 5}),
    ))
    .expect("set");
    let (_c, ch) = b.channel().await;
    declare(&ch, "p.q").await;
    declare(&ch, "pq").await;
    assert_eq!(
        effective(&b, "p.q", "x-max-length"),
        Some(AMQPValue::LongLongInt(5))
    );
    assert_eq!(
        effective(&b, "pq", "x-max-length"),
        Some(AMQPValue::LongLongInt(1))
    );
    let q = v.queue("p.q").expect("queue");
    assert_eq!(q.policy().expect("policy").def.name, "high");
    b.stop().await;
}

#[tokio::test]
async fn setting_and_deleting_a_policy_applies_to_existing_queues_at_once() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "late").await;
    let v = vhost(&b);
    let q = v.queue("late").expect("queue");
    let gen = q.policy_generation();
    assert_eq!(q.effective_arg("x-expires"), None);
    v.set_policy(def(
        "exp",
        "^late$",
        ApplyTo::Queues,
        0,
        json!({"expires": 600000}),
    ))
    .expect("set");
    assert_eq!(
        q.effective_arg("x-expires"),
        Some(AMQPValue::LongLongInt(600000))
    );
    assert!(q.policy_generation() > gen, "generation not bumped");
    // Replacing it (same name) applies the new definition.
    v.set_policy(def(
        "exp",
        "^late$",
        ApplyTo::Queues,
        0,
        json!({"expires": 700000}),
    ))
    .expect("replace");
    assert_eq!(
        q.effective_arg("x-expires"),
        Some(AMQPValue::LongLongInt(700000))
    );
    assert_eq!(v.delete_policy("exp"), Ok(true));
    assert_eq!(q.effective_arg("x-expires"), None);
    assert_eq!(v.delete_policy("exp"), Ok(false));
    assert!(v.list_policies().is_empty());
    b.stop().await;
}

#[tokio::test]
async fn apply_to_separates_queues_and_exchanges() {
    let b = Broker::start().await;
    let v = vhost(&b);
    v.set_policy(def(
        "ex",
        ".*",
        ApplyTo::Exchanges,
        0,
        json!({"alternate-exchange": "ae"}),
    ))
    .expect("set");
    let (_c, ch) = b.channel().await;
    declare(&ch, "plain").await;
    assert!(v.queue("plain").expect("queue").policy().is_none());
    assert_eq!(
        v.exchange("amq.direct")
            .expect("exchange")
            .policy()
            .expect("policy")
            .def
            .name,
        "ex"
    );
    b.stop().await;
}

#[tokio::test]
async fn an_exchange_policy_sets_the_alternate_exchange_and_the_argument_wins() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for (name, arguments) in [
        ("by-policy", FieldTable::default()),
        ("by-arg", args(&[("alternate-exchange", text("ae-arg"))])),
    ] {
        within(
            5,
            ch.exchange_declare(
                name.into(),
                lapin::ExchangeKind::Direct,
                ExchangeDeclareOptions::default(),
                arguments,
            ),
        )
        .await
        .expect("exchange.declare");
    }
    for (ae, q) in [("ae-policy", "caught-policy"), ("ae-arg", "caught-arg")] {
        within(
            5,
            ch.exchange_declare(
                ae.into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("exchange.declare");
        declare(&ch, q).await;
        within(
            5,
            ch.queue_bind(
                q.into(),
                ae.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .expect("bind");
    }
    vhost(&b)
        .set_policy(def(
            "ae",
            "^by-",
            ApplyTo::Exchanges,
            0,
            json!({"alternate-exchange": "ae-policy"}),
        ))
        .expect("set");
    for ex in ["by-policy", "by-arg"] {
        within(
            5,
            ch.basic_publish(
                ex.into(),
                "nowhere".into(),
                BasicPublishOptions::default(),
                b"x",
                Default::default(),
            ),
        )
        .await
        .expect("publish");
    }
    assert_eq!(counts(&ch, "caught-policy").await.0, 1);
    assert_eq!(counts(&ch, "caught-arg").await.0, 1);
    b.stop().await;
}

#[tokio::test]
async fn policies_set_through_the_api_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start_in(dir.path(), |_| {}).await;
    vhost(&b)
        .set_policy(def(
            "kept",
            "^d",
            ApplyTo::Queues,
            2,
            json!({"consumer-timeout": 250}),
        ))
        .expect("set");
    b.stop().await;
    let b = Broker::start_in(dir.path(), |_| {}).await;
    let listed = vhost(&b).list_policies();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "kept");
    assert_eq!(listed[0].priority, 2);
    let c = b.connect().await;
    let mut ev = events(&c);
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "d1").await;
    publish(&ch, "d1", b"x").await;
    let mut consumer = consume(&ch, "d1", false).await;
    next(&mut consumer).await;
    let (code, text) = next_close(&mut ev, 5).await;
    assert_eq!(code, 406);
    assert!(text.contains("Timeout value used: 250 ms"), "{text}");
    b.stop().await;
    // A deleted policy stays deleted.
    let b = Broker::start_in(dir.path(), |_| {}).await;
    assert_eq!(vhost(&b).delete_policy("kept"), Ok(true));
    b.stop().await;
    let b = Broker::start_in(dir.path(), |_| {}).await;
    assert!(vhost(&b).list_policies().is_empty());
    b.stop().await;
}

#[tokio::test]
async fn invalid_policies_are_refused() {
    let b = Broker::start().await;
    let v = vhost(&b);
    for (d, want) in [
        (json!({"max-priority": 10}), "cannot be set by a policy"),
        (json!({"message-ttl": "soon"}), "non-negative integer"),
        (json!({"overflow": "drop-tail"}), "one of"),
        (json!({"ha-mode": "all"}), "not a recognised policy setting"),
    ] {
        match v.set_policy(def("bad", ".*", ApplyTo::All, 0, d)) {
            Err(PolicyError::Invalid(e)) => assert!(e.contains(want), "{e}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    assert!(matches!(
        v.set_policy(def("bad", "(", ApplyTo::All, 0, json!({"expires": 1}))),
        Err(PolicyError::Invalid(_))
    ));
    assert!(v.list_policies().is_empty());
    b.stop().await;
}

#[tokio::test]
async fn a_broker_with_an_invalid_config_policy_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = warren::Config::for_tests(dir.path());
    cfg.policies.push(PolicyConfig {
        name: "bad".into(),
        vhost: "/".into(),
        pattern: ".*".into(),
        apply_to: ApplyTo::All,
        priority: 0,
        definition: serde_json::from_value(json!({"message-ttl": -5})).expect("definition"),
    });
    assert!(cfg.validate().is_err());
    assert!(warren::start(cfg).await.is_err());
}
