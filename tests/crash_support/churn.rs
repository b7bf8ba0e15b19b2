//! The topology churn of the kill -9 test: durable queues declared, bound, published to through
//! the binding and deleted while the load runs, and the check after each restart that whatever
//! got its `*-ok` (or confirm) is there and whatever was deleted stays gone.
use super::*;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the topology churn task was told: a definition whose `*-ok` arrived must survive a
/// kill -9; one whose request was sent without an answer may or may not.
#[derive(Default)]
pub struct Churn {
    next: u64,
    /// queue.declare-ok (durable queue `churn.N`).
    declared: HashSet<u64>,
    /// queue.bind-ok (crash.x, key `churn.N`).
    bound: HashSet<u64>,
    /// A persistent message published through the binding was confirmed.
    confirmed: HashSet<u64>,
    /// A publish was sent (confirmed or not).
    published: HashSet<u64>,
    /// queue.delete sent / delete-ok received.
    delete_sent: HashSet<u64>,
    deleted: HashSet<u64>,
    /// Deleted ones already seen gone after a restart.
    checked_gone: HashSet<u64>,
}

pub fn churn_name(n: u64) -> String {
    format!("churn.{n}")
}

/// Declares durable queues, binds them, publishes one persistent message to each through the
/// binding and deletes every other one, recording each `*-ok` and confirm, until `stop`.
pub async fn churn(url: String, stop: Arc<AtomicBool>, state: Arc<Mutex<Churn>>) {
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
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .is_err()
    {
        return;
    }
    let t = Duration::from_secs(5);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        let n = {
            let mut s = state.lock().unwrap();
            s.next += 1;
            s.next
        };
        let name = churn_name(n);
        let r = ch.queue_declare(name.as_str().into(), durable, FieldTable::default());
        let Ok(Ok(_)) = tokio::time::timeout(t, r).await else {
            return;
        };
        state.lock().unwrap().declared.insert(n);
        let r = ch.queue_bind(
            name.as_str().into(),
            EXCHANGE.into(),
            name.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        let Ok(Ok(())) = tokio::time::timeout(t, r).await else {
            return;
        };
        state.lock().unwrap().bound.insert(n);
        state.lock().unwrap().published.insert(n);
        let id = (7, n);
        let payload = body(id);
        let r = ch.basic_publish(
            EXCHANGE.into(),
            name.as_str().into(),
            BasicPublishOptions::default(),
            &payload,
            properties(id),
        );
        let Ok(Ok(pc)) = tokio::time::timeout(t, r).await else {
            return;
        };
        match tokio::time::timeout(t, pc).await {
            Ok(Ok(Confirmation::Ack(_))) => {
                state.lock().unwrap().confirmed.insert(n);
            }
            _ => return,
        }
        if n % 2 == 0 {
            let victim = n - 1;
            state.lock().unwrap().delete_sent.insert(victim);
            let r = ch.queue_delete(
                churn_name(victim).as_str().into(),
                QueueDeleteOptions::default(),
            );
            let Ok(Ok(_)) = tokio::time::timeout(t, r).await else {
                return;
            };
            state.lock().unwrap().deleted.insert(victim);
        }
    }
}

/// After a restart: every churn queue whose declare-ok arrived and whose delete was never sent
/// is there, holding exactly its message when that was confirmed; every one whose delete-ok
/// arrived is gone (each checked once, after the first restart since its delete: a 404 costs a
/// channel). With `rebind_check`, a fresh message through each surviving binding arrives too.
/// Returns (queues checked present, checked gone).
pub async fn check_churn(url: &str, state: &Mutex<Churn>, rebind_check: bool) -> (usize, usize) {
    let (declared, deleted, delete_sent, bound, confirmed, published, checked) = {
        let s = state.lock().unwrap();
        (
            s.declared.clone(),
            s.deleted.clone(),
            s.delete_sent.clone(),
            s.bound.clone(),
            s.confirmed.clone(),
            s.published.clone(),
            s.checked_gone.clone(),
        )
    };
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    // A connection per few hundred channels: lapin trips over reused channel ids otherwise.
    let mut c = connect(url).await;
    let mut channels = 1;
    let mut ch = c.create_channel().await.expect("channel");
    let (mut present, mut gone) = (Vec::new(), 0);
    let mut ids: Vec<u64> = declared.iter().copied().collect();
    ids.sort_unstable();
    for n in ids {
        let name = churn_name(n);
        if deleted.contains(&n) && checked.contains(&n) {
            continue;
        }
        let r = ch
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await;
        if r.is_err() {
            if channels >= 500 {
                let _ = c.close(200, "bye".into()).await;
                c = connect(url).await;
                channels = 0;
            }
            ch = c.create_channel().await.expect("channel");
            channels += 1;
        }
        if deleted.contains(&n) {
            assert_eq!(
                r.as_ref().err().and_then(code),
                Some(404),
                "{name} was deleted (delete-ok) but is back: {r:?}"
            );
            gone += 1;
            state.lock().unwrap().checked_gone.insert(n);
        } else if !delete_sent.contains(&n) {
            let q =
                r.unwrap_or_else(|e| panic!("{name} was declared (declare-ok) but is gone: {e}"));
            let count = q.message_count();
            if confirmed.contains(&n) {
                assert_eq!(count, 1, "{name}: its confirmed message");
            } else {
                assert!(
                    count <= 1,
                    "{name}: {count} messages, at most 1 was published"
                );
                assert!(count == 0 || published.contains(&n));
            }
            present.push((n, count));
        }
    }
    if rebind_check {
        for &(n, count) in &present {
            if !bound.contains(&n) {
                continue;
            }
            let name = churn_name(n);
            ch.basic_publish(
                EXCHANGE.into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                b"7:0:",
                BasicProperties::default(),
            )
            .await
            .expect("publish");
            let after = ch
                .queue_declare(name.as_str().into(), passive, FieldTable::default())
                .await
                .expect("passive declare")
                .message_count();
            assert_eq!(
                after,
                count + 1,
                "{name}: binding (bind-ok) did not survive"
            );
        }
    }
    let _ = c.close(200, "bye".into()).await;
    (present.len(), gone)
}
