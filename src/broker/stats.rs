//! Message statistics: relaxed atomic counters on the hot path, and rates sampled in the
//! background (RabbitMQ's `message_stats` with `{"rate": x}` details).
//!
//! Counting costs a publish or a delivery one relaxed `fetch_add` on a counter that only one
//! task writes (a channel's counters are written by its connection task alone), or on a queue's
//! or exchange's counter next to a lock the hot path takes anyway. Totals per connection, vhost
//! and node are sums computed when someone asks (HTTP, the sampler), never maintained on the hot
//! path: a closed channel's counts are folded into its connection, a closed connection's into its
//! vhost ([`MsgStats::add_from`]).

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// One message statistic, named as in RabbitMQ's `message_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    Publish,
    PublishIn,
    PublishOut,
    Confirm,
    ReturnUnroutable,
    DropUnroutable,
    Deliver,
    DeliverNoAck,
    Get,
    GetNoAck,
    GetEmpty,
    Ack,
    Redeliver,
}

/// How many [`Stat`]s there are.
pub const STATS: usize = 13;

impl Stat {
    pub const ALL: [Stat; STATS] = [
        Stat::Publish,
        Stat::PublishIn,
        Stat::PublishOut,
        Stat::Confirm,
        Stat::ReturnUnroutable,
        Stat::DropUnroutable,
        Stat::Deliver,
        Stat::DeliverNoAck,
        Stat::Get,
        Stat::GetNoAck,
        Stat::GetEmpty,
        Stat::Ack,
        Stat::Redeliver,
    ];

    /// RabbitMQ's field name.
    pub fn name(self) -> &'static str {
        match self {
            Stat::Publish => "publish",
            Stat::PublishIn => "publish_in",
            Stat::PublishOut => "publish_out",
            Stat::Confirm => "confirm",
            Stat::ReturnUnroutable => "return_unroutable",
            Stat::DropUnroutable => "drop_unroutable",
            Stat::Deliver => "deliver",
            Stat::DeliverNoAck => "deliver_no_ack",
            Stat::Get => "get",
            Stat::GetNoAck => "get_no_ack",
            Stat::GetEmpty => "get_empty",
            Stat::Ack => "ack",
            Stat::Redeliver => "redeliver",
        }
    }
}

/// The statistics a channel, connection, vhost or the node reports.
pub const CHANNEL_STATS: &[Stat] = &[
    Stat::Publish,
    Stat::Confirm,
    Stat::ReturnUnroutable,
    Stat::DropUnroutable,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetNoAck,
    Stat::GetEmpty,
    Stat::Ack,
    Stat::Redeliver,
];

/// The statistics a queue reports.
pub const QUEUE_STATS: &[Stat] = &[
    Stat::Publish,
    Stat::Deliver,
    Stat::DeliverNoAck,
    Stat::Get,
    Stat::GetNoAck,
    Stat::GetEmpty,
    Stat::Ack,
    Stat::Redeliver,
];

/// The statistics an exchange reports.
pub const EXCHANGE_STATS: &[Stat] = &[Stat::PublishIn, Stat::PublishOut];

/// A set of counters, one per [`Stat`].
#[derive(Debug, Default)]
pub struct MsgStats {
    c: [AtomicU64; STATS],
}

/// The counters' values at one moment.
pub type Counts = [u64; STATS];

impl MsgStats {
    /// Count `n` events (relaxed: readers only need eventually consistent numbers).
    #[inline]
    pub fn add(&self, s: Stat, n: u64) {
        self.c[s as usize].fetch_add(n, Relaxed);
    }

    #[inline]
    pub fn inc(&self, s: Stat) {
        self.add(s, 1);
    }

    pub fn get(&self, s: Stat) -> u64 {
        self.c[s as usize].load(Relaxed)
    }

    pub fn counts(&self) -> Counts {
        std::array::from_fn(|i| self.c[i].load(Relaxed))
    }

    /// Add another set's counts into this one (a closed channel into its connection, a closed
    /// connection into its vhost).
    pub fn add_counts(&self, counts: &Counts) {
        for (c, n) in self.c.iter().zip(counts) {
            if *n > 0 {
                c.fetch_add(*n, Relaxed);
            }
        }
    }
}

/// Adds `b` into `a`.
pub fn sum_into(a: &mut Counts, b: &Counts) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// `deliver_get`: every way a message left a queue for a client.
pub fn deliver_get(c: &Counts) -> u64 {
    c[Stat::Deliver as usize]
        + c[Stat::DeliverNoAck as usize]
        + c[Stat::Get as usize]
        + c[Stat::GetNoAck as usize]
}

/// Samples kept: rates are taken over the last `RING - 1` sampling intervals (fewer right after
/// an idle stretch, whose samples are collapsed into one: see [`Rates::sample_at`]).
const RING: usize = 6;

