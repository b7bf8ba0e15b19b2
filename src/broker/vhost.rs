//! A virtual host: its exchanges and queues, the topology operations (declare, delete, bind,
//! unbind, purge) with RabbitMQ's checks and wording, and routing across exchange-to-exchange
//! bindings and alternate exchanges. Binding and unbinding are in `binding`.

use crate::broker::exchange::{Dest, Exchange, ExchangeKind, ExchangeOptions, LazyHeaders};
use crate::broker::limits::VhostLimits;
use crate::broker::message::Message;
use crate::broker::permissions::{string_arg, Authz, Kind, Perm};
use crate::broker::persist::Persistence;
use crate::broker::queue::args::{self, DeclareFlags, QueueType};
use crate::broker::queue::consumer::ClientEvent;
use crate::broker::queue::log::{QueueLog, Restored};
use crate::broker::queue::{Queue, QueueOptions};
use crate::broker::stats::{MsgStats, Rates};
use crate::broker::stream::StreamQueue;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::FieldTable;
use dashmap::DashMap;
use equivalence::inequivalent;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};

mod binding;
pub(crate) mod equivalence;
mod policies;
mod queues;
pub use policies::PolicyError;

/// Exchanges every vhost starts with.
const PREDECLARED: &[(&str, ExchangeKind)] = &[
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// One virtual host.
#[derive(Debug)]
pub struct VHost {
    pub name: Arc<str>,
    exchanges: DashMap<Arc<str>, Arc<Exchange>>,
    queues: DashMap<Arc<str>, Arc<Queue>>,
    /// Serializes topology changes so check-then-act sequences (declare, delete with if-unused,
    /// bind) are atomic. Never taken on the publish path.
    topology: Mutex<()>,
    /// Where durable definitions and queue logs go (None: nothing is persisted).
    persist: Option<Arc<Persistence>>,
    /// This vhost, for tasks that route later (delayed exchanges); set by `bind_self`.
    me: std::sync::OnceLock<std::sync::Weak<VHost>>,
    /// Policies (see `policies`); read when a queue or exchange is created or they change.
    policies: parking_lot::RwLock<Vec<Arc<crate::broker::policy::Policy>>>,
    /// Counts of this vhost's closed connections and of HTTP API publishes; the live
    /// connections' counts are added when someone asks.
    pub stats: MsgStats,
    /// Sampled totals, for rates.
    pub rates: Rates,
    /// RabbitMQ's vhost limits (max-connections, max-queues) and the connections open in it.
    pub limits: VhostLimits,
    /// Queues declared, created and deleted here (RabbitMQ's churn statistics).
    pub churn: QueueChurn,
}

/// Counts of queue declarations, creations and deletions. Bumped on topology changes only
/// (under the topology lock), never on the message path.
#[derive(Debug, Default)]
pub struct QueueChurn {
    pub declared: std::sync::atomic::AtomicU64,
    pub created: std::sync::atomic::AtomicU64,
    pub deleted: std::sync::atomic::AtomicU64,
}

impl QueueChurn {
    fn bump(c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Result of a queue declare: the (possibly generated) name and the counts for declare-ok.
pub struct Declared {
    pub name: Arc<str>,
    pub messages: u32,
    pub consumers: u32,
}

fn reserved(name: &str) -> bool {
    name.starts_with("amq.")
}

impl VHost {
    pub fn new(name: &str, persist: Option<Arc<Persistence>>) -> VHost {
        let name: Arc<str> = Arc::from(name);
        let v = VHost {
            name: name.clone(),
            exchanges: DashMap::new(),
            queues: DashMap::new(),
            topology: Mutex::new(()),
            persist,
            me: std::sync::OnceLock::new(),
            policies: parking_lot::RwLock::new(Vec::new()),
            stats: MsgStats::default(),
            rates: Rates::default(),
            limits: VhostLimits::default(),
            churn: QueueChurn::default(),
        };
        for (n, kind) in PREDECLARED {
            let opts = ExchangeOptions {
                kind: *kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: FieldTable::default(),
            };
            v.exchanges.insert(
                Arc::from(*n),
                Arc::new(Exchange::new(name.clone(), Arc::from(*n), opts)),
            );
        }
        v
    }

    /// Let the vhost hand out references to itself (call once it is in its `Arc`, before
    /// restoring or declaring delayed exchanges).
    pub fn bind_self(self: &Arc<Self>) {
        let _ = self.me.set(Arc::downgrade(self));
    }

    pub fn weak(&self) -> Option<std::sync::Weak<VHost>> {
        self.me.get().cloned()
    }

    /// A weak reference for queues (dead-letter routing, expiry); dangling before `bind_self`.
    fn home(&self) -> Weak<VHost> {
        self.weak().unwrap_or_default()
    }

    fn no_exchange(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    fn no_queue(&self, name: &str) -> AmqpError {
        AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.get(name).map(|e| e.value().clone())
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|q| q.value().clone())
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.iter().map(|e| e.value().clone()).collect()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|e| e.value().clone()).collect()
    }

    /// Look a queue up for use by connection `conn`, enforcing exclusivity (405).
    pub fn queue_for(&self, name: &str, conn: u64) -> AmqpResult<Arc<Queue>> {
        let q = self.queue(name).ok_or_else(|| self.no_queue(name))?;
        check_owner(&q, conn)?;
        Ok(q)
    }

    pub fn declare_exchange(
        &self,
        name: &str,
        kind: &str,
        passive: bool,
        opts: impl FnOnce(ExchangeKind) -> ExchangeOptions,
    ) -> AmqpResult<Arc<Exchange>> {
        self.declare_exchange_as(name, kind, passive, opts, None)
    }

    /// exchange.declare for a client whose permissions `authz` checks (None: the operator).
    pub fn declare_exchange_as(
        &self,
        name: &str,
        kind: &str,
        passive: bool,
        opts: impl FnOnce(ExchangeKind) -> ExchangeOptions,
        mut authz: Option<&mut Authz>,
    ) -> AmqpResult<Arc<Exchange>> {
        let _t = self.topology.lock();
        // RabbitMQ refuses the default exchange for passive declares too.
        if name.is_empty() {
            return Err(binding::default_exchange_refused());
        }
        if passive {
            return self.exchange(name).ok_or_else(|| self.no_exchange(name));
        }
        let Some(kind) = ExchangeKind::parse(kind) else {
            return Err(AmqpError::command_invalid(format!(
                "unknown exchange type '{kind}'"
            )));
        };
        if let Some(a) = authz.as_deref_mut() {
            a.check(Perm::Configure, Kind::Exchange, name)?;
        }
        let opts = opts(kind);
        if kind == ExchangeKind::Delayed {
            match ExchangeKind::delayed_type(&opts.arguments) {
                Some(Ok(_)) => {}
                Some(Err(t)) => {
                    return Err(AmqpError::command_invalid(format!(
                        "unknown exchange type '{t}'"
                    )))
                }
                None => {
                    return Err(AmqpError::precondition_failed(
                        "Invalid argument, 'x-delayed-type' must be an existing exchange type",
                    ))
                }
            }
        }
        if let Some(e) = self.exchange(name) {
            let o = &e.options;
            let what = "exchange";
            let obj = format!("{name}' in vhost '{}", self.name);
            if o.kind != opts.kind {
                return Err(inequivalent(
                    what,
                    "type",
                    &obj,
                    opts.kind.as_str(),
                    o.kind.as_str(),
                ));
            }
            if o.durable != opts.durable {
                return Err(inequivalent(what, "durable", &obj, opts.durable, o.durable));
            }
            if o.auto_delete != opts.auto_delete {
                return Err(inequivalent(
                    what,
                    "auto_delete",
                    &obj,
                    opts.auto_delete,
                    o.auto_delete,
                ));
            }
            if o.internal != opts.internal {
                return Err(inequivalent(
                    what,
                    "internal",
                    &obj,
                    opts.internal,
                    o.internal,
                ));
            }
            // RabbitMQ compares `alternate-exchange` (and the delayed type of a delayed
            // exchange); other arguments are not checked on a redeclare.
            let keys: &[&str] = if o.kind == ExchangeKind::Delayed {
                &["alternate-exchange", "x-delayed-type"]
            } else {
                &["alternate-exchange"]
            };
            equivalence::assert_args(
                &o.arguments,
                &opts.arguments,
                keys,
                &format!("exchange '{obj}'"),
            )?;
            return Ok(e);
        }
        if reserved(name) {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        if let (Some(a), Some(ae)) = (authz, string_arg(&opts.arguments, "alternate-exchange")) {
            a.check(Perm::Read, Kind::Exchange, name)?;
            a.check(Perm::Write, Kind::Exchange, &ae)?;
        }
        if let (true, Some(p)) = (opts.durable, &self.persist) {
            p.save_exchange(&self.name, name, &opts)?;
        }
        let e = Arc::new(Exchange::new(self.name.clone(), Arc::from(name), opts));
        if kind == ExchangeKind::Delayed {
            crate::broker::exchange::delayed::attach(self, self.persist.as_ref(), &e);
        }
        self.apply_policy_to_exchange(&e);
        self.exchanges.insert(e.name.clone(), e.clone());
        Ok(e)
    }

    /// Put back a durable exchange at start-up.
    pub fn restore_exchange(&self, name: &str, opts: ExchangeOptions) {
        let e = Arc::new(Exchange::new(self.name.clone(), Arc::from(name), opts));
        if e.options.kind == ExchangeKind::Delayed {
            crate::broker::exchange::delayed::attach(self, self.persist.as_ref(), &e);
        }
        self.apply_policy_to_exchange(&e);
        self.exchanges.insert(e.name.clone(), e);
    }

    /// Put back a durable queue and its messages at start-up.
    pub fn restore_queue(
        &self,
        name: &str,
        opts: QueueOptions,
        id: u64,
        log: Arc<QueueLog>,
        restored: Restored,
    ) {
        let mut q = Queue::new(self.name.clone(), Arc::from(name), opts, None)
            .in_vhost(self.home())
            .with_log(id, log, Some(restored));
        if let Some(p) = &self.persist {
            q = q.with_paging(p.clone());
        }
        self.apply_policy_to_queue(&q);
        self.queues.insert(q.name.clone(), Arc::new(q));
    }

    /// Put back a durable binding at start-up.
    pub fn restore_binding(
        &self,
        source: &str,
        to_queue: bool,
        dest: &str,
        key: &str,
        args: &FieldTable,
    ) {
        let d = if to_queue {
            self.queue(dest).map(Dest::Queue)
        } else {
            self.exchange(dest).map(Dest::Exchange)
        };
        if let (Some(s), Some(d)) = (self.exchange(source), d) {
            if let Err(e) = s.bind(d, key, args) {
                tracing::warn!(source, dest, "skipping a stored binding: {e}");
            }
        }
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        let _t = self.topology.lock();
        // RabbitMQ's two texts: the default exchange, then any `amq.*` name ("system exchange").
        if name.is_empty() {
            return Err(binding::default_exchange_refused());
        }
        if reserved(name) {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let Some(e) = self.exchange(name) else {
            // RabbitMQ treats deleting a missing exchange as done.
            return Ok(());
        };
        if if_unused && e.has_bindings() {
            return Err(AmqpError::precondition_failed(format!(
                "{} in use",
                e.describe()
            )));
        }
        self.remove_exchange(&e);
        Ok(())
    }

    /// Drop an exchange and every binding that leads to it (topology lock held).
    fn remove_exchange(&self, e: &Arc<Exchange>) {
        if let (true, Some(p)) = (e.options.durable, &self.persist) {
            if let Err(err) = p.forget_exchange(&self.name, &e.name) {
                tracing::error!("{err}");
            }
        }
        self.exchanges.remove(&e.name);
        e.mark_deleted();
        if let Some(d) = e.delayed() {
            d.close();
        }
        let dest = Dest::Exchange(e.clone());
        for other in self.exchanges() {
            if other.unbind_dest(&dest) > 0 {
                self.maybe_auto_delete(&other);
            }
        }
    }

    /// An auto-delete exchange goes when its last binding (as source) goes.
    fn maybe_auto_delete(&self, e: &Arc<Exchange>) {
        if e.options.auto_delete && !e.has_bindings() && !e.is_default() {
            self.remove_exchange(e);
        }
    }

    /// Every queue `msg` reaches from `ex`, each once, following exchange-to-exchange bindings
    /// (cycles are cut) and alternate exchanges. `visited` is scratch space the caller reuses.
    pub fn route(
        &self,
        ex: &Arc<Exchange>,
        msg: &Message,
        out: &mut Vec<Arc<Queue>>,
        visited: &mut Vec<usize>,
    ) {
        visited.clear();
        let mut hdrs = LazyHeaders::default();
        self.route_into(ex, msg, &mut hdrs, out, visited);
        if out.len() > 1 {
            out.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
            out.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }

    fn route_into(
        &self,
        ex: &Arc<Exchange>,
        msg: &Message,
        hdrs: &mut LazyHeaders,
        out: &mut Vec<Arc<Queue>>,
        visited: &mut Vec<usize>,
    ) {
        let id = Arc::as_ptr(ex) as usize;
        if visited.contains(&id) {
            return;
        }
        visited.push(id);
        let before = out.len();
        let mut hops: Vec<Arc<Exchange>> = Vec::new();
        if ex.is_default() {
            if let Ok(name) = std::str::from_utf8(&msg.routing_key) {
                if let Some(q) = self.queues.get(name) {
                    out.push(q.value().clone());
                }
            }
        } else {
            ex.route_local(msg, hdrs, &mut |d| match d {
                Dest::Queue(q) => out.push(q.clone()),
                Dest::Exchange(e) => hops.push(e.clone()),
            });
        }
        let mut reached = out.len() > before;
        for e in hops {
            let b = out.len();
            self.route_into(&e, msg, hdrs, out, visited);
            reached |= out.len() > b;
        }
        if !reached {
            if let Some(ae) = ex.alternate_exchange().and_then(|n| self.exchange(&n)) {
                self.route_into(&ae, msg, hdrs, out, visited);
            }
        }
    }
}

fn declared(q: &Arc<Queue>) -> Declared {
    let (ready, _, _, consumers) = q.snapshot();
    Declared {
        name: q.name.clone(),
        messages: u32::try_from(ready).unwrap_or(u32::MAX),
        consumers,
    }
}

/// The connection id the HTTP API acts as: an operator may delete or purge any queue, even
/// another connection's exclusive one (as in RabbitMQ's management API).
pub const ADMIN: u64 = u64::MAX;

pub(super) fn check_owner(q: &Queue, conn: u64) -> AmqpResult<()> {
    match q.owner {
        Some(o) if o != conn && conn != ADMIN => Err(AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked {}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
            q.describe()
        ))),
        _ => Ok(()),
    }
}

/// `amq.gen-` / `amq.ctag-` names: a prefix and 22 url-safe base64 characters of randomness.
pub fn generate_name(prefix: &str) -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// `x-queue-type = stream`?
pub fn is_stream(args: &FieldTable) -> bool {
    match args.inner().get("x-queue-type") {
        Some(amq_protocol::types::AMQPValue::LongString(s)) => s.as_bytes() == b"stream",
        Some(amq_protocol::types::AMQPValue::ShortString(s)) => s.as_str() == "stream",
        _ => false,
    }
}
