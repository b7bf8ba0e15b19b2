//! Queues: identity, flags and arguments, plus the operations channels use (publish, consume, get,
//! settle, requeue, purge, delete). State sits behind one short, non-async mutex per queue, touched
//! directly by publishing and consuming connections: no queue task, no extra hop per message.
//! Arguments that change behaviour (TTL, limits, dead-lettering, priorities, quorum) live in an
//! optional [`Features`]; dead letters collected under the lock are routed after releasing it.

pub mod args;
pub mod classic;
pub mod consumer;
pub mod consumer_opts;
pub mod flow;
pub mod limits;
pub mod log;
pub mod paging;
mod settle;
pub mod ttl;

use crate::broker::deadletter::{self, Reason};
use crate::broker::message::{Message, QueuedMessage};
use crate::broker::persist::Persistence;
use crate::broker::persist::{ConfirmWaiter, SyncTicket};
use crate::broker::policy::Policy;
use crate::broker::stats::{MsgStats, Rates, Stat};
use crate::broker::stream::StreamQueue;
use crate::broker::vhost::VHost;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::properties;
use crate::store::commit::Waiter;
use crate::store::{Location, RecordMeta};
use amq_protocol::types::{AMQPValue, FieldTable};
pub use args::Features;
use args::{Overflow, QueueType};
use classic::{ClassicState, Dead};
use consumer::{ClientEvent, ConsumerEntry, ConsumerSpec, Delivery};
use log::{QueueLog, Restored};
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::sync::{Arc, Weak};

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
    /// `x-queue-type=quorum` (fixed at declare).
    pub quorum: bool,
    /// The queue's features (kept in its state, which policies may change) have a dead-letter
    /// exchange: read without the lock by channels discarding deliveries.
    has_dlx: AtomicBool,
    /// When the queue was last used (process-relative ms), for `x-expires`.
    last_used: AtomicU64,
    /// The `x-expires` timer task runs, and what wakes it when a policy changes the expiry.
    idle_timer: AtomicBool,
    idle_wake: Arc<tokio::sync::Notify>,
    /// This queue, for timers started when a policy changes its features.
    me: OnceLock<Weak<Queue>>,
    /// The vhost the queue lives in: where dead letters are routed, what deletes it on expiry.
    home: Weak<VHost>,
    /// Removes expired messages from the head; started when the first expiry is armed.
    expiry: OnceLock<Arc<ttl::ExpiryTimer>>,
}

