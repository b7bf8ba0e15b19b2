//! The `x-delayed-message` exchange type (RabbitMQ's delayed message exchange plugin): a message
//! published with an `x-delay` header (ms; integer, or a string or float converted as the plugin
//! does) in 1..=2^32-1 is held and routed with the exchange's `x-delayed-type` when its time
//! comes; any other message is routed at once. Delivered messages carry `x-delay` negated, as the
//! plugin leaves it. A mandatory delayed message counts as routed (the plugin does not support
//! mandatory).
//!
//! Held messages live in memory, ordered by due time, and, for a durable exchange, persistent ones
//! also in a message log of their own (`data/delayed/<hash of vhost and name>/`, the queue log
//! format) so they survive a restart; a confirm waits for that log's group commit. One tokio task
//! per delayed exchange sleeps until the earliest due time (no timer per message).

use crate::broker::exchange::Exchange;
use crate::broker::message::Message;
use crate::broker::persist::{ConfirmWaiter, Persistence, SyncTicket};
use crate::broker::queue::log::QueueLog;
use crate::broker::sender_selected;
use crate::broker::vhost::VHost;
use crate::protocol::{properties, props_rewrite};
use amq_protocol::types::AMQPValue;
use bytes::Bytes;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// The largest delay the plugin accepts (Erlang's timer limit); longer ones route at once.
const MAX_DELAY: i64 = 4_294_967_295;

/// Milliseconds since the Unix epoch (held messages' due times survive a restart).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The delay a message asks for, if it is to be held: `x-delay` as an integer (strings are
/// parsed, floats truncated, as the plugin does), within 1..=2^32-1 ms.
pub fn delay_of(props: &[u8]) -> Option<i64> {
    if !properties::has_headers(props) || !properties::has_header(props, b"x-delay") {
        return None;
    }
    let h = properties::headers(props).ok()??;
    let d = match h.inner().get("x-delay")? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .ok()?
            .trim()
            .parse()
            .ok()?,
        AMQPValue::Float(f) => *f as i64,
        AMQPValue::Double(f) => *f as i64,
        v => crate::broker::queue::consumer_opts::int_value(v)?,
    };
    (1..=MAX_DELAY).contains(&d).then_some(d)
}

struct Held {
    msg: Message,
    /// Its record in the exchange's log (durable exchange, persistent message).
    logged: bool,
}

#[derive(Default)]
struct State {
    due: BinaryHeap<Reverse<(u64, u64)>>,
    held: HashMap<u64, Held>,
    next_seq: u64,
}

/// A delayed exchange's held messages.
pub struct Delayed {
    state: Mutex<State>,
    /// Wakes the timer task: a message due earlier arrived, or the exchange went.
    wake: Arc<Notify>,
    closed: AtomicBool,
    log: Option<Arc<QueueLog>>,
}

impl std::fmt::Debug for Delayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delayed")
    }
}

impl Delayed {
    /// Hold `msg` for `delay` ms. Returns a ticket when it was written to the log (a confirm then
    /// waits for the log's sync); an error means the log refused it.
    pub fn hold(&self, msg: Message, delay: i64) -> std::io::Result<Option<SyncTicket>> {
        let due = now_ms().saturating_add(u64::try_from(delay).unwrap_or(0));
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        let mut ticket = None;
        if let (Some(log), true) = (&self.log, msg.persistent) {
            // The record's exchange field carries the due time: a held message's exchange is
            // always this exchange, so nothing is lost, and the record format stays the queues'.
            let rec = Message {
                exchange: Bytes::from(due.to_string()),
                ..msg.clone()
            };
            let meta = crate::store::RecordMeta {
                dead_lettered: msg.dead_lettered,
                bcc: msg.bcc,
                ..Default::default()
            };
            ticket = Some(log.append(seq, &rec, true, meta)?.1);
        }
        let earliest = st.due.peek().map_or(true, |Reverse((d, _))| due < *d);
        st.due.push(Reverse((due, seq)));
        st.held.insert(
            seq,
            Held {
                msg: msg.compacted(),
                logged: ticket.is_some(),
            },
        );
        drop(st);
        if earliest {
            self.wake.notify_one();
        }
        Ok(ticket)
    }

