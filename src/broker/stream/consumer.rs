//! A stream consumer's reader: a task that reads the log from the consumer's offset in batches,
//! pushes each message to the consumer's connection while it has credit (prefetch minus unacked),
//! and sleeps on the stream's append notification once it has caught up (tailing, no polling).

use super::StreamQueue;
use crate::broker::message::{Message, QueuedMessage};
use crate::broker::queue::consumer::{ClientEvent, Delivery};
use crate::broker::queue::Queue;
use crate::store::stream::FilterFn;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

/// Records read per batch at most.
const BATCH: usize = 256;
/// Bytes read per batch at most.
const BATCH_BYTES: usize = 1 << 20;

/// One consumer of a stream.
pub struct StreamConsumer {
    pub id: u64,
    pub channel: u16,
    pub tx: UnboundedSender<ClientEvent>,
    credit: AtomicI64,
    /// Woken when credit comes back or the consumer is cancelled.
    wake: Notify,
    cancelled: AtomicBool,
    filters: Option<Vec<Bytes>>,
    match_unfiltered: bool,
    pub tracking: Option<String>,
    /// Offsets delivered and not yet acked (tracked consumers only): the stored position is
    /// just below the lowest of them, so acks out of order never skip a message on resume.
    pub inflight: parking_lot::Mutex<std::collections::BTreeSet<u64>>,
}

impl StreamConsumer {
    pub fn new(
        id: u64,
        channel: u16,
        tx: UnboundedSender<ClientEvent>,
        prefetch: u32,
        filters: Option<Vec<Bytes>>,
        match_unfiltered: bool,
        tracking: Option<String>,
    ) -> StreamConsumer {
        StreamConsumer {
            id,
            channel,
            tx,
            credit: AtomicI64::new(i64::from(prefetch)),
            wake: Notify::new(),
            cancelled: AtomicBool::new(false),
            filters,
            match_unfiltered,
            tracking,
            inflight: parking_lot::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn add_credit(&self, n: u32) {
        self.credit.fetch_add(i64::from(n), Ordering::AcqRel);
        self.wake.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn wants(&self, value: Option<&[u8]>) -> bool {
        match (&self.filters, value) {
            (None, _) => true,
            (Some(f), Some(v)) => f.iter().any(|x| x == v),
            (Some(_), None) => self.match_unfiltered,
        }
    }
}

/// The reader task: runs until the consumer is cancelled or its connection is gone.
pub async fn run(
    stream: Arc<StreamQueue>,
    queue: Arc<Queue>,
    c: Arc<StreamConsumer>,
    mut next: u64,
) {
    let fc = c.clone();
    let filter = move |v: Option<&[u8]>| fc.wants(v);
    loop {
        if c.is_cancelled() {
            return;
        }
        let credit = c.credit.load(Ordering::Acquire);
        if credit <= 0 {
            let woken = c.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if c.credit.load(Ordering::Acquire) <= 0 && !c.is_cancelled() {
                woken.await;
            }
            continue;
        }
        let appended = stream.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let max = usize::try_from(credit).unwrap_or(BATCH).min(BATCH);
        let filter_fn: Option<&FilterFn> = if c.filters.is_some() {
            Some(&filter)
        } else {
            None
        };
        let (batch, end) = {
            let mut log = stream.log.lock();
            let batch = log.read(next, max, BATCH_BYTES, filter_fn);
            (batch, log.next_offset())
        };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(queue = %queue.name, offset = next, "stream read failed: {e}");
                return;
            }
        };
        let progressed = batch.next > next;
        next = batch.next;
        if batch.records.is_empty() && progressed && next < end {
            // The filter rejected everything one read scans (8 MiB at most) and more is
            // there: read on instead of waiting for an append that may never come.
            tokio::task::yield_now().await;
            continue;
        }
        if batch.records.is_empty() {
            tokio::select! {
                _ = &mut appended => {}
                _ = c.wake.notified() => {}
            }
            continue;
        }
        if c.tracking.is_some() {
            c.inflight
                .lock()
                .extend(batch.records.iter().map(|r| r.offset));
        }
        for r in batch.records {
            c.credit.fetch_sub(1, Ordering::AcqRel);
            let msg = Message {
                exchange: r.exchange,
                routing_key: r.routing_key,
                properties: r.properties,
                body: r.body,
                persistent: true,
                dead_lettered: false,
                bcc: false,
            };
            let message = QueuedMessage::new(r.offset, None, msg, 0);
            let ev = ClientEvent::Deliver(Delivery {
                channel: c.channel,
                consumer_id: c.id,
                no_ack: false,
                queue: queue.clone(),
                message,
            });
            if c.tx.send(ev).is_err() {
                return;
            }
        }
    }
}
