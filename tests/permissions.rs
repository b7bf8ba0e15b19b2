//! Resource permissions (configure / write / read patterns) checked where RabbitMQ checks them,
//! through lapin as a non-administrator user whose permissions are set with the HTTP API; a
//! refusal closes the channel with 403 and RabbitMQ's text; changes apply to open connections.

use crate::common;
use crate::raw_amqp;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use raw_amqp::{reply_code, reply_text};
use serde_json::json;

/// Create user `bob` (password `pw`) with these patterns in `/`.
async fn bob(b: &Broker, configure: &str, write: &str, read: &str) {
    let http = b.http();
    let r = http
        .put("/api/users/bob", json!({"password": "pw", "tags": ""}))
        .await;
    assert!(r.status == 201 || r.status == 204, "{}", r.body);
    grant(b, configure, write, read).await;
}

/// Set bob's patterns in `/`.
async fn grant(b: &Broker, configure: &str, write: &str, read: &str) {
    let r = b
        .http()
        .put(
            "/api/permissions/%2F/bob",
            json!({"configure": configure, "write": write, "read": read}),
        )
        .await;
    assert!(r.status == 201 || r.status == 204, "{}", r.body);
}

async fn connect_bob(b: &Broker) -> (Connection, Channel) {
    let url = format!("amqp://bob:pw@{}/%2f", b.addr());
    let c = Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("bob connects");
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

/// A call refused with 403 ACCESS_REFUSED; returns the reply text.
fn refused<T: std::fmt::Debug>(r: lapin::Result<T>) -> String {
    let e = r.expect_err("expected 403 ACCESS_REFUSED");
    assert_eq!(reply_code(&e), Some(403), "{e:?}");
    assert!(e.is_amqp_soft_error(), "a channel error: {e:?}");
    reply_text(&e).unwrap_or_default()
}

fn refusal(perm: &str, kind: &str, name: &str) -> String {
    format!("ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '/' refused for user 'bob'")
}

async fn admin_declare(b: &Broker, q: &str) {
    let (_c, ch) = b.channel().await;
    declare(&ch, q).await;
}

fn plain() -> QueueDeclareOptions {
    QueueDeclareOptions::default()
}

fn args(key: &str, value: &str) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        key.into(),
        AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
    );
    t
}

/// Publish, then wait for the channel close it causes (publishes are not answered).
async fn publish_refused(c: &Connection, ch: &Channel, exchange: &str, key: &str) -> String {
    let mut events = Box::pin(c.events_listener());
    let _ = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
        .await;
    within(5, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => {
                    assert_eq!(reply_code(&e), Some(403), "{e:?}");
                    return reply_text(&e).unwrap_or_default();
                }
                Some(_) => continue,
                None => panic!("no error event"),
            }
        }
    })
    .await
}

#[tokio::test]
async fn queue_declare_needs_configure_on_the_name() {
    let b = Broker::start().await;
    bob(&b, "^bob\\.", ".*", ".*").await;
    let (_c, ch) = connect_bob(&b).await;
    ch.queue_declare("bob.jobs".into(), plain(), FieldTable::default())
        .await
        .expect("configure matches");
    let text = refused(
        ch.queue_declare("jobs".into(), plain(), FieldTable::default())
            .await,
    );
    assert_eq!(text, refusal("configure", "queue", "jobs"));
    // RabbitMQ's wording, as clients and docs quote it.
    assert!(text.contains("access to queue 'jobs' in vhost '/' refused for user 'bob'"));
    b.stop().await;
}

#[tokio::test]
async fn patterns_are_unanchored_searches() {
    let b = Broker::start().await;
    // "jobs" matches anywhere in the name, as Erlang's re:run does.
    bob(&b, "jobs", "", "").await;
    let (_c, ch) = connect_bob(&b).await;
    ch.queue_declare("old-jobs-2".into(), plain(), FieldTable::default())
        .await
        .expect("unanchored match");
    refused(
        ch.queue_declare("tasks".into(), plain(), FieldTable::default())
            .await,
    );
    b.stop().await;
}