/// Recent samples of some values (counters or gauges), from which rates per second are derived.
/// Only the sampler writes and only readers of the stats endpoint read it: never the hot path.
#[derive(Debug, Default)]
pub struct Rates {
    ring: Mutex<VecDeque<(Instant, Vec<u64>)>>,
    /// When a sample last differed from the one before (the first sample counts): the start
    /// of an idle stretch, RabbitMQ's `idle_since`.
    changed: Mutex<Option<Instant>>,
}

impl Rates {
    /// Record the values now.
    pub fn sample(&self, values: Vec<u64>) {
        self.sample_at(Instant::now(), values);
    }

    pub fn sample_at(&self, at: Instant, values: Vec<u64>) {
        let mut r = self.ring.lock();
        if r.back().map_or(true, |(_, v)| *v != values) {
            *self.changed.lock() = Some(at);
        }
        if r.iter().all(|(_, v)| *v == values) {
            // Nothing moved over the whole ring (an idle connection, channel or queue): one
            // sample says the same (every rate is 0), and thousands of idle objects keep one
            // small allocation each instead of a ring of them.
            if r.len() > 1 {
                *r = VecDeque::with_capacity(1);
            }
            match r.front_mut() {
                Some(front) => front.0 = at,
                None => r.push_back((at, values)),
            }
            return;
        }
        if r.len() == RING {
            r.pop_front();
        }
        r.push_back((at, values));
    }

    /// Since when nothing has moved, if nothing moved over the samples kept (None while active
    /// or before the first sample).
    pub fn idle_since(&self) -> Option<Instant> {
        let r = self.ring.lock();
        let first = &r.front()?.1;
        if r.iter().any(|(_, v)| v != first) {
            return None;
        }
        *self.changed.lock()
    }

    /// Per-second change of each value over the samples kept (0 with fewer than two samples).
    /// A value that went down (a gauge) gives a negative rate, as RabbitMQ reports it.
    pub fn rates(&self, n: usize) -> Vec<f64> {
        let r = self.ring.lock();
        let mut out = vec![0.0; n];
        let (Some((t0, first)), Some((t1, last))) = (r.front(), r.back()) else {
            return out;
        };
        let dt = t1.duration_since(*t0).as_secs_f64();
        if dt <= 0.0 {
            return out;
        }
        for (i, o) in out.iter_mut().enumerate() {
            if let (Some(a), Some(b)) = (first.get(i), last.get(i)) {
                *o = round((*b as f64 - *a as f64) / dt);
            }
        }
        out
    }
}

/// Rates are shown with one decimal, as RabbitMQ does.
fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Counters followed by extra values (gauges), the layout objects sample into their [`Rates`].
pub fn sample_values(c: &Counts, extra: &[u64]) -> Vec<u64> {
    let mut v = Vec::with_capacity(STATS + extra.len());
    v.extend_from_slice(c);
    v.extend_from_slice(extra);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_add_and_fold() {
        let a = MsgStats::default();
        a.inc(Stat::Publish);
        a.add(Stat::Ack, 3);
        let b = MsgStats::default();
        b.add_counts(&a.counts());
        b.inc(Stat::Publish);
        assert_eq!(b.get(Stat::Publish), 2);
        assert_eq!(b.get(Stat::Ack), 3);
        let mut c = a.counts();
        sum_into(&mut c, &b.counts());
        assert_eq!(c[Stat::Publish as usize], 3);
    }

    #[test]
    fn rates_over_the_ring() {
        let r = Rates::default();
        let t = Instant::now();
        assert_eq!(r.rates(2), vec![0.0, 0.0]);
        r.sample_at(t, vec![0, 10]);
        assert_eq!(r.rates(2), vec![0.0, 0.0]);
        r.sample_at(t + Duration::from_secs(2), vec![10, 4]);
        assert_eq!(r.rates(2), vec![5.0, -3.0]);
        for i in 3..20 {
            r.sample_at(t + Duration::from_secs(i), vec![10, 4]);
        }
        assert_eq!(r.rates(2), vec![0.0, 0.0], "old samples fall out");
        assert_eq!(r.ring.lock().len(), 1, "an idle ring keeps one sample");
        r.sample_at(t + Duration::from_secs(22), vec![16, 4]);
        assert_eq!(
            r.rates(2),
            vec![2.0, 0.0],
            "a rate over the interval since the last sample"
        );
    }

    #[test]
    fn deliver_get_sums_the_four_ways_out() {
        let s = MsgStats::default();
        s.inc(Stat::Deliver);
        s.inc(Stat::DeliverNoAck);
        s.inc(Stat::Get);
        s.inc(Stat::GetNoAck);
        s.inc(Stat::GetEmpty);
        assert_eq!(deliver_get(&s.counts()), 4);
    }
}
