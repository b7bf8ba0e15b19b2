//! RabbitMQ's vhost limits (`max-connections`, `max-queues`) and user limits
//! (`max-connections`, `max-channels`), set through the HTTP API: reaching one gets RabbitMQ's
//! code and text, giving a resource back makes room again, and the limits survive a restart.

use crate::common;
use crate::raw_amqp;

use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use raw_amqp::{reply_code, reply_text};
use serde_json::json;

async fn connect_as(b: &Broker, user: &str, pw: &str) -> lapin::Result<Connection> {
    let url = format!("amqp://{user}:{pw}@{}/%2f", b.addr());
    Connection::connect(&url, ConnectionProperties::default()).await
}

async fn user_with_access(b: &Broker, name: &str) {
    let http = b.http();
    let r = http
        .put(
            &format!("/api/users/{name}"),
            json!({"password": "pw", "tags": ""}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http
        .put(
            &format!("/api/permissions/%2F/{name}"),
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

fn refused_with(r: lapin::Result<Connection>, code: u16) -> String {
    let e = r.expect_err("connection refused");
    assert_eq!(reply_code(&e), Some(code), "{e:?}");
    reply_text(&e).unwrap_or_default()
}

#[tokio::test]
async fn vhost_max_connections_refuses_the_next_connection_with_530() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .put("/api/vhost-limits/%2F/max-connections", json!({"value": 1}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        http.get("/api/vhost-limits").await.json(),
        json!([{"vhost": "/", "value": {"max-connections": 1}}])
    );
    let first = b.connect().await;
    let text = refused_with(connect_as(&b, "guest", "guest").await, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - access to vhost '/' refused for user 'guest': connection limit (1) is reached"
    );
    first.close(200, "bye".into()).await.unwrap();
    // The place is given back when the connection ends.
    within(5, async {
        loop {
            if connect_as(&b, "guest", "guest").await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn clearing_a_vhost_limit_lifts_it() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/vhost-limits/%2F/max-connections", json!({"value": 0}))
        .await;
    refused_with(connect_as(&b, "guest", "guest").await, 530);
    assert_eq!(
        http.delete("/api/vhost-limits/%2F/max-connections")
            .await
            .status,
        204
    );
    assert_eq!(http.get("/api/vhost-limits/%2F").await.json(), json!([]));
    connect_as(&b, "guest", "guest").await.expect("no limit");
    b.stop().await;
}

#[tokio::test]
async fn vhost_max_queues_refuses_new_queues_with_406() {
    let b = Broker::start().await;
    b.http()
        .put("/api/vhost-limits/%2F/max-queues", json!({"value": 1}))
        .await;
    let (c, ch) = b.channel().await;
    declare(&ch, "q1").await;
    // Redeclaring an existing queue creates nothing.
    declare(&ch, "q1").await;
    let e = ch
        .queue_declare(
            "q2".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("over max-queues");
    assert_eq!(reply_code(&e), Some(406), "{e:?}");
    assert_eq!(
        reply_text(&e).unwrap(),
        "PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost '/' (1) is reached"
    );
    let ch = c.create_channel().await.unwrap();
    ch.queue_delete("q1".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    declare(&ch, "q2").await;
    b.stop().await;
}

#[tokio::test]
async fn user_max_connections_refuses_the_next_connection_with_530() {
    let b = Broker::start().await;
    user_with_access(&b, "bob").await;
    let r = b
        .http()
        .put("/api/user-limits/bob/max-connections", json!({"value": 1}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let _first = connect_as(&b, "bob", "pw").await.expect("first");
    let text = refused_with(connect_as(&b, "bob", "pw").await, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - connection refused for user 'bob': user connection limit (1) is reached"
    );
    // Other users are not affected.
    connect_as(&b, "guest", "guest").await.expect("guest");
    b.stop().await;
}

#[tokio::test]
async fn user_max_channels_counts_every_connection_of_the_user() {
    let b = Broker::start().await;
    user_with_access(&b, "bob").await;
    b.http()
        .put("/api/user-limits/bob/max-channels", json!({"value": 2}))
        .await;
    let a = connect_as(&b, "bob", "pw").await.unwrap();
    let c = connect_as(&b, "bob", "pw").await.unwrap();
    let _ch1 = a.create_channel().await.expect("first channel");
    let _ch2 = c.create_channel().await.expect("second channel");
    let mut events = Box::pin(c.events_listener());
    let e = c.create_channel().await.expect_err("third channel");
    assert_eq!(reply_code(&e), Some(530), "{e:?}");
    let e = within(5, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("no error event"),
            }
        }
    })
    .await;
    assert!(e.is_amqp_hard_error(), "a connection error: {e:?}");
    assert_eq!(
        reply_text(&e).unwrap(),
        "NOT_ALLOWED - number of channels opened for user 'bob' has reached the maximum allowed user limit of (2)"
    );
    // Once the closed connection is gone, its channel is given back: the other connection
    // may open one.
    let http = b.http();
    common::http::eventually(5, || {
        let http = http.clone();
        async move {
            let n = http.get("/api/connections").await.json().as_array()?.len();
            (n == 1).then_some(())
        }
    })
    .await;
    a.create_channel().await.expect("a channel again");
    b.stop().await;
}

#[tokio::test]
async fn limits_are_listed_and_validated() {
    let b = Broker::start().await;
    user_with_access(&b, "bob").await;
    let http = b.http();
    http.put("/api/user-limits/bob/max-channels", json!({"value": 5}))
        .await;
    assert_eq!(
        http.get("/api/user-limits").await.json(),
        json!([{"user": "bob", "value": {"max-channels": 5}}])
    );
    assert_eq!(
        http.get("/api/users/bob").await.json()["limits"],
        json!({"max-channels": 5})
    );
    let bad = [
        ("/api/user-limits/bob/max-queues", json!({"value": 1})),
        ("/api/vhost-limits/%2F/max-channels", json!({"value": 1})),
        ("/api/vhost-limits/%2F/max-queues", json!({"value": "ten"})),
        ("/api/vhost-limits/%2F/max-queues", json!({})),
    ];
    for (path, body) in bad {
        let r = http.put(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
    }
    // As RabbitMQ: a missing value, user or vhost.
    let r = http
        .put("/api/vhost-limits/%2F/max-queues", json!({}))
        .await;
    assert_eq!(r.json()["reason"], "[{key_missing,value}]");
    let r = http
        .put("/api/user-limits/nobody/max-channels", json!({"value": 1}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http
        .put("/api/vhost-limits/nowhere/max-queues", json!({"value": 1}))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["reason"], "vhost_not_found");
    // Only administrators change limits.
    let bob = http.as_user("bob", "pw");
    let r = bob
        .put("/api/vhost-limits/%2F/max-queues", json!({"value": 1}))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    b.stop().await;
}

#[tokio::test]
async fn limits_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), |_| {}).await;
    user_with_access(&b, "bob").await;
    let http = b.http();
    http.put("/api/vhost-limits/%2F/max-queues", json!({"value": 7}))
        .await;
    http.put("/api/user-limits/bob/max-connections", json!({"value": 3}))
        .await;
    b.stop().await;

    let b = Broker::start_in(dir.path(), |_| {}).await;
    let http = b.http();
    assert_eq!(
        http.get("/api/vhost-limits").await.json(),
        json!([{"vhost": "/", "value": {"max-queues": 7}}])
    );
    assert_eq!(
        http.get("/api/user-limits/bob").await.json(),
        json!([{"user": "bob", "value": {"max-connections": 3}}])
    );
    let defs = http.get("/api/definitions").await.json();
    assert!(
        defs["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["component"] == "vhost-limits" && p["value"]["max-queues"] == 7),
        "{defs}"
    );
    b.stop().await;
}