#[tokio::test]
async fn passive_declares_need_no_permission() {
    let b = Broker::start().await;
    admin_declare(&b, "existing").await;
    bob(&b, "", "", "").await;
    let (_c, ch) = connect_bob(&b).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..plain()
    };
    ch.queue_declare("existing".into(), passive, FieldTable::default())
        .await
        .expect("passive queue.declare");
    ch.exchange_declare(
        "amq.topic".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive exchange.declare");
    b.stop().await;
}

#[tokio::test]
async fn server_named_queue_needs_configure_on_the_generated_name() {
    let b = Broker::start().await;
    bob(&b, "^amq\\.gen-", "", "").await;
    let (c, ch) = connect_bob(&b).await;
    let q = ch
        .queue_declare("".into(), plain(), FieldTable::default())
        .await
        .expect("amq.gen-* allowed");
    assert!(q.name().as_str().starts_with("amq.gen-"));
    drop(c);
    grant(&b, "^mine$", "", "").await;
    let (_c, ch) = connect_bob(&b).await;
    let text = refused(
        ch.queue_declare("".into(), plain(), FieldTable::default())
            .await,
    );
    assert!(
        text.starts_with("ACCESS_REFUSED - configure access to queue 'amq.gen-"),
        "{text}"
    );
    b.stop().await;
}

#[tokio::test]
async fn queue_delete_needs_configure_and_purge_needs_read() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, "^other$", "", "^other$").await;
    let (c, ch) = connect_bob(&b).await;
    let text = refused(
        ch.queue_delete("q".into(), QueueDeleteOptions::default())
            .await,
    );
    assert_eq!(text, refusal("configure", "queue", "q"));
    let ch = c.create_channel().await.unwrap();
    let text = refused(
        ch.queue_purge("q".into(), QueuePurgeOptions::default())
            .await,
    );
    assert_eq!(text, refusal("read", "queue", "q"));
    grant(&b, "^q$", "", "^q$").await;
    let ch = c.create_channel().await.unwrap();
    ch.queue_purge("q".into(), QueuePurgeOptions::default())
        .await
        .expect("purge with read");
    ch.queue_delete("q".into(), QueueDeleteOptions::default())
        .await
        .expect("delete with configure");
    b.stop().await;
}

