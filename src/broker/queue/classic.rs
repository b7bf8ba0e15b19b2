//! The classic queue's state: the ready messages in order, the consumers with their credit, and the
//! dispatch loop that hands messages to consumers round-robin (highest `x-priority` first; only
//! the first registered consumer with `x-single-active-consumer`). Lives behind the queue's
//! mutex; all methods are short and never block or await.

use super::consumer::{ClientEvent, ConsumerEntry, Delivery};
use super::paging::{cost, Paged};
use super::Queue;
use crate::broker::message::QueuedMessage;
use crate::store::Location;
use std::collections::VecDeque;
use std::sync::Arc;

/// Mutable state of one classic queue.
#[derive(Debug, Default)]
pub struct ClassicState {
    /// Ready messages, ordered by `seq` (requeues are inserted back at their place).
    pub ready: VecDeque<QueuedMessage>,
    pub ready_bytes: u64,
    /// Memory the ready list costs (bytes plus per-message overhead), held under the limit.
    pub mem: u64,
    /// Messages only in a log, in order, all newer than every ready message.
    pub paged: VecDeque<Paged>,
    pub paged_bytes: u64,
    pub next_seq: u64,
    /// Consumers in dispatch order: by priority, highest first, then registration order (only
    /// registration order for a single-active-consumer queue: the first one is the active one).
    pub consumers: Vec<ConsumerEntry>,
    /// Index of the consumer that gets the next message (round-robin).
    pub cursor: usize,
    /// `x-single-active-consumer`: only `consumers[0]` receives.
    pub single_active: bool,
    /// Consumers differ in priority (else dispatch is plain round robin).
    prioritised: bool,
    /// Messages delivered with manual ack and not yet settled.
    pub unacked: u64,
    /// Set once a consumer has attached: auto-delete only applies after that.
    pub had_consumer: bool,
    /// Scratch for log records written at the end of a dispatch round: first deliveries to
    /// manual-ack consumers, and stored messages settled by going to a no-ack consumer.
    delivered: Vec<u64>,
}

impl ClassicState {
    /// Append a freshly published message (its seq is `next_seq`; `loc` its log record).
    pub fn push(&mut self, msg: crate::broker::message::Message, loc: Option<Location>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ready_bytes += msg.size();
        self.mem += cost(&msg);
        self.ready.push_back(QueuedMessage {
            seq,
            redelivered: false,
            loc,
            msg,
        });
    }

    /// Put messages back at their original position (ordered by seq), marked redelivered.
    pub fn requeue(&mut self, mut msg: QueuedMessage) {
        msg.redelivered = true;
        self.ready_bytes += msg.msg.size();
        self.mem += cost(&msg.msg);
        // Common cases first: everything requeued is older than what is ready.
        match self.ready.front() {
            None => self.ready.push_back(msg),
            Some(f) if msg.seq < f.seq => self.ready.push_front(msg),
            _ => {
                let pos = self.ready.partition_point(|m| m.seq < msg.seq);
                self.ready.insert(pos, msg);
            }
        }
    }

    pub fn pop(&mut self) -> Option<QueuedMessage> {
        let m = self.ready.pop_front()?;
        self.ready_bytes -= m.msg.size();
        self.mem -= cost(&m.msg);
        Some(m)
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
        let pos = if self.single_active {
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
        let backlog = self.ready.len() + self.paged.len();
        if backlog > super::flow::LOW_WATER {
            let bytes = self.ready_bytes + self.paged_bytes;
            queue.flow.check_high(backlog, bytes, self.consumers.len());
        }
    }

    /// Flow control: `n` messages left; release waiting publishers once the backlog is short.
    pub fn check_low(&self, queue: &Queue, n: u64) {
        let backlog = self.ready.len() + self.paged.len();
        let bytes = self.ready_bytes + self.paged_bytes;
        queue
            .flow
            .check_low(n, backlog, bytes, self.consumers.len());
    }

    /// Returns how many messages went to consumers.
    fn dispatch_round(&mut self, queue: &Arc<Queue>) -> u64 {
        let mut n = 0;
        while !self.ready.is_empty() || !self.paged.is_empty() {
            let Some(i) = self.next_consumer() else {
                return n;
            };
            if self.ready.is_empty() {
                self.page_in(queue, queue.mem_limit);
            }
            let Some(message) = self.pop() else { return n };
            let c = &mut self.consumers[i];
            // A first delivery to a manual-ack consumer is recorded, so a restart marks it
            // redelivered. No-ack deliveries are settled in the log only once the connection has
            // written them (a delivery that never reaches the socket comes back intact).
            let first_manual = message.loc.is_some() && !message.redelivered && !c.no_ack;
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
                        self.ready_bytes += d.message.msg.size();
                        self.mem += cost(&d.message.msg);
                        self.ready.push_front(d.message);
                    }
                    self.remove_at(i);
                }
            }
        }
        n
    }

    /// Drop every ready message; returns how many there were.
    pub fn purge(&mut self) -> u32 {
        let n = self.ready.len() + self.paged.len();
        self.ready.clear();
        self.paged.clear();
        self.ready_bytes = 0;
        self.paged_bytes = 0;
        self.mem = 0;
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}
