//! Exchanges and their bindings. Each exchange keeps its bindings behind a read-mostly lock, indexed
//! for its type (hash map, list, topic trie, header matchers), and answers one question: which
//! destinations does this message reach? Exchange-to-exchange hops and alternate exchanges are
//! followed by `VHost::route`.

pub mod delayed;
pub mod headers;
pub mod headers_index;
pub mod topic;

use crate::broker::message::Message;
use crate::broker::queue::Queue;
use crate::broker::stats::{MsgStats, Rates};
use crate::protocol::properties;
use amq_protocol::types::{AMQPValue, FieldTable};
use headers_index::HeadersIndex;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use topic::TopicTrie;

/// The exchange types warren implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// `x-delayed-message`: routes like its `x-delayed-type` once a message's delay is over.
    Delayed,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            "x-delayed-message" => Some(ExchangeKind::Delayed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::Delayed => "x-delayed-message",
        }
    }

    /// The routing kind an `x-delayed-message` exchange's `x-delayed-type` names; None when
    /// missing or not a (non-delayed) type warren routes with. Err(name) for an unknown type.
    pub fn delayed_type(args: &FieldTable) -> Option<Result<ExchangeKind, String>> {
        let name = match args.inner().get("x-delayed-type")? {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_string(),
            _ => return None,
        };
        match ExchangeKind::parse(&name) {
            Some(ExchangeKind::Delayed) => None,
            Some(k) => Some(Ok(k)),
            None => Some(Err(name)),
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone)]
pub enum Dest {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

impl PartialEq for Dest {
    fn eq(&self, other: &Dest) -> bool {
        match (self, other) {
            (Dest::Queue(a), Dest::Queue(b)) => Arc::ptr_eq(a, b),
            (Dest::Exchange(a), Dest::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A binding as declared (its identity is source, destination, key and arguments).
#[derive(Debug, Clone)]
pub struct BindingRecord {
    pub dest: Dest,
    pub routing_key: String,
    pub arguments: FieldTable,
}

#[derive(Debug, Default)]
struct Bindings {
    all: Vec<BindingRecord>,
    direct: HashMap<Box<[u8]>, Vec<Dest>>,
    topic: TopicTrie<Dest>,
    headers: HeadersIndex<Dest>,
}

/// Declared properties of an exchange, compared on redeclare.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeOptions {
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// One exchange in a vhost.
#[derive(Debug)]
pub struct Exchange {
    pub name: Arc<str>,
    pub vhost: Arc<str>,
    pub options: ExchangeOptions,
    /// `alternate-exchange` argument: where unroutable messages go.
    pub alternate: Option<Arc<str>>,
    /// How bindings route: the declared type, or a delayed exchange's `x-delayed-type`.
    route_kind: ExchangeKind,
    /// Held messages of an `x-delayed-message` exchange.
    delayed: std::sync::OnceLock<Arc<delayed::Delayed>>,
    /// The policy that applies (its `alternate-exchange` is used when the argument is absent).
    policy: RwLock<Option<Arc<crate::broker::policy::Policy>>>,
    bindings: RwLock<Bindings>,
    deleted: AtomicBool,
    /// publish_in / publish_out counts (relaxed increments only).
    pub stats: MsgStats,
    pub rates: Rates,
}

/// The message's headers table, decoded at most once per publish and only if a headers exchange
/// asks for it.
#[derive(Default)]
pub struct LazyHeaders(Option<Option<FieldTable>>);

impl LazyHeaders {
    fn get(&mut self, msg: &Message) -> Option<&FieldTable> {
        self.0
            .get_or_insert_with(|| properties::headers(&msg.properties).ok().flatten())
            .as_ref()
    }
}

impl Exchange {
    pub fn new(vhost: Arc<str>, name: Arc<str>, options: ExchangeOptions) -> Exchange {
        let alternate = match options.arguments.inner().get("alternate-exchange") {
            Some(AMQPValue::LongString(s)) => {
                Some(Arc::from(String::from_utf8_lossy(s.as_bytes()).as_ref()))
            }
            Some(AMQPValue::ShortString(s)) => Some(Arc::from(s.as_str())),
            _ => None,
        };
        let route_kind = match options.kind {
            ExchangeKind::Delayed => match ExchangeKind::delayed_type(&options.arguments) {
                Some(Ok(k)) => k,
                _ => ExchangeKind::Direct,
            },
            k => k,
        };
        Exchange {
            name,
            vhost,
            options,
            alternate,
            route_kind,
            delayed: std::sync::OnceLock::new(),
            policy: RwLock::new(None),
            bindings: RwLock::new(Bindings::default()),
            deleted: AtomicBool::new(false),
            stats: MsgStats::default(),
            rates: Rates::default(),
        }
    }

    /// The kind bindings route with (a delayed exchange's underlying type).
    pub fn kind(&self) -> ExchangeKind {
        self.route_kind
    }

    /// Where unroutable messages go: the `alternate-exchange` argument, else the policy's.
    pub fn alternate_exchange(&self) -> Option<Arc<str>> {
        if let Some(a) = &self.alternate {
            return Some(a.clone());
        }
        let p = self.policy.read();
        match p.as_ref()?.get("alternate-exchange")? {
            AMQPValue::LongString(s) => {
                Some(Arc::from(String::from_utf8_lossy(s.as_bytes()).as_ref()))
            }
            _ => None,
        }
    }

    /// Apply a policy (None: none applies any more).
    pub fn set_policy(&self, p: Option<Arc<crate::broker::policy::Policy>>) {
        *self.policy.write() = p;
    }

    /// The policy that applies, if any.
    pub fn policy(&self) -> Option<Arc<crate::broker::policy::Policy>> {
        self.policy.read().clone()
    }

    /// The held messages of an `x-delayed-message` exchange.
    pub fn delayed(&self) -> Option<&Arc<delayed::Delayed>> {
        self.delayed.get()
    }

    pub(crate) fn set_delayed(
        &self,
        d: Arc<delayed::Delayed>,
    ) -> Result<(), Arc<delayed::Delayed>> {
        self.delayed.set(d)
    }

    pub fn is_default(&self) -> bool {
        self.name.is_empty()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Relaxed)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Relaxed);
    }

    /// `exchange 'x' in vhost '/'`.
    pub fn describe(&self) -> String {
        format!("exchange '{}' in vhost '{}'", self.name, self.vhost)
    }

    /// Add a binding; false if the same binding already exists. Errors are texts for a 406.
    pub fn bind(&self, dest: Dest, key: &str, args: &FieldTable) -> Result<bool, String> {
        let xm = if self.kind() == ExchangeKind::Headers {
            Some(headers::parse_x_match(args)?)
        } else {
            None
        };
        let mut b = self.bindings.write();
        if b.all
            .iter()
            .any(|r| r.dest == dest && r.routing_key == key && &r.arguments == args)
        {
            return Ok(false);
        }
        match self.kind() {
            ExchangeKind::Direct | ExchangeKind::Delayed => b
                .direct
                .entry(key.as_bytes().into())
                .or_default()
                .push(dest.clone()),
            ExchangeKind::Fanout => {}
            ExchangeKind::Topic => {
                b.topic.insert(key, dest.clone());
            }
            ExchangeKind::Headers => {
                if let Some(xm) = xm {
                    b.headers.insert(xm, args.clone(), dest.clone());
                }
            }
        }
        b.all.push(BindingRecord {
            dest,
            routing_key: key.to_string(),
            arguments: args.clone(),
        });
        Ok(true)
    }

    /// Remove one binding; true if it existed.
    pub fn unbind(&self, dest: &Dest, key: &str, args: &FieldTable) -> bool {
        let mut b = self.bindings.write();
        let Some(pos) = b
            .all
            .iter()
            .position(|r| &r.dest == dest && r.routing_key == key && &r.arguments == args)
        else {
            return false;
        };
        b.all.remove(pos);
        // Another binding to the same destination under the same key (different args) keeps the
        // index entry alive for the types whose index ignores args.
        let still = b
            .all
            .iter()
            .any(|r| &r.dest == dest && r.routing_key == key);
        match self.kind() {
            ExchangeKind::Direct | ExchangeKind::Delayed if !still => {
                if let Some(v) = b.direct.get_mut(key.as_bytes()) {
                    v.retain(|d| d != dest);
                    if v.is_empty() {
                        b.direct.remove(key.as_bytes());
                    }
                }
            }
            ExchangeKind::Topic if !still => {
                b.topic.remove(key, dest);
            }
            ExchangeKind::Headers => {
                b.headers.remove(args, dest);
            }
            _ => {}
        }
        true
    }

    /// Remove every binding to `dest` (it is being deleted). Returns how many went.
    pub fn unbind_dest(&self, dest: &Dest) -> usize {
        let mut b = self.bindings.write();
        let before = b.all.len();
        b.all.retain(|r| &r.dest != dest);
        let n = before - b.all.len();
        if n > 0 {
            b.direct.retain(|_, v| {
                v.retain(|d| d != dest);
                !v.is_empty()
            });
            b.topic.remove_dest(|d| d == dest);
            b.headers.remove_dest(dest);
        }
        n
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().all.is_empty()
    }

    /// A copy of the bindings (for listings).
    pub fn bindings(&self) -> Vec<BindingRecord> {
        self.bindings.read().all.clone()
    }

    /// Call `out` with every destination this exchange's own bindings select for `msg`. A
    /// destination may be reported more than once; the caller dedups.
    pub fn route_local(&self, msg: &Message, hdrs: &mut LazyHeaders, out: &mut impl FnMut(&Dest)) {
        let b = self.bindings.read();
        match self.kind() {
            ExchangeKind::Direct | ExchangeKind::Delayed => {
                if let Some(v) = b.direct.get(&msg.routing_key[..]) {
                    v.iter().for_each(&mut *out);
                }
            }
            ExchangeKind::Fanout => b.all.iter().for_each(|r| out(&r.dest)),
            ExchangeKind::Topic => b.topic.route(&msg.routing_key, out),
            ExchangeKind::Headers => {
                if b.headers.is_empty() {
                    return;
                }
                b.headers.route(hdrs.get(msg), out);
            }
        }
    }
}
