//! Task queue, end to end: a producer enqueues jobs on a durable queue, two workers take them one
//! at a time (prefetch 1) and ack when done; worker A "crashes" in the middle of its second job (its
//! connection drops without the ack), and the broker redelivers that job, marked redelivered, to
//! worker B. Every job completes exactly once.
//!
//! Run against a broker: `cargo run --example task_queue` (AMQP_URL defaults to
//! amqp://guest:guest@127.0.0.1:5672/%2f). Exits non-zero if any job is lost or done twice.

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

const JOBS: u32 = 20;
const QUEUE: &str = "task_queue_example";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// (worker, job, redelivered) for each job a worker finished.
type Done = mpsc::UnboundedSender<(&'static str, u32, bool)>;

async fn worker(
    url: String,
    name: &'static str,
    crash_on_job: Option<u32>,
    done: Done,
) -> Result<(), Error> {
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1, BasicQosOptions::default()).await?;
    let mut jobs = ch
        .basic_consume(
            QUEUE.into(),
            name.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = 0;
    while let Some(delivery) = jobs.next().await {
        let delivery = delivery?;
        let job: u32 = std::str::from_utf8(&delivery.data)?.parse()?;
        seen += 1;
        if crash_on_job == Some(seen) {
            println!("{name}: crashed while working on job {job} (no ack)");
            // The process "dies": the connection goes away with the job unacked.
            conn.close(320, "worker crashed".into()).await?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await; // the "work"
        delivery.ack(BasicAckOptions::default()).await?;
        let _ = done.send((name, job, delivery.redelivered));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
        .await?;
    ch.queue_purge(QUEUE.into(), QueuePurgeOptions::default())
        .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    for job in 1..=JOBS {
        let props = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            job.to_string().as_bytes(),
            props,
        )
        .await?
        .await?;
    }
    println!("producer: enqueued {JOBS} jobs");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = tokio::spawn(worker(url.clone(), "worker-a", Some(2), tx.clone()));
    let b = tokio::spawn(worker(url.clone(), "worker-b", None, tx));
    let mut done: BTreeMap<u32, Vec<(&str, bool)>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while done.len() < JOBS as usize {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((w, job, redelivered))) => done.entry(job).or_default().push((w, redelivered)),
            _ => break,
        }
    }
    a.await??;
    b.abort();
    let twice: Vec<_> = done.iter().filter(|(_, v)| v.len() > 1).collect();
    let redelivered: Vec<_> = done
        .iter()
        .filter(|(_, v)| v.iter().any(|(_, r)| *r))
        .map(|(j, v)| (*j, v[0].0))
        .collect();
    println!(
        "done: {} of {JOBS} jobs; redelivered after the crash: {redelivered:?}",
        done.len()
    );
    ch.queue_delete(QUEUE.into(), QueueDeleteOptions::default())
        .await?;
    if done.len() != JOBS as usize || !twice.is_empty() || redelivered.len() != 1 {
        return Err(format!("FAILED: missing or duplicated jobs (twice: {twice:?})").into());
    }
    println!(
        "ok: every job done exactly once; the crashed worker's job was redelivered to {}",
        redelivered[0].1
    );
    Ok(())
}
