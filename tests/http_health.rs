//! Health checks and the small read-only endpoints: port and protocol listeners, virtual hosts,
//! aliveness test, and the node-wide lists.

use crate::common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn listener_and_aliveness_checks() {
    let b = Broker::start().await;
    let http = b.http();
    let amqp = b.addr().port();
    let r = http
        .get(&format!("/api/health/checks/port-listener/{amqp}"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let r = http.get("/api/health/checks/port-listener/1").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "failed");
    assert_eq!(
        http.get("/api/health/checks/port-listener/x").await.status,
        400
    );
    assert_eq!(
        http.get("/api/health/checks/protocol-listener/amqp")
            .await
            .status,
        200
    );
    assert_eq!(
        http.get("/api/health/checks/protocol-listener/mqtt")
            .await
            .status,
        503
    );
    assert_eq!(
        http.get("/api/health/checks/virtual-hosts").await.status,
        200
    );
    assert_eq!(
        http.get("/api/health/checks/local-alarms").await.status,
        200
    );
    assert_eq!(
        http.get("/api/health/checks/ready-to-serve-clients")
            .await
            .json(),
        json!({"status": "ok"})
    );
    let r = http.get("/api/aliveness-test/%2F").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(http.get("/api/aliveness-test/nope").await.status, 404);
    assert_eq!(
        http.anonymous()
            .get("/api/health/checks/alarms")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn node_wide_lists() {
    let b = Broker::start().await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "l").await;
    let _consumer = ch
        .basic_consume(
            "l".into(),
            "t".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let ex = http.get("/api/exchanges").await.json();
    assert_eq!(ex.as_array().unwrap().len(), 6);
    let bs = http.get("/api/bindings").await.json();
    assert_eq!(bs[0]["source"], "");
    assert_eq!(bs[0]["destination"], "l");
    assert_eq!(bs[0]["properties_key"], "l");
    let cs = http.get("/api/consumers").await.json();
    assert_eq!(cs[0]["consumer_tag"], "t");
    let us = http.get("/api/users").await.json();
    assert_eq!(us[0]["name"], "guest");
    assert_eq!(
        http.get("/api/permissions").await.json()[0]["user"],
        "guest"
    );
    assert_eq!(http.get("/api/extensions").await.json(), json!([]));
    assert_eq!(http.get("/api/policies").await.json(), json!([]));
    assert_eq!(http.get("/api/consumers/nope").await.status, 404);
    assert_eq!(http.get("/api/bindings/nope").await.status, 404);
    assert_eq!(http.get("/api/exchanges/nope").await.status, 404);
}
