//! `warren ctl` for permissions and limits against a live broker: the real binary, talking to
//! the HTTP API; what it sets is what the API (and AMQP) then sees.

use crate::common;

use common::*;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};

/// Run `warren ctl --url … <args>`; (exit code, stdout, stderr).
async fn ctl(b: &Broker, args: &[&str]) -> (i32, String, String) {
    let url = format!("http://{}", b.http_addr());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("ctl")
        .args(["--url", &url, "--user", "guest", "--password", "guest"])
        .args(args)
        .output()
        .await
        .expect("run warren ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn add_user(b: &Broker, name: &str) {
    let r = b
        .http()
        .put(
            &format!("/api/users/{name}"),
            json!({"password": "pw", "tags": ""}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn set_list_and_clear_permissions() {
    let b = Broker::start().await;
    add_user(&b, "bob").await;
    let (code, out, err) = ctl(&b, &["set-permissions", "bob", "^bob\\.", "", ".*"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bob"), "{out}");
    assert_eq!(
        b.http().get("/api/permissions/%2F/bob").await.json(),
        json!({"user": "bob", "vhost": "/", "configure": "^bob\\.", "write": "", "read": ".*"})
    );
    let (code, out, _) = ctl(&b, &["list-permissions", "--user", "bob"]).await;
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.starts_with("bob")).expect(&out);
    assert!(row.contains("^bob\\.") && row.contains(".*"), "{row}");
    let (code, out, _) = ctl(&b, &["list-permissions", "--vhost", "/", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v.as_array().unwrap().iter().any(|p| p["user"] == "bob"));
    let (code, _, err) = ctl(&b, &["clear-permissions", "bob"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(b.http().get("/api/permissions/%2F/bob").await.status, 404);
    // Clearing what is not there is a failed call.
    let (code, _, err) = ctl(&b, &["clear-permissions", "bob"]).await;
    assert_eq!(code, 1, "{err}");
    b.stop().await;
}

#[tokio::test]
async fn set_list_and_clear_topic_permissions() {
    let b = Broker::start().await;
    add_user(&b, "bob").await;
    for x in ["events", "logs"] {
        let (code, _, err) = ctl(
            &b,
            &["set-topic-permissions", "bob", x, "^{username}\\.", ""],
        )
        .await;
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, _) = ctl(&b, &["list-topic-permissions", "--user", "bob"]).await;
    assert_eq!(code, 0);
    let row = out.lines().find(|l| l.contains("events")).expect(&out);
    assert!(
        row.starts_with("bob") && row.contains("^{username}\\."),
        "{row}"
    );
    // One exchange's, then the rest.
    let (code, _, err) = ctl(&b, &["clear-topic-permissions", "bob", "events"]).await;
    assert_eq!(code, 0, "{err}");
    let left = b.http().get("/api/topic-permissions/%2F/bob").await.json();
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["exchange"], "logs");
    let (code, _, err) = ctl(&b, &["clear-topic-permissions", "bob"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = ctl(&b, &["clear-topic-permissions", "bob"]).await;
    assert_eq!(code, 1, "nothing left to clear");
    b.stop().await;
}

#[tokio::test]
async fn a_bad_pattern_is_refused() {
    let b = Broker::start().await;
    add_user(&b, "bob").await;
    let (code, _, err) = ctl(&b, &["set-permissions", "bob", "(", ".*", ".*"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("400"), "{err}");
    b.stop().await;
}

#[tokio::test]
async fn vhost_and_user_limits() {
    let b = Broker::start().await;
    add_user(&b, "bob").await;
    let (code, _, err) = ctl(&b, &["set-vhost-limit", "max-queues", "5"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = ctl(&b, &["set-user-limit", "bob", "max-connections", "0"]).await;
    assert_eq!(code, 0, "{err}");
    // max-connections 0: bob cannot connect at all.
    ctl(&b, &["set-permissions", "bob", ".*", ".*", ".*"]).await;
    let url = format!("amqp://bob:pw@{}/%2f", b.addr());
    assert!(Connection::connect(&url, ConnectionProperties::default())
        .await
        .is_err());
    let (code, out, _) = ctl(&b, &["list-limits"]).await;
    assert_eq!(code, 0);
    let vrow = out.lines().find(|l| l.contains("max-queues")).expect(&out);
    assert!(vrow.starts_with("vhost") && vrow.contains('5'), "{vrow}");
    let urow = out
        .lines()
        .find(|l| l.contains("max-connections"))
        .expect(&out);
    assert!(urow.starts_with("user") && urow.contains("bob"), "{urow}");
    // Negative values are accepted (no limit), as RabbitMQ.
    let (code, _, err) = ctl(&b, &["set-user-limit", "bob", "max-connections", "-1"]).await;
    assert_eq!(code, 0, "{err}");
    Connection::connect(&url, ConnectionProperties::default())
        .await
        .expect("no limit now");
    let (code, _, _) = ctl(&b, &["clear-vhost-limit", "max-queues"]).await;
    assert_eq!(code, 0);
    let (code, _, _) = ctl(&b, &["clear-user-limit", "bob", "max-connections"]).await;
    assert_eq!(code, 0);
    let (code, out, _) = ctl(&b, &["list-limits", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"vhosts": [], "users": []}));
    let (code, _, err) = ctl(&b, &["set-vhost-limit", "max-channels", "1"]).await;
    assert_eq!(code, 1, "unknown vhost limit: {err}");
    b.stop().await;
}
