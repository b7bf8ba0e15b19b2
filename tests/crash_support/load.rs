//! The client load of the kill -9 tests: publishers (persistent messages, confirms, a window of
//! them in flight) and manual-ack consumers, each recording what it saw in a shared [`Ledger`]
//! until told to stop or the broker dies under it.
use super::*;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Confirmation, Connection, ConnectionProperties};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const WINDOW: usize = 100;
pub const PREFETCH: u16 = 50;

/// What the clients saw, over all rounds.
#[derive(Default)]
pub struct Ledger {
    pub confirmed: HashSet<Id>,
    pub nacked: u64,
    /// Acks sent (whether the broker handled them before dying is unknown).
    pub acked: HashSet<Id>,
    /// Delivered in the current broker lifetime.
    pub seen_this_life: HashSet<Id>,
    /// Delivered in an earlier lifetime and not acked then.
    pub delivered_unacked_before: HashSet<Id>,
    /// Round counters.
    pub round_confirmed: u64,
    pub round_acked: u64,
    /// Delivered again although an ack for it had been sent in an earlier lifetime.
    pub round_back_after_ack: u64,
    /// Delivered before a crash without an ack, then again without the redelivered flag.
    pub round_lost_redelivered: u64,
    pub errors: Vec<String>,
}

pub type Shared = Arc<Mutex<Ledger>>;

/// Publish persistent messages with confirms until `stop` or an error.
/// Returns the next sequence number to use.
pub async fn publisher(
    url: String,
    id: u32,
    mut seq: u64,
    stop: Arc<AtomicBool>,
    ledger: Shared,
) -> u64 {
    let Ok(Ok(c)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    else {
        return seq;
    };
    let Ok(ch) = c.create_channel().await else {
        return seq;
    };
    if ch
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return seq;
    }
    let mut window: VecDeque<(Id, lapin::PublisherConfirm)> = VecDeque::new();
    let record = |r: Result<Result<Confirmation, lapin::Error>, _>, mid: Id| match r {
        Ok(Ok(Confirmation::Ack(_))) => {
            let mut l = ledger.lock().unwrap();
            l.confirmed.insert(mid);
            l.round_confirmed += 1;
            true
        }
        Ok(Ok(Confirmation::Nack(_))) => {
            ledger.lock().unwrap().nacked += 1;
            true
        }
        _ => false,
    };
    while !stop.load(Ordering::Relaxed) {
        let mid = (id, seq);
        seq += 1;
        let payload = body(mid);
        let publish = ch.basic_publish(
            EXCHANGE.into(),
            KEY.into(),
            BasicPublishOptions::default(),
            &payload,
            properties(mid),
        );
        match tokio::time::timeout(Duration::from_secs(5), publish).await {
            Ok(Ok(pc)) => window.push_back((mid, pc)),
            _ => break,
        }
        if window.len() >= WINDOW {
            let (m, pc) = window.pop_front().unwrap();
            if !record(tokio::time::timeout(Duration::from_secs(5), pc).await, m) {
                break;
            }
        }
    }
    // Confirms that came in but were not looked at yet still count.
    for (m, pc) in window {
        if !record(tokio::time::timeout(Duration::from_secs(2), pc).await, m) {
            break;
        }
    }
    seq
}

/// Consume with manual ack, acking each message, until `stop` or an error.
pub async fn consumer(url: String, id: u32, stop: Arc<AtomicBool>, ledger: Shared) {
    let Ok(Ok(c)) = tokio::time::timeout(
        Duration::from_secs(5),
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    else {
        return;
    };
    let Ok(ch) = c.create_channel().await else {
        return;
    };
    if ch
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let Ok(mut stream) = ch
        .basic_consume(
            QUEUE.into(),
            format!("crash-consumer-{id}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let d = match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(d))) => d,
            Ok(_) => return,
        };
        if stop.load(Ordering::Relaxed) {
            // The broker may be dead: lapin would accept the ack, but it could never arrive.
            break;
        }
        let mid = parse(&d.data);
        {
            let mut l = ledger.lock().unwrap();
            if !consistent(&d) {
                l.errors
                    .push(format!("{mid:?}: body and properties disagree"));
            }
            // Twice in one lifetime only after a requeue (a consumer gone), so flagged.
            if !l.seen_this_life.insert(mid) && !d.redelivered {
                l.errors.push(format!(
                    "{mid:?} delivered twice in one broker lifetime, not flagged redelivered"
                ));
            }
            if l.acked.contains(&mid) {
                l.round_back_after_ack += 1;
            } else if l.delivered_unacked_before.contains(&mid) && !d.redelivered {
                l.round_lost_redelivered += 1;
            }
        }
        let ack = ch.basic_ack(d.delivery_tag, BasicAckOptions::default());
        match tokio::time::timeout(Duration::from_secs(5), ack).await {
            Ok(Ok(())) => {
                let mut l = ledger.lock().unwrap();
                l.acked.insert(mid);
                l.round_acked += 1;
            }
            _ => return,
        }
    }
    // Told to stop while the broker may still be up (the soak test's consumer churn): leave
    // with a close, so what this consumer held goes back to the queue now.
    let _ = tokio::time::timeout(Duration::from_secs(2), c.close(200, "bye".into())).await;
}
