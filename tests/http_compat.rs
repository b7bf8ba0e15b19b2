//! The parts of RabbitMQ's management API that tools walk without checking they exist: the
//! endpoints for features warren answers as "none set" (parameters, operator policies, topic
//! permissions, feature flags...), the Erlang-runtime fields of nodes, queues, connections and
//! channels, RabbitMQ's 401 for a refusal, and the defaults of a bare PUT body. Shapes taken from
//! RabbitMQ 3.10 answering the same requests.

use crate::common;

use common::*;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use serde_json::json;

#[tokio::test]
async fn runtime_parameters_show_vhost_limits_and_refuse_unknown_components() {
    let b = Broker::start().await;
    let http = b.http();
    let r = http
        .put("/api/vhost-limits/%2F/max-connections", json!({"value": 7}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let want = json!({"vhost": "/", "component": "vhost-limits", "name": "limits",
                      "value": {"max-connections": 7}});
    assert_eq!(
        http.get("/api/parameters").await.json(),
        json!([want.clone()])
    );
    assert_eq!(
        http.get("/api/parameters/vhost-limits/%2F/limits")
            .await
            .json(),
        want
    );
    assert_eq!(http.get("/api/parameters/shovel").await.json(), json!([]));
    assert_eq!(http.get("/api/parameters/shovel/%2F").await.status, 200);
    assert_eq!(http.get("/api/parameters/shovel/nope").await.status, 404);
    let r = http
        .put(
            "/api/parameters/federation-upstream/%2F/x",
            json!({"value": {}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("component federation-upstream not found"));
    // The per-vhost definitions carry the limits too.
    let d = http.get("/api/definitions/%2F").await.json();
    assert_eq!(d["parameters"], json!([want]));
    // A PUT of the parameter replaces the whole set, as RabbitMQ; a bad name changes nothing.
    let set = |v| json!({"value": v});
    let r = http
        .put(
            "/api/parameters/vhost-limits/%2F/limits",
            set(json!({"max-queues": 3})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let only_queues = json!({"vhost": "/", "component": "vhost-limits", "name": "limits",
                             "value": {"max-queues": 3}});
    let shown = || http.get("/api/parameters/vhost-limits/%2F/limits");
    assert_eq!(shown().await.json(), only_queues);
    let r = http
        .put(
            "/api/parameters/vhost-limits/%2F/limits",
            set(json!({"max-connections": 1, "max-bogus": 2})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(shown().await.json(), only_queues);
    assert_eq!(
        http.delete("/api/parameters/vhost-limits/%2F/limits")
            .await
            .status,
        204
    );
    assert_eq!(http.get("/api/vhost-limits/%2F").await.json(), json!([]));
}

#[tokio::test]
async fn features_warren_lacks_answer_as_none_set() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(http.get("/api/operator-policies").await.json(), json!([]));
    assert_eq!(
        http.get("/api/operator-policies/%2F").await.json(),
        json!([])
    );
    assert_eq!(http.get("/api/operator-policies/nope").await.status, 404);
    assert_eq!(http.get("/api/operator-policies/%2F/p").await.status, 404);
    let r = http
        .put(
            "/api/operator-policies/%2F/p",
            json!({"pattern": ".*", "definition": {}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(http.get("/api/topic-permissions").await.json(), json!([]));
    assert_eq!(
        http.get("/api/topic-permissions/%2F/guest").await.status,
        404
    );
    assert_eq!(
        http.get("/api/users/guest/topic-permissions").await.json(),
        json!([])
    );
    assert_eq!(
        http.get("/api/users/nobody/topic-permissions").await.status,
        404
    );
    assert_eq!(
        http.get("/api/vhosts/%2F/topic-permissions").await.json(),
        json!([])
    );
    let g = http.get("/api/global-parameters").await.json();
    assert!(g
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "internal_cluster_id"));
    let f = http.get("/api/feature-flags").await.json();
    assert!(f
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == "quorum_queue" && x["state"] == "enabled"));
    // The login page reads /api/auth before it has credentials.
    let a = http.anonymous().get("/api/auth").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["enable_uaa"], false);
    assert_eq!(
        http.post("/api/rebalance/queues", json!({})).await.status,
        204
    );
    assert_eq!(http.get("/api/rebalance/queues").await.status, 405);
}

#[tokio::test]
async fn health_checks_answer_like_rabbitmq() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(
        http.get("/api/healthchecks/node").await.json(),
        json!({"status": "ok"})
    );
    let node = http.get("/api/overview").await.json()["node"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        http.get(&format!("/api/healthchecks/node/{node}"))
            .await
            .status,
        200
    );
    assert_eq!(
        http.get("/api/healthchecks/node/other@host").await.status,
        404
    );
    assert_eq!(
        http.get("/api/health/checks/certificate-expiration/1/weeks")
            .await
            .status,
        200
    );
    let r = http
        .get("/api/health/checks/certificate-expiration/1/fortnights")
        .await;
    assert_eq!(r.status, 400);
    let r = http.get("/api/health/checks/port-listener/1").await;
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["reason"], "No active listener");
    assert!(v["ports"]
        .as_array()
        .unwrap()
        .contains(&json!(b.addr().port())));
    let r = http.get("/api/health/checks/protocol-listener/stomp").await;
    assert_eq!(r.status, 503);
    assert!(r.json()["protocols"]
        .as_array()
        .unwrap()
        .contains(&json!("amqp")));
    let v = http
        .get("/api/health/checks/node-is-quorum-critical")
        .await
        .json();
    assert_eq!(v, json!({"status": "ok", "reason": "single node cluster"}));
}

#[tokio::test]
async fn objects_carry_rabbitmqs_runtime_fields() {
    let b = Broker::start().await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "work").await;
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    let _consumer = ch
        .basic_consume(
            "work".into(),
            "tag-1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let node = http.get("/api/nodes").await.json()[0].clone();
    for k in [
        "exchange_types",
        "auth_mechanisms",
        "contexts",
        "enabled_plugins",
        "gc_num_details",
        "io_read_count",
        "mnesia_ram_tx_count",
        "metrics_gc_queue_length",
        "cluster_links",
    ] {
        assert!(node.get(k).is_some(), "node lacks {k}");
    }
    let q = http.get("/api/queues/%2F/work").await.json();
    for k in [
        "backing_queue_status",
        "garbage_collection",
        "messages_ram",
        "head_message_timestamp",
        "exclusive_consumer_tag",
        "incoming",
        "deliveries",
    ] {
        assert!(q.get(k).is_some(), "queue lacks {k}");
    }
    assert_eq!(q["consumer_details"][0]["consumer_tag"], "tag-1");
    let conn = http.get("/api/connections").await.json()[0].clone();
    for k in [
        "garbage_collection",
        "reductions",
        "ssl_protocol",
        "peer_cert_subject",
    ] {
        assert!(conn.get(k).is_some(), "connection lacks {k}");
    }
    let chan = &http.get("/api/channels").await.json()[0];
    let name = chan["name"].as_str().unwrap();
    let one = http
        .get(&format!(
            "/api/channels/{}",
            name.replace(' ', "%20").replace('>', "%3E")
        ))
        .await
        .json();
    assert_eq!(one["consumer_details"][0]["consumer_tag"], "tag-1");
    assert_eq!(one["publishes"], json!([]));
    let o = http.get("/api/overview").await.json();
    assert!(o["sample_retention_policies"]["global"].is_array());
    assert!(o["listeners"][0]["socket_opts"].is_object());
    assert_eq!(o["churn_rates"]["queue_created"], 1);
    assert_eq!(o["churn_rates"]["channel_created"], 1);
    assert_eq!(o["churn_rates"]["connection_created"], 1);
    let q = http
        .get("/api/queues/%2F/work?columns=type,members")
        .await
        .json();
    assert_eq!(q, json!({"type": "classic"}));
}

#[tokio::test]
async fn quorum_and_stream_queues_name_their_members() {
    let b = Broker::start().await;
    let http = b.http();
    for (n, t) in [("qq", "quorum"), ("st", "stream")] {
        let r = http
            .put(
                &format!("/api/queues/%2F/{n}"),
                json!({"durable": true, "arguments": {"x-queue-type": t}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let q = http.get(&format!("/api/queues/%2F/{n}")).await.json();
        assert_eq!(q["members"], json!([q["node"].clone()]), "{t}");
        assert_eq!(q["online"], q["members"], "{t}");
    }
}

#[tokio::test]
async fn a_bare_queue_body_declares_a_transient_queue() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(
        http.put("/api/queues/%2F/bare", json!({})).await.status,
        201
    );
    assert_eq!(
        http.get("/api/queues/%2F/bare").await.json()["durable"],
        false
    );
}

#[tokio::test]
async fn a_binding_key_is_found_quoted_once_or_twice() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/exchanges/%2F/t", json!({"type": "topic"}))
        .await;
    http.put("/api/queues/%2F/q", json!({})).await;
    let r = http
        .post("/api/bindings/%2F/e/t/q/q", json!({"routing_key": "a.#"}))
        .await;
    assert_eq!(r.status, 201);
    // curl users write the properties_key as listed (`a.%23`); rabbitmqadmin quotes it again.
    let one = http.get("/api/bindings/%2F/e/t/q/q/a.%23").await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["routing_key"], "a.#");
    assert_eq!(
        http.get("/api/bindings/%2F/e/t/q/q/a.%2523").await.status,
        200
    );
    assert_eq!(
        http.delete("/api/bindings/%2F/e/t/q/q/a.%23").await.status,
        204
    );
    assert_eq!(
        http.get("/api/bindings/%2F/e/t/q/q/a.%23").await.status,
        404
    );
}

#[tokio::test]
async fn a_refusal_is_401_not_authorised() {
    let b = Broker::start().await;
    let http = b.http();
    http.put(
        "/api/users/mon",
        json!({"password": "pw", "tags": "monitoring"}),
    )
    .await;
    http.put("/api/queues/%2F/q", json!({})).await;
    let r = http.as_user("mon", "pw").delete("/api/queues/%2F/q").await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "not_authorised");
    let m = http.as_user("mon", "pw").get("/api/users").await;
    assert_eq!(m.status, 401);
}

#[tokio::test]
async fn consumer_details_follow_the_consumer() {
    let b = Broker::start().await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "w").await;
    let mut consumer = ch
        .basic_consume(
            "w".into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish(&ch, "w", b"x").await;
    let d = within(5, consumer.next()).await.unwrap().unwrap();
    drop(d);
    let q = http.get("/api/queues/%2F/w").await.json();
    assert_eq!(q["consumer_details"].as_array().unwrap().len(), 1);
    ch.basic_cancel("t".into(), Default::default())
        .await
        .unwrap();
    let q = http.get("/api/queues/%2F/w").await.json();
    assert_eq!(q["consumer_details"], json!([]));
}

#[tokio::test]
async fn a_message_without_properties_shows_them_as_an_empty_list() {
    let b = Broker::start().await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "p").await;
    publish(&ch, "p", b"x").await;
    let got = http
        .post(
            "/api/queues/%2F/p/get",
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await
        .json();
    assert_eq!(got[0]["properties"], json!([]), "{got}");
}

/// The certificate check reads the listener certificates: rcgen's expire in 4096, so they pass
/// for a year and fail for 2500 years, naming the file.
#[tokio::test]
async fn certificate_expiration_reads_the_tls_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(dir.path().join("server.pem"), cert.cert.pem()).expect("pem");
    std::fs::write(dir.path().join("server.key"), cert.key_pair.serialize_pem()).expect("key");
    let d = dir.path().to_path_buf();
    let b = Broker::start_with(move |c| {
        c.tls.port = 0;
        c.tls.cert_file = Some(d.join("server.pem"));
        c.tls.key_file = Some(d.join("server.key"));
    })
    .await;
    let http = b.http();
    let ok = http
        .get("/api/health/checks/certificate-expiration/1/years")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let r = http
        .get("/api/health/checks/certificate-expiration/2500/years")
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    let v = r.json();
    assert_eq!(v["reason"], "Certificates expiring");
    assert!(v["expired"][0]["certfile"]
        .as_str()
        .unwrap()
        .ends_with("server.pem"));
    assert_eq!(v["expired"][0]["protocol"], "amqp/ssl");
}

/// `idle_since` appears on a queue and a channel once their samples stop moving, as an ISO
/// time, and goes away while messages flow.
#[tokio::test]
async fn idle_since_tracks_activity() {
    let b = Broker::start_with(|c| c.http.collect_statistics_interval = 100).await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "idle").await;
    let q = common::http::eventually(5, || {
        let http = http.clone();
        async move {
            let q = http.get("/api/queues/%2F/idle").await.json();
            q.get("idle_since").is_some().then_some(q)
        }
    })
    .await;
    let t = q["idle_since"].as_str().unwrap();
    assert!(
        t.len() == 29 && t.ends_with("+00:00") && t.as_bytes()[10] == b'T',
        "{t}"
    );
    let chans = http.get("/api/channels").await.json();
    assert!(chans[0]["idle_since"].is_string(), "{chans}");
    // Publishing moves the counters: the queue is active until its samples settle again.
    common::http::eventually(5, || {
        let http = http.clone();
        let ch = ch.clone();
        async move {
            publish(&ch, "idle", b"x").await;
            let q = http.get("/api/queues/%2F/idle").await.json();
            q.get("idle_since").is_none().then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn node_memory_breakdown_has_rabbitmqs_categories() {
    let b = Broker::start().await;
    let http = b.http();
    let (_c, ch) = b.channel().await;
    declare(&ch, "mem").await;
    publish(&ch, "mem", &[7u8; 10_000]).await;
    let node = http.get("/api/overview").await.json()["node"]
        .as_str()
        .unwrap()
        .to_string();
    let m = common::http::eventually(5, || {
        let (http, node) = (http.clone(), node.clone());
        async move {
            let m = http.get(&format!("/api/nodes/{node}/memory")).await.json();
            (m["memory"]["queue_procs"].as_u64().unwrap_or(0) >= 10_000).then_some(m)
        }
    })
    .await;
    assert_eq!(m["memory"]["strategy"], "rss");
    assert!(m["memory"]["total"]["rss"].as_u64().unwrap() > 0);
    for k in [
        "connection_readers",
        "binary",
        "mnesia",
        "other_proc",
        "reserved_unallocated",
    ] {
        assert!(m["memory"][k].is_u64(), "{k}");
    }
    let r = http
        .get(&format!("/api/nodes/{node}/memory/relative"))
        .await
        .json();
    assert_eq!(r["memory"]["total"], 100);
    assert_eq!(http.get("/api/nodes/other@x/memory").await.status, 404);
    let n = http
        .get(&format!("/api/nodes/{node}?memory=true"))
        .await
        .json();
    assert!(n["memory"]["queue_procs"].is_u64(), "{n}");
    assert!(http
        .get(&format!("/api/nodes/{node}"))
        .await
        .json()
        .get("memory")
        .is_none());
}

#[tokio::test]
async fn vhost_start_and_exchange_types() {
    let b = Broker::start().await;
    let http = b.http();
    let node = http.get("/api/overview").await.json()["node"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http
        .post(&format!("/api/vhosts/%2F/start/{node}"), json!({}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = http
        .post(&format!("/api/vhosts/nope/start/{node}"), json!({}))
        .await;
    assert_eq!(r.status, 404);
    let types = http.get("/api/overview").await.json()["exchange_types"].clone();
    let names: Vec<&str> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["direct", "fanout", "headers", "topic", "x-delayed-message"]
    );
}

/// Lists come in RabbitMQ's default order: by vhost, then name (permissions: then user;
/// channel names compared as strings, so "(10)" before "(2)").
#[tokio::test]
async fn lists_are_ordered_by_vhost_then_name() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/vhosts/b-vhost", json!({})).await;
    http.put("/api/users/alice", json!({"password": "pw", "tags": ""}))
        .await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    http.put("/api/permissions/b-vhost/alice", all.clone())
        .await;
    http.put("/api/permissions/b-vhost/guest", all.clone())
        .await;
    let perms = http.get("/api/permissions").await.json();
    let keys: Vec<(String, String)> = perms
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["vhost"].as_str().unwrap().into(),
                p["user"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 3, "{perms}");
    let conn = b.connect().await;
    let mut chans = Vec::new();
    for _ in 0..10 {
        chans.push(conn.create_channel().await.unwrap());
    }
    let names: Vec<String> = http
        .get("/api/channels")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 10);
    assert!(
        names[0].ends_with("(1)") && names[1].ends_with("(10)"),
        "{names:?}"
    );
}

/// RabbitMQ's API answers a path with a trailing slash as the path without it.
#[tokio::test]
async fn a_trailing_slash_is_the_same_resource() {
    let b = Broker::start().await;
    let http = b.http();
    http.put("/api/queues/%2F/slash", json!({})).await;
    assert!(http.get("/api/queues/").await.json().is_array());
    assert_eq!(http.get("/api/overview/").await.status, 200);
    assert_eq!(
        http.get("/api/queues/%2F/slash/").await.json()["name"],
        "slash"
    );
    let v = http.get("/api/queues/?columns=name").await.json();
    assert_eq!(v, json!([{"name": "slash"}]));
    assert_eq!(http.delete("/api/queues/%2F/slash/").await.status, 204);
}
