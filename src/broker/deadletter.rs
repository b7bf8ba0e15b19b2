//! Dead-lettering, as RabbitMQ 4 does it. A message that leaves a queue undelivered (rejected
//! without requeue, expired, dropped by a length limit, past its delivery limit) is republished,
//! inside the broker and without confirms, to the queue's `x-dead-letter-exchange`: with the
//! queue's `x-dead-letter-routing-key`, else with all its original routing keys (the routing key,
//! `CC` and `BCC`). Its headers record the death: an `x-death` array with one table per
//! (queue, reason), most recent first, whose `count` grows on each repeat, and the
//! `x-first-death-*` / `x-last-death-*` headers. `expiration` is removed (kept as
//! `original-expiration`), `BCC` is removed. Death headers a publisher set are not interpreted
//! (only the broker's own count). A message that would come back to a queue it already died in,
//! with no rejection in between, is dropped to break the cycle. A missing dead-letter exchange or
//! no matching binding drops the message. A dead letter with `x-delay` sent to an
//! `x-delayed-message` exchange is held until its time, as the plugin does.

use crate::broker::message::Message;
use crate::broker::queue::classic::Dead;
use crate::broker::queue::Queue;
use crate::protocol::props_edit::{self, Headers};
use crate::protocol::{properties, CodecError};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use bytes::Bytes;
use std::sync::Arc;

/// Why a message was dead-lettered (the `reason` RabbitMQ writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A dead-lettered message ready to be routed.
#[derive(Debug)]
pub struct Letter {
    pub msg: Message,
    /// The routing keys to route it with (the first is its routing key).
    pub keys: Vec<Bytes>,
    /// Its deaths as (queue, reason), most recent first, to detect cycles.
    history: Vec<(Bytes, Bytes)>,
}

impl Letter {
    /// Would dead-lettering this message into `target` close a cycle without a rejection in it?
    /// (RabbitMQ's rule: walk the deaths from the most recent; a rejection ends the search, the
    /// target queue found first means a cycle.)
    pub fn is_cycle(&self, target: &str) -> bool {
        for (queue, reason) in &self.history {
            if reason.as_ref() == b"rejected" {
                return false;
            }
            if queue.as_ref() == target.as_bytes() {
                return true;
            }
        }
        false
    }
}

fn lstr(b: &[u8]) -> AMQPValue {
    AMQPValue::LongString(LongString::from(b.to_vec()))
}

