//! Queues: identity, flags and arguments, plus the operations channels use (publish, consume, get,
//! settle, requeue, purge, delete). State sits behind one short, non-async mutex per queue, touched
//! directly by publishing and consuming connections: no queue task, no extra hop per message.

pub mod classic;
pub mod consumer;
pub mod consumer_opts;
pub mod flow;
pub mod log;
pub mod paging;

use crate::broker::message::{Message, QueuedMessage};
use crate::broker::persist::Persistence;
use crate::broker::persist::{ConfirmWaiter, SyncTicket};
use crate::broker::policy::Policy;
use crate::broker::stats::{MsgStats, Rates, Stat};
use crate::broker::stream::StreamQueue;
use crate::error::{AmqpError, AmqpResult};
use crate::store::Location;
use amq_protocol::types::{AMQPValue, FieldTable};
use classic::ClassicState;
use consumer::{ClientEvent, ConsumerEntry, ConsumerSpec, Delivery};
use log::{QueueLog, Restored};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::sync::OnceLock;

/// Messages up to this body size are copied out of the read buffer when they wait in a queue.
const COMPACT_MAX: usize = 4096;

/// Declared properties of a queue, compared on redeclare.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOptions {
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// One queue in a vhost.
#[derive(Debug)]
pub struct Queue {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub options: QueueOptions,
    /// Connection that owns an exclusive queue.
    pub owner: Option<u64>,
    state: Mutex<ClassicState>,
    deleted: AtomicBool,
    /// Message counts for the stats endpoint; relaxed increments only.
    pub stats: MsgStats,
    /// Sampled counts and depths, for rates.
    pub rates: Rates,
    /// The message log of a durable queue (persistent messages are written here).
    pub log: Option<Arc<QueueLog>>,
    /// Store id of a durable queue (names its log directory).
    pub store_id: u64,
    /// Memory the ready list may use before new messages are paged out to a log.
    pub mem_limit: u64,
    /// Where to create a spill log when a queue without one pages out (None: never page).
    persist: Option<Arc<Persistence>>,
    spill: OnceLock<Arc<QueueLog>>,
    /// Set for `x-queue-type=stream`: the queue is a log and every operation goes there.
    pub stream: Option<Arc<StreamQueue>>,
    /// The policy that applies to this queue (see `effective_arg`), and a counter bumped each
    /// time it changes, so that settings cached from it can be re-read.
    policy: parking_lot::RwLock<Option<Arc<Policy>>>,
    policy_gen: AtomicU64,
    /// Publisher flow control (classic queues).
    pub flow: flow::Flow,
}

/// A consumer the queue dropped when it was deleted, to be told with basic.cancel.
pub struct Cancelled {
    pub tx: tokio::sync::mpsc::UnboundedSender<ClientEvent>,
    pub channel: u16,
    pub consumer_id: u64,
}

impl Queue {
    pub fn new(
        vhost: Arc<str>,
        name: Arc<str>,
        options: QueueOptions,
        owner: Option<u64>,
    ) -> Queue {
        let mut state = ClassicState::default();
        state.single_active = consumer_opts::single_active(&options.arguments);
        Queue {
            name,
            vhost,
            options,
            owner,
            state: Mutex::new(state),
            deleted: AtomicBool::new(false),
            stats: MsgStats::default(),
            rates: Rates::default(),
            log: None,
            store_id: 0,
            mem_limit: u64::MAX,
            persist: None,
            spill: OnceLock::new(),
            stream: None,
            policy: parking_lot::RwLock::new(None),
            policy_gen: AtomicU64::new(0),
            flow: flow::Flow::default(),
        }
    }

    /// Make this queue a stream backed by `s`.
    pub fn with_stream(mut self, id: u64, s: Arc<StreamQueue>) -> Queue {
        self.store_id = id;
        self.stream = Some(s);
        self
    }

    /// Tell `w` once everything this queue stored so far is on disk.
    pub fn sync_then(&self, w: ConfirmWaiter) {
        if let Some(s) = &self.stream {
            s.sync_then(w);
        } else if let Some(log) = &self.log {
            log.sync_then(w);
        }
    }

    /// Let the queue page out past the store's memory limit.
    pub fn with_paging(mut self, persist: Arc<Persistence>) -> Queue {
        self.mem_limit = persist.queue_memory_limit;
        self.persist = Some(persist);
        self
    }

    /// The log paged-out messages live in: the durable log, else the spill log if one exists.
    pub fn page_log(&self) -> Option<&Arc<QueueLog>> {
        self.log.as_ref().or_else(|| self.spill.get())
    }

    fn page_log_or_create(&self) -> std::io::Result<&Arc<QueueLog>> {
        if let Some(l) = self.page_log() {
            return Ok(l);
        }
        let Some(p) = &self.persist else {
            return Err(std::io::Error::other("no store to page out to"));
        };
        let log = p.spill_log()?;
        Ok(self.spill.get_or_init(|| log))
    }

