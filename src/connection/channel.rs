//! Per-channel state, owned by the connection task (no lock): content assembly for publishes,
//! delivery tags and the unacked list, consumers, prefetch, publisher-confirm bookkeeping.

use crate::broker::exchange::Exchange;
use crate::broker::limits::ChannelSlot;
use crate::broker::message::QueuedMessage;
use crate::broker::queue::Queue;
use crate::broker::registry::ChannelInfo;
use crate::protocol::hot::{ContentHeader, Publish};
use crate::store::Location;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Where a channel is in receiving a published message.
#[derive(Debug, Default)]
pub enum Content {
    #[default]
    Idle,
    /// basic.publish seen, waiting for the content header.
    Header(Publish),
    /// Header seen, collecting body frames.
    Body {
        publish: Publish,
        header: ContentHeader,
        /// The first body frame, kept zero-copy while it is the only one.
        first: Bytes,
        /// Later frames are appended here (with `first` copied in front).
        rest: BytesMut,
        received: u64,
    },
}

/// A confirm-mode publish waiting for `waits` log syncs.
#[derive(Debug)]
pub struct PendingConfirm {
    pub seq: u64,
    pub waits: u32,
    pub failed: bool,
}

/// A delivery the client has not acked yet.
#[derive(Debug)]
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    /// None for basic.get.
    pub consumer: Option<u64>,
    pub message: QueuedMessage,
    /// When it was delivered (the connection's clock, ms). How long it may stay unacked is
    /// worked out when it is checked (`timeout::timeout_now`), as RabbitMQ does.
    pub delivered_ms: u64,
}

/// A consumer as its channel knows it.
#[derive(Debug)]
pub struct ChannelConsumer {
    pub tag: Arc<str>,
    pub queue: Arc<Queue>,
    pub no_ack: bool,
    /// Delivery acknowledgement timeout for its deliveries, ms (0 = none).
    pub timeout_ms: u64,
    /// Its own `x-consumer-timeout`, which wins over the queue's and the policy's.
    pub own_timeout: Option<u64>,
}

/// The channel's direct reply-to consumer (`amq.rabbitmq.reply-to`).
#[derive(Debug)]
pub struct ReplyConsumer {
    pub tag: Arc<str>,
    pub id: u64,
    /// Names the channel in rewritten `reply_to`s: `amq.rabbitmq.reply-to.<token>`.
    pub token: Box<str>,
}

/// One open channel.
#[derive(Debug, Default)]
pub struct Channel {
    /// channel.close sent by us; everything but close/close-ok is ignored until close-ok.
    pub closing: bool,
    pub content: Content,
    pub next_tag: u64,
    pub unacked: VecDeque<Unacked>,
    pub consumers: HashMap<u64, ChannelConsumer>,
    pub prefetch: u16,
    /// The two limits RabbitMQ keeps apart: the last `basic.qos` with `global = true` (the
    /// channel's limiter; quorum queues refuse consumers while it is set, 540) and the last
    /// with `global = false` (the consumer prefetch streams require). `prefetch` above is what
    /// warren applies to consumers, whichever came last.
    pub global_prefetch: u16,
    pub consumer_prefetch: u16,
    pub confirm: bool,
    /// `tx.select` was sent: the uncommitted publishes and settlements.
    pub tx: Option<Box<super::tx::Tx>>,
    /// Sequence number of the last publish in confirm mode.
    pub publish_seq: u64,
    /// Highest sequence number ready to be confirmed and not yet sent.
    pub confirm_upto: u64,
    /// Highest sequence number already confirmed to the client.
    pub confirmed: u64,
    /// Publishes waiting for log syncs, in sequence order (only while any is outstanding).
    pub unconfirmed: VecDeque<PendingConfirm>,
    /// Process-unique id of this channel instance, so a late store event for a closed channel
    /// is not applied to a new channel that reuses its number.
    pub epoch: u64,
    /// The exchange last published to, to skip the map lookup for a run of publishes, the
    /// access generation at which write permission on it was granted (so a run of publishes
    /// costs one relaxed load, not a pattern match each), and whether routing keys sent to it
    /// are checked against a topic permission (a topic exchange the user has one on).
    pub last_exchange: Option<(Bytes, Arc<Exchange>, u64, bool)>,
    /// This channel in its user's channel count (max-channels); given back when dropped.
    #[allow(dead_code)] // held for its Drop
    pub user_slot: Option<ChannelSlot>,
    /// The direct reply-to consumer, if one was set up on this channel.
    pub reply: Option<Box<ReplyConsumer>>,
    /// This channel in the broker's registry: its message counters (relaxed increments by this
    /// connection's task only) and what the stats endpoint lists.
    pub info: Arc<ChannelInfo>,
}

impl Channel {
    pub fn new() -> Channel {
        Channel {
            next_tag: 1,
            ..Channel::default()
        }
    }