/// What became of a message offered to a queue.
#[derive(Debug)]
pub enum Enqueued {
    /// Accepted; with a ticket when a confirm must wait for the log's sync.
    Stored(Option<SyncTicket>),
    /// Refused by the length limit (`x-overflow` reject-publish / reject-publish-dlx).
    Rejected,
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
        let ty = QueueType::of(&options.arguments);
        let features = match ty {
            QueueType::Stream => None,
            _ => Features::parse(&options.arguments).map(Arc::new),
        };
        // Priorities come from the arguments only (RabbitMQ refuses them in policies).
        let lanes = features
            .as_ref()
            .and_then(|f| f.max_priority)
            .map_or(1, |p| usize::from(p) + 1);
        let has_dlx = features.as_ref().is_some_and(|f| f.dlx.is_some());
        let mut state = ClassicState::new(lanes);
        state.single_active = consumer_opts::single_active(&options.arguments);
        state.sac_priority = state.single_active && features.as_ref().is_some_and(|f| f.quorum);
        state.features = features;
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
            quorum: ty == QueueType::Quorum,
            has_dlx: AtomicBool::new(has_dlx),
            last_used: AtomicU64::new(0),
            idle_timer: AtomicBool::new(false),
            idle_wake: Arc::new(tokio::sync::Notify::new()),
            me: OnceLock::new(),
            home: Weak::new(),
            expiry: OnceLock::new(),
        }
    }

    /// Tie the queue to its vhost (dead-letter routing, expiry).
    pub fn in_vhost(mut self, home: Weak<VHost>) -> Queue {
        self.home = home;
        self
    }

    /// `classic`, `quorum` or `stream`, as RabbitMQ reports the queue's type.
    pub fn queue_type(&self) -> &'static str {
        if self.stream.is_some() {
            "stream"
        } else if self.quorum {
            "quorum"
        } else {
            "classic"
        }
    }

    /// Does the queue have a dead-letter exchange?
    pub fn dead_letters(&self) -> bool {
        self.has_dlx.load(Relaxed)
    }

    /// The features the queue runs with now (arguments merged with the applying policy).
    pub fn features(&self) -> Option<Arc<Features>> {
        self.state.lock().features.clone()
    }

    /// The policy changed: work out the features again (new messages see them; messages
    /// already in the queue keep the expiry they got).
    fn refresh_features(&self) {
        if self.stream.is_some() {
            return;
        }
        let policy = self.policy();
        let args = args::with_policy(&self.options.arguments, policy.as_deref(), self.quorum);
        let f = Features::parse(&args).map(Arc::new);
        self.has_dlx
            .store(f.as_ref().is_some_and(|f| f.dlx.is_some()), Relaxed);
        let idle = f.as_ref().is_some_and(|f| f.expires.is_some());
        self.state.lock().features = f;
        if idle {
            self.ensure_idle_timer();
        }
        self.idle_wake.notify_one();
    }

    /// The vhost the queue lives in (gone once the broker shuts down).
    pub fn home(&self) -> Option<Arc<VHost>> {
        self.home.upgrade()
    }

    /// Release the state lock, then do what must not happen under it: arm the expiry timer for
    /// the head and route dead letters (routing locks exchanges and other queues).
    fn unlock(self: &Arc<Self>, mut st: MutexGuard<'_, ClassicState>) {
        let head = st.head_expiry();
        let dead = std::mem::take(&mut st.dead);
        let target = match dead.is_empty() {
            true => None,
            false => st
                .features
                .as_ref()
                .and_then(|f| Some((f.dlx.clone()?, f.dlrk.clone()))),
        };
        drop(st);
        if head != 0 {
            self.arm_expiry(head);
        }
        if let Some((dlx, dlrk)) = target {
            deadletter::route(self, dead, &dlx, dlrk.as_ref());
        }
    }

    /// The expiry timer fired: remove expired heads.
    pub(crate) fn expire_due(self: &Arc<Self>) {
        let mut st = self.state.lock();
        if !self.is_deleted() {
            st.expire_heads(self, ttl::now_ms());
            st.check_low(self, 0);
        }
        self.unlock(st);
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
        } else {
            // Nothing to sync (never asked today): answer rather than leave the confirm hanging.
            w.done(true);
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
                st.insert(m);
            }
            for (lane, p) in r.paged {
                st.restore_paged(usize::from(lane), p);
            }
            st.ttl_seen |= r.expiring;
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
    /// means the log refused it and the message was not enqueued. A message a length limit
    /// refuses is dropped here (see [`Queue::enqueue`] to tell).
    pub fn publish(self: &Arc<Self>, msg: Message) -> std::io::Result<Option<SyncTicket>> {
        match self.enqueue(msg)? {
            Enqueued::Stored(ticket) => Ok(ticket),
            Enqueued::Rejected => Ok(None),
        }
    }

    /// [`Queue::publish`], telling a message refused by `x-overflow` reject-publish apart.
    pub fn enqueue(self: &Arc<Self>, msg: Message) -> std::io::Result<Enqueued> {
        if let Some(s) = &self.stream {
            let ticket = s.publish(&msg)?;
            self.stats.inc(Stat::Publish);
            return Ok(Enqueued::Stored(s.fsync_confirms.then_some(ticket)));
        }
        // The channel checked the expiration property already; the lower TTL applies.
        let msg_ttl =
            properties::expiration(&msg.properties).and_then(|e| ttl::parse_expiration(e).ok());
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Ok(Enqueued::Stored(None));
        }
        // Only queues with features pay for this clone (an uncontended count, under the lock).
        let features = st.features.clone();
        let f = features.as_deref();
        let queue_ttl = f.and_then(|f| f.message_ttl);
        let now = match (msg_ttl, queue_ttl) {
            (None, None) => 0,
            _ => ttl::now_ms(),
        };
        let expires = ttl::expiry(now, queue_ttl, msg_ttl);
        if let Some(f) = f.filter(|f| f.overflow != Overflow::DropHead && f.limited()) {
            if st.would_overflow(f, &msg) {
                if f.overflow == Overflow::RejectPublishDlx && f.dlx.is_some() {
                    st.dead.push(Dead {
                        msg,
                        reason: Reason::Maxlen,
                    });
                }
                self.unlock(st);
                return Ok(Enqueued::Rejected);
            }
        }
        let lane = st.lane_for(&msg.properties);
        let meta = RecordMeta {
            expires,
            lane: (st.lanes.len() > 1).then_some(lane as u8),
            dead_lettered: msg.dead_lettered,
            bcc: msg.bcc,
        };
        // A quorum queue keeps every message, whatever its delivery mode, as RabbitMQ does.
        let keep = msg.persistent || f.is_some_and(|f| f.quorum);
        let (loc, ticket) = match &self.log {
            Some(log) if keep => {
                let (loc, ticket) = log.append(st.next_seq, &msg, true, meta)?;
                (Some(loc), Some(ticket))
            }
            _ => (None, None),
        };
        if self.persist.is_some() && st.must_page(lane, self.mem_limit, &msg) {
            let log = self.page_log_or_create()?;
            st.page_out(lane, log, &msg, loc, meta)?;
        } else {
            // Small messages that will wait get their own allocation (large ones fill most of
            // the read buffer they share anyway).
            let waits = st.ready_count > 0 || !st.can_dispatch();
            let msg = if waits && msg.body.len() <= COMPACT_MAX {
                msg.compacted()
            } else {
                msg
            };
            st.push(lane, msg, loc, expires);
        }
        st.dispatch(self);
        if let Some(f) = f.filter(|f| f.overflow == Overflow::DropHead && f.limited()) {
            st.drop_over_limit(self, f);
        }
        if expires != 0 && expires <= now {
            // TTL 0: gone unless a consumer took it just now.
            st.expire_heads(self, now);
        }
        st.check_high(self);
        self.unlock(st);
        self.stats.inc(Stat::Publish);
        Ok(Enqueued::Stored(ticket))
    }

    /// Take the head message for basic.get; with `no_ack` false it counts as unacked.
    /// Returns the message and how many remain ready.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        self.touch();
        let mut st = self.state.lock();
        let Some(mut m) = st.pop_live(self, &mut 0) else {
            self.unlock(st);
            self.stats.inc(Stat::GetEmpty);
            return None;
        };
        let counts = st.features.as_ref().is_some_and(|f| f.count_returns);
        if counts && m.returns == 0 {
            // RabbitMQ's basic.get on a quorum queue always shows the count, 0 the first time
            // (a consumer's first delivery has no header).
            limits::show_delivery_count(&mut m);
        }
        if !no_ack {
            st.unacked += 1;
        }
        if let (Some(log), Some(loc)) = (&self.log, m.loc) {
            if no_ack {
                log.settle(&[m.seq], &[loc]);
            } else if !m.redelivered || counts {
                // Every delivery of a queue counting returns (see dispatch), else the first.
                log.delivered(&[m.seq]);
            }
        }
        // As RabbitMQ, basic.get drops the expired messages that the one taken uncovered, so
        // the count left is of live messages.
        if st.ttl_seen {
            st.expire_heads(self, ttl::now_ms());
        }
        let left = u32::try_from(st.len()).unwrap_or(u32::MAX);
        st.check_low(self, 1);
        self.unlock(st);
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
        self.unlock(st);
        self.touch();
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
        self.unlock(st);
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
        let last = removed && st.consumers.is_empty();
        drop(st);
        if last {
            // x-expires: the lease starts again when the last consumer goes.
            self.touch();
        }
        last && self.options.auto_delete
    }

    /// The queue's delivery acknowledgement timeout (`x-consumer-timeout`, or the
    /// `consumer-timeout` policy key; the lower when both are set, as RabbitMQ's
    /// `args_policy_lookup` with `min`), ms; None: the broker default applies.
    pub fn consumer_timeout(&self) -> Option<u64> {
        let own = self
            .options
            .arguments
            .inner()
            .get("x-consumer-timeout")
            .and_then(consumer_opts::timeout_ms);
        let policy = self
            .policy
            .read()
            .as_ref()
            .and_then(|p| p.get("consumer-timeout"))
            .as_ref()
            .and_then(consumer_opts::timeout_ms);
        match (own, policy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
            drop(cur);
            self.refresh_features();
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
        if !st.is_empty() {
            st.dispatch(self);
        }
        self.unlock(st);
    }

    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let (mut seqs, mut locs, spilled) = st.paged_records();
        if let Some(log) = &self.log {
            if st.unacked == 0 {
                log.clear();
            } else {
                for m in st.lanes.iter().flat_map(|l| l.ready.iter()) {
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
        u32::try_from(st.len()).unwrap_or(u32::MAX)
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
        (st.len() as u64, st.unacked, st.bytes(), c)
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
