//! `/api/exchanges` and `/api/bindings`: declare, publish through the API (`routed`), create
//! and delete bindings by their `properties_key`, exchange message_stats.

use crate::common;

use common::http::eventually;
use common::*;
use serde_json::json;

#[tokio::test]
async fn declare_show_and_delete_an_exchange() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .put(
            "/api/exchanges/%2F/logs",
            json!({"type": "topic", "durable": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        http.put(
            "/api/exchanges/%2F/logs",
            json!({"type": "topic", "durable": true})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        http.put("/api/exchanges/%2F/logs", json!({"type": "fanout"}))
            .await
            .status,
        400
    );
    // Durable is not the default: the same declaration without it is inequivalent.
    assert_eq!(
        http.put("/api/exchanges/%2F/logs", json!({"type": "topic"}))
            .await
            .status,
        400
    );
    assert_eq!(
        http.put("/api/exchanges/%2F/x", json!({"type": "weird"}))
            .await
            .status,
        400
    );
    assert_eq!(
        http.put("/api/exchanges/%2F/amq.mine", json!({"type": "direct"}))
            .await
            .status,
        401
    );
    let e = http.get("/api/exchanges/%2F/logs").await.json();
    assert_eq!(e["type"], "topic");
    assert_eq!(e["durable"], true);
    assert_eq!(e["vhost"], "/");
    let d = http.get("/api/exchanges/%2F/amq.default").await.json();
    assert_eq!(d["name"], "");
    assert_eq!(d["type"], "direct");
    let all = http.get("/api/exchanges/%2F").await.json();
    assert_eq!(all.as_array().unwrap().len(), 7);
    assert_eq!(http.delete("/api/exchanges/%2F/logs").await.status, 204);
    assert_eq!(http.get("/api/exchanges/%2F/logs").await.status, 404);
    assert_eq!(http.delete("/api/exchanges/%2F/logs").await.status, 404);
    assert_eq!(
        http.delete("/api/exchanges/%2F/amq.direct").await.status,
        401
    );
}

#[tokio::test]
async fn bindings_by_properties_key() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/exchanges/%2F/ex", json!({"type": "direct"}))
        .await;
    http.put("/api/queues/%2F/q", json!({})).await;
    let r = http
        .post("/api/bindings/%2F/e/ex/q/q", json!({"routing_key": "a/b"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("location"), Some("./a%2Fb"));
    let r = http
        .post(
            "/api/bindings/%2F/e/ex/q/q",
            json!({"routing_key": "", "arguments": {"x": 1}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let list = http.get("/api/bindings/%2F/e/ex/q/q").await.json();
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert!(list.iter().any(|b| b["properties_key"] == "a%2Fb"));
    // Both the default exchange's implicit binding and ours.
    let all = http.get("/api/queues/%2F/q/bindings").await.json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert!(all.as_array().unwrap().iter().any(|b| b["source"] == ""));
    // AMQP routing uses the binding made through the API.
    let (_c, ch) = b.channel().await;
    ch.basic_publish(
        "ex".into(),
        "a/b".into(),
        Default::default(),
        b"via-binding",
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        within(5, async {
            loop {
                if let Some(m) = get_body(&ch, "q").await {
                    break m;
                }
            }
        })
        .await,
        b"via-binding"
    );
    // Delete by properties_key (percent-encoded once more in the URL).
    let with_args = list.iter().find(|b| b["routing_key"] == "").unwrap()["properties_key"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!(
        "/api/bindings/%2F/e/ex/q/q/{}",
        with_args.replace('%', "%25")
    );
    assert_eq!(http.get(&path).await.status, 200);
    assert_eq!(http.delete(&path).await.status, 204);
    assert_eq!(http.delete(&path).await.status, 404);
    assert_eq!(
        http.delete("/api/bindings/%2F/e/ex/q/q/a%252Fb")
            .await
            .status,
        204
    );
    let list = http.get("/api/bindings/%2F/e/ex/q/q").await.json();
    assert_eq!(list, json!([]));
    assert_eq!(
        http.post("/api/bindings/%2F/e/ex/q/missing", json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        http.post("/api/bindings/%2F/e/amq.default/q/q", json!({}))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn exchange_to_exchange_bindings() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/exchanges/%2F/src", json!({"type": "fanout"}))
        .await;
    http.put("/api/exchanges/%2F/dst", json!({"type": "fanout"}))
        .await;
    http.put("/api/queues/%2F/end", json!({})).await;
    assert_eq!(
        http.post("/api/bindings/%2F/e/src/e/dst", json!({}))
            .await
            .status,
        201
    );
    assert_eq!(
        http.post("/api/bindings/%2F/e/dst/q/end", json!({}))
            .await
            .status,
        201
    );
    let src = http
        .get("/api/exchanges/%2F/src/bindings/source")
        .await
        .json();
    assert_eq!(src[0]["destination"], "dst");
    assert_eq!(src[0]["destination_type"], "exchange");
    let dst = http
        .get("/api/exchanges/%2F/dst/bindings/destination")
        .await
        .json();
    assert_eq!(dst.as_array().unwrap().len(), 1);
    let r = http
        .post(
            "/api/exchanges/%2F/src/publish",
            json!({"routing_key": "", "payload": "hop", "payload_encoding": "string", "properties": {}}),
        )
        .await;
    assert_eq!(r.json()["routed"], true);
    assert_eq!(
        http.delete("/api/bindings/%2F/e/src/e/dst/~").await.status,
        204
    );
    let r = http
        .post(
            "/api/exchanges/%2F/src/publish",
            json!({"routing_key": "", "payload": "x"}),
        )
        .await;
    assert_eq!(r.json()["routed"], false);
}

#[tokio::test]
async fn publish_through_the_api_reaches_amqp_consumers() {
    let b = Broker::start_with(|c| c.http.collect_statistics_interval = 100).await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "inbox").await;
    let r = http
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({
                "routing_key": "inbox",
                "payload": "aGk=",
                "payload_encoding": "base64",
                "properties": {"delivery_mode": 2, "headers": {"k": "v"}, "content_type": "text/plain"},
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"routed": true}));
    let m = ch
        .basic_get(
            "inbox".into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"hi");
    assert_eq!(
        m.delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str()),
        Some("text/plain")
    );
    assert_eq!(*m.delivery.properties.delivery_mode(), Some(2));
    let r = http
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"routing_key": "nobody", "payload": "x"}),
        )
        .await;
    assert_eq!(r.json(), json!({"routed": false}));
    assert_eq!(
        http.post("/api/exchanges/%2F/amq.default/publish", json!({}))
            .await
            .status,
        400
    );
    let r = http
        .post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"payload": "x", "properties": {"delivery_mode": 900}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        http.post("/api/exchanges/%2F/nope/publish", json!({"payload": "x"}))
            .await
            .status,
        404
    );
    // publish_in counts both, publish_out only the routed one.
    let e = eventually(5, || {
        let http = http.clone();
        async move {
            let e = http.get("/api/exchanges/%2F/amq.default").await.json();
            (e["message_stats"]["publish_in"] == 2).then_some(e)
        }
    })
    .await;
    assert_eq!(e["message_stats"]["publish_out"], 1);
}

/// A bare body declares what RabbitMQ declares: a transient direct exchange.
#[tokio::test]
async fn a_bare_exchange_body_is_a_transient_direct_exchange() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http.put("/api/exchanges/%2F/bare", json!({})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let e = http.get("/api/exchanges/%2F/bare").await.json();
    assert_eq!(e["type"], "direct");
    assert_eq!(e["durable"], false);
    assert_eq!(e["incoming"], json!([]));
    assert_eq!(e["outgoing"], json!([]));
}