    pub fn take_tag(&mut self) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        t
    }

    /// Is `tag` taken by a consumer of this channel (the reply consumer included)?
    pub fn tag_in_use(&self, tag: &str) -> bool {
        self.find_consumer_tag(tag).is_some() || self.reply.as_ref().is_some_and(|r| &*r.tag == tag)
    }

    pub fn find_consumer_tag(&self, tag: &str) -> Option<u64> {
        self.consumers
            .iter()
            .find(|(_, c)| &*c.tag == tag)
            .map(|(id, _)| *id)
    }

    /// The unacked entries a client ack/nack/reject names: exactly `tag`, or with `multiple`
    /// every tag up to it (0 = all). None when the tag is unknown (→ 406).
    pub fn unacked_range(&self, tag: u64, multiple: bool) -> Option<std::ops::Range<usize>> {
        if multiple && tag == 0 {
            return Some(0..self.unacked.len());
        }
        let i = self.unacked.binary_search_by_key(&tag, |u| u.tag).ok()?;
        Some(if multiple { 0..i + 1 } else { i..i + 1 })
    }
}

/// Settlements gathered over one batch of frames and events, per (queue, consumer), applied once
/// at the end of the batch: a burst of single acks costs one queue lock, not one per ack. Entries
/// are reused across batches, so steady state allocates nothing.
#[derive(Debug, Default)]
pub struct Settles {
    runs: Vec<SettleRun>,
    used: usize,
}

#[derive(Debug, Default)]
struct SettleRun {
    queue: Option<Arc<Queue>>,
    consumer: Option<u64>,
    /// Acked by the client (false: no-ack deliveries handed to the writer).
    manual: bool,
    n: u32,
    /// Highest seq (stream offset) settled: a tracked stream consumer's position.
    max_seq: Option<u64>,
    seqs: Vec<u64>,
    locs: Vec<Location>,
}

impl Settles {
    fn run(&mut self, queue: &Arc<Queue>, consumer: Option<u64>, manual: bool) -> &mut SettleRun {
        let found = self.runs[..self.used].iter().position(|r| {
            r.consumer == consumer
                && r.manual == manual
                && r.queue.as_ref().is_some_and(|q| Arc::ptr_eq(q, queue))
        });
        let i = match found {
            Some(i) => i,
            None => {
                if self.used == self.runs.len() {
                    self.runs.push(SettleRun::default());
                }
                let r = &mut self.runs[self.used];
                r.queue = Some(queue.clone());
                r.consumer = consumer;
                r.manual = manual;
                self.used += 1;
                self.used - 1
            }
        };
        &mut self.runs[i]
    }

    /// A delivery the client acked (or rejected without requeue).
    pub fn acked(&mut self, u: Unacked) {
        let r = self.run(&u.queue, u.consumer, true);
        r.n += 1;
        r.max_seq = r.max_seq.max(Some(u.message.seq));
        if u.queue.stream.is_some() {
            // A stream's offsets (no log records here): tracked consumers need every one.
            r.seqs.push(u.message.seq);
        } else if let Some(loc) = u.message.loc {
            r.seqs.push(u.message.seq);
            r.locs.push(loc);
        }
    }

    /// A no-ack delivery was handed to the writer: its credit comes back.
    pub fn written(&mut self, queue: &Arc<Queue>, consumer: u64, m: &QueuedMessage) {
        let r = self.run(queue, Some(consumer), false);
        r.n += 1;
        if let Some(loc) = m.loc {
            r.seqs.push(m.seq);
            r.locs.push(loc);
        }
    }

    /// Apply everything gathered.
    pub fn apply(&mut self) {
        for r in &mut self.runs[..self.used] {
            if let Some(q) = r.queue.take() {
                q.settle(r.consumer, r.n, r.manual, &r.seqs, &r.locs, r.max_seq);
            }
            r.n = 0;
            r.max_seq = None;
            r.seqs.clear();
            r.locs.clear();
        }
        self.used = 0;
    }
}

/// Apply `f` to runs of entries that share a queue and consumer, so each queue is locked once per
/// run instead of once per message.
pub fn for_each_run(
    items: Vec<Unacked>,
    mut f: impl FnMut(&Arc<Queue>, Option<u64>, Vec<QueuedMessage>),
) {
    let mut run: Vec<QueuedMessage> = Vec::new();
    let mut key: Option<(Arc<Queue>, Option<u64>)> = None;
    for u in items {
        let same = matches!(&key, Some((q, c)) if Arc::ptr_eq(q, &u.queue) && *c == u.consumer);
        if !same {
            if let Some((q, c)) = key.take() {
                f(&q, c, std::mem::take(&mut run));
            }
            key = Some((u.queue.clone(), u.consumer));
        }
        run.push(u.message);
    }
    if let Some((q, c)) = key {
        f(&q, c, run);
    }
}
