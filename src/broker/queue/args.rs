//! Queue arguments (`x-…`): checked at declare the way RabbitMQ 4 checks them (same order, same
//! error terms), and turned into the [`Features`] a classic or quorum queue runs with. A queue
//! declared without any of them gets no `Features` at all, so the publish and deliver paths of
//! a plain queue test one `Option` and nothing else.

use crate::broker::policy::Policy;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use bytes::Bytes;

/// RabbitMQ's largest per-message `expiration`: ten years in ms (measured on RabbitMQ 3.10,
/// which takes 315360000000 and refuses one more with `value_too_large`; not 2^32-1, so a
/// 60-day expiration is fine). Queue arguments (`x-message-ttl`, `x-expires`) have no upper
/// bound here: Celery's native delayed delivery declares `x-message-ttl` up to 2^27 s.
pub const MAX_EXPIRY: i64 = 315_360_000_000;
/// RabbitMQ's largest `x-max-priority` (`?MAX_SUPPORTED_PRIORITY`).
pub const MAX_PRIORITY: i64 = 255;
/// RabbitMQ 4's delivery limit for quorum queues without `x-delivery-limit`.
pub const QUORUM_DELIVERY_LIMIT: u64 = 20;

/// `x-queue-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    /// The type `args` ask for; absent (or not a known name) is classic.
    pub fn of(args: &FieldTable) -> QueueType {
        match args.inner().get("x-queue-type").and_then(text) {
            Some(b"quorum") => QueueType::Quorum,
            Some(b"stream") => QueueType::Stream,
            _ => QueueType::Classic,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }

    /// The Erlang module RabbitMQ names in "of queue type …" errors.
    fn module(self) -> &'static str {
        match self {
            QueueType::Classic => "rabbit_classic_queue",
            QueueType::Quorum => "rabbit_quorum_queue",
            QueueType::Stream => "rabbit_stream_queue",
        }
    }

    /// The queue arguments this type takes (RabbitMQ 4's `capabilities()`).
    pub fn arguments(self) -> &'static [&'static str] {
        match self {
            QueueType::Classic => &[
                "x-expires",
                "x-message-ttl",
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-max-length",
                "x-max-length-bytes",
                "x-max-priority",
                "x-overflow",
                "x-queue-mode",
                "x-queue-version",
                "x-single-active-consumer",
                "x-queue-type",
                "x-queue-master-locator",
                "x-queue-leader-locator",
            ],
            QueueType::Quorum => &[
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-dead-letter-strategy",
                "x-expires",
                "x-max-length",
                "x-max-length-bytes",
                "x-max-in-memory-length",
                "x-max-in-memory-bytes",
                "x-overflow",
                "x-single-active-consumer",
                "x-queue-type",
                "x-quorum-initial-group-size",
                "x-delivery-limit",
                "x-message-ttl",
                "x-queue-leader-locator",
            ],
            QueueType::Stream => &[
                "x-max-length-bytes",
                "x-queue-type",
                "x-max-age",
                "x-stream-max-segment-size-bytes",
                "x-stream-filter-size-bytes",
                "x-initial-cluster-size",
                "x-queue-leader-locator",
            ],
        }
    }
}

/// Every argument some queue type takes: one of these on a type that does not take it is a 406.
fn known(key: &str) -> bool {
    [QueueType::Classic, QueueType::Quorum, QueueType::Stream]
        .iter()
        .any(|t| t.arguments().contains(&key))
}

