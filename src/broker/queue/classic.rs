//! The classic queue's state: the ready messages in order, the consumers with their credit, and the
//! dispatch loop that hands messages to consumers round-robin (highest `x-priority` first; only
//! the first registered consumer with `x-single-active-consumer`). Lives behind the queue's
//! mutex; all methods are short and never block or await.
//!
//! Messages sit in lanes, one per message priority (`x-max-priority`); a queue without
//! priorities has a single lane, so the common path is one lane deep. The next message comes
//! from the highest non-empty lane, in seq order within it.

use super::args::Features;
use super::consumer::{ClientEvent, ConsumerEntry, Delivery};
use super::paging::{cost, Paged};
use super::Queue;
use crate::broker::deadletter::Reason;
use crate::broker::message::{Message, QueuedMessage};
use crate::protocol::properties;
use crate::store::Location;
use std::collections::VecDeque;
use std::sync::Arc;

/// The messages of one priority: ready ones in memory ordered by `seq` (requeues are inserted
/// back at their place), then paged-out ones, all newer than every ready one of the lane.
#[derive(Debug, Default)]
pub struct Lane {
    pub ready: VecDeque<QueuedMessage>,
    pub paged: VecDeque<Paged>,
}

impl Lane {
    fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.paged.is_empty()
    }

    /// Expiry of the lane's head (0: none or no head). A paged-out head's expiry is only in its
    /// record: with `ttl_seen` it counts as due, so the timer reads it back.
    fn head_expiry(&self, ttl_seen: bool) -> u64 {
        match self.ready.front() {
            Some(m) => m.expires,
            None if ttl_seen && !self.paged.is_empty() => 1,
            None => 0,
        }
    }
}

/// A message on its way to the queue's dead-letter exchange; routed once the lock is released.
#[derive(Debug)]
pub struct Dead {
    pub msg: Message,
    pub reason: Reason,
}

/// Mutable state of one classic queue.
#[derive(Debug)]
pub struct ClassicState {
    /// Lanes by priority (index = priority, highest delivered first).
    pub lanes: Vec<Lane>,
    pub ready_count: usize,
    pub ready_bytes: u64,
    /// Memory the ready messages cost (bytes plus per-message overhead), held under the limit.
    pub mem: u64,
    pub paged_count: usize,
    pub paged_bytes: u64,
    pub next_seq: u64,
    /// Consumers in dispatch order: by priority, highest first, then registration order (only
    /// registration order for a single-active-consumer queue: the first one is the active one).
    pub consumers: Vec<ConsumerEntry>,
    /// Index of the consumer that gets the next message (round-robin).
    pub cursor: usize,
    /// `x-single-active-consumer`: only `consumers[0]` receives.
    pub single_active: bool,
    /// A quorum queue's single active consumer follows consumer priorities (RabbitMQ 4.0): a
    /// higher-priority consumer takes over once the one it displaces has settled everything.
    pub sac_priority: bool,
    /// Consumers differ in priority (else dispatch is plain round robin).
    prioritised: bool,
    /// Messages delivered with manual ack and not yet settled.
    pub unacked: u64,
    /// Set once a consumer has attached: auto-delete only applies after that.
    pub had_consumer: bool,
    /// Scratch for log records written at the end of a dispatch round: first deliveries to
    /// manual-ack consumers, and stored messages settled by going to a no-ack consumer.
    delivered: Vec<u64>,
    /// Messages removed for their dead-letter exchange, taken out before the lock is released.
    pub dead: Vec<Dead>,
    /// A message with an expiry entered the queue at some point: expiry checks look at
    /// paged-out heads too (only then are they read back early).
    /// A quorum queue with reject-publish went over its limit and refuses publishes until it
    /// is back under 80% of it (`limits::would_overflow`).
    pub rejecting: bool,
    pub ttl_seen: bool,
    /// TTL, limits, dead-lettering, quorum semantics (None: a plain queue). Here, under the
    /// lock the publish path takes anyway, because a policy may replace them.
    pub features: Option<Arc<Features>>,
}