    /// Tell `w` once everything held so far is on disk.
    pub fn sync_then(&self, w: ConfirmWaiter) {
        if let Some(log) = &self.log {
            log.sync_then(w);
        }
    }

    /// How many messages wait.
    pub fn len(&self) -> usize {
        self.state.lock().held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exchange was deleted: drop what it held (and its log) and stop its timer.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let mut st = self.state.lock();
        st.held.clear();
        st.due.clear();
        drop(st);
        if let Some(log) = &self.log {
            log.destroy();
        }
        self.wake.notify_one();
    }

    fn next_due(&self) -> Option<u64> {
        self.state.lock().due.peek().map(|Reverse((d, _))| *d)
    }

    /// Messages due by `now`, in due order.
    fn take_due(&self, now: u64) -> Vec<(u64, Held)> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        while let Some(Reverse((d, seq))) = st.due.peek().copied() {
            if d > now {
                break;
            }
            st.due.pop();
            if let Some(h) = st.held.remove(&seq) {
                out.push((seq, h));
            }
        }
        out
    }
}

/// Give a delayed exchange its held-message store (restoring what its log holds) and start its
/// timer. `persist` is None for a broker without a data dir; a transient exchange gets no log.
pub fn attach(vhost: &VHost, persist: Option<&Arc<Persistence>>, e: &Arc<Exchange>) {
    let mut log = None;
    let mut restored = Vec::new();
    if let (Some(p), true) = (persist, e.options.durable) {
        match open_log(p, &vhost.name, &e.name) {
            Ok((l, r)) => {
                log = Some(l);
                restored = r;
            }
            Err(err) => {
                tracing::error!(exchange = %e.name, "cannot open the delayed message log: {err}")
            }
        }
    }
    let d = Arc::new(Delayed {
        state: Mutex::new(State::default()),
        wake: Arc::new(Notify::new()),
        closed: AtomicBool::new(false),
        log,
    });
    {
        let mut st = d.state.lock();
        for (seq, due, msg) in restored {
            st.next_seq = st.next_seq.max(seq + 1);
            st.due.push(Reverse((due, seq)));
            st.held.insert(seq, Held { msg, logged: true });
        }
    }
    if e.set_delayed(d.clone()).is_err() {
        return;
    }
    match (tokio::runtime::Handle::try_current(), vhost.weak()) {
        (Ok(rt), Some(v)) => {
            rt.spawn(run(
                v,
                Arc::downgrade(e),
                Arc::downgrade(&d),
                d.wake.clone(),
            ));
        }
        _ => {
            tracing::warn!(exchange = %e.name, "no runtime: delayed messages will not be delivered")
        }
    }
}