fn text(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// The strings of a `CC` / `BCC` header (an array of strings; anything else is ignored).
fn keys_of(h: &Headers, name: &str) -> Vec<Bytes> {
    match h.get(name) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(text)
            .map(Bytes::copy_from_slice)
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(t: &'a FieldTable, k: &str) -> Option<&'a [u8]> {
    t.inner().get(k).and_then(text)
}

/// Headers the broker owns for dead-lettering.
const DEATH_HEADERS: [&str; 7] = [
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
];

/// What dead-lettering `m` from `queue` for `reason` (at `now`, unix seconds) makes of it.
pub fn letter(
    m: &Message,
    queue: &str,
    reason: Reason,
    dlx: &Bytes,
    dlrk: Option<&Bytes>,
    now: u64,
) -> Result<Letter, CodecError> {
    let original_expiration = properties::expiration(&m.properties).map(<[u8]>::to_vec);
    let mut keys = Vec::new();
    let mut history = Vec::new();
    let props = props_edit::edit(&m.properties, true, |h| {
        let cc = keys_of(h, "CC");
        let bcc = keys_of(h, "BCC");
        // The death records the routing keys with CC, never BCC.
        let mut death_keys = vec![m.routing_key.clone()];
        death_keys.extend(cc.iter().cloned());
        keys = match dlrk {
            Some(k) => vec![k.clone()],
            None => {
                let mut all = death_keys.clone();
                all.extend(bcc);
                all
            }
        };
        h.remove(&ShortString::from("BCC"));
        if dlrk.is_some() {
            // RabbitMQ: when the dead-letter routing key replaces the message's, CC goes too.
            h.remove(&ShortString::from("CC"));
        }
        // A quorum queue's count of returns is its own (RabbitMQ adds it at delivery only).
        h.remove(&ShortString::from("x-delivery-count"));
        let mut deaths: Vec<FieldTable> = Vec::new();
        if m.dead_lettered {
            if let Some(AMQPValue::FieldArray(a)) = h.get("x-death") {
                for d in a.as_slice() {
                    if let AMQPValue::FieldTable(t) = d {
                        deaths.push(t.clone());
                    }
                }
            }
        } else {
            // A publisher's death headers mean nothing to the broker: replaced below.
            for k in DEATH_HEADERS {
                h.remove(&ShortString::from(k));
            }
        }
        let same = |t: &FieldTable| {
            field(t, "queue") == Some(queue.as_bytes())
                && field(t, "reason") == Some(reason.as_str().as_bytes())
        };
        let entry = match deaths.iter().position(same) {
            Some(i) => {
                // Seen before: count one more, move to the front (most recent first).
                let mut t = deaths.remove(i);
                let count = match t.inner().get("count") {
                    Some(v) => crate::broker::queue::args::int(v).unwrap_or(0),
                    None => 0,
                };
                t.insert(
                    "count".into(),
                    AMQPValue::LongLongInt(count.saturating_add(1)),
                );
                t
            }
            None => {
                let mut t = FieldTable::default();
                t.insert("count".into(), AMQPValue::LongLongInt(1));
                t.insert("reason".into(), lstr(reason.as_str().as_bytes()));
                t.insert("queue".into(), lstr(queue.as_bytes()));
                t.insert("time".into(), AMQPValue::Timestamp(now));
                t.insert("exchange".into(), lstr(&m.exchange));
                let rks: Vec<AMQPValue> = death_keys.iter().map(|k| lstr(k)).collect();
                t.insert(
                    "routing-keys".into(),
                    AMQPValue::FieldArray(FieldArray::from(rks)),
                );
                if let Some(e) = &original_expiration {
                    t.insert("original-expiration".into(), lstr(e));
                }
                t
            }
        };
        deaths.insert(0, entry);
        for t in &deaths {
            let q = field(t, "queue").unwrap_or_default();
            let r = field(t, "reason").unwrap_or_default();
            history.push((Bytes::copy_from_slice(q), Bytes::copy_from_slice(r)));
        }
        let array: Vec<AMQPValue> = deaths.into_iter().map(AMQPValue::FieldTable).collect();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(array)),
        );
        if !h.contains_key("x-first-death-queue") {
            h.insert("x-first-death-queue".into(), lstr(queue.as_bytes()));
            h.insert(
                "x-first-death-reason".into(),
                lstr(reason.as_str().as_bytes()),
            );
            h.insert("x-first-death-exchange".into(), lstr(&m.exchange));
        }
        h.insert("x-last-death-queue".into(), lstr(queue.as_bytes()));
        h.insert(
            "x-last-death-reason".into(),
            lstr(reason.as_str().as_bytes()),
        );
        h.insert("x-last-death-exchange".into(), lstr(&m.exchange));
    })?;
    let routing_key = keys.first().cloned().unwrap_or_default();
    Ok(Letter {
        msg: Message {
            exchange: dlx.clone(),
            routing_key,
            properties: props,
            body: m.body.clone(),
            persistent: m.persistent,
            dead_lettered: true,
            bcc: false,
        },
        keys,
        history,
    })
}

/// Route messages dead-lettered by `queue` through its dead-letter exchange into their target
/// queues. Called with no lock held; target queues may dead-letter in turn (cycles end above).
pub fn route(queue: &Arc<Queue>, dead: Vec<Dead>, dlx: &Bytes, dlrk: Option<&Bytes>) {
    let Some(vhost) = queue.home() else {
        return;
    };
    let Some(ex) = std::str::from_utf8(dlx)
        .ok()
        .and_then(|n| vhost.exchange(n))
    else {
        tracing::debug!(queue = %queue.name, "dead-letter exchange missing: {} message(s) dropped", dead.len());
        return;
    };
    let now = crate::broker::queue::ttl::now_ms() / 1000;
    let (mut targets, mut found, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    for d in dead {
        let l = match letter(&d.msg, &queue.name, d.reason, dlx, dlrk, now) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(queue = %queue.name, "could not dead-letter a message: {e}");
                continue;
            }
        };
        // An x-delayed-message exchange delays in its routing step, which dead-lettering goes
        // through too (as the plugin's route callback): a dead letter with x-delay is held.
        if let Some(held) = ex.delayed() {
            if let Some(delay) = crate::broker::exchange::delayed::delay_of(&l.msg.properties) {
                // The held copy is routed when due by its routing key and its CC and BCC
                // headers: carry every extra key (CC and the BCC keys the letter kept) as BCC,
                // which is stripped then.
                let mut msg = l.msg;
                if l.keys.len() > 1 {
                    let extra: Vec<AMQPValue> = l.keys[1..].iter().map(|k| lstr(k)).collect();
                    match crate::protocol::props_rewrite::set_header(
                        &msg.properties,
                        "BCC",
                        AMQPValue::FieldArray(FieldArray::from(extra)),
                    ) {
                        Ok(p) => msg.properties = p,
                        Err(e) => tracing::warn!("could not keep a dead letter's BCC keys: {e}"),
                    }
                }
                if let Err(e) = held.hold(msg, delay) {
                    tracing::error!(exchange = %ex.name, "could not hold a dead letter: {e}");
                }
                continue;
            }
        }
        targets.clear();
        for key in &l.keys {
            let probe = Message {
                routing_key: key.clone(),
                ..l.msg.clone()
            };
            found.clear();
            vhost.route(&ex, &probe, &mut found, &mut seen);
            targets.append(&mut found);
        }
        targets.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
        targets.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for t in &targets {
            if l.is_cycle(&t.name) {
                tracing::debug!(queue = %t.name, "dead-letter cycle: message dropped");
                continue;
            }
            if let Err(e) = t.publish(l.msg.clone()) {
                tracing::error!(queue = %t.name, "could not store a dead-lettered message: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::basic::{gen_properties, parse_properties};
    use amq_protocol::protocol::BasicProperties;

    fn msg(props: BasicProperties, dead_lettered: bool) -> Message {
        let raw = gen_properties(&props)(Vec::new().into())
            .expect("encode")
            .into_inner()
            .0;
        Message {
            exchange: Bytes::from_static(b"ex"),
            routing_key: Bytes::from_static(b"rk"),
            properties: Bytes::from(raw),
            body: Bytes::from_static(b"body"),
            persistent: false,
            dead_lettered,
            bcc: false,
        }
    }

    fn headers(m: &Message) -> FieldTable {
        let (_, p) = parse_properties(m.properties.as_ref()).expect("parse");
        p.headers().clone().expect("headers")
    }

    fn deaths(m: &Message) -> Vec<FieldTable> {
        match headers(m).inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|v| match v {
                    AMQPValue::FieldTable(t) => t.clone(),
                    other => panic!("not a table: {other:?}"),
                })
                .collect(),
            other => panic!("no x-death: {other:?}"),
        }
    }

    #[test]
    fn second_death_in_same_queue_counts_and_moves_first() {
        let dlx = Bytes::from_static(b"dlx");
        let m0 = msg(
            BasicProperties::default().with_expiration("100".into()),
            false,
        );
        let a = letter(&m0, "q1", Reason::Expired, &dlx, None, 10).unwrap();
        assert_eq!(a.keys, vec![Bytes::from_static(b"rk")]);
        let d = deaths(&a.msg);
        assert_eq!(d.len(), 1);
        assert_eq!(field(&d[0], "original-expiration"), Some(b"100".as_slice()));
        let (_, p) = parse_properties(a.msg.properties.as_ref()).unwrap();
        assert_eq!(p.expiration(), &None, "expiration is removed");
        let b = letter(&a.msg, "q2", Reason::Rejected, &dlx, None, 11).unwrap();
        let c = letter(&b.msg, "q1", Reason::Expired, &dlx, None, 12).unwrap();
        let d = deaths(&c.msg);
        assert_eq!(d.len(), 2);
        assert_eq!(field(&d[0], "queue"), Some(b"q1".as_slice()));
        assert_eq!(d[0].inner().get("count"), Some(&AMQPValue::LongLongInt(2)));
        assert_eq!(d[0].inner().get("time"), Some(&AMQPValue::Timestamp(10)));
        let h = headers(&c.msg);
        assert_eq!(
            h.inner().get("x-first-death-reason"),
            Some(&lstr(b"expired"))
        );
        assert_eq!(h.inner().get("x-last-death-queue"), Some(&lstr(b"q1")));
        assert_eq!(h.inner().get("x-first-death-exchange"), Some(&lstr(b"ex")));
        assert_eq!(h.inner().get("x-last-death-exchange"), Some(&lstr(b"dlx")));
    }

    #[test]
    fn cycles_break_unless_rejected() {
        let dlx = Bytes::from_static(b"");
        let m0 = msg(BasicProperties::default(), false);
        let expired = letter(&m0, "q", Reason::Expired, &dlx, None, 1).unwrap();
        assert!(expired.is_cycle("q"));
        assert!(!expired.is_cycle("other"));
        let rejected = letter(&m0, "q", Reason::Rejected, &dlx, None, 1).unwrap();
        assert!(!rejected.is_cycle("q"));
        // work -rejected-> retry -expired-> work: a rejection in the cycle, so no cycle.
        let r = letter(&m0, "work", Reason::Rejected, &dlx, None, 1).unwrap();
        let e = letter(&r.msg, "retry", Reason::Expired, &dlx, None, 2).unwrap();
        assert!(!e.is_cycle("work"));
        assert!(e.is_cycle("retry"));
    }

    #[test]
    fn publisher_death_headers_are_not_interpreted() {
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![])),
        );
        h.insert("x-first-death-queue".into(), lstr(b"forged"));
        let m0 = msg(BasicProperties::default().with_headers(h), false);
        let l = letter(&m0, "q", Reason::Rejected, &Bytes::new(), None, 1).unwrap();
        let h = headers(&l.msg);
        assert_eq!(h.inner().get("x-first-death-queue"), Some(&lstr(b"q")));
        assert_eq!(deaths(&l.msg).len(), 1);
    }

    #[test]
    fn cc_and_bcc() {
        let mut h = FieldTable::default();
        let arr = |v: &[&[u8]]| {
            AMQPValue::FieldArray(FieldArray::from(
                v.iter().map(|b| lstr(b)).collect::<Vec<_>>(),
            ))
        };
        h.insert("CC".into(), arr(&[b"c1"]));
        h.insert("BCC".into(), arr(&[b"b1"]));
        let m0 = msg(BasicProperties::default().with_headers(h), false);
        let dlx = Bytes::from_static(b"dlx");
        let l = letter(&m0, "q", Reason::Rejected, &dlx, None, 1).unwrap();
        let keys: Vec<&[u8]> = l.keys.iter().map(|k| k.as_ref()).collect();
        assert_eq!(keys, [b"rk".as_slice(), b"c1", b"b1"]);
        let h = headers(&l.msg);
        assert!(!h.contains_key("BCC"));
        assert!(h.contains_key("CC"));
        let d = deaths(&l.msg);
        assert_eq!(
            d[0].inner().get("routing-keys"),
            Some(&arr(&[b"rk", b"c1"]))
        );
        let k = Bytes::from_static(b"fixed");
        let l = letter(&m0, "q", Reason::Rejected, &dlx, Some(&k), 1).unwrap();
        assert_eq!(l.keys, vec![k]);
        // The dead-letter routing key replaces the keys: CC goes too (RabbitMQ's guide).
        let h = headers(&l.msg);
        assert!(!h.contains_key("CC"));
        assert!(!h.contains_key("BCC"));
    }
}
