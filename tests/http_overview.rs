//! `/api/overview`, `/api/nodes`, `/api/whoami` against a live broker with real AMQP traffic:
//! the counts in `message_stats` are what the test did, and rates appear once sampled.

use crate::common;

use common::http::eventually;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn overview_counts_match_the_traffic() {
    let b = Broker::start_with(|c| c.http.collect_statistics_interval = 100).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "work").await;
    for i in 0..7 {
        publish(&ch, "work", format!("m{i}").as_bytes()).await;
    }
    // Unroutable, not mandatory: dropped.
    publish(&ch, "nowhere", b"x").await;
    for _ in 0..3 {
        assert!(get_body(&ch, "work").await.is_some());
    }
    let http = b.http();
    let o = eventually(10, || {
        let http = http.clone();
        async move {
            let o = http.get("/api/overview").await.json();
            (o["queue_totals"]["messages"] == 4).then_some(o)
        }
    })
    .await;
    let ms = &o["message_stats"];
    assert_eq!(ms["publish"], 8, "{ms}");
    assert_eq!(ms["drop_unroutable"], 1);
    assert_eq!(ms["get_no_ack"], 3);
    assert_eq!(ms["deliver_get"], 3);
    assert_eq!(ms["ack"], 0);
    assert!(ms["publish_details"]["rate"].is_number());
    assert_eq!(o["queue_totals"]["messages_ready"], 4);
    assert_eq!(o["object_totals"]["queues"], 1);
    assert_eq!(o["object_totals"]["connections"], 1);
    assert_eq!(o["object_totals"]["channels"], 1);
    // 6 predeclared exchanges in "/".
    assert_eq!(o["object_totals"]["exchanges"], 6);
    assert!(o["node"].as_str().unwrap().starts_with("warren@"));
    assert!(o["rabbitmq_version"].is_string());
    assert!(o["uptime"].as_u64().is_some());

    // Rates: publish more, and the sampled publish rate goes above zero.
    for _ in 0..50 {
        publish(&ch, "work", b"r").await;
    }
    eventually(10, || {
        let http = http.clone();
        async move {
            let o = http.get("/api/overview").await.json();
            let r = o["message_stats"]["publish_details"]["rate"]
                .as_f64()
                .unwrap();
            (r > 0.0).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn closed_connections_keep_their_counts() {
    let b = Broker::start().await;
    {
        let (c, ch) = b.channel().await;
        declare(&ch, "q").await;
        publish(&ch, "q", b"1").await;
        publish(&ch, "q", b"2").await;
        c.close(200, "bye".into()).await.unwrap();
    }
    let http = b.http();
    let o = eventually(10, || {
        let http = http.clone();
        async move {
            let o = http.get("/api/overview").await.json();
            (o["object_totals"]["connections"] == 0).then_some(o)
        }
    })
    .await;
    assert_eq!(o["message_stats"]["publish"], 2);
}

#[tokio::test]
async fn nodes_and_whoami() {
    let b = Broker::start().await;
    let http = b.http();
    let nodes = http.get("/api/nodes").await;
    assert_eq!(nodes.status, 200);
    let n = &nodes.json()[0];
    assert!(n["mem_used"].as_u64().unwrap() > 0);
    assert_eq!(n["mem_alarm"], false);
    assert_eq!(n["disk_free_alarm"], false);
    assert!(n["disk_free"].as_u64().is_some());
    assert_eq!(n["running"], true);
    let name = n["name"].as_str().unwrap().to_string();
    assert_eq!(http.get(&format!("/api/nodes/{name}")).await.status, 200);
    assert_eq!(http.get("/api/nodes/nobody@nowhere").await.status, 404);
    let me = http.get("/api/whoami").await.json();
    assert_eq!(me["name"], "guest");
    assert_eq!(me["tags"], Value::from(vec!["administrator"]));
    assert_eq!(http.get("/api/cluster-name").await.json()["name"], "warren");
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http.get("/api/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "Object Not Found");
    let r = http.post("/api/overview", serde_json::json!({})).await;
    assert_eq!(r.status, 405);
    assert!(r.json()["error"].is_string());
    // A path segment that is not UTF-8 after decoding: 400, JSON.
    let r = http.get("/api/queues/%FF").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["reason"].is_string());
}