#[tokio::test]
async fn exchange_declare_and_delete_need_configure() {
    let b = Broker::start().await;
    bob(&b, "^logs$", "", "").await;
    let (c, ch) = connect_bob(&b).await;
    ch.exchange_declare(
        "logs".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("configure on logs");
    let text = refused(
        ch.exchange_declare(
            "audit".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await,
    );
    assert_eq!(text, refusal("configure", "exchange", "audit"));
    let ch = c.create_channel().await.unwrap();
    ch.exchange_delete("logs".into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete with configure");
    grant(&b, "", "", "").await;
    let ch = c.create_channel().await.unwrap();
    ch.exchange_declare(
        "audit".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect_err("no configure at all");
    b.stop().await;
}

#[tokio::test]
async fn alternate_exchange_needs_write_on_it_and_read_on_the_new_exchange() {
    let b = Broker::start().await;
    bob(&b, ".*", "^ae$", "").await;
    let (c, ch) = connect_bob(&b).await;
    let text = refused(
        ch.exchange_declare(
            "x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            args("alternate-exchange", "ae"),
        )
        .await,
    );
    assert_eq!(text, refusal("read", "exchange", "x"));
    grant(&b, ".*", "^nope$", "^x$").await;
    let ch = c.create_channel().await.unwrap();
    let text = refused(
        ch.exchange_declare(
            "x".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            args("alternate-exchange", "ae"),
        )
        .await,
    );
    assert_eq!(text, refusal("write", "exchange", "ae"));
    grant(&b, ".*", "^ae$", "^x$").await;
    let ch = c.create_channel().await.unwrap();
    ch.exchange_declare(
        "x".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args("alternate-exchange", "ae"),
    )
    .await
    .expect("read on x, write on ae");
    b.stop().await;
}

#[tokio::test]
async fn dead_letter_exchange_needs_write_on_it_and_read_on_the_queue() {
    let b = Broker::start().await;
    bob(&b, ".*", "", ".*").await;
    let (c, ch) = connect_bob(&b).await;
    let text = refused(
        ch.queue_declare(
            "work".into(),
            plain(),
            args("x-dead-letter-exchange", "dlx"),
        )
        .await,
    );
    assert_eq!(text, refusal("write", "exchange", "dlx"));
    grant(&b, ".*", "^dlx$", ".*").await;
    let ch = c.create_channel().await.unwrap();
    ch.queue_declare(
        "work".into(),
        plain(),
        args("x-dead-letter-exchange", "dlx"),
    )
    .await
    .expect("write on dlx");
    b.stop().await;
}

#[tokio::test]
async fn queue_bind_needs_write_on_queue_and_read_on_exchange() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, "", "^q$", "").await;
    let (c, ch) = connect_bob(&b).await;
    let bind = |ch: Channel| async move {
        ch.queue_bind(
            "q".into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    };
    let text = refused(bind(ch).await);
    assert_eq!(text, refusal("read", "exchange", "amq.direct"));
    grant(&b, "", "", "^amq\\.direct$").await;
    let text = refused(bind(c.create_channel().await.unwrap()).await);
    assert_eq!(text, refusal("write", "queue", "q"));
    grant(&b, "", "^q$", "^amq\\.direct$").await;
    let ch = c.create_channel().await.unwrap();
    bind(ch.clone()).await.expect("bind");
    ch.queue_unbind(
        "q".into(),
        "amq.direct".into(),
        "k".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    grant(&b, "", "", "^amq\\.direct$").await;
    let text = refused(
        c.create_channel()
            .await
            .unwrap()
            .queue_unbind(
                "q".into(),
                "amq.direct".into(),
                "k".into(),
                FieldTable::default(),
            )
            .await,
    );
    assert_eq!(text, refusal("write", "queue", "q"));
    b.stop().await;
}

#[tokio::test]
async fn exchange_bind_needs_write_on_destination_and_read_on_source() {
    let b = Broker::start().await;
    {
        let (_c, ch) = b.channel().await;
        ch.exchange_declare(
            "dest".into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    bob(&b, "", "^dest$", "^nothing$").await;
    let (c, ch) = connect_bob(&b).await;
    let bind = |ch: Channel| async move {
        ch.exchange_bind(
            "dest".into(),
            "amq.fanout".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
    };
    let text = refused(bind(ch).await);
    assert_eq!(text, refusal("read", "exchange", "amq.fanout"));
    grant(&b, "", "^nothing$", "^amq\\.fanout$").await;
    let text = refused(bind(c.create_channel().await.unwrap()).await);
    assert_eq!(text, refusal("write", "exchange", "dest"));
    grant(&b, "", "^dest$", "^amq\\.fanout$").await;
    let ch = c.create_channel().await.unwrap();
    bind(ch.clone()).await.expect("bind");
    ch.exchange_unbind(
        "dest".into(),
        "amq.fanout".into(),
        "".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    b.stop().await;
}

#[tokio::test]
async fn publish_needs_write_on_the_exchange_and_the_default_is_amq_default() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, "", "^amq\\.default$", "^q$").await;
    let (c, ch) = connect_bob(&b).await;
    publish(&ch, "q", b"ok").await;
    assert_eq!(get_body(&ch, "q").await.as_deref(), Some(&b"ok"[..]));
    let text = publish_refused(&c, &ch, "amq.direct", "q").await;
    assert_eq!(text, refusal("write", "exchange", "amq.direct"));
    grant(&b, "", "^amq\\.direct$", "^q$").await;
    let ch = c.create_channel().await.unwrap();
    let text = publish_refused(&c, &ch, "", "q").await;
    assert_eq!(text, refusal("write", "exchange", "amq.default"));
    b.stop().await;
}

#[tokio::test]
async fn publish_to_a_missing_exchange_without_permission_is_403_not_404() {
    let b = Broker::start().await;
    bob(&b, "", "^other$", "").await;
    let (c, ch) = connect_bob(&b).await;
    let text = publish_refused(&c, &ch, "missing", "k").await;
    assert_eq!(text, refusal("write", "exchange", "missing"));
    b.stop().await;
}

#[tokio::test]
async fn consume_and_get_need_read_on_the_queue() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, "", "", "^other$").await;
    let (c, ch) = connect_bob(&b).await;
    let text = refused(
        ch.basic_consume(
            "q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await,
    );
    assert_eq!(text, refusal("read", "queue", "q"));
    let ch = c.create_channel().await.unwrap();
    let text = refused(ch.basic_get("q".into(), BasicGetOptions::default()).await);
    assert_eq!(text, refusal("read", "queue", "q"));
    grant(&b, "", "", "^q$").await;
    let ch = c.create_channel().await.unwrap();
    ch.basic_consume(
        "q".into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("consume with read");
    b.stop().await;
}

#[tokio::test]
async fn revoking_write_stops_publishes_on_an_open_channel() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, "", ".*", ".*").await;
    let (c, ch) = connect_bob(&b).await;
    // Several publishes: the channel caches its permission for the exchange.
    for _ in 0..3 {
        publish(&ch, "q", b"m").await;
    }
    assert!(get_body(&ch, "q").await.is_some());
    grant(&b, "", "^nothing$", ".*").await;
    // The same channel, the same exchange: the cached permission is stale now.
    let text = publish_refused(&c, &ch, "", "q").await;
    assert_eq!(text, refusal("write", "exchange", "amq.default"));
    b.stop().await;
}

#[tokio::test]
async fn granting_at_run_time_applies_to_an_open_connection() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, "", "", "").await;
    let (c, ch) = connect_bob(&b).await;
    refused(ch.basic_get("q".into(), BasicGetOptions::default()).await);
    grant(&b, "", "", "^q$").await;
    let ch = c.create_channel().await.unwrap();
    ch.basic_get("q".into(), BasicGetOptions::default())
        .await
        .expect("read granted while connected");
    b.stop().await;
}

#[tokio::test]
async fn clearing_permissions_refuses_everything_on_an_open_connection() {
    let b = Broker::start().await;
    admin_declare(&b, "q").await;
    bob(&b, ".*", ".*", ".*").await;
    let (_c, ch) = connect_bob(&b).await;
    ch.basic_get("q".into(), BasicGetOptions::default())
        .await
        .expect("allowed");
    assert_eq!(
        b.http().delete("/api/permissions/%2F/bob").await.status,
        204
    );
    let text = refused(ch.basic_get("q".into(), BasicGetOptions::default()).await);
    assert_eq!(text, refusal("read", "queue", "q"));
    b.stop().await;
}

#[tokio::test]
async fn a_pattern_that_does_not_compile_is_a_bad_request() {
    let b = Broker::start().await;
    bob(&b, ".*", ".*", ".*").await;
    let r = b
        .http()
        .put(
            "/api/permissions/%2F/bob",
            json!({"configure": "(", "write": ".*", "read": ".*"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        b.http().get("/api/permissions/%2F/bob").await.json()["configure"],
        ".*"
    );
    b.stop().await;
}

#[tokio::test]
async fn full_permissions_allow_everything() {
    let b = Broker::start().await;
    bob(&b, ".*", ".*", ".*").await;
    let (_c, ch) = connect_bob(&b).await;
    let q = ch
        .queue_declare("".into(), plain(), FieldTable::default())
        .await
        .unwrap();
    let name = q.name().as_str().to_string();
    ch.queue_bind(
        name.as_str().into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "amq.direct".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"hi",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = within(5, async {
        loop {
            if let Some(m) = get_body(&ch, &name).await {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(got, b"hi");
    b.stop().await;
}

#[tokio::test]
async fn permissions_from_the_config_file_are_enforced() {
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
                name: "bob".into(),
                password: Some("pw".into()),
                password_hash: None,
                tags: vec![],
                vhosts: vec![],
            },
        ];
        c.permissions = vec![warren::config::PermissionConfig {
            user: "bob".into(),
            vhost: "/".into(),
            configure: "^bob\\.".into(),
            write: "".into(),
            read: "".into(),
        }];
    })
    .await;
    let (_c, ch) = connect_bob(&b).await;
    ch.queue_declare("bob.q".into(), plain(), FieldTable::default())
        .await
        .expect("configured pattern");
    let text = refused(
        ch.queue_declare("q".into(), plain(), FieldTable::default())
            .await,
    );
    assert_eq!(text, refusal("configure", "queue", "q"));
    assert_eq!(
        b.http().get("/api/permissions/%2F/bob").await.json()["configure"],
        "^bob\\."
    );
    b.stop().await;
}

#[tokio::test]
async fn the_http_api_checks_a_management_user_s_permissions() {
    let b = Broker::start().await;
    let http = b.http();
    http.put(
        "/api/users/mgr",
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    http.put(
        "/api/permissions/%2F/mgr",
        json!({"configure": "^mgr\\.", "write": "^mgr\\.", "read": ""}),
    )
    .await;
    let mgr = http.as_user("mgr", "pw");
    let r = mgr.put("/api/queues/%2F/mgr.q", json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // RabbitMQ's management plugin: 401, and the reason does not say why.
    let r = mgr.put("/api/queues/%2F/jobs", json!({})).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["reason"], "Access refused.", "{}", r.body);
    let publish = json!({"routing_key": "mgr.q", "payload": "x", "payload_encoding": "string", "properties": {}});
    let r = mgr
        .post("/api/exchanges/%2F/amq.default/publish", publish)
        .await;
    // Publishing passes the channel close on as a 400.
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["reason"],
        "403 ACCESS_REFUSED - write access to exchange 'amq.default' in vhost '/' refused for user 'mgr'"
    );
    let r = mgr
        .post(
            "/api/queues/%2F/mgr.q/get",
            json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        )
        .await;
    // Getting passes the channel's close text on as a 401.
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.json()["reason"],
        "ACCESS_REFUSED - read access to queue 'mgr.q' in vhost '/' refused for user 'mgr'"
    );
    let r = mgr
        .post(
            "/api/bindings/%2F/e/amq.direct/q/mgr.q",
            json!({"routing_key": "k"}),
        )
        .await;
    assert_eq!(r.status, 401, "read on amq.direct is missing: {}", r.body);
    // Administrators are not held to patterns over the API (they can change them anyway).
    assert_eq!(
        http.put("/api/queues/%2F/jobs", json!({})).await.status,
        201
    );
    b.stop().await;
}

#[tokio::test]
async fn put_permission_errors_have_rabbitmq_s_reasons() {
    let b = Broker::start().await;
    bob(&b, ".*", ".*", ".*").await;
    let http = b.http();
    let r = http
        .put("/api/permissions/%2F/bob", json!({"configure": ".*"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "[{key_missing,write},{key_missing,read}]"
    );
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    for path in [
        "/api/permissions/%2F/nobody",
        "/api/permissions/nowhere/bob",
    ] {
        let r = http.put(path, all.clone()).await;
        assert_eq!(r.status, 400, "{path}");
        assert_eq!(r.json()["reason"], "vhost_or_user_not_found", "{path}");
    }
    b.stop().await;
}

/// Deleting a vhost deletes the permissions in it for good: a vhost of the same name created
/// again, also after a restart, grants nothing until permissions are set again.
#[tokio::test]
async fn permissions_of_a_deleted_vhost_do_not_come_back_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::durability::start(dir.path()).await;
    let http = b.http();
    assert_eq!(http.put("/api/vhosts/v1", json!({})).await.status, 201);
    let r = http
        .put("/api/users/u1", json!({"password": "pw", "tags": ""}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    let r = http.put("/api/permissions/v1/u1", all).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let topic = json!({"exchange": "amq.topic", "write": ".*", "read": ".*"});
    let r = http.put("/api/topic-permissions/v1/u1", topic).await;
    assert!(r.status == 201 || r.status == 204, "{}", r.body);
    assert_eq!(http.delete("/api/vhosts/v1").await.status, 204);
    let b = common::durability::restart(b).await;
    let http = b.http();
    assert_eq!(http.put("/api/vhosts/v1", json!({})).await.status, 201);
    assert_eq!(http.get("/api/permissions/v1/u1").await.status, 404);
    let r = http.get("/api/topic-permissions/v1/u1").await;
    assert!(
        r.status == 404 || r.json().as_array().is_some_and(|a| a.is_empty()),
        "{} {}",
        r.status,
        r.body
    );
    b.stop().await;
}