    /// Give a durable queue its log and the messages recovered from it.
    pub fn with_log(mut self, id: u64, log: Arc<QueueLog>, restored: Option<Restored>) -> Queue {
        self.store_id = id;
        self.log = Some(log);
        if let Some(r) = restored {
            let st = self.state.get_mut();
            st.next_seq = r.next_seq;
            for m in r.messages {
                st.ready_bytes += m.msg.size();
                st.mem += paging::cost(&m.msg);
                st.ready.push_back(m);
            }
            for p in r.paged {
                st.paged_bytes += u64::from(p.size);
                st.paged.push_back(p);
            }
        }
        self
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Relaxed)
    }

    /// `'name' in vhost '/'`, as RabbitMQ words it in errors.
    pub fn describe(&self) -> String {
        format!("queue '{}' in vhost '{}'", self.name, self.vhost)
    }

    /// Enqueue a routed message and hand it on if a consumer has credit. Returns a ticket when it
    /// was written to the queue's log (a confirm must then wait for the log's sync); an error
    /// means the log refused it and the message was not enqueued.
    pub fn publish(self: &Arc<Self>, msg: Message) -> std::io::Result<Option<SyncTicket>> {
        if let Some(s) = &self.stream {
            let ticket = s.publish(&msg)?;
            self.stats.inc(Stat::Publish);
            return Ok(s.fsync_confirms.then_some(ticket));
        }
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Ok(None);
        }
        let (loc, ticket) = match &self.log {
            Some(log) if msg.persistent => {
                let (loc, ticket) = log.append(st.next_seq, &msg, true)?;
                (Some(loc), Some(ticket))
            }
            _ => (None, None),
        };
        if self.persist.is_some() && st.must_page(self.mem_limit, &msg) {
            let log = self.page_log_or_create()?;
            st.page_out(log, &msg, loc)?;
        } else {
            // Small messages that will wait get their own allocation (large ones fill most of
            // the read buffer they share anyway).
            let waits = !st.ready.is_empty() || !st.can_dispatch();
            let msg = if waits && msg.body.len() <= COMPACT_MAX {
                msg.compacted()
            } else {
                msg
            };
            st.push(msg, loc);
        }
        st.dispatch(self);
        st.check_high(self);
        drop(st);
        self.stats.inc(Stat::Publish);
        Ok(ticket)
    }

    /// Take the head message for basic.get; with `no_ack` false it counts as unacked.
    /// Returns the message and how many remain ready.
    pub fn get(&self, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut st = self.state.lock();
        if st.ready.is_empty() {
            st.page_in(self, self.mem_limit);
        }
        let Some(m) = st.pop() else {
            drop(st);
            self.stats.inc(Stat::GetEmpty);
            return None;
        };
        if !no_ack {
            st.unacked += 1;
        }
        if let (Some(log), Some(loc)) = (&self.log, m.loc) {
            if no_ack {
                log.settle(&[m.seq], &[loc]);
            } else if !m.redelivered {
                log.delivered(&[m.seq]);
            }
        }
        let left = u32::try_from(st.ready.len() + st.paged.len()).unwrap_or(u32::MAX);
        st.check_low(self, 1);
        drop(st);
        self.stats
            .inc(if no_ack { Stat::GetNoAck } else { Stat::Get });
        if m.redelivered {
            self.stats.inc(Stat::Redeliver);
        }
        Some((m, left))
    }

    /// Attach a consumer and start dispatching to it.
    pub fn add_consumer(self: &Arc<Self>, spec: ConsumerSpec) -> AmqpResult<()> {
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(AmqpError::not_found(format!("no {}", self.describe())));
        }
        // As RabbitMQ: an exclusive consumer is refused on a single-active-consumer queue even
        // when it has no consumer.
        if st.consumers.iter().any(|c| c.exclusive)
            || (spec.exclusive && (!st.consumers.is_empty() || st.single_active))
        {
            return Err(AmqpError::access_refused(format!(
                "{} in exclusive use",
                self.describe()
            )));
        }
        st.add_consumer(ConsumerEntry::from(spec));
        st.had_consumer = true;
        st.dispatch(self);
        Ok(())
    }

    /// basic.qos with `global`: a consumer's prefetch changes while it runs.
    pub fn set_prefetch(self: &Arc<Self>, consumer_id: u64, prefetch: u16) {
        if self.stream.is_some() {
            return;
        }
        let mut st = self.state.lock();
        if let Some(c) = st
            .consumers
            .iter_mut()
            .find(|c| c.id == consumer_id && !c.no_ack)
        {
            c.limit = if prefetch == 0 {
                c.window
            } else {
                u32::from(prefetch)
            };
        }
        st.dispatch(self);
    }

    /// Detach a consumer. Returns true when the queue is auto-delete and this was its last consumer.
    pub fn remove_consumer(&self, consumer_id: u64) -> bool {
        if let Some(s) = &self.stream {
            s.remove_consumer(consumer_id);
            return false;
        }
        let mut st = self.state.lock();
        let removed = st.remove_consumer(consumer_id).is_some();
        st.check_low(self, 0);
        removed && self.options.auto_delete && st.consumers.is_empty()
    }

    /// The queue's delivery acknowledgement timeout (`x-consumer-timeout`, or the
    /// `consumer-timeout` policy key), ms; None: the broker default applies.
    pub fn consumer_timeout(&self) -> Option<u64> {
        self.effective_arg("x-consumer-timeout")
            .as_ref()
            .and_then(consumer_opts::timeout_ms)
    }

    /// The effective value of an optional argument: the queue's own `key` argument (`x-…`) if
    /// it was declared with one (arguments win over policies, as RabbitMQ documents), else the
    /// applying policy's setting of the same name without the `x-` prefix (`x-message-ttl` →
    /// `message-ttl`). Policy integers come as `LongLongInt`, strings as `LongString`.
    /// Takes a read lock when the queue has no such argument: read it when a queue is set up or
    /// its `policy_generation` changed, not per message.
    pub fn effective_arg(&self, key: &str) -> Option<AMQPValue> {
        if let Some(v) = self.options.arguments.inner().get(key) {
            return Some(v.clone());
        }
        let setting = key.strip_prefix("x-").unwrap_or(key);
        self.policy.read().as_ref()?.get(setting)
    }

    /// All effective arguments at once: the policy's settings as `x-` arguments, overlaid by the
    /// queue's own arguments (which win). For code that parses a whole argument table: parse this
    /// instead of `options.arguments`, and again when `policy_generation` changes.
    pub fn effective_arguments(&self) -> FieldTable {
        let Some(p) = self.policy() else {
            return self.options.arguments.clone();
        };
        let mut map = std::collections::BTreeMap::new();
        for key in p.def.definition.keys() {
            if let Some(v) = p.get(key) {
                if let Ok(k) = amq_protocol::types::ShortString::try_new(format!("x-{key}")) {
                    map.insert(k, v);
                }
            }
        }
        for (k, v) in self.options.arguments.inner() {
            map.insert(k.clone(), v.clone());
        }
        map.into()
    }

    /// The policy that applies to this queue, if any.
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.policy.read().clone()
    }

    /// Bumped whenever the applying policy changes (set, replaced, deleted).
    pub fn policy_generation(&self) -> u64 {
        self.policy_gen.load(Relaxed)
    }

    /// Apply a policy (None: no policy applies any more). Returns whether it changed.
    pub fn set_policy(&self, p: Option<Arc<Policy>>) -> bool {
        let mut cur = self.policy.write();
        let same = match (&*cur, &p) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if !same {
            *cur = p;
            self.policy_gen.fetch_add(1, Relaxed);
        }
        !same
    }

    /// `x-single-active-consumer` is on: after a consumer goes, `dispatch_now` hands the
    /// backlog to the next one (once the gone consumer's unacked messages are back in place).
    pub fn single_active(&self) -> bool {
        self.stream.is_none() && consumer_opts::single_active(&self.options.arguments)
    }

    /// Hand ready messages to consumers with credit now.
    pub fn dispatch_now(self: &Arc<Self>) {
        if self.stream.is_some() {
            return;
        }
        let mut st = self.state.lock();
        if !st.ready.is_empty() || !st.paged.is_empty() {
            st.dispatch(self);
        }
    }

    /// Settle `n` deliveries: acked (manual ack) or written to the socket (no-ack). Returns credit
    /// to the consumer and dispatches more.
    /// `seqs`/`locs` name the settled messages that have log records.
    pub fn settle(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        n: u32,
        manual: bool,
        seqs: &[u64],
        locs: &[Location],
        max_seq: Option<u64>,
    ) {
        if let (Some(s), Some(c)) = (&self.stream, consumer_id) {
            s.settle(c, n, manual.then_some(seqs), max_seq.filter(|_| manual));
            return;
        }
        // A deleted queue's log is gone: writing acks would only fail (and log an error).
        if let Some(log) = self.log.as_ref().filter(|_| !self.is_deleted()) {
            log.settle(seqs, locs);
        }
        let mut st = self.state.lock();
        if manual {
            st.unacked = st.unacked.saturating_sub(u64::from(n));
            self.stats.add(Stat::Ack, u64::from(n));
        }
        if let Some(id) = consumer_id {
            if let Some(c) = st.consumers.iter_mut().find(|c| c.id == id) {
                c.outstanding = c.outstanding.saturating_sub(n);
            }
        }
        if !st.ready.is_empty() || !st.paged.is_empty() {
            st.dispatch(self);
        }
    }

    /// Put unacked messages back (nack/reject with requeue, channel or connection closed, consumer
    /// gone), in their original order, marked redelivered.
    pub fn requeue(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        msgs: impl IntoIterator<Item = QueuedMessage>,
    ) {
        self.requeue_counted(consumer_id, msgs, true);
    }

    /// A delivery that never reached its consumer (consumer, channel or connection gone).
    pub fn give_back(self: &Arc<Self>, d: Delivery) {
        self.requeue_counted(Some(d.consumer_id), [d.message], !d.no_ack);
    }

    /// `unacked`: whether these messages were counted as unacked (no-ack deliveries are not).
    fn requeue_counted(
        self: &Arc<Self>,
        consumer_id: Option<u64>,
        msgs: impl IntoIterator<Item = QueuedMessage>,
        unacked: bool,
    ) {
        if let Some(s) = &self.stream {
            // A stream never takes messages back: only the consumer's credit returns.
            let n = u32::try_from(msgs.into_iter().count()).unwrap_or(u32::MAX);
            if let Some(c) = consumer_id {
                s.settle(c, n, None, None);
            }
            return;
        }
        let mut st = self.state.lock();
        let mut n = 0u32;
        for m in msgs {
            n += 1;
            if !self.is_deleted() {
                st.requeue(m);
            }
        }
        if unacked {
            st.unacked = st.unacked.saturating_sub(u64::from(n));
        }
        if let Some(id) = consumer_id {
            if let Some(c) = st.consumers.iter_mut().find(|c| c.id == id) {
                c.outstanding = c.outstanding.saturating_sub(n);
            }
        }
        st.dispatch(self);
    }

    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let (mut seqs, mut locs, spilled) = st.paged_records();
        if let Some(log) = &self.log {
            if st.unacked == 0 {
                log.clear();
            } else {
                for m in &st.ready {
                    if let Some(l) = m.loc {
                        seqs.push(m.seq);
                        locs.push(l);
                    }
                }
                log.settle(&seqs, &locs);
                log.release(&spilled);
                log.sync_now();
            }
        } else if let Some(spill) = self.spill.get() {
            spill.clear();
        }
        let n = st.purge();
        st.check_low(self, 0);
        n
    }

    /// Ready messages (what declare-ok reports).
    pub fn message_count(&self) -> u32 {
        if let Some(s) = &self.stream {
            return s.message_count();
        }
        let st = self.state.lock();
        u32::try_from(st.ready.len() + st.paged.len()).unwrap_or(u32::MAX)
    }

    pub fn consumer_count(&self) -> u32 {
        if let Some(s) = &self.stream {
            return s.consumer_count();
        }
        u32::try_from(self.state.lock().consumers.len()).unwrap_or(u32::MAX)
    }

    /// (ready, unacked, ready bytes, consumers) in one lock.
    pub fn snapshot(&self) -> (u64, u64, u64, u32) {
        if let Some(s) = &self.stream {
            let st = s.stats();
            return (
                st.next_offset - st.first_offset,
                0,
                st.bytes,
                s.consumer_count(),
            );
        }
        let st = self.state.lock();
        let c = u32::try_from(st.consumers.len()).unwrap_or(u32::MAX);
        let ready = (st.ready.len() + st.paged.len()) as u64;
        (ready, st.unacked, st.ready_bytes + st.paged_bytes, c)
    }

    /// Is a consumer with this tag attached from that channel? (basic.consume tag uniqueness is
    /// per channel, checked by the channel itself.)
    pub fn is_unused(&self) -> bool {
        if let Some(s) = &self.stream {
            return s.consumer_count() == 0;
        }
        self.state.lock().consumers.is_empty()
    }

    /// Mark deleted, drop the messages, and return the consumers to cancel and the ready count.
    pub fn delete(&self) -> (u32, Vec<Cancelled>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Relaxed);
        if let Some(s) = &self.stream {
            let n = s.message_count();
            let cancelled = s
                .delete()
                .into_iter()
                .map(|(tx, channel, consumer_id)| Cancelled {
                    tx,
                    channel,
                    consumer_id,
                });
            return (n, cancelled.collect());
        }
        let n = st.purge();
        if let Some(log) = &self.log {
            log.destroy();
        }
        if let Some(spill) = self.spill.get() {
            spill.destroy();
        }
        self.flow.release();
        let cancelled = st
            .consumers
            .drain(..)
            .map(|c| Cancelled {
                tx: c.tx,
                channel: c.channel,
                consumer_id: c.id,
            })
            .collect();
        (n, cancelled)
    }
}
