//! `warren ctl` against a live broker: the real binary, talking to the HTTP API.

use crate::common;

use common::http::eventually;
use common::*;
use serde_json::Value;

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

#[tokio::test]
async fn list_as_table_and_json() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "invoices").await;
    publish(&ch, "invoices", b"x").await;
    publish(&ch, "invoices", b"y").await;
    let http = b.http();
    eventually(5, || {
        let http = http.clone();
        async move {
            (http.get("/api/queues/%2F/invoices").await.json()["messages"] == 2).then_some(())
        }
    })
    .await;
    let (code, out, err) = ctl(&b, &["list", "queues"]).await;
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("vhost") && header.contains("messages"),
        "{out}"
    );
    let row = out.lines().find(|l| l.contains("invoices")).expect(&out);
    assert!(row.split_whitespace().any(|c| c == "2"), "{row}");
    let (code, out, _) = ctl(&b, &["list", "queues", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "invoices");
    for r in [
        "exchanges",
        "connections",
        "channels",
        "consumers",
        "bindings",
        "users",
        "vhosts",
        "permissions",
    ] {
        let (code, out, err) = ctl(&b, &["list", r]).await;
        assert_eq!(code, 0, "{r}: {err}");
        assert!(!out.is_empty());
    }
    let (code, out, _) = ctl(&b, &["list", "connections"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("guest"), "{out}");
    let (code, out, _) = ctl(&b, &["overview"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("queues 1"), "{out}");
}

#[tokio::test]
async fn purge_delete_and_close() {
    let b = Broker::start().await;
    let (c, ch) = b.channel().await;
    declare(&ch, "tmp").await;
    publish(&ch, "tmp", b"x").await;
    let http = b.http();
    http.put(
        "/api/exchanges/%2F/old",
        serde_json::json!({"type": "fanout"}),
    )
    .await;
    let (code, _, err) = ctl(&b, &["purge-queue", "tmp"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(get_body(&ch, "tmp").await.is_none());
    let (code, _, err) = ctl(&b, &["delete-queue", "tmp", "--vhost", "/"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(http.get("/api/queues/%2F/tmp").await.status, 404);
    let (code, _, err) = ctl(&b, &["delete-queue", "tmp"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
    let (code, _, _) = ctl(&b, &["delete-exchange", "old"]).await;
    assert_eq!(code, 0);
    let conns = http.get("/api/connections").await.json();
    let name = conns[0]["name"].as_str().unwrap().to_string();
    let (code, _, err) = ctl(&b, &["close-connection", &name, "--reason", "ctl test"]).await;
    assert_eq!(code, 0, "{err}");
    within(5, async {
        while c.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn export_then_import_into_another_broker() {
    let a = Broker::start().await;
    let http = a.http();
    http.put("/api/queues/%2F/kept", serde_json::json!({"durable": true}))
        .await;
    http.put(
        "/api/exchanges/%2F/ex",
        serde_json::json!({"type": "topic"}),
    )
    .await;
    http.post(
        "/api/bindings/%2F/e/ex/q/kept",
        serde_json::json!({"routing_key": "k.#"}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let f = file.to_str().unwrap();
    let (code, _, err) = ctl(&a, &["export", f]).await;
    assert_eq!(code, 0, "{err}");
    let b = Broker::start().await;
    let (code, _, err) = ctl(&b, &["import", f]).await;
    assert_eq!(code, 0, "{err}");
    let h = b.http();
    assert_eq!(h.get("/api/queues/%2F/kept").await.status, 200);
    let bs = h.get("/api/bindings/%2F/e/ex/q/kept").await.json();
    assert_eq!(bs[0]["routing_key"], "k.#");
}

#[tokio::test]
async fn errors_exit_non_zero() {
    let b = Broker::start().await;
    let url = format!("http://{}", b.http_addr());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "ctl",
            "--url",
            &url,
            "--password",
            "wrong",
            "list",
            "queues",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["ctl", "--url", "http://127.0.0.1:1", "list", "queues"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (code, _, _) = ctl(&b, &["list", "users", "--vhost", "/"]).await;
    assert_eq!(code, 2);
}
