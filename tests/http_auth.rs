//! Who may use the HTTP API: basic auth against warren's users, and RabbitMQ's management tags
//! (no tag: 401 "Not management user"; monitoring reads everything and changes what its
//! permissions allow; management sees only its own vhosts and connections; administrator-only
//! resources are refused to others). RabbitMQ answers every refusal with 401 `not_authorised`.

use crate::common;

use common::*;
use serde_json::json;
use warren::config::UserConfig;

fn user(name: &str, tags: &[&str], vhosts: &[&str]) -> UserConfig {
    UserConfig {
        name: name.into(),
        password: Some(format!("{name}-pw")),
        password_hash: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        vhosts: vhosts.iter().map(|t| t.to_string()).collect(),
    }
}

async fn broker() -> Broker {
    Broker::start_with(|c| {
        c.vhosts = vec!["/".into(), "other".into()];
        c.users = vec![
            user("guest", &["administrator"], &[]),
            user("plain", &[], &[]),
            user("watcher", &["monitoring"], &["/"]),
            user("dev", &["management"], &["/"]),
        ];
        // guest's password comes from the helper: guest-pw; tests use the admin "guest".
    })
    .await
}

#[tokio::test]
async fn no_credentials_wrong_password_and_no_tag_are_401() {
    let b = broker().await;
    let http = b.http().as_user("guest", "guest-pw");
    let r = http.anonymous().get("/api/overview").await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    let r = http.as_user("guest", "wrong").get("/api/overview").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Login failed");
    let r = http.as_user("plain", "plain-pw").get("/api/overview").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Not management user");
    let r = http
        .anonymous()
        .request(
            "GET",
            "/api/overview",
            None,
            &[("authorization", "Basic !!!")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(http.get("/api/overview").await.status, 200);
}

#[tokio::test]
async fn monitoring_reads_everything_and_changes_where_permitted() {
    let b = broker().await;
    let admin = b.http().as_user("guest", "guest-pw");
    admin.put("/api/queues/other/q", json!({})).await;
    let w = admin.as_user("watcher", "watcher-pw");
    assert_eq!(w.get("/api/queues/other/q").await.status, 200);
    assert_eq!(
        w.get("/api/queues").await.json().as_array().unwrap().len(),
        1
    );
    assert_eq!(w.get("/api/nodes").await.status, 200);
    // No permission in `other`: RabbitMQ's vhost refusal.
    let r = w.delete("/api/queues/other/q").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        r.json()["reason"],
        "User not authorised to access virtual host"
    );
    assert_eq!(w.delete("/api/queues/other/q/contents").await.status, 401);
    // Monitoring includes management: where it has permissions it declares and deletes.
    assert_eq!(w.put("/api/queues/%2F/x", json!({})).await.status, 201);
    assert_eq!(w.delete("/api/queues/%2F/x").await.status, 204);
    let r = w.get("/api/users").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Not administrator user");
    assert_eq!(w.get("/api/definitions").await.status, 401);
    assert_eq!(admin.get("/api/queues/other/q").await.status, 200);
}

#[tokio::test]
async fn management_users_see_only_their_vhosts() {
    let b = broker().await;
    let admin = b.http().as_user("guest", "guest-pw");
    admin.put("/api/queues/other/secret", json!({})).await;
    admin.put("/api/queues/%2F/mine", json!({})).await;
    let dev = admin.as_user("dev", "dev-pw");
    let qs = dev.get("/api/queues").await.json();
    let names: Vec<_> = qs
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("mine")]);
    assert_eq!(dev.get("/api/queues/other/secret").await.status, 401);
    assert_eq!(dev.get("/api/queues/other").await.status, 401);
    let vhosts = dev.get("/api/vhosts").await.json();
    assert_eq!(vhosts.as_array().unwrap().len(), 1);
    assert_eq!(dev.put("/api/queues/%2F/new", json!({})).await.status, 201);
    assert_eq!(
        dev.put("/api/queues/other/new", json!({})).await.status,
        401
    );
    assert_eq!(dev.get("/api/users").await.status, 401);
    assert_eq!(dev.get("/api/permissions").await.status, 401);
    assert_eq!(dev.put("/api/vhosts/mine", json!({})).await.status, 401);
    assert_eq!(
        dev.get("/api/whoami").await.json()["tags"],
        json!(["management"])
    );
}

#[tokio::test]
async fn metrics_and_dashboard_need_no_credentials() {
    let b = broker().await;
    let anon = b.http().anonymous();
    assert_eq!(anon.get("/metrics").await.status, 200);
    let page = anon.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
}
