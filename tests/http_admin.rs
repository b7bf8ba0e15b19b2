//! Run-time administration through the HTTP API: vhosts, users and permissions are created,
//! used over AMQP, persisted, and still there (or still gone) after a restart.

use crate::common;

use common::*;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

async fn amqp_login(b: &Broker, user: &str, pw: &str, vhost: &str) -> bool {
    let vh = vhost.replace('/', "%2F");
    let url = format!("amqp://{user}:{pw}@{}/{vh}", b.addr());
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .is_ok()
}

#[tokio::test]
async fn vhost_user_and_permission_lifecycle() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(
        http.put(
            "/api/vhosts/staging",
            json!({"description": "pre-prod", "tags": "a,b"})
        )
        .await
        .status,
        201
    );
    assert_eq!(http.put("/api/vhosts/staging", json!({})).await.status, 204);
    let v = http.get("/api/vhosts/staging").await.json();
    assert_eq!(v["name"], "staging");
    assert_eq!(
        http.get("/api/vhosts")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The creator (guest) got full permissions, so it can open the new vhost.
    let p = http.get("/api/permissions/staging/guest").await.json();
    assert_eq!(p["configure"], ".*");
    assert!(amqp_login(&b, "guest", "guest", "staging").await);

    let r = http
        .put(
            "/api/users/alice",
            json!({"password": "s3cret", "tags": "management"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let u = http.get("/api/users/alice").await.json();
    assert_eq!(u["tags"], json!(["management"]));
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert!(
        !amqp_login(&b, "alice", "s3cret", "staging").await,
        "no permission yet"
    );
    let no_perms = http.get("/api/users/without-permissions").await.json();
    assert!(no_perms
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "alice"));
    assert_eq!(
        http.put(
            "/api/permissions/staging/alice",
            json!({"configure": ".*", "write": ".*", "read": ".*"})
        )
        .await
        .status,
        201
    );
    assert!(amqp_login(&b, "alice", "s3cret", "staging").await);
    assert!(!amqp_login(&b, "alice", "wrong", "staging").await);
    let alice = http.as_user("alice", "s3cret");
    assert_eq!(alice.get("/api/whoami").await.json()["name"], "alice");
    assert_eq!(
        http.get("/api/users/alice/permissions").await.json()[0]["vhost"],
        "staging"
    );
    assert_eq!(
        http.get("/api/vhosts/staging/permissions")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Change the password by hash, keep tags.
    let hash = warren::auth::hash_password(b"n3w");
    assert_eq!(
        http.put(
            "/api/users/alice",
            json!({"password_hash": hash, "tags": ["management"]})
        )
        .await
        .status,
        204
    );
    assert!(amqp_login(&b, "alice", "n3w", "staging").await);
    assert_eq!(
        http.delete("/api/permissions/staging/alice").await.status,
        204
    );
    assert_eq!(
        http.delete("/api/permissions/staging/alice").await.status,
        404
    );
    assert!(!amqp_login(&b, "alice", "n3w", "staging").await);
    assert_eq!(http.delete("/api/users/alice").await.status, 204);
    assert_eq!(http.get("/api/users/alice").await.status, 404);
    assert_eq!(http.delete("/api/users/alice").await.status, 404);
    assert_eq!(http.delete("/api/vhosts/staging").await.status, 204);
    assert_eq!(http.get("/api/vhosts/staging").await.status, 404);
    assert_eq!(http.delete("/api/vhosts/staging").await.status, 404);
}

#[tokio::test]
async fn bad_user_and_permission_requests() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(
        http.put("/api/users/bob", json!({"tags": ""})).await.status,
        400
    );
    assert_eq!(
        http.put("/api/users/bob", json!({"password_hash": "nope"}))
            .await
            .status,
        400
    );
    assert_eq!(
        http.put(
            "/api/users/bob",
            json!({"password_hash": warren::auth::hash_password(b"x"), "hashing_algorithm": "rabbit_password_hashing_md5"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        http.put(
            "/api/permissions/%2F/ghost",
            json!({"configure": ".*", "write": ".*", "read": ".*"})
        )
        .await
        .status,
        400
    );
    assert_eq!(
        http.put("/api/permissions/%2F/guest", json!({"configure": ".*"}))
            .await
            .status,
        400
    );
    assert_eq!(http.get("/api/permissions/%2F/ghost").await.status, 404);
    assert_eq!(
        http.put("/api/users/bob", json!({"password": "x", "tags": 5}))
            .await
            .status,
        400
    );
    // RabbitMQ deletes up to the first unknown user and names it.
    let r = http.put("/api/users/bob", json!({"password": "x"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http
        .post(
            "/api/users/bulk-delete",
            json!({"users": ["bob", "nobody"]}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["reason"], json!(["no_such_user", "nobody"]));
    assert_eq!(http.get("/api/users/bob").await.status, 404);
}

#[tokio::test]
async fn deleting_a_vhost_closes_its_connections_and_drops_its_queues() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/vhosts/tmp", json!({})).await;
    http.put("/api/queues/tmp/q", json!({"durable": true}))
        .await;
    let url = format!("amqp://guest:guest@{}/tmp", b.addr());
    let c = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    assert_eq!(http.delete("/api/vhosts/tmp").await.status, 204);
    within(5, async {
        while c.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    http.put("/api/vhosts/tmp", json!({})).await;
    assert_eq!(http.get("/api/queues/tmp").await.json(), json!([]));
}

#[tokio::test]
async fn runtime_definitions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::start_in(dir.path(), |_| {}).await;
    let http = b.http();
    http.put("/api/vhosts/prod", json!({"description": "production"}))
        .await;
    http.put(
        "/api/users/carol",
        json!({"password": "pw", "tags": ["monitoring"]}),
    )
    .await;
    http.put(
        "/api/permissions/prod/carol",
        json!({"configure": "", "write": "^w", "read": ".*"}),
    )
    .await;
    http.put("/api/queues/prod/orders", json!({"durable": true}))
        .await;
    // Config users are a bootstrap: deleting guest's access to "/" sticks.
    http.put(
        "/api/users/admin2",
        json!({"password": "pw2", "tags": "administrator"}),
    )
    .await;
    http.put(
        "/api/permissions/%2F/admin2",
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    assert_eq!(http.delete("/api/permissions/%2F/guest").await.status, 204);
    b.stop().await;

    let b = Broker::start_in(dir.path(), |_| {}).await;
    let http = b.http().as_user("admin2", "pw2");
    let v = http.get("/api/vhosts/prod").await.json();
    assert_eq!(v["description"], "production");
    let u = http.get("/api/users/carol").await.json();
    assert_eq!(u["tags"], json!(["monitoring"]));
    let p = http.get("/api/permissions/prod/carol").await.json();
    assert_eq!(p["write"], "^w");
    assert_eq!(http.get("/api/queues/prod/orders").await.status, 200);
    assert_eq!(http.get("/api/permissions/%2F/guest").await.status, 404);
    assert!(!amqp_login(&b, "guest", "guest", "/").await);
    assert!(amqp_login(&b, "carol", "pw", "prod").await);
}
