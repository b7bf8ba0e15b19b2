//! Prometheus text at `/metrics` (RabbitMQ's `rabbitmq_…` names) and per-queue series at
//! `/metrics/per-object`, with values that match the traffic.

use crate::common;

use common::*;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn node_metrics_match_the_traffic() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "m").await;
    for _ in 0..4 {
        publish(&ch, "m", b"x").await;
    }
    get_body(&ch, "m").await.unwrap();
    let anon = b.http().anonymous();
    let text = common::http::eventually(5, || {
        let anon = anon.clone();
        async move {
            let t = anon.get("/metrics").await.body;
            (value(&t, "rabbitmq_queue_messages_ready") == Some(3.0)).then_some(t)
        }
    })
    .await;
    assert!(text.contains("# TYPE rabbitmq_connections gauge"));
    assert_eq!(value(&text, "rabbitmq_connections"), Some(1.0));
    assert_eq!(value(&text, "rabbitmq_channels"), Some(1.0));
    assert_eq!(value(&text, "rabbitmq_queues"), Some(1.0));
    assert_eq!(value(&text, "rabbitmq_queue_messages_unacked"), Some(0.0));
    assert_eq!(
        value(
            &text,
            "rabbitmq_global_messages_received_total{protocol=\"amqp091\"}"
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &text,
            "rabbitmq_global_messages_delivered_total{protocol=\"amqp091\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "rabbitmq_global_messages_acknowledged_total{protocol=\"amqp091\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "rabbitmq_global_messages_confirmed_total{protocol=\"amqp091\"}"
        ),
        Some(0.0)
    );
    assert!(value(&text, "rabbitmq_process_resident_memory_bytes").unwrap() > 0.0);
    assert_eq!(
        value(&text, "rabbitmq_alarms_memory_used_watermark"),
        Some(0.0)
    );
    assert!(text.contains("rabbitmq_identity_info{rabbitmq_node=\"warren@"));
    // Every sample line is `name[{labels}] value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad line {l}");
    }
}

#[tokio::test]
async fn per_object_has_a_series_per_queue() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "a").await;
    declare(&ch, "b\"q").await;
    publish(&ch, "a", b"x").await;
    let anon = b.http().anonymous();
    let text = common::http::eventually(5, || {
        let anon = anon.clone();
        async move {
            let t = anon.get("/metrics/per-object").await.body;
            (value(&t, "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"a\"}") == Some(1.0))
                .then_some(t)
        }
    })
    .await;
    assert_eq!(
        value(
            &text,
            "rabbitmq_queue_messages_published_total{vhost=\"/\",queue=\"a\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"b\\\"q\"}"
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_separate_prometheus_port_serves_only_metrics() {
    let b = Broker::start_with(|c| c.http.prometheus_port = Some(0)).await;
    let addr = b.handle.as_ref().unwrap().prometheus_addr().unwrap();
    let p = common::http::Http::new(addr, "guest", "guest").anonymous();
    assert_eq!(p.get("/metrics").await.status, 200);
    assert_eq!(p.get("/api/overview").await.status, 404);
}

/// The series the official RabbitMQ-Overview Grafana dashboard queries exist, with the labels
/// it selects on, and count what happened.
#[tokio::test]
async fn the_grafana_overview_series_are_there() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "g").await;
    for _ in 0..3 {
        publish(&ch, "g", b"x").await;
    }
    let anon = b.http().anonymous();
    let text = common::http::eventually(5, || {
        let anon = anon.clone();
        async move {
            let t = anon.get("/metrics").await.body;
            (value(&t, "rabbitmq_queue_messages_ready") == Some(3.0)).then_some(t)
        }
    })
    .await;
    for s in [
        "rabbitmq_channel_consumers",
        "rabbitmq_channel_messages_redelivered_total",
        "rabbitmq_channel_messages_delivered_total",
        "rabbitmq_channel_messages_delivered_ack_total",
        "rabbitmq_channel_get_total",
        "rabbitmq_channel_get_ack_total",
        "rabbitmq_channel_messages_acked_total",
        "rabbitmq_channel_messages_unacked",
        "rabbitmq_channel_messages_unconfirmed",
        "rabbitmq_channel_messages_unroutable_dropped_total",
        "rabbitmq_channel_messages_unroutable_returned_total",
        "rabbitmq_connections_opened_total",
        "rabbitmq_channels_closed_total",
        "rabbitmq_queues_deleted_total",
        "rabbitmq_process_open_tcp_sockets",
        "rabbitmq_process_max_tcp_sockets",
        "rabbitmq_process_max_fds",
        "rabbitmq_consumers",
    ] {
        assert!(value(&text, s).is_some(), "missing {s}");
    }
    assert_eq!(
        value(&text, "rabbitmq_channel_messages_published_total"),
        Some(3.0)
    );
    assert_eq!(
        value(&text, "rabbitmq_queue_messages_published_total"),
        Some(3.0)
    );
    assert_eq!(value(&text, "rabbitmq_channels_opened_total"), Some(1.0));
    assert_eq!(value(&text, "rabbitmq_queues_declared_total"), Some(1.0));
    assert_eq!(value(&text, "rabbitmq_queues_created_total"), Some(1.0));
    assert!(text.contains("rabbitmq_cluster_permanent_id=\""));
    assert!(text.contains("rabbitmq_build_info{rabbitmq_version=\""));
    assert_eq!(
        value(&text, "rabbitmq_global_publishers{protocol=\"amqp091\"}"),
        Some(1.0)
    );
}

/// A family appears once per exposition (Prometheus rejects a second TYPE line), on both paths.
#[tokio::test]
async fn every_family_is_declared_once() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "once").await;
    let anon = b.http().anonymous();
    for path in ["/metrics", "/metrics/per-object"] {
        let t = anon.get(path).await.body;
        let mut seen = std::collections::HashSet::new();
        for l in t.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.to_string()), "{path}: {l} twice");
        }
        assert!(seen.len() > 60, "{path}: only {} families", seen.len());
    }
}
