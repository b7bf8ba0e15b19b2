//! Priority queues (`x-max-priority`) as RabbitMQ documents them: higher `priority` first, FIFO
//! within a priority, a priority above the maximum counts as the maximum and none as 0,
//! requeued messages go back to their place; the order holds for consumers with a prefetch,
//! for backlogs paged out to disk, and across a restart of a durable queue (also when the
//! recovered backlog stays paged out).
use crate::common;
use common::durability::small;
use common::features::*;
use common::queues::{consume, next};
use common::*;

use lapin::options::*;
use lapin::{BasicProperties, Channel};

async fn fill(ch: &Channel, queue: &str, msgs: &[(&str, Option<u8>)]) {
    for (body, p) in msgs {
        let props = match p {
            Some(p) => prio(*p),
            None => BasicProperties::default(),
        };
        send(ch, "", queue, body, props).await;
    }
}

#[tokio::test]
async fn higher_priority_first_fifo_within_a_priority() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "p", args(&[("x-max-priority", int(10))])).await;
    let msgs = [
        ("a1", Some(1)),
        ("b5", Some(5)),
        ("c3", Some(3)),
        ("d-none", None),
        ("e10", Some(10)),
        ("f5", Some(5)),
        ("g0", Some(0)),
    ];
    fill(&ch, "p", &msgs).await;
    assert_eq!(
        bodies(&ch, "p").await,
        ["e10", "b5", "f5", "c3", "a1", "d-none", "g0"]
    );
    b.stop().await;
}

#[tokio::test]
async fn priority_above_the_maximum_counts_as_the_maximum() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "cap", args(&[("x-max-priority", int(3))])).await;
    fill(
        &ch,
        "cap",
        &[
            ("low", Some(1)),
            ("three", Some(3)),
            ("nine", Some(9)),
            ("three-again", Some(3)),
        ],
    )
    .await;
    assert_eq!(
        bodies(&ch, "cap").await,
        ["three", "nine", "three-again", "low"]
    );
    b.stop().await;
}

#[tokio::test]
async fn without_x_max_priority_the_property_is_ignored() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "fifo", args(&[])).await;
    fill(&ch, "fifo", &[("1", Some(1)), ("2", Some(9)), ("3", None)]).await;
    assert_eq!(bodies(&ch, "fifo").await, ["1", "2", "3"]);
    b.stop().await;
}

#[tokio::test]
async fn requeued_messages_go_back_to_their_place() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "rq", args(&[("x-max-priority", int(5))])).await;
    fill(
        &ch,
        "rq",
        &[
            ("low", Some(1)),
            ("hi1", Some(5)),
            ("hi2", Some(5)),
            ("mid", Some(3)),
        ],
    )
    .await;
    let mut tags = Vec::new();
    for want in ["hi1", "hi2"] {
        let m = within(
            5,
            ch.basic_get("rq".into(), BasicGetOptions { no_ack: false }),
        )
        .await
        .expect("get")
        .expect("message");
        assert_eq!(text(&m), want);
        tags.push(m.delivery.delivery_tag);
    }
    let opts = BasicNackOptions {
        multiple: true,
        requeue: true,
    };
    within(5, ch.basic_nack(tags[1], opts)).await.expect("nack");
    assert_eq!(bodies(&ch, "rq").await, ["hi1", "hi2", "mid", "low"]);
    b.stop().await;
}

#[tokio::test]
async fn consumer_with_prefetch_gets_the_backlog_in_priority_order() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare_args(&ch, "pc", args(&[("x-max-priority", int(9))])).await;
    for i in 0..10u8 {
        send(&ch, "", "pc", &format!("p{i}"), prio(i)).await;
    }
    within(5, ch.basic_qos(1, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = consume(&ch, "pc", false).await;
    for i in (0..10u8).rev() {
        let d = next(&mut consumer).await;
        assert_eq!(String::from_utf8_lossy(&d.data), format!("p{i}"));
        within(5, d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    b.stop().await;
}

/// Bodies of 1 KiB, so a few hundred messages pass a small memory limit.
fn big(i: u32, p: u8) -> String {
    let mut s = format!("{p}:{i:05}:");
    s.push_str(&"x".repeat(1000));
    s
}

/// (priority, index) of a body made by [`big`].
fn key(body: &str) -> (u8, u32) {
    let mut parts = body.split(':');
    let p = parts.next().and_then(|p| p.parse().ok()).expect("priority");
    let i = parts.next().and_then(|i| i.parse().ok()).expect("index");
    (p, i)
}

/// Priority descending, then publish order.
fn check_order(got: &[String], n: usize) {
    assert_eq!(got.len(), n);
    let keys: Vec<(u8, u32)> = got.iter().map(|b| key(b)).collect();
    for w in keys.windows(2) {
        let ((p0, i0), (p1, i1)) = (w[0], w[1]);
        assert!(
            p0 > p1 || (p0 == p1 && i0 < i1),
            "{:?} before {:?}",
            w[0],
            w[1]
        );
    }
}

#[tokio::test]
async fn paged_out_backlog_keeps_priority_order() {
    let b = Broker::start_with(|c| c.store.queue_memory_limit = 32 * 1024).await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    declare_args(&ch, "paged", args(&[("x-max-priority", int(3))])).await;
    let n = 400u32;
    for i in 0..n {
        let p = (i * 7 % 4) as u8;
        assert!(send_confirmed(&ch, "paged", &big(i, p), prio(p)).await);
    }
    check_order(&bodies(&ch, "paged").await, n as usize);
    b.stop().await;
}

#[tokio::test]
async fn durable_priority_queue_keeps_its_order_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A memory limit small enough that recovery leaves most of the backlog on disk.
    let cfg = |c: &mut warren::Config| {
        small(c);
        c.store.queue_memory_limit = 32 * 1024;
    };
    let b = Broker::start_in(dir.path(), cfg).await;
    let (_c, ch) = b.channel().await;
    confirm_mode(&ch).await;
    declare_with(&ch, "dp", durable(), args(&[("x-max-priority", int(4))]))
        .await
        .expect("declare");
    let n = 300u32;
    for i in 0..n {
        let p = (i * 7 % 6) as u8;
        let props = prio(p).with_delivery_mode(2);
        assert!(send_confirmed(&ch, "dp", &big(i, p.min(4)), props).await);
    }
    within(10, b.stop()).await;
    let b = Broker::start_in(dir.path(), cfg).await;
    let (_c, ch) = b.channel().await;
    check_order(&bodies(&ch, "dp").await, n as usize);
    b.stop().await;
}
