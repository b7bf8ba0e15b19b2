//! The query parameters RabbitMQ's management API applies to GET replies, as tools send them:
//! `columns`, `sort`/`sort_reverse`, pagination (`page`, `page_size`, `name`, `use_regex`),
//! `disable_stats`/`enable_queue_totals` and the history parameters (`lengths_age`...).
//! The expected shapes and errors were taken from RabbitMQ 3.10 answering the same requests.

use crate::common;

use common::*;
use serde_json::{json, Value};

/// A broker with queues `q1`..`q5` (q3 holding two messages) in `/`.
async fn with_queues() -> (Broker, common::http::Http) {
    let b = Broker::start().await;
    let http = b.http();
    for i in 1..=5 {
        let r = http.put(&format!("/api/queues/%2F/q{i}"), json!({})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let (_c, ch) = b.channel().await;
    publish(&ch, "q3", b"a").await;
    publish(&ch, "q3", b"b").await;
    (b, http)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn columns_keep_only_the_listed_keys_nested_included() {
    let (_b, http) = with_queues().await;
    let v = http
        .get("/api/queues/%2F?columns=name,message_stats.publish")
        .await
        .json();
    let q3 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "q3")
        .unwrap();
    assert_eq!(q3, &json!({"name": "q3", "message_stats": {"publish": 2}}));
    let one = http
        .get("/api/queues/%2F/q1?columns=name,durable")
        .await
        .json();
    assert_eq!(one, json!({"name": "q1", "durable": false}));
    let o = http
        .get("/api/overview?columns=object_totals.queues,cluster_name.x")
        .await
        .json();
    assert_eq!(
        o,
        json!({"object_totals": {"queues": 5}, "cluster_name": "warren"})
    );
}

#[tokio::test]
async fn sort_and_sort_reverse_order_by_a_dotted_key() {
    let (b, http) = with_queues().await;
    let v = common::http::eventually(5, || {
        let http = http.clone();
        async move {
            let v = http
                .get("/api/queues/%2F?sort=messages&sort_reverse=true&columns=name,messages")
                .await
                .json();
            (v[0]["messages"] == 2).then_some(v)
        }
    })
    .await;
    assert_eq!(v[0]["name"], "q3");
    let v = http
        .get("/api/queues/%2F?sort=name&sort_reverse=true")
        .await
        .json();
    assert_eq!(names(&v), ["q5", "q4", "q3", "q2", "q1"]);
    drop(b);
}

#[tokio::test]
async fn a_page_is_an_object_with_rabbitmqs_counts() {
    let (_b, http) = with_queues().await;
    let v = http
        .get("/api/queues/%2F?page=2&page_size=2&columns=name")
        .await
        .json();
    assert_eq!(
        v,
        json!({"filtered_count": 5, "item_count": 2, "items": [{"name": "q3"}, {"name": "q4"}],
               "page": 2, "page_count": 3, "page_size": 2, "total_count": 5})
    );
    // Without `page` a list stays a list; lists RabbitMQ does not paginate stay lists too.
    assert!(http
        .get("/api/queues/%2F?page_size=2")
        .await
        .json()
        .is_array());
    assert!(http.get("/api/users?page=1").await.json().is_array());
    let v = http.get("/api/vhosts?page=1").await.json();
    assert_eq!(v["total_count"], 1);
}

#[tokio::test]
async fn the_name_filter_is_a_case_insensitive_substring_or_a_regex() {
    let (_b, http) = with_queues().await;
    let v = http.get("/api/queues/%2F?page=1&name=Q3").await.json();
    assert_eq!(v["filtered_count"], 1);
    assert_eq!(v["total_count"], 5);
    assert_eq!(v["items"][0]["name"], "q3");
    let v = http
        .get("/api/queues/%2F?page=1&name=%5EQ%5B12%5D%24&use_regex=true")
        .await
        .json();
    assert_eq!(names(&v["items"]), ["q1", "q2"]);
    let r = http
        .get("/api/queues/%2F?page=1&name=%5B&use_regex=true")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn bad_pages_are_400_with_rabbitmqs_error_names() {
    let (_b, http) = with_queues().await;
    let r = http.get("/api/queues/%2F?page=9&page_size=2").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "page_out_of_range");
    for q in [
        "page=0",
        "page=1&page_size=501",
        "page=1&page_size=0",
        "page=-1",
    ] {
        let r = http.get(&format!("/api/queues/%2F?{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["error"], "invalid_pagination_parameters", "{q}");
    }
    let r = http.get("/api/queues/%2F?page=1&page_size=abc").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
}

#[tokio::test]
async fn disable_stats_leaves_definitions_and_optionally_totals() {
    let (_b, http) = with_queues().await;
    let v = http
        .get("/api/queues/%2F/q3?disable_stats=true")
        .await
        .json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "arguments",
            "auto_delete",
            "durable",
            "exclusive",
            "name",
            "node",
            "state",
            "type",
            "vhost"
        ]
    );
    let v = http
        .get("/api/queues/%2F/q3?disable_stats=true&enable_queue_totals=true")
        .await
        .json();
    assert_eq!(v["messages"], 2);
    assert!(v.get("message_stats").is_none());
    let r = http.get("/api/channels?disable_stats=true").await;
    assert_eq!(r.status, 400);
    let o = http.get("/api/overview?disable_stats=true").await.json();
    assert!(o.get("message_stats").is_none() && o.get("object_totals").is_some());
}

#[tokio::test]
async fn history_parameters_add_samples_to_details() {
    let (_b, http) = with_queues().await;
    let v = http
        .get("/api/queues/%2F/q3?lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5")
        .await
        .json();
    let d = &v["messages_details"];
    assert!(d["rate"].is_number() && d["avg_rate"].is_number(), "{d}");
    assert_eq!(d["avg"], v["messages"]);
    assert_eq!(d["samples"][0]["sample"], v["messages"]);
    assert!(d["samples"][0]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(v["message_stats"]["publish_details"]["samples"].is_array());
    // Without them, details are just the rate.
    let v = http.get("/api/queues/%2F/q3").await.json();
    assert_eq!(v["messages_details"].as_object().unwrap().len(), 1);
}
