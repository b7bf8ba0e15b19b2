//! Resource alarms: with the memory high watermark forced to 1 byte a publishing connection is
//! blocked (connection.blocked, then not read), a consuming one goes on draining, the alarm
//! health checks fail; raising the watermark clears the alarm and unblocks the publisher.

use crate::common;

use common::http::eventually;
use common::*;
use futures_lite::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use std::time::Duration;
use warren::config::SizeSetting;

async fn wait_blocked(c: &lapin::Connection, want: bool) {
    within(5, async {
        while c.status().blocked() != want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn memory_alarm_blocks_publishers_and_clears() {
    let b = Broker::start_with(|c| {
        c.alarms.memory_high_watermark = SizeSetting::Bytes(1);
        c.alarms.check_interval = 50;
    })
    .await;
    let http = b.http();
    let r = http.get("/api/health/checks/alarms").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "failed");
    assert_eq!(r.json()["alarms"][0]["resource"], "memory");
    assert_eq!(
        http.get("/api/health/checks/ready-to-serve-clients")
            .await
            .status,
        503
    );
    assert_eq!(http.get("/api/nodes").await.json()[0]["mem_alarm"], true);

    let (cons_conn, cons_ch) = b.channel().await;
    declare(&cons_ch, "q").await;
    let mut consumer = cons_ch
        .basic_consume(
            "q".into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let (pub_conn, pub_ch) = b.channel().await;
    publish(&pub_ch, "q", b"m1").await;
    wait_blocked(&pub_conn, true).await;
    assert!(!cons_conn.status().blocked(), "a consumer is not blocked");
    // The consumer drains what was published.
    let d = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(d.data, b"m1");
    let conns = eventually(5, || {
        let http = http.clone();
        async move {
            let l = http.get("/api/connections").await.json();
            let states: Vec<String> = l
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["state"].as_str().unwrap().to_string())
                .collect();
            (states.contains(&"blocked".to_string()) && states.contains(&"blocking".to_string()))
                .then_some(states)
        }
    })
    .await;
    assert_eq!(conns.len(), 2);

    // Published while blocked: not read by the broker until the alarm clears.
    let ch2 = pub_ch.clone();
    let pending = tokio::spawn(async move { publish(&ch2, "q", b"m2").await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "nothing gets through while blocked"
    );

    b.broker().alarms.set_memory_limit(u64::MAX);
    wait_blocked(&pub_conn, false).await;
    within(5, pending).await.unwrap();
    let d = within(5, consumer.next()).await.unwrap().unwrap();
    assert_eq!(d.data, b"m2");
    assert_eq!(
        http.get("/api/health/checks/alarms").await.json()["status"],
        "ok"
    );
    assert_eq!(
        http.get("/api/health/checks/ready-to-serve-clients")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn disk_alarm_is_reported_and_blocks_with_its_reason() {
    let b = Broker::start().await;
    let http = b.http();
    assert_eq!(http.get("/api/health/checks/alarms").await.status, 200);
    let (pub_conn, pub_ch) = b.channel().await;
    declare(&pub_ch, "d").await;
    b.broker().alarms.set_disk_free_limit(u64::MAX);
    let r = http.get("/api/health/checks/alarms").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["alarms"][0]["resource"], "disk");
    assert_eq!(
        http.get("/api/nodes").await.json()[0]["disk_free_alarm"],
        true
    );
    let metrics = http.anonymous().get("/metrics").await.body;
    assert!(metrics.contains("rabbitmq_alarms_free_disk_space_watermark 1"));
    publish(&pub_ch, "d", b"x").await;
    wait_blocked(&pub_conn, true).await;
    b.broker().alarms.set_disk_free_limit(0);
    wait_blocked(&pub_conn, false).await;
    assert_eq!(http.get("/api/health/checks/alarms").await.status, 200);
}

#[tokio::test]
async fn a_blocked_connection_is_not_dropped_for_missed_heartbeats() {
    let b = Broker::start_with(|c| {
        c.limits.heartbeat = 1;
    })
    .await;
    let url = format!("{}?heartbeat=1", b.url());
    let c = lapin::Connection::connect(&url, Default::default())
        .await
        .unwrap();
    let ch = c.create_channel().await.unwrap();
    declare(&ch, "hb").await;
    b.broker().alarms.set_memory_limit(1);
    publish(&ch, "hb", b"x").await;
    wait_blocked(&c, true).await;
    // lapin stops writing while blocked (no heartbeats either); the broker must not count that.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    b.broker().alarms.set_memory_limit(u64::MAX);
    wait_blocked(&c, false).await;
    assert!(c.status().connected());
    declare(&ch, "still-here").await;
}
