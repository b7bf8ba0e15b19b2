//! `GET`/`POST /api/definitions`: a RabbitMQ export imports into warren (and works over AMQP),
//! and warren's export has RabbitMQ's shape and imports into a fresh broker unchanged.

use crate::common;

use common::*;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};

fn rabbitmq_export() -> Value {
    serde_json::from_str(include_str!("data/rabbitmq-definitions.json")).unwrap()
}

#[tokio::test]
async fn a_rabbitmq_export_imports_and_routes() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http.post("/api/definitions", rabbitmq_export()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let q = http.get("/api/queues/shop/orders.created").await.json();
    assert_eq!(q["arguments"]["x-max-length"], 10000);
    assert_eq!(
        http.get("/api/queues/shop/audit").await.json()["type"],
        "stream"
    );
    assert_eq!(
        http.get("/api/exchanges/shop/orders").await.json()["type"],
        "topic"
    );
    let v = http.get("/api/vhosts/shop").await.json();
    assert_eq!(v["description"], "the shop");
    assert_eq!(
        http.get("/api/users/ops").await.json()["tags"],
        json!(["administrator", "monitoring"])
    );
    assert_eq!(
        http.get("/api/permissions/shop/orders-svc").await.json()["configure"],
        "^orders\\."
    );
    // The imported user logs in with the password behind its RabbitMQ hash ("guest").
    let url = format!("amqp://ops:guest@{}/shop", b.addr());
    let c = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.basic_publish(
        "orders".into(),
        "order.created.eu".into(),
        Default::default(),
        b"o1",
        Default::default(),
    )
    .await
    .unwrap();
    ch.basic_publish(
        "orders".into(),
        "order.failed".into(),
        Default::default(),
        b"f1",
        Default::default(),
    )
    .await
    .unwrap();
    let m = within(5, async {
        loop {
            if let Some(m) = get_body(&ch, "orders.created").await {
                break m;
            }
        }
    })
    .await;
    assert_eq!(m, b"o1");
    let d = within(5, async {
        loop {
            if let Some(m) = get_body(&ch, "orders.dlq").await {
                break m;
            }
        }
    })
    .await;
    assert_eq!(d, b"f1");
}

#[tokio::test]
async fn export_has_rabbitmqs_shape_and_round_trips() {
    let b = Broker::start().await;
    let http = b.http();
    http.post("/api/definitions", rabbitmq_export()).await;
    let exp = http.get("/api/definitions").await.json();
    for key in [
        "rabbit_version",
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert!(exp.get(key).is_some(), "{key} missing");
    }
    let q = exp["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "orders.created")
        .unwrap();
    assert_eq!(q["vhost"], "shop");
    assert_eq!(q["durable"], true);
    assert!(exp["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| !e["name"].as_str().unwrap().starts_with("amq.")));
    assert_eq!(exp["bindings"].as_array().unwrap().len(), 4);
    let u = exp["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "guest")
        .unwrap();
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");

    // Into a fresh broker: the same definitions come out.
    let b2 = Broker::start().await;
    let h2 = b2.http();
    let r = h2.post("/api/definitions", exp.clone()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let exp2 = h2.get("/api/definitions").await.json();
    for key in ["queues", "exchanges", "bindings", "permissions", "vhosts"] {
        assert_eq!(exp[key], exp2[key], "{key} differs");
    }
    // Per vhost.
    let shop = http.get("/api/definitions/shop").await.json();
    assert_eq!(shop["queues"].as_array().unwrap().len(), 3);
    assert!(shop["queues"][0].get("vhost").is_none());
    let r = h2
        .post(
            "/api/definitions/%2F",
            json!({"queues": [{"name": "moved", "durable": true}]}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(h2.get("/api/queues/%2F/moved").await.status, 200);
}

#[tokio::test]
async fn bad_definitions_are_400() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(
        http.post("/api/definitions", json!([1, 2])).await.status,
        400
    );
    assert_eq!(
        http.post(
            "/api/definitions",
            json!({"queues": [{"name": "q", "vhost": "missing"}]})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        http.post(
            "/api/definitions",
            json!({"exchanges": [{"name": "x", "vhost": "/", "type": "x-delayed-message"}]})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        http.post("/api/definitions", json!({"users": [{"name": "nopw"}]}))
            .await
            .status,
        400
    );
    assert_eq!(
        http.post("/api/definitions", json!({"queues": "all"}))
            .await
            .status,
        400
    );
}

/// RabbitMQ exports a user without a password with an empty `password_hash`: such a
/// definitions file imports, and the user exists but no password opens it.
#[tokio::test]
async fn a_user_without_a_password_imports_and_cannot_log_in() {
    let b = Broker::start().await;
    let http = b.http();
    let doc = json!({"users": [{"name": "x509user", "password_hash": "",
        "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["monitoring"]}]});
    let r = http.post("/api/definitions", doc).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let u = http.get("/api/users/x509user").await.json();
    assert_eq!(u["password_hash"], "");
    assert_eq!(
        http.as_user("x509user", "")
            .get("/api/overview")
            .await
            .status,
        401
    );
    let export = http.get("/api/definitions").await.json();
    let users = export["users"].as_array().unwrap();
    assert!(users
        .iter()
        .any(|u| u["name"] == "x509user" && u["password_hash"] == ""));
}
