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
        value(&text, "rabbitmq_global_messages_received_total"),
        Some(4.0)
    );
    assert_eq!(
        value(&text, "rabbitmq_global_messages_delivered_total"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "rabbitmq_global_messages_acknowledged_total"),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "rabbitmq_global_messages_confirmed_total"),
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
