//! Time in queues: message TTL (`x-message-ttl`, the `expiration` property) and queue TTL
//! (`x-expires`). Expiry times are absolute unix milliseconds, stored with persistent messages,
//! so a TTL keeps running across a restart. Expired messages leave from the head, as in
//! RabbitMQ's classic queues: a per-queue timer (started the first time a message with an expiry
//! reaches a queue) fires when the head is due, and deliveries and basic.get skip expired heads;
//! one in the middle goes when it reaches the head. An idle queue with `x-expires` is deleted by
//! a second timer.

use super::Queue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// Wall-clock unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Process-relative milliseconds (monotonic), for queue idle times.
pub fn mono_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let e = EPOCH.get_or_init(Instant::now);
    u64::try_from(e.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The absolute expiry of a message arriving now with queue TTL `queue_ttl` and per-message TTL
/// `msg_ttl` (the lower applies); 0 for none.
pub fn expiry(now: u64, queue_ttl: Option<u64>, msg_ttl: Option<u64>) -> u64 {
    match (queue_ttl, msg_ttl) {
        (None, None) => 0,
        (a, b) => {
            let ttl = a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX));
            // Never 0 (that means "none"): a TTL of 0 at time 0 is still due at once.
            now.saturating_add(ttl).max(1)
        }
    }
}

/// A per-message `expiration` as RabbitMQ reads it (`rabbit_basic:parse_expiration`): a decimal
/// number of milliseconds with an optional sign. The error is the Erlang term RabbitMQ prints.
pub fn parse_expiration(raw: &[u8]) -> Result<u64, String> {
    let (negative, digits_at) = match raw.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let rest = &raw[digits_at..];
    let n_digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n_digits == 0 {
        return Err("no_integer".into());
    }
    let (digits, leftover) = rest.split_at(n_digits);
    if !leftover.is_empty() {
        return Err(format!(
            "{{leftover_string,\"{}\"}}",
            String::from_utf8_lossy(leftover)
        ));
    }
    let trimmed = match digits.iter().position(|&b| b != b'0') {
        Some(i) => &digits[i..],
        None => b"0".as_slice(),
    };
    let text = std::str::from_utf8(trimmed).unwrap_or("0");
    let value: Option<u64> = text.parse().ok();
    match (negative, value) {
        (_, Some(0)) => Ok(0),
        (true, _) => Err(format!("{{value_negative,-{text}}}")),
        (false, Some(n)) if n <= super::args::MAX_EXPIRY as u64 => Ok(n),
        (false, _) => Err(format!("{{value_too_large,{text}}}")),
    }
}

/// A queue's expiry timer: the time it is armed for (`u64::MAX`: idle) and its wake-up.
#[derive(Debug)]
pub struct ExpiryTimer {
    at: AtomicU64,
    wake: Notify,
}

impl Queue {
    /// Make sure expired heads are removed at `at` (unix ms) at the latest. Starts the queue's
    /// timer task the first time; without a tokio runtime (unit tests) nothing is scheduled.
    pub(super) fn arm_expiry(self: &Arc<Self>, at: u64) {
        let t = self.expiry.get_or_init(|| {
            let t = Arc::new(ExpiryTimer {
                at: AtomicU64::new(u64::MAX),
                wake: Notify::new(),
            });
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(expiry_loop(Arc::downgrade(self), t.clone()));
            }
            t
        });
        if at < t.at.fetch_min(at, Ordering::AcqRel) {
            t.wake.notify_one();
        }
    }

    /// Record a use (consumer attached or gone, basic.get, redeclare) for `x-expires`.
    pub fn touch(&self) {
        self.last_used.store(mono_ms(), Ordering::Relaxed);
    }

    /// Start the timers of a new or recovered queue: `x-expires` (the lease starts now) and,
    /// when recovered messages carry expiry times, the head's expiry.
    pub fn start_timers(self: &Arc<Self>) {
        if self.stream.is_some() {
            return;
        }
        let _ = self.me.set(Arc::downgrade(self));
        self.touch();
        let mut st = self.state.lock();
        // Recovered messages already past a quorum queue's delivery limit leave now (their
        // dead letters need the whole topology, which is back by now).
        st.drop_past_delivery_limit(self);
        // Arms the head's expiry and routes the dead letters.
        self.unlock(st);
        self.ensure_idle_timer();
    }

    /// Start the `x-expires` task if the queue has an expiry and none runs yet (also when a
    /// policy gives it one later).
    pub(super) fn ensure_idle_timer(&self) {
        if self.idle_ttl().is_none() {
            return;
        }
        let Some(me) = self.me.get() else { return };
        if self.idle_timer.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(idle_loop(me.clone()));
            }
            Err(_) => self.idle_timer.store(false, Ordering::Release),
        }
    }

    /// The queue's `x-expires` now (argument or policy).
    fn idle_ttl(&self) -> Option<u64> {
        self.state.lock().features.as_ref().and_then(|f| f.expires)
    }

    /// Milliseconds the queue has been unused, or None while a consumer is attached.
    fn idle_for(&self) -> Option<u64> {
        if !self.is_unused() {
            return None;
        }
        Some(mono_ms().saturating_sub(self.last_used.load(Ordering::Relaxed)))
    }

    /// Is this queue past its `x-expires`? (Checked again under the vhost's topology lock.)
    pub fn idle_expired(&self) -> bool {
        match (self.idle_ttl(), self.idle_for()) {
            (Some(ttl), Some(idle)) => idle >= ttl,
            _ => false,
        }
    }
}

