//! Topic permissions (RabbitMQ's "topic authorisation"): per user, vhost and exchange, a write
//! pattern for the routing keys published to a topic exchange and a read pattern for the
//! binding keys of bindings from it; refusals are 403 channel errors with RabbitMQ's text.
//! Behaviour cross-checked against RabbitMQ 3.10 (the empty pattern refuses every key but the
//! empty one,
//! `{client_id}` is not expanded over AMQP 0-9-1, direct exchanges are never checked).

use crate::common;
use crate::raw_amqp;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use raw_amqp::{reply_code, reply_text};
use serde_json::json;

/// User `tom` (password `pw`) with every resource permission in `/`.
async fn tom(b: &Broker) {
    let http = b.http();
    let r = http
        .put("/api/users/tom", json!({"password": "pw", "tags": ""}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http
        .put(
            "/api/permissions/%2F/tom",
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Set tom's topic permission on `exchange` in `/`.
async fn topic(b: &Broker, exchange: &str, write: &str, read: &str) {
    let r = b
        .http()
        .put(
            "/api/topic-permissions/%2F/tom",
            json!({"exchange": exchange, "write": write, "read": read}),
        )
        .await;
    assert!(r.status == 201 || r.status == 204, "{}", r.body);
}

async fn exchange(b: &Broker, name: &str, kind: ExchangeKind) {
    let (_c, ch) = b.channel().await;
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare exchange");
}

async fn connect_tom(b: &Broker) -> (Connection, Channel) {
    let url = format!("amqp://tom:pw@{}/%2f", b.addr());
    let c = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("tom connects");
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

fn refusal(perm: &str, key: &str, exchange: &str) -> String {
    format!(
        "ACCESS_REFUSED - {perm} access to topic '{key}' in exchange '{exchange}' in vhost '/' \
         refused for user 'tom'"
    )
}

/// A call refused with a 403 channel error; returns the reply text.
fn refused<T: std::fmt::Debug>(r: lapin::Result<T>) -> String {
    let e = r.expect_err("expected 403 ACCESS_REFUSED");
    assert_eq!(reply_code(&e), Some(403), "{e:?}");
    assert!(e.is_amqp_soft_error(), "a channel error: {e:?}");
    reply_text(&e).unwrap_or_default()
}

/// Publish with confirms: Ok when the broker confirmed, the 403 text when it closed the channel.
async fn publish(ch: &Channel, exchange: &str, key: &str) -> Result<(), String> {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await;
    let r = match confirm {
        Ok(c) => c.await.map(|_| ()),
        Err(e) => Err(e),
    };
    r.map_err(|e| {
        assert_eq!(reply_code(&e), Some(403), "{e:?}");
        reply_text(&e).unwrap_or_default()
    })
}

async fn confirming(c: &Connection) -> Channel {
    let ch = c.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select");
    ch
}

#[tokio::test]
async fn a_routing_key_must_match_the_write_pattern() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    topic(&b, "events", "^orders\\.", ".*").await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        publish(&ch, "events", "orders.created")
            .await
            .expect("matching key");
        let text = publish(&ch, "events", "payments.done").await.unwrap_err();
        assert_eq!(text, refusal("write", "payments.done", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_topic_exchange_without_a_topic_permission_is_not_restricted() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    exchange(&b, "other", ExchangeKind::Topic).await;
    topic(&b, "events", "^$", "^$").await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        publish(&ch, "other", "anything").await.expect("no rule");
        publish(&ch, "amq.topic", "anything")
            .await
            .expect("no rule");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn other_exchange_types_are_never_checked() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "jobs", ExchangeKind::Direct).await;
    topic(&b, "jobs", "^nothing$", "^nothing$").await;
    let (c, ch) = connect_tom(&b).await;
    within(10, async {
        declare(&ch, "jq").await;
        ch.queue_bind(
            "jq".into(),
            "jobs".into(),
            "x".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("direct: binding key not checked");
        let ch = confirming(&c).await;
        publish(&ch, "jobs", "x")
            .await
            .expect("direct: routing key not checked");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn the_empty_pattern_allows_only_the_empty_key() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    topic(&b, "events", "", "").await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        // RabbitMQ runs "" as ^$: the empty routing key matches it.
        publish(&ch, "events", "").await.expect("the empty key");
        let text = publish(&ch, "events", "a").await.unwrap_err();
        assert_eq!(text, refusal("write", "a", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn queue_bind_and_unbind_check_the_binding_key_against_read() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    topic(&b, "events", ".*", "^public\\.").await;
    let (c, ch) = connect_tom(&b).await;
    within(10, async {
        declare(&ch, "tq").await;
        let bind = |ch: Channel, key: &'static str| async move {
            ch.queue_bind(
                "tq".into(),
                "events".into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        };
        bind(ch.clone(), "public.#").await.expect("matching key");
        let text = refused(bind(ch.clone(), "#").await);
        assert_eq!(text, refusal("read", "#", "events"));
        let ch = c.create_channel().await.unwrap();
        let text = refused(
            ch.queue_unbind(
                "tq".into(),
                "events".into(),
                "secret.x".into(),
                FieldTable::default(),
            )
            .await,
        );
        assert_eq!(text, refusal("read", "secret.x", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn exchange_bind_checks_only_a_topic_source() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    exchange(&b, "sink", ExchangeKind::Topic).await;
    topic(&b, "events", ".*", "^ok$").await;
    topic(&b, "sink", "^$", "^$").await;
    let (_c, ch) = connect_tom(&b).await;
    within(10, async {
        let xbind = |dest: &'static str, src: &'static str, key: &'static str| {
            let ch = ch.clone();
            async move {
                ch.exchange_bind(
                    dest.into(),
                    src.into(),
                    key.into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await
            }
        };
        // The destination's topic permission is not consulted.
        xbind("sink", "events", "ok").await.expect("source allows");
        let text = refused(xbind("sink", "events", "nope").await);
        assert_eq!(text, refusal("read", "nope", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn username_and_vhost_are_expanded_in_patterns() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    topic(&b, "events", "^{username}\\.{vhost}\\.", ".*").await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        publish(&ch, "events", "tom./.x")
            .await
            .expect("expanded pattern");
        let text = publish(&ch, "events", "ann./.x").await.unwrap_err();
        assert_eq!(text, refusal("write", "ann./.x", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn client_id_is_not_expanded_over_amqp_0_9_1() {
    // RabbitMQ expands {client_id} for MQTT only; in an AMQP 0-9-1 check it stays literal text.
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    topic(&b, "events", "^{client_id}\\.", ".*").await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        publish(&ch, "events", "{client_id}.x")
            .await
            .expect("literal braces match");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_new_topic_permission_applies_to_an_open_channel() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        publish(&ch, "events", "a.b").await.expect("no rule yet");
        topic(&b, "events", "^z", ".*").await;
        let text = publish(&ch, "events", "a.b").await.unwrap_err();
        assert_eq!(text, refusal("write", "a.b", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn a_refused_publish_closes_only_the_channel() {
    let b = Broker::start().await;
    tom(&b).await;
    exchange(&b, "events", ExchangeKind::Topic).await;
    topic(&b, "events", "^ok$", ".*").await;
    let (c, ch) = connect_tom(&b).await;
    let mut events = Box::pin(c.events_listener());
    let _ = ch
        .basic_publish(
            "events".into(),
            "bad".into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await;
    within(10, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => {
                    assert_eq!(reply_code(&e), Some(403), "{e:?}");
                    assert!(e.is_amqp_soft_error(), "{e:?}");
                    break;
                }
                Some(_) => continue,
                None => panic!("no error event"),
            }
        }
        let ch = confirming(&c).await;
        publish(&ch, "events", "ok")
            .await
            .expect("connection lives");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn the_http_api_has_rabbitmq_s_shape() {
    let b = Broker::start().await;
    tom(&b).await;
    let http = b.http();
    let put = |x: &str| {
        http.put(
            "/api/topic-permissions/%2F/tom",
            json!({"exchange": x, "write": "^w", "read": "^r"}),
        )
    };
    // The resource is the user's topic permissions in the vhost: created once.
    assert_eq!(put("a").await.status, 201);
    assert_eq!(put("b").await.status, 204);
    assert_eq!(put("b").await.status, 204);
    let list = http.get("/api/topic-permissions/%2F/tom").await.json();
    assert_eq!(
        list,
        json!([
            {"user": "tom", "vhost": "/", "exchange": "a", "write": "^w", "read": "^r"},
            {"user": "tom", "vhost": "/", "exchange": "b", "write": "^w", "read": "^r"},
        ])
    );
    assert_eq!(http.get("/api/topic-permissions").await.json(), list);
    assert_eq!(
        http.get("/api/users/tom/topic-permissions").await.json(),
        list
    );
    assert_eq!(
        http.get("/api/vhosts/%2F/topic-permissions").await.json(),
        list
    );
    let defs = http.get("/api/definitions").await.json();
    assert_eq!(defs["topic_permissions"], list);
    let r = http
        .put(
            "/api/topic-permissions/%2F/nobody",
            json!({"exchange": "a", "write": "", "read": ""}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "vhost_or_user_not_found");
    let r = http
        .put(
            "/api/topic-permissions/%2F/tom",
            json!({"write": "", "read": ""}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["reason"], "[{key_missing,exchange}]");
    let r = http
        .put(
            "/api/topic-permissions/%2F/tom",
            json!({"exchange": "a", "write": "(", "read": ""}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        http.delete("/api/topic-permissions/%2F/tom").await.status,
        204
    );
    assert_eq!(http.get("/api/topic-permissions/%2F/tom").await.status, 404);
    assert_eq!(
        http.delete("/api/topic-permissions/%2F/tom").await.status,
        404
    );
    b.stop().await;
}

#[tokio::test]
async fn topic_permissions_survive_a_restart_and_import_from_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), |_| {}).await;
    tom(&b).await;
    let r = b
        .http()
        .post(
            "/api/definitions",
            json!({"topic_permissions": [
                {"user": "tom", "vhost": "/", "exchange": "events", "write": "^a", "read": "^b"}
            ]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    b.stop().await;
    let b = Broker::start_in(dir.path(), |_| {}).await;
    assert_eq!(
        b.http().get("/api/topic-permissions").await.json(),
        json!([{"user": "tom", "vhost": "/", "exchange": "events", "write": "^a", "read": "^b"}])
    );
    exchange(&b, "events", ExchangeKind::Topic).await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        let text = publish(&ch, "events", "z").await.unwrap_err();
        assert_eq!(text, refusal("write", "z", "events"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn topic_permissions_from_the_config_file_are_enforced() {
    let b = Broker::start_with(|c| {
        c.users = vec![
            warren::config::UserConfig {
                name: "guest".into(),
                password: Some("guest".into()),
                password_hash: None,
                tags: vec!["administrator".into()],
                vhosts: vec![],
            },
            warren::config::UserConfig {
                name: "tom".into(),
                password: Some("pw".into()),
                password_hash: None,
                tags: vec![],
                vhosts: vec![],
            },
        ];
        c.topic_permissions = vec![warren::config::TopicPermissionConfig {
            user: "tom".into(),
            vhost: "/".into(),
            exchange: "amq.topic".into(),
            write: "^{username}\\.".into(),
            read: ".*".into(),
        }];
    })
    .await;
    let (c, _ch) = connect_tom(&b).await;
    within(10, async {
        let ch = confirming(&c).await;
        publish(&ch, "amq.topic", "tom.x")
            .await
            .expect("own prefix");
        let text = publish(&ch, "amq.topic", "ann.x").await.unwrap_err();
        assert_eq!(text, refusal("write", "ann.x", "amq.topic"));
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn deleting_the_user_removes_their_topic_permissions() {
    let b = Broker::start().await;
    tom(&b).await;
    topic(&b, "events", "^a", "^b").await;
    let http = b.http();
    assert_eq!(http.delete("/api/users/tom").await.status, 204);
    assert_eq!(http.get("/api/topic-permissions").await.json(), json!([]));
    b.stop().await;
}

#[tokio::test]
async fn publishing_through_the_http_api_is_checked_too() {
    let b = Broker::start().await;
    let http = b.http();
    http.put(
        "/api/users/tom",
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    http.put(
        "/api/permissions/%2F/tom",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    topic(&b, "amq.topic", "^ok$", ".*").await;
    let tom = http.as_user("tom", "pw");
    let body = |key: &str| json!({"routing_key": key, "payload": "x", "payload_encoding": "string", "properties": {}});
    let r = tom
        .post("/api/exchanges/%2F/amq.topic/publish", body("ok"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = tom
        .post("/api/exchanges/%2F/amq.topic/publish", body("no"))
        .await;
    // RabbitMQ's management plugin passes the channel close on as a 400.
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["reason"],
        format!("403 {}", refusal("write", "no", "amq.topic"))
    );
    b.stop().await;
}