impl ClassicState {
    /// State with `lanes` priority lanes (at least one).
    pub fn new(lanes: usize) -> ClassicState {
        ClassicState {
            lanes: (0..lanes.max(1)).map(|_| Lane::default()).collect(),
            ready_count: 0,
            ready_bytes: 0,
            mem: 0,
            paged_count: 0,
            paged_bytes: 0,
            next_seq: 0,
            consumers: Vec::new(),
            cursor: 0,
            single_active: false,
            sac_priority: false,
            prioritised: false,
            unacked: 0,
            had_consumer: false,
            delivered: Vec::new(),
            dead: Vec::new(),
            ttl_seen: false,
            rejecting: false,
            features: None,
        }
    }

    /// Ready messages, paged-out ones included.
    pub fn len(&self) -> usize {
        self.ready_count + self.paged_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Body bytes of the ready messages, paged-out ones included.
    pub fn bytes(&self) -> u64 {
        self.ready_bytes + self.paged_bytes
    }

    /// The lane a message with these properties goes to: its priority, capped at the highest
    /// lane (none = 0).
    pub fn lane_for(&self, props: &[u8]) -> usize {
        match self.lanes.len() {
            1 => 0,
            n => usize::from(properties::priority(props).unwrap_or(0)).min(n - 1),
        }
    }

    /// Append a freshly published message (its seq is `next_seq`; `loc` its log record).
    pub fn push(&mut self, lane: usize, msg: Message, loc: Option<Location>, expires: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.account_in(&msg);
        self.ttl_seen |= expires != 0;
        self.lanes[lane]
            .ready
            .push_back(QueuedMessage::new(seq, loc, msg, expires));
    }

    fn account_in(&mut self, msg: &Message) {
        self.ready_count += 1;
        self.ready_bytes += msg.size();
        self.mem += cost(msg);
    }

    pub(super) fn account_out(&mut self, msg: &Message) {
        self.ready_count -= 1;
        self.ready_bytes -= msg.size();
        self.mem -= cost(msg);
    }

    /// Put a message into its lane at its original position (ordered by seq).
    pub fn insert(&mut self, msg: QueuedMessage) {
        self.account_in(&msg.msg);
        self.ttl_seen |= msg.expires != 0;
        let i = self.lane_for(&msg.msg.properties);
        let lane = &mut self.lanes[i].ready;
        // Common cases first: everything requeued is older than what is ready.
        match lane.front() {
            None => lane.push_back(msg),
            Some(f) if msg.seq < f.seq => lane.push_front(msg),
            _ => {
                let pos = lane.partition_point(|m| m.seq < msg.seq);
                lane.insert(pos, msg);
            }
        }
    }

    /// Put a message back (nack/reject with requeue, consumer gone), marked redelivered.
    pub fn requeue(&mut self, mut msg: QueuedMessage) {
        msg.redelivered = true;
        self.insert(msg);
    }

    /// The lane the next message comes from.
    fn head_lane(&self) -> Option<usize> {
        self.lanes.iter().rposition(|l| !l.is_empty())
    }

    /// Take the next message, reading paged-out ones back first when its lane needs them.
    pub fn pop(&mut self, queue: &Queue) -> Option<QueuedMessage> {
        loop {
            let i = self.head_lane()?;
            if self.lanes[i].ready.is_empty() {
                self.page_in(queue, i, queue.mem_limit);
            }
            if let Some(m) = self.lanes[i].ready.pop_front() {
                self.account_out(&m.msg);
                return Some(m);
            }
        }
    }

    /// The next message that has not expired; expired ones met on the way are discarded.
    /// `now` is read from the clock the first time a message with an expiry is met. A message
    /// due this very millisecond may still go (a TTL of 0 reaches a waiting consumer).
    pub fn pop_live(&mut self, queue: &Queue, now: &mut u64) -> Option<QueuedMessage> {
        loop {
            let m = self.pop(queue)?;
            if m.expires != 0 {
                if *now == 0 {
                    *now = super::ttl::now_ms();
                }
                if m.expires < *now {
                    self.discard(queue, m, Reason::Expired);
                    continue;
                }
            }
            return Some(m);
        }
    }

    /// Would a message pushed now be handed to a consumer at once?
    pub fn can_dispatch(&self) -> bool {
        self.next_consumer().is_some()
    }

    /// Index of the consumer that gets the next message, if one has credit: the active one of a
    /// single-active-consumer queue; else the first with credit from the cursor on within the
    /// highest priority that has any (lower priorities only while all higher ones are blocked).
    fn next_consumer(&self) -> Option<usize> {
        let n = self.consumers.len();
        if self.single_active {
            // A displaced active consumer gets nothing more; its successor starts once it has
            // settled what it holds.
            if self.sac_priority && self.consumers.iter().skip(1).any(|c| c.outstanding > 0) {
                return None;
            }
            return self.consumers.first().filter(|c| c.has_credit()).map(|_| 0);
        }
        if !self.prioritised {
            return (0..n)
                .map(|i| (self.cursor + i) % n)
                .find(|&i| self.consumers[i].has_credit());
        }
        let mut start = 0;
        while start < n {
            let p = self.consumers[start].priority;
            let len = self.consumers[start..]
                .iter()
                .take_while(|c| c.priority == p)
                .count();
            let off = if (start..start + len).contains(&self.cursor) {
                self.cursor - start
            } else {
                0
            };
            let found = (0..len)
                .map(|k| start + (off + k) % len)
                .find(|&i| self.consumers[i].has_credit());
            if found.is_some() {
                return found;
            }
            start += len;
        }
        None
    }

    /// Register a consumer at its place in dispatch order.
    pub fn add_consumer(&mut self, c: ConsumerEntry) {
        let pos = if self.single_active && !self.sac_priority {
            self.consumers.len()
        } else {
            self.consumers.partition_point(|x| x.priority >= c.priority)
        };
        if pos <= self.cursor && self.cursor < self.consumers.len() {
            self.cursor += 1;
        }
        self.consumers.insert(pos, c);
        self.update_prioritised();
    }

    /// Forget a consumer; returns it if it was registered.
    pub fn remove_consumer(&mut self, id: u64) -> Option<ConsumerEntry> {
        let i = self.consumers.iter().position(|c| c.id == id)?;
        Some(self.remove_at(i))
    }

    fn remove_at(&mut self, i: usize) -> ConsumerEntry {
        let c = self.consumers.remove(i);
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.consumers.len() {
            self.cursor = 0;
        }
        self.update_prioritised();
        c
    }

    fn update_prioritised(&mut self) {
        self.prioritised = self
            .consumers
            .first()
            .is_some_and(|f| self.consumers.iter().any(|c| c.priority != f.priority));
    }

    /// Hand ready messages to consumers with credit until one runs out.
    pub fn dispatch(&mut self, queue: &Arc<Queue>) {
        let n = self.dispatch_round(queue);
        if let Some(log) = &queue.log {
            log.delivered(&self.delivered);
        }
        self.delivered.clear();
        self.check_low(queue, n);
    }

    /// Flow control: after an enqueue, is the backlog too long for the consumers?
    pub fn check_high(&self, queue: &Queue) {
        let backlog = self.len();
        if backlog > super::flow::LOW_WATER {
            queue
                .flow
                .check_high(backlog, self.bytes(), self.consumers.len());
        }
    }

    /// Flow control: `n` messages left; release waiting publishers once the backlog is short.
    pub fn check_low(&self, queue: &Queue, n: u64) {
        queue
            .flow
            .check_low(n, self.len(), self.bytes(), self.consumers.len());
    }

    /// Returns how many messages went to consumers.
    fn dispatch_round(&mut self, queue: &Arc<Queue>) -> u64 {
        let (mut n, mut now) = (0, 0);
        // A queue that counts returns records every delivery, not just the first, so its
        // delivery counts survive a restart (one Option test for other queues).
        let every = self.features.as_ref().is_some_and(|f| f.count_returns);
        while !self.is_empty() {
            let Some(i) = self.next_consumer() else {
                return n;
            };
            let Some(message) = self.pop_live(queue, &mut now) else {
                return n;
            };
            let c = &mut self.consumers[i];
            // A first delivery to a manual-ack consumer is recorded, so a restart marks it
            // redelivered. No-ack deliveries are settled in the log only once the connection has
            // written them (a delivery that never reaches the socket comes back intact).
            let first_manual =
                message.loc.is_some() && (!message.redelivered || every) && !c.no_ack;
            let seq = message.seq;
            let ev = ClientEvent::Deliver(Delivery {
                channel: c.channel,
                consumer_id: c.id,
                no_ack: c.no_ack,
                queue: queue.clone(),
                message,
            });
            match c.tx.send(ev) {
                Ok(()) => {
                    if first_manual {
                        self.delivered.push(seq);
                    }
                    c.outstanding += 1;
                    n += 1;
                    if !c.no_ack {
                        self.unacked += 1;
                    }
                    self.cursor = (i + 1) % self.consumers.len();
                }
                Err(e) => {
                    // The connection is gone: take the message back and forget the consumer. Its
                    // channel teardown will requeue whatever it already held.
                    if let ClientEvent::Deliver(d) = e.0 {
                        self.insert(d.message);
                    }
                    self.remove_at(i);
                }
            }
        }
        n
    }

    /// Drop every ready message; returns how many there were.
    pub fn purge(&mut self) -> u32 {
        let n = self.len();
        for lane in &mut self.lanes {
            lane.ready.clear();
            lane.paged.clear();
        }
        self.ready_count = 0;
        self.paged_count = 0;
        self.ready_bytes = 0;
        self.paged_bytes = 0;
        self.mem = 0;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// A message leaves the queue without being delivered (expired, dropped by a length limit,
    /// past its delivery limit): its log record is settled and, with a dead-letter exchange, it
    /// is kept for dead-lettering once the lock is released.
    pub fn discard(&mut self, queue: &Queue, m: QueuedMessage, reason: Reason) {
        if let (Some(log), Some(loc)) = (&queue.log, m.loc) {
            if !queue.is_deleted() {
                log.settle(&[m.seq], &[loc]);
            }
        }
        if self.dead_letters() && !queue.is_deleted() {
            self.dead.push(Dead { msg: m.msg, reason });
        }
    }

    /// Is there a dead-letter exchange to collect dead letters for?
    pub fn dead_letters(&self) -> bool {
        self.features.as_ref().is_some_and(|f| f.dlx.is_some())
    }

    /// Take the head of `lane` out without delivering it (paged-out heads are read back only
    /// when they are to be dead-lettered).
    fn discard_head(&mut self, queue: &Queue, lane: usize, reason: Reason) -> bool {
        if let Some(m) = self.lanes[lane].ready.pop_front() {
            self.account_out(&m.msg);
            self.discard(queue, m, reason);
            return true;
        }
        let Some(p) = self.lanes[lane].paged.pop_front() else {
            return false;
        };
        self.paged_count -= 1;
        self.paged_bytes -= u64::from(p.size);
        self.discard_paged(queue, p, reason);
        true
    }

    /// Remove the next message to deliver (drop-head overflow).
    pub fn discard_next(&mut self, queue: &Queue, reason: Reason) -> bool {
        match self.head_lane() {
            Some(i) => self.discard_head(queue, i, reason),
            None => false,
        }
    }

    /// Remove expired messages from the head of every lane (a paged-out head is read back to
    /// see its expiry).
    pub fn expire_heads(&mut self, queue: &Queue, now: u64) {
        for i in (0..self.lanes.len()).rev() {
            loop {
                if self.lanes[i].ready.is_empty() {
                    if !self.ttl_seen
                        || self.lanes[i].paged.is_empty()
                        || queue.page_log().is_none()
                    {
                        break;
                    }
                    self.page_in(queue, i, queue.mem_limit);
                    continue;
                }
                let e = self.lanes[i].ready.front().map_or(0, |m| m.expires);
                if e == 0 || e > now || !self.discard_head(queue, i, Reason::Expired) {
                    break;
                }
            }
        }
    }

    /// The earliest expiry among the lanes' heads (0: none).
    pub fn head_expiry(&self) -> u64 {
        let seen = self.ttl_seen;
        self.lanes
            .iter()
            .map(|l| l.head_expiry(seen))
            .filter(|&e| e != 0)
            .min()
            .unwrap_or(0)
    }
}