/// Where a durable delayed exchange keeps its held messages.
pub fn log_dir(data_root: &Path, vhost: &str, name: &str) -> PathBuf {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(vhost.as_bytes());
    h.update([0u8]);
    h.update(name.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    data_root.join(hex)
}

/// (seq, due, message) of every held message in the exchange's log.
type Restored = Vec<(u64, u64, Message)>;

fn open_log(
    p: &Persistence,
    vhost: &str,
    name: &str,
) -> std::io::Result<(Arc<QueueLog>, Restored)> {
    let log = p.delayed_log(&log_dir(&p.delayed_dir(), vhost, name))?;
    let r = log.restore(name, u64::MAX, false)?;
    let own: Bytes = Bytes::copy_from_slice(name.as_bytes());
    let mut out = Vec::new();
    for m in r.messages {
        let due = std::str::from_utf8(&m.msg.exchange)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let msg = Message {
            exchange: own.clone(),
            ..m.msg
        };
        out.push((m.seq, due, msg));
    }
    Ok((log, out))
}

/// The timer task of one delayed exchange: sleep until the earliest due time, route what is
/// due with the underlying type, repeat; ends when the exchange goes (deleted, or dropped with
/// its broker: the task holds it only weakly while it sleeps).
async fn run(vhost: Weak<VHost>, ex: Weak<Exchange>, d: Weak<Delayed>, wake: Arc<Notify>) {
    loop {
        let wait = {
            let Some(d) = d.upgrade() else { return };
            if d.closed.load(Ordering::Relaxed) {
                return;
            }
            match d.next_due() {
                Some(due) => Duration::from_millis(due.saturating_sub(now_ms())),
                None => Duration::from_secs(3600),
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = wake.notified() => continue,
            }
        }
        let Some(d) = d.upgrade() else { return };
        let due = d.take_due(now_ms());
        if due.is_empty() {
            continue;
        }
        let (Some(v), Some(e)) = (vhost.upgrade(), ex.upgrade()) else {
            return;
        };
        let mut settled = Vec::new();
        for (seq, h) in due {
            publish_now(&v, &e, h.msg);
            if h.logged {
                settled.push(seq);
            }
        }
        if let Some(log) = &d.log {
            // Released once routed: a crash in between delivers it again (at least once).
            log.settle(&settled, &[]);
        }
    }
}

/// Route a held message now, as if just published: CC/BCC keys, `x-delay` negated.
fn publish_now(v: &VHost, e: &Arc<Exchange>, mut msg: Message) {
    if let Some(delay) = delay_of(&msg.properties) {
        let negated =
            i32::try_from(-delay).map_or(AMQPValue::LongLongInt(-delay), AMQPValue::LongInt);
        if let Ok(p) = props_rewrite::set_header(&msg.properties, "x-delay", negated) {
            msg.properties = p;
        }
    }
    let mut targets = Vec::new();
    let mut seen = Vec::new();
    v.route(e, &msg, &mut targets, &mut seen);
    if let Ok((cc, _)) = sender_selected::extra_keys(&msg.properties) {
        for key in cc {
            let m = Message {
                routing_key: key,
                ..msg.clone()
            };
            v.route(e, &m, &mut targets, &mut seen);
        }
        targets.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
        targets.dedup_by(|a, b| Arc::ptr_eq(a, b));
    }
    if let Some(p) = sender_selected::without_bcc(&msg.properties) {
        msg.properties = p;
    }
    for q in targets {
        if let Err(err) = q.publish(msg.clone()) {
            tracing::error!(queue = %q.name, "could not store a delayed message: {err}");
        }
    }
}

/// Remove the logs of delayed exchanges that no longer exist (deleted while the broker was down
/// or before their directory could be removed).
pub fn remove_orphans(root: &Path, keep: &[PathBuf]) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    for entry in dir.flatten() {
        if !keep.iter().any(|k| k == &entry.path()) {
            if let Err(err) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("could not remove {}: {err}", entry.path().display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::FieldTable;

    fn props(v: AMQPValue) -> Bytes {
        let mut h = FieldTable::default();
        h.insert("x-delay".into(), v);
        props_rewrite::encode(&BasicProperties::default().with_headers(h)).expect("encode")
    }

    #[test]
    fn delays_as_the_plugin_reads_them() {
        assert_eq!(delay_of(&props(AMQPValue::LongInt(1500))), Some(1500));
        assert_eq!(delay_of(&props(AMQPValue::LongLongInt(7))), Some(7));
        assert_eq!(
            delay_of(&props(AMQPValue::LongString("250".into()))),
            Some(250)
        );
        assert_eq!(delay_of(&props(AMQPValue::Double(99.9))), Some(99));
        assert_eq!(delay_of(&props(AMQPValue::LongInt(0))), None);
        assert_eq!(delay_of(&props(AMQPValue::LongInt(-5))), None);
        assert_eq!(
            delay_of(&props(AMQPValue::LongLongInt(MAX_DELAY + 1))),
            None
        );
        assert_eq!(delay_of(&props(AMQPValue::Boolean(true))), None);
        assert_eq!(delay_of(&[0, 0]), None);
    }
}
