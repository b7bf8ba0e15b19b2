//! `/api/policies`: set, list, show and clear policies over HTTP; a policy set this way applies
//! to matching queues at once (seen in the queue's JSON), moves with definitions
//! export/import, and needs the policymaker or administrator tag.

use crate::common;

use common::http::eventually;
use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_policy_set_over_http_applies_to_matching_queues_at_once() {
    let b = Broker::start().await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "limited.jobs").await;
    declare(&ch, "other").await;
    let r = http
        .put(
            "/api/policies/%2F/cap",
            json!({"pattern": "^limited\\.", "definition": {"max-length": 2}, "apply-to": "queues", "priority": 1}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    for i in 0..5u8 {
        publish(&ch, "other", &[i]).await;
    }
    let q = eventually(5, || async {
        let q = http.get("/api/queues/%2F/limited.jobs").await.json();
        (q["policy"] == "cap").then_some(q)
    })
    .await;
    assert_eq!(q["effective_policy_definition"]["max-length"], 2);
    let other = http.get("/api/queues/%2F/other").await.json();
    assert_eq!(other["policy"], serde_json::Value::Null);
    assert_eq!(other["messages"], 5);

    let p = http.get("/api/policies/%2F/cap").await.json();
    assert_eq!(p["pattern"], "^limited\\.");
    assert_eq!(p["apply-to"], "queues");
    assert_eq!(p["priority"], 1);
    assert_eq!(
        http.get("/api/policies")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        http.put(
            "/api/policies/%2F/cap",
            json!({"pattern": "^limited\\.", "definition": {"max-length": 3}})
        )
        .await
        .status,
        204
    );
    assert_eq!(http.delete("/api/policies/%2F/cap").await.status, 204);
    assert_eq!(http.get("/api/policies/%2F/cap").await.status, 404);
    assert_eq!(http.delete("/api/policies/%2F/cap").await.status, 404);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let q = http.get("/api/queues/%2F/limited.jobs").await.json();
    assert_eq!(q["policy"], serde_json::Value::Null);
}

#[tokio::test]
async fn bad_policies_are_400_and_plain_users_401() {
    let b = Broker::start().await;
    let http = b.http();
    let bad = [
        json!({"definition": {"max-length": 1}}),
        json!({"pattern": ".*", "definition": {"max-length": "many"}}),
        json!({"pattern": ".*", "definition": {"no-such-key": 1}}),
        json!({"pattern": "(", "definition": {"max-length": 1}}),
        json!({"pattern": ".*", "definition": {"max-length": 1}, "apply-to": "everything"}),
    ];
    for body in bad {
        let r = http.put("/api/policies/%2F/p", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(
        http.put(
            "/api/policies/nope/p",
            json!({"pattern": ".*", "definition": {"max-length": 1}})
        )
        .await
        .status,
        404
    );
    http.put(
        "/api/users/watcher",
        json!({"password": "pw", "tags": "monitoring"}),
    )
    .await;
    http.put(
        "/api/permissions/%2F/watcher",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    let watcher = http.as_user("watcher", "pw");
    let r = watcher
        .put(
            "/api/policies/%2F/p",
            json!({"pattern": ".*", "definition": {"max-length": 1}}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["reason"], "User not authorised to access object");
    http.put(
        "/api/users/pm",
        json!({"password": "pw", "tags": "policymaker"}),
    )
    .await;
    http.put(
        "/api/permissions/%2F/pm",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    let pm = http.as_user("pm", "pw");
    let r = pm
        .put(
            "/api/policies/%2F/p",
            json!({"pattern": ".*", "definition": {"max-length": 1}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn policies_travel_with_definitions_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start_in(dir.path(), |_| {}).await;
    let http = b.http();
    http.put(
        "/api/policies/%2F/ttl",
        json!({"pattern": "^t\\.", "definition": {"message-ttl": 60000}, "apply-to": "queues"}),
    )
    .await;
    let exported = http.get("/api/definitions").await.json();
    let policies = exported["policies"].as_array().cloned().unwrap_or_default();
    assert_eq!(policies.len(), 1, "{exported}");
    assert_eq!(policies[0]["name"], "ttl");
    assert_eq!(policies[0]["vhost"], "/");
    b.stop().await;

    let b = Broker::start_in(dir.path(), |_| {}).await;
    let http = b.http();
    assert_eq!(
        http.get("/api/policies/%2F/ttl").await.status,
        200,
        "persisted"
    );

    // Import into a fresh broker.
    let fresh = Broker::start().await;
    let r = fresh.http().post("/api/definitions", exported).await;
    assert!(
        r.status == 204 || r.status == 201 || r.status == 200,
        "{}",
        r.body
    );
    let p = fresh.http().get("/api/policies/%2F/ttl").await.json();
    assert_eq!(p["definition"]["message-ttl"], 60000);
}
