//! `/api/connections` and `/api/channels`: what the registry of live connections shows, and
//! closing a connection through the API (320 CONNECTION_FORCED with the X-Reason text).

use crate::common;
use crate::raw_amqp;

use common::http::eventually;
use common::*;
use lapin::{Connection, ConnectionProperties};
use serde_json::Value;

async fn one_connection(http: &common::http::Http) -> Value {
    eventually(5, || {
        let http = http.clone();
        async move {
            let l = http.get("/api/connections").await.json();
            (l.as_array().map(Vec::len) == Some(1)).then(|| l[0].clone())
        }
    })
    .await
}

#[tokio::test]
async fn connections_and_channels_are_listed() {
    let b = Broker::start().await;
    let props = ConnectionProperties::default().with_connection_name("billing-worker".into());
    let c = Connection::connect(&b.url(), props).await.unwrap();
    let ch = c.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    declare(&ch, "q").await;
    publish(&ch, "q", b"x").await;
    let http = b.http();
    let conn = one_connection(&http).await;
    let name = conn["name"].as_str().unwrap().to_string();
    let port = b.addr().port();
    assert!(
        name.starts_with("127.0.0.1:") && name.ends_with(&format!(" -> 127.0.0.1:{port}")),
        "{name}"
    );
    assert_eq!(conn["user"], "guest");
    assert_eq!(conn["vhost"], "/");
    assert_eq!(conn["protocol"], "AMQP 0-9-1");
    assert_eq!(conn["state"], "running");
    assert_eq!(conn["channels"], 1);
    assert_eq!(conn["auth_mechanism"], "PLAIN");
    assert_eq!(conn["user_provided_name"], "billing-worker");
    assert_eq!(
        conn["client_properties"]["connection_name"],
        "billing-worker"
    );
    assert!(conn["client_properties"]["capabilities"]["publisher_confirms"] == true);
    assert!(conn["recv_oct"].as_u64().unwrap() > 0);
    assert!(conn["send_oct"].as_u64().unwrap() > 0);
    let enc = name.replace(' ', "%20").replace('>', "%3E");
    assert_eq!(
        http.get(&format!("/api/connections/{enc}")).await.status,
        200
    );
    let chans = http
        .get(&format!("/api/connections/{enc}/channels"))
        .await
        .json();
    assert_eq!(chans[0]["number"], 1);
    assert_eq!(chans[0]["name"], format!("{name} (1)"));
    assert_eq!(chans[0]["confirm"], true);
    let all = http.get("/api/channels").await.json();
    let ch1 = &all[0];
    assert_eq!(ch1["message_stats"]["publish"], 1);
    assert_eq!(ch1["message_stats"]["confirm"], 1);
    assert_eq!(ch1["connection_details"]["name"], name);
    let enc_ch = format!("{enc}%20(1)")
        .replace('(', "%28")
        .replace(')', "%29");
    assert_eq!(
        http.get(&format!("/api/channels/{enc_ch}")).await.status,
        200
    );
    assert_eq!(http.get("/api/channels/nope").await.status, 404);
    assert_eq!(
        http.get("/api/vhosts/%2F/connections")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        http.get("/api/vhosts/%2F/channels")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(http.get("/api/connections/nope").await.status, 404);
}

#[tokio::test]
async fn delete_closes_the_connection_with_320_and_the_reason() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let http = b.http();
    let conn = one_connection(&http).await;
    let enc = conn["name"]
        .as_str()
        .unwrap()
        .replace(' ', "%20")
        .replace('>', "%3E");
    let r = http
        .request(
            "DELETE",
            &format!("/api/connections/{enc}"),
            None,
            &[("X-Reason", "maintenance window")],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    within(5, async {
        while c.status().connected() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(c.create_channel().await.is_err());
    eventually(5, || {
        let http = http.clone();
        async move { (http.get("/api/connections").await.json() == serde_json::json!([])).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn raw_client_sees_the_close_reason() {
    let b = Broker::start().await;
    let mut s = raw_amqp::Raw::open(b.addr()).await;
    let http = b.http();
    let conn = one_connection(&http).await;
    let enc = conn["name"]
        .as_str()
        .unwrap()
        .replace(' ', "%20")
        .replace('>', "%3E");
    http.request(
        "DELETE",
        &format!("/api/connections/{enc}"),
        None,
        &[("X-Reason", "bye now")],
    )
    .await;
    let close = within(5, s.connection_close())
        .await
        .expect("connection.close");
    assert_eq!(close.reply_code, 320);
    assert_eq!(close.reply_text.as_str(), "CONNECTION_FORCED - bye now");
}