async fn expiry_loop(queue: Weak<Queue>, t: Arc<ExpiryTimer>) {
    loop {
        let at = t.at.load(Ordering::Acquire);
        if at == u64::MAX {
            t.wake.notified().await;
            continue;
        }
        let now = now_ms();
        if at > now {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(at - now)) => {}
                _ = t.wake.notified() => {}
            }
            continue;
        }
        // Due. Disarm first (a lower time armed meanwhile makes this fail and loop again), then
        // expire: that re-arms for the next head.
        if t.at
            .compare_exchange(at, u64::MAX, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        let Some(q) = queue.upgrade() else { return };
        if q.is_deleted() {
            return;
        }
        q.expire_due();
    }
}

async fn idle_loop(queue: Weak<Queue>) {
    loop {
        let wait = {
            let Some(q) = queue.upgrade() else { return };
            if q.is_deleted() {
                return;
            }
            let Some(ttl) = q.idle_ttl() else {
                // A policy took the expiry away: stop (a later one starts a new task).
                q.idle_timer.store(false, Ordering::Release);
                if q.idle_ttl().is_some() {
                    q.ensure_idle_timer();
                }
                return;
            };
            match q.idle_for() {
                Some(idle) if idle >= ttl => {
                    if let Some(v) = q.home.upgrade() {
                        if v.expire_queue(&q) {
                            tracing::info!(queue = %q.name, vhost = %q.vhost, "deleted an unused queue (x-expires)");
                            return;
                        }
                    }
                    ttl
                }
                Some(idle) => ttl - idle,
                None => ttl,
            }
        };
        let Some(wake) = queue.upgrade().map(|q| q.idle_wake.clone()) else {
            return;
        };
        // A policy that changes the expiry wakes the task early.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait.max(1))) => {}
            _ = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_property_like_rabbitmq() {
        assert_eq!(parse_expiration(b"60000"), Ok(60000));
        assert_eq!(parse_expiration(b"0"), Ok(0));
        assert_eq!(parse_expiration(b"+5"), Ok(5));
        assert_eq!(parse_expiration(b"-0"), Ok(0));
        assert_eq!(parse_expiration(b"-1"), Err("{value_negative,-1}".into()));
        assert_eq!(parse_expiration(b"abc"), Err("no_integer".into()));
        assert_eq!(parse_expiration(b""), Err("no_integer".into()));
        assert_eq!(
            parse_expiration(b"10s"),
            Err("{leftover_string,\"s\"}".into())
        );
        // Ten years is the most, as RabbitMQ 3.10 answers (more than 2^32-1 ms is fine).
        assert_eq!(parse_expiration(b"4294967296"), Ok(4_294_967_296));
        assert_eq!(parse_expiration(b"315360000000"), Ok(315_360_000_000));
        assert_eq!(
            parse_expiration(b"315360000001"),
            Err("{value_too_large,315360000001}".into())
        );
        assert_eq!(
            parse_expiration(b"99999999999999999999999"),
            Err("{value_too_large,99999999999999999999999}".into())
        );
    }

    #[test]
    fn lower_ttl_applies() {
        assert_eq!(expiry(1000, None, None), 0);
        assert_eq!(expiry(1000, Some(50), None), 1050);
        assert_eq!(expiry(1000, Some(50), Some(10)), 1010);
        assert_eq!(expiry(1000, Some(5), Some(10)), 1005);
        assert_eq!(expiry(0, Some(0), None), 1);
    }
}
