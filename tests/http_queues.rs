//! `/api/queues`: declare, show, list, delete, purge, get, and per-queue message_stats that
//! match real AMQP traffic.

use crate::common;

use common::http::eventually;
use common::*;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::json;

#[tokio::test]
async fn put_creates_then_is_idempotent_and_refuses_inequivalent() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .put("/api/queues/%2F/jobs", json!({"durable": true}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        http.put("/api/queues/%2F/jobs", json!({"durable": true}))
            .await
            .status,
        204
    );
    let r = http
        .put("/api/queues/%2F/jobs", json!({"durable": false}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("inequivalent arg 'durable'"));
    // The queue is real: AMQP sees it.
    let (_c, ch) = b.channel().await;
    publish(&ch, "jobs", b"x").await;
    let q = eventually(5, || {
        let http = http.clone();
        async move {
            let q = http.get("/api/queues/%2F/jobs").await.json();
            (q["messages"] == 1).then_some(q)
        }
    })
    .await;
    assert_eq!(q["name"], "jobs");
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["durable"], true);
    assert_eq!(q["type"], "classic");
    assert_eq!(q["messages_ready"], 1);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["consumers"], 0);
    assert!(q["memory"].as_u64().is_some());
}

#[tokio::test]
async fn bad_bodies_and_missing_queues() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .request("PUT", "/api/queues/%2F/q", Some("{not json".into()), &[])
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    let r = http
        .put("/api/queues/%2F/q", json!({"durable": "maybe"}))
        .await;
    assert_eq!(r.status, 400);
    let r = http.put("/api/queues/%2F/amq.q", json!({})).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Access refused.");
    let r = http
        .put("/api/queues/%2F/q", json!({"exclusive": true}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(http.get("/api/queues/%2F/missing").await.status, 404);
    assert_eq!(http.delete("/api/queues/%2F/missing").await.status, 404);
    assert_eq!(http.get("/api/queues/nope").await.status, 404);
    assert_eq!(http.get("/api/queues/nope/q").await.status, 404);
    let r = http
        .post("/api/queues/%2F/missing/get", json!({"count": 1}))
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn message_stats_follow_publish_consume_and_ack() {
    let b = Broker::start_with(|c| c.http.collect_statistics_interval = 100).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "work").await;
    for i in 0..10 {
        publish(&ch, "work", format!("{i}").as_bytes()).await;
    }
    let (_c2, cons_ch) = b.channel().await;
    cons_ch
        .basic_qos(4, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = cons_ch
        .basic_consume(
            "work".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    use futures_lite::StreamExt;
    // Ack 3 of the first 4 deliveries: 4 unacked at most, 3 acked.
    for i in 0..4 {
        let d = within(5, consumer.next()).await.unwrap().unwrap();
        if i < 3 {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    let http = b.http();
    let q = eventually(10, || {
        let http = http.clone();
        async move {
            let q = http.get("/api/queues/%2F/work").await.json();
            (q["message_stats"]["ack"] == 3 && q["messages_unacknowledged"] == 4).then_some(q)
        }
    })
    .await;
    let ms = &q["message_stats"];
    assert_eq!(ms["publish"], 10, "{ms}");
    assert_eq!(ms["deliver"], 7);
    assert_eq!(ms["deliver_get"], 7);
    assert_eq!(ms["redeliver"], 0);
    assert_eq!(q["messages"], 7);
    assert_eq!(q["messages_ready"], 3);
    assert_eq!(q["consumers"], 1);
    // Consumers are listed with their channel.
    let cs = http.get("/api/consumers/%2F").await.json();
    assert_eq!(cs.as_array().unwrap().len(), 1);
    assert_eq!(cs[0]["consumer_tag"], "c1");
    assert_eq!(cs[0]["queue"]["name"], "work");
    assert_eq!(cs[0]["ack_required"], true);
    assert_eq!(cs[0]["prefetch_count"], 4);
    assert!(cs[0]["channel_details"]["connection_name"]
        .as_str()
        .unwrap()
        .contains(" -> "));
    // The sampled publish rate is there (it may already be falling back to 0).
    assert!(ms["publish_details"]["rate"].as_f64().is_some());
}

#[tokio::test]
async fn purge_and_delete() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "p").await;
    for _ in 0..5 {
        publish(&ch, "p", b"x").await;
    }
    let http = b.http();
    eventually(5, || {
        let http = http.clone();
        async move { (http.get("/api/queues/%2F/p").await.json()["messages"] == 5).then_some(()) }
    })
    .await;
    assert_eq!(http.delete("/api/queues/%2F/p/contents").await.status, 204);
    assert!(get_body(&ch, "p").await.is_none());
    publish(&ch, "p", b"y").await;
    eventually(5, || {
        let http = http.clone();
        async move { (http.get("/api/queues/%2F/p").await.json()["messages"] == 1).then_some(()) }
    })
    .await;
    let r = http.delete("/api/queues/%2F/p?if-empty=true").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(http.delete("/api/queues/%2F/p").await.status, 204);
    assert_eq!(http.get("/api/queues/%2F/p").await.status, 404);
}

#[tokio::test]
async fn get_with_each_ackmode() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "g").await;
    publish(&ch, "g", b"hello").await;
    publish(&ch, "g", &[0xff, 0xfe]).await;
    let http = b.http();
    eventually(5, || {
        let http = http.clone();
        async move { (http.get("/api/queues/%2F/g").await.json()["messages"] == 2).then_some(()) }
    })
    .await;
    let r = http
        .post(
            "/api/queues/%2F/g/get",
            json!({"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = r.json();
    assert_eq!(m.as_array().unwrap().len(), 2);
    assert_eq!(m[0]["payload"], "hel");
    assert_eq!(m[0]["payload_bytes"], 5);
    assert_eq!(m[0]["payload_encoding"], "string");
    assert_eq!(m[0]["redelivered"], false);
    assert_eq!(m[0]["routing_key"], "g");
    assert_eq!(m[0]["message_count"], 1);
    assert_eq!(m[1]["payload_encoding"], "base64");
    // Requeued, so they come back redelivered; this time they are removed.
    let m = http
        .post(
            "/api/queues/%2F/g/get",
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64"}),
        )
        .await
        .json();
    assert_eq!(m[0]["redelivered"], true);
    assert_eq!(m[0]["payload"], "aGVsbG8=");
    let m = http
        .post(
            "/api/queues/%2F/g/get",
            json!({"count": 1, "ackmode": "reject_requeue_false"}),
        )
        .await
        .json();
    assert_eq!(m.as_array().unwrap().len(), 1);
    let m = http
        .post(
            "/api/queues/%2F/g/get",
            json!({"count": 1, "ackmode": "ack_requeue_false"}),
        )
        .await
        .json();
    assert_eq!(m, json!([]));
    let r = http
        .post(
            "/api/queues/%2F/g/get",
            json!({"count": 1, "ackmode": "sometimes"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn stream_queues_show_offsets() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .put(
            "/api/queues/%2F/events",
            json!({"durable": true, "arguments": {"x-queue-type": "stream"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (_c, ch) = b.channel().await;
    for _ in 0..3 {
        publish(&ch, "events", b"e").await;
    }
    let q = eventually(5, || {
        let http = http.clone();
        async move {
            let q = http.get("/api/queues/%2F/events").await.json();
            (q["messages"] == 3).then_some(q)
        }
    })
    .await;
    assert_eq!(q["type"], "stream");
    assert_eq!(q["stream"]["first_offset"], 0);
    assert_eq!(q["stream"]["next_offset"], 3);
    let list = http.get("/api/queues").await.json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "events"));
}

#[tokio::test]
async fn a_refused_declare_gives_rabbitmq_s_reason_without_the_amqp_prefix() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(
        http.put("/api/queues/%2F/eq", json!({"durable": true}))
            .await
            .status,
        201
    );
    let r = http
        .put("/api/queues/%2F/eq", json!({"durable": false}))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.json()["reason"],
        "inequivalent arg 'durable' for queue 'eq' in vhost '/': received 'false' but current is 'true'"
    );
    b.stop().await;
}