/// The bytes of a string argument.
fn text(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// The value of an integer argument (RabbitMQ's `?INTEGER_ARG_TYPES`).
pub fn int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

/// RabbitMQ's name of a field value's type, as its error terms print it (shared with the
/// consumer arguments' checks).
use super::consumer_opts::type_name;

/// A validator's verdict: the Erlang term RabbitMQ prints after "invalid arg '…' for …: ".
type Check = Result<(), String>;

fn unacceptable(v: &AMQPValue) -> String {
    format!("{{unacceptable_type,{}}}", type_name(v))
}

fn check_int(v: &AMQPValue) -> Result<i64, String> {
    int(v).ok_or_else(|| format!("\"expected integer, got {}\"", type_name(v)))
}

fn check_non_neg(v: &AMQPValue) -> Result<i64, String> {
    let n = check_int(v)?;
    if n < 0 {
        return Err(format!("{{value_negative,{n}}}"));
    }
    Ok(n)
}

/// `rabbit_misc:check_expiry`: only a negative value is refused.
fn check_expiry(n: i64) -> Check {
    if n < 0 {
        Err(format!("{{value_negative,{n}}}"))
    } else {
        Ok(())
    }
}

fn check_message_ttl(v: &AMQPValue, _: &FieldTable) -> Check {
    check_expiry(check_int(v)?)
}

fn check_expires(v: &AMQPValue, _: &FieldTable) -> Check {
    match check_int(v)? {
        0 => Err("{value_zero,0}".into()),
        n => check_expiry(n),
    }
}

fn check_non_neg_int(v: &AMQPValue, _: &FieldTable) -> Check {
    check_non_neg(v).map(|_| ())
}

fn check_max_priority(v: &AMQPValue, _: &FieldTable) -> Check {
    match check_non_neg(v)? {
        n if n > MAX_PRIORITY => Err(format!("{{max_value_exceeded,{n}}}")),
        _ => Ok(()),
    }
}

fn check_dlx(v: &AMQPValue, _: &FieldTable) -> Check {
    match v {
        AMQPValue::LongString(_) => Ok(()),
        _ => Err(unacceptable(v)),
    }
}

fn check_dlrk(v: &AMQPValue, args: &FieldTable) -> Check {
    match v {
        AMQPValue::LongString(_) if args.contains_key("x-dead-letter-exchange") => Ok(()),
        AMQPValue::LongString(_) => Err("routing_key_but_no_dlx_defined".into()),
        _ => Err(unacceptable(v)),
    }
}

fn one_of(v: &AMQPValue, allowed: &[&str], err: &str) -> Check {
    match v {
        AMQPValue::LongString(s) if allowed.iter().any(|a| a.as_bytes() == s.as_bytes()) => Ok(()),
        AMQPValue::LongString(_) => Err(err.into()),
        _ => Err(unacceptable(v)),
    }
}

fn check_overflow(v: &AMQPValue, _: &FieldTable) -> Check {
    let allowed = ["drop-head", "reject-publish", "reject-publish-dlx"];
    one_of(v, &allowed, "invalid_overflow")
}

fn check_queue_mode(v: &AMQPValue, _: &FieldTable) -> Check {
    match v {
        AMQPValue::LongString(s) if !matches!(s.as_bytes(), b"default" | b"lazy") => Err(format!(
            "\"unsupported queue mode '{}'\"",
            String::from_utf8_lossy(s.as_bytes())
        )),
        _ => one_of(v, &["default", "lazy"], "invalid_queue_mode"),
    }
}

fn check_dlx_strategy(v: &AMQPValue, _: &FieldTable) -> Check {
    let allowed = ["at-most-once", "at-least-once"];
    one_of(v, &allowed, "invalid_dlx_strategy")
}

fn check_bool(v: &AMQPValue, _: &FieldTable) -> Check {
    match v {
        AMQPValue::Boolean(_) => Ok(()),
        _ => Err(unacceptable(v)),
    }
}

fn check_group_size(v: &AMQPValue, _: &FieldTable) -> Check {
    match check_non_neg(v)? {
        0 => Err("{value_zero,0}".into()),
        _ => Ok(()),
    }
}

type Validator = fn(&AMQPValue, &FieldTable) -> Check;

/// RabbitMQ's `declare_args()`, in its order (the first failing one is reported).
const VALIDATORS: &[(&str, Validator)] = &[
    ("x-expires", check_expires),
    ("x-message-ttl", check_message_ttl),
    ("x-dead-letter-exchange", check_dlx),
    ("x-dead-letter-routing-key", check_dlrk),
    ("x-dead-letter-strategy", check_dlx_strategy),
    ("x-max-length", check_non_neg_int),
    ("x-max-length-bytes", check_non_neg_int),
    ("x-max-in-memory-length", check_non_neg_int),
    ("x-max-in-memory-bytes", check_non_neg_int),
    ("x-max-priority", check_max_priority),
    ("x-overflow", check_overflow),
    ("x-queue-mode", check_queue_mode),
    ("x-single-active-consumer", check_bool),
    ("x-quorum-initial-group-size", check_group_size),
];

/// What a queue.declare asks for besides its arguments.
pub struct DeclareFlags {
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    /// The client left the name empty.
    pub server_named: bool,
}

/// Check a queue's declare as RabbitMQ 4 does: `x-queue-type`, then each known
/// argument's type and range, then arguments the type does not take, then the properties a
/// quorum queue cannot have. `what` is "queue 'q' in vhost '/'". A stream's properties
/// (durable, not exclusive) and its retention arguments are checked where it is made.
pub fn validate(what: &str, args: &FieldTable, f: &DeclareFlags) -> AmqpResult<()> {
    let invalid = |key: &str, err: String| {
        AmqpError::precondition_failed(format!("invalid arg '{key}' for {what}: {err}"))
    };
    if let Some(v) = args.inner().get("x-queue-type") {
        match text(v) {
            Some(b"classic" | b"quorum" | b"stream") => {}
            Some(other) => {
                let name = String::from_utf8_lossy(other);
                let err = format!("\"unsupported queue type '{name}'\"");
                return Err(invalid("x-queue-type", err));
            }
            None => return Err(invalid("x-queue-type", unacceptable(v))),
        }
    }
    let ty = QueueType::of(args);
    let takes = ty.arguments();
    for (key, check) in VALIDATORS {
        if let (true, Some(v)) = (takes.contains(key), args.inner().get(*key)) {
            check(v, args).map_err(|e| invalid(key, e))?;
        }
    }
    for key in args.inner().keys() {
        let key = key.as_str();
        if known(key) && !takes.contains(&key) {
            return Err(AmqpError::precondition_failed(format!(
                "invalid arg '{key}' for {what} of queue type {}",
                ty.module()
            )));
        }
    }
    if ty == QueueType::Quorum {
        let property =
            |p: &str| AmqpError::precondition_failed(format!("invalid property '{p}' for {what}"));
        if f.auto_delete {
            return Err(property("auto-delete"));
        }
        if f.exclusive {
            return Err(property("exclusive-owner"));
        }
        if !f.durable {
            return Err(property("non-durable"));
        }
        if f.server_named {
            return Err(AmqpError::precondition_failed(
                "Cannot declare a server-named queue for type rabbit_quorum_queue",
            ));
        }
    }
    Ok(())
}

/// `x-overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

/// What a classic or quorum queue does beyond plain FIFO, from its (validated) arguments.
#[derive(Debug)]
pub struct Features {
    /// `x-message-ttl`, milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-expires`: delete the queue after this many idle milliseconds.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-dead-letter-exchange` (may be "", the default exchange).
    pub dlx: Option<Bytes>,
    pub dlrk: Option<Bytes>,
    /// Deliveries beyond the first a message may have before it is dead-lettered (None: any).
    pub delivery_limit: Option<u64>,
    /// Count returns and send `x-delivery-count` (quorum queues).
    pub count_returns: bool,
    /// `x-max-priority`: lanes 0..=max.
    pub max_priority: Option<u8>,
    pub quorum: bool,
}

impl Features {
    /// The features `args` ask for; None for a plain classic queue. Lenient: arguments were
    /// validated at declare, and a stored definition from an older version must still load.
    pub fn parse(args: &FieldTable) -> Option<Features> {
        let get = |k: &str| args.inner().get(k);
        let non_neg = |k: &str| get(k).and_then(int).and_then(|n| u64::try_from(n).ok());
        let quorum = QueueType::of(args) == QueueType::Quorum;
        let overflow = match get("x-overflow").and_then(text) {
            Some(b"reject-publish") => Overflow::RejectPublish,
            Some(b"reject-publish-dlx") if quorum => {
                // As RabbitMQ: quorum queues do not support it and fall back to the default.
                tracing::warn!("x-overflow reject-publish-dlx is not supported by quorum queues; using drop-head");
                Overflow::DropHead
            }
            Some(b"reject-publish-dlx") => Overflow::RejectPublishDlx,
            _ => Overflow::DropHead,
        };
        let delivery_limit = match (quorum, get("x-delivery-limit").and_then(int)) {
            (false, _) => None,
            (true, Some(n)) if n < 0 => None,
            (true, Some(n)) => u64::try_from(n).ok(),
            (true, None) => Some(QUORUM_DELIVERY_LIMIT),
        };
        let max_priority = match quorum {
            true => None,
            false => non_neg("x-max-priority").map(|n| n.min(MAX_PRIORITY as u64) as u8),
        };
        let f = Features {
            message_ttl: non_neg("x-message-ttl"),
            expires: non_neg("x-expires").filter(|n| *n > 0),
            max_length: non_neg("x-max-length"),
            max_length_bytes: non_neg("x-max-length-bytes"),
            overflow,
            dlx: get("x-dead-letter-exchange")
                .and_then(text)
                .map(Bytes::copy_from_slice),
            dlrk: get("x-dead-letter-routing-key")
                .and_then(text)
                .map(Bytes::copy_from_slice),
            delivery_limit,
            count_returns: quorum,
            max_priority,
            quorum,
        };
        let plain = !quorum
            && f.message_ttl.is_none()
            && f.expires.is_none()
            && f.max_length.is_none()
            && f.max_length_bytes.is_none()
            && f.dlx.is_none()
            && f.max_priority.is_none();
        (!plain).then_some(f)
    }

    /// Is a length limit set?
    pub fn limited(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

/// How a policy setting combines with the queue's own argument when both are set, as in
/// RabbitMQ's queue processes (`res_min` / `res_arg`, and the quorum queue's rules).
enum Merge {
    Min,
    Arg,
    /// quorum: the policy wins (`overflow`)
    PolicyIfQuorum,
    /// `delivery-limit`: with a negative (unlimited) one on either side the higher, else the
    /// lower (RabbitMQ's `resolve_delivery_limit`: a set limit beats "unlimited").
    Limit,
}

const POLICY_KEYS: &[(&str, Merge)] = &[
    ("message-ttl", Merge::Min),
    ("expires", Merge::Min),
    ("max-length", Merge::Min),
    ("max-length-bytes", Merge::Min),
    ("overflow", Merge::PolicyIfQuorum),
    ("dead-letter-exchange", Merge::Arg),
    ("dead-letter-routing-key", Merge::Arg),
    ("delivery-limit", Merge::Limit),
];

/// The arguments a classic or quorum queue runs with: its own, with the applying policy's
/// settings merged in as RabbitMQ merges them (the lower TTL, expiry and length limit; the
/// queue's own dead-letter settings; for quorum queues the policy's overflow).
pub fn with_policy(args: &FieldTable, policy: Option<&Policy>, quorum: bool) -> FieldTable {
    let Some(p) = policy else {
        return args.clone();
    };
    let mut out = args.inner().clone();
    for (key, merge) in POLICY_KEYS {
        let Some(pv) = p.get(key) else { continue };
        let Ok(k) = ShortString::try_new(format!("x-{key}")) else {
            continue;
        };
        let merged = match (out.get(&k), merge) {
            (None, _) => pv,
            (Some(av), Merge::Min) => match (int(av), int(&pv)) {
                (Some(a), Some(b)) if b < a => pv,
                _ => av.clone(),
            },
            (Some(_), Merge::PolicyIfQuorum) if quorum => pv,
            (Some(av), Merge::Limit) => match (int(av), int(&pv)) {
                (Some(a), Some(b)) if (a < 0 || b < 0) && b > a => pv,
                (Some(a), Some(b)) if a >= 0 && b >= 0 && b < a => pv,
                _ => av.clone(),
            },
            (Some(av), _) => av.clone(),
        };
        out.insert(k, merged);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{LongString, ShortString};

    fn table(kv: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in kv {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    fn flags() -> DeclareFlags {
        DeclareFlags {
            durable: true,
            exclusive: false,
            auto_delete: false,
            server_named: false,
        }
    }

    fn err(args: &[(&str, AMQPValue)]) -> String {
        match validate("queue 'q' in vhost '/'", &table(args), &flags()) {
            Ok(()) => String::from("ok"),
            Err(e) => e.text.replace("PRECONDITION_FAILED - ", ""),
        }
    }

    #[test]
    fn rabbitmq_error_terms() {
        let q = "for queue 'q' in vhost '/'";
        let cases = [
            (
                vec![("x-message-ttl", AMQPValue::LongInt(-1))],
                format!("invalid arg 'x-message-ttl' {q}: {{value_negative,-1}}"),
            ),
            (
                vec![("x-message-ttl", s("10"))],
                format!("invalid arg 'x-message-ttl' {q}: \"expected integer, got longstr\""),
            ),
            (
                vec![("x-expires", AMQPValue::LongInt(0))],
                format!("invalid arg 'x-expires' {q}: {{value_zero,0}}"),
            ),
            (
                vec![("x-max-priority", AMQPValue::LongInt(256))],
                format!("invalid arg 'x-max-priority' {q}: {{max_value_exceeded,256}}"),
            ),
            (
                vec![("x-overflow", s("drop-tail"))],
                format!("invalid arg 'x-overflow' {q}: invalid_overflow"),
            ),
            (
                vec![("x-dead-letter-routing-key", s("k"))],
                format!(
                    "invalid arg 'x-dead-letter-routing-key' {q}: routing_key_but_no_dlx_defined"
                ),
            ),
            (
                vec![("x-dead-letter-exchange", AMQPValue::LongInt(1))],
                format!(
                    "invalid arg 'x-dead-letter-exchange' {q}: {{unacceptable_type,signedint}}"
                ),
            ),
            (
                vec![("x-delivery-limit", AMQPValue::LongInt(3))],
                format!("invalid arg 'x-delivery-limit' {q} of queue type rabbit_classic_queue"),
            ),
            (
                vec![("x-max-priority", AMQPValue::LongInt(0))],
                "ok".to_string(),
            ),
            (vec![("x-custom", s("anything"))], "ok".to_string()),
        ];
        for (args, want) in cases {
            assert_eq!(err(&args), want, "{args:?}");
        }
    }

    #[test]
    fn quorum_rules() {
        let qq = ("x-queue-type", s("quorum"));
        assert_eq!(
            err(&[qq.clone(), ("x-max-priority", AMQPValue::LongInt(5))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type rabbit_quorum_queue"
        );
        let t = table(std::slice::from_ref(&qq));
        let transient = DeclareFlags {
            durable: false,
            ..flags()
        };
        let e = validate("queue 'q' in vhost '/'", &t, &transient).unwrap_err();
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - invalid property 'non-durable' for queue 'q' in vhost '/'"
        );
        let f = Features::parse(&t).expect("quorum has features");
        assert_eq!(f.delivery_limit, Some(QUORUM_DELIVERY_LIMIT));
        let unlimited = table(&[qq.clone(), ("x-delivery-limit", AMQPValue::LongInt(-1))]);
        assert_eq!(Features::parse(&unlimited).unwrap().delivery_limit, None);
    }

    fn policy(d: serde_json::Value) -> Policy {
        let def = crate::broker::policy::PolicyDef {
            vhost: "/".into(),
            name: "p".into(),
            pattern: ".*".into(),
            apply_to: crate::broker::policy::ApplyTo::Queues,
            priority: 0,
            definition: serde_json::from_value(d).expect("definition"),
        };
        Policy::new(def).expect("valid policy")
    }

    #[test]
    fn policies_merge_as_rabbitmq() {
        let p = policy(serde_json::json!({
            "message-ttl": 100, "max-length": 50, "overflow": "reject-publish",
            "dead-letter-exchange": "pol", "delivery-limit": -1,
        }));
        let own = table(&[
            ("x-message-ttl", AMQPValue::LongInt(500)),
            ("x-max-length", AMQPValue::LongInt(10)),
            ("x-overflow", s("drop-head")),
            ("x-dead-letter-exchange", s("arg")),
            ("x-delivery-limit", AMQPValue::LongInt(3)),
        ]);
        let classic = Features::parse(&with_policy(&own, Some(&p), false)).unwrap();
        assert_eq!(classic.message_ttl, Some(100), "the lower TTL");
        assert_eq!(classic.max_length, Some(10), "the lower limit");
        assert_eq!(
            classic.overflow,
            Overflow::DropHead,
            "classic: the argument"
        );
        assert_eq!(
            classic.dlx.as_deref(),
            Some(b"arg".as_slice()),
            "the argument"
        );
        let mut qq = own.clone();
        qq.insert("x-queue-type".into(), s("quorum"));
        let quorum = Features::parse(&with_policy(&qq, Some(&p), true)).unwrap();
        assert_eq!(
            quorum.overflow,
            Overflow::RejectPublish,
            "quorum: the policy"
        );
        assert_eq!(
            quorum.delivery_limit,
            Some(3),
            "a non-negative limit wins over -1"
        );
        let p5 = policy(serde_json::json!({"delivery-limit": 5}));
        let unlimited = table(&[
            ("x-queue-type", s("quorum")),
            ("x-delivery-limit", AMQPValue::LongInt(-1)),
        ]);
        let f = Features::parse(&with_policy(&unlimited, Some(&p5), true)).unwrap();
        assert_eq!(f.delivery_limit, Some(5));
        let none = with_policy(&own, None, false);
        assert_eq!(none, own);
    }

    #[test]
    fn plain_queue_has_no_features() {
        assert!(Features::parse(&table(&[])).is_none());
        assert!(Features::parse(&table(&[("x-custom", s("v"))])).is_none());
        let ttl = table(&[("x-message-ttl", AMQPValue::ShortShortUInt(0))]);
        assert_eq!(Features::parse(&ttl).unwrap().message_ttl, Some(0));
    }
}
