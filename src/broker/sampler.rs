//! The background sampler: every `http.collect_statistics_interval` it records the counters and
//! depths of every queue, exchange, channel, connection, vhost and of the node, from which the
//! stats endpoint derives rates. Totals are summed here (and on request), never on the hot path.

use crate::broker::stats::{sample_values, sum_into, Counts, STATS};
use crate::broker::vhost::VHost;
use crate::broker::Broker;
use std::sync::Arc;
use std::time::Duration;

/// Message depths: (messages, ready, unacknowledged).
#[derive(Debug, Default, Clone, Copy)]
pub struct Depths {
    pub messages: u64,
    pub ready: u64,
    pub unacked: u64,
}

impl Depths {
    pub fn values(&self) -> [u64; 3] {
        [self.messages, self.ready, self.unacked]
    }

    fn add(&mut self, o: Depths) {
        self.messages += o.messages;
        self.ready += o.ready;
        self.unacked += o.unacked;
    }
}

/// Depths of one queue (a stream's messages are all "ready": it has no unacked state).
pub fn queue_depths(q: &crate::broker::queue::Queue) -> Depths {
    let (ready, unacked, _, _) = q.snapshot();
    Depths {
        messages: ready + unacked,
        ready,
        unacked,
    }
}

impl Broker {
    /// Message counts of a vhost: closed connections, HTTP publishes, live connections.
    pub fn vhost_counts(&self, v: &VHost) -> Counts {
        let mut c = v.stats.counts();
        for conn in self.registry.list() {
            if conn.meta.vhost == v.name {
                sum_into(&mut c, &conn.counts());
            }
        }
        c
    }

    /// Message counts of the whole node.
    pub fn node_counts(&self) -> Counts {
        let mut c = self.retired.counts();
        for v in self.vhosts() {
            sum_into(&mut c, &v.stats.counts());
        }
        for conn in self.registry.list() {
            sum_into(&mut c, &conn.counts());
        }
        c
    }

    /// Sum of the depths of a vhost's queues.
    pub fn vhost_depths(&self, v: &VHost) -> Depths {
        let mut d = Depths::default();
        for q in v.queues() {
            d.add(queue_depths(&q));
        }
        d
    }

    /// Record one sample of everything.
    pub fn sample(&self) {
        let mut node = Depths::default();
        for v in self.vhosts() {
            let mut vd = Depths::default();
            for q in v.queues() {
                let d = queue_depths(&q);
                vd.add(d);
                q.rates
                    .sample(sample_values(&q.stats.counts(), &d.values()));
            }
            for e in v.exchanges() {
                e.rates.sample(sample_values(&e.stats.counts(), &[]));
            }
            node.add(vd);
            v.rates
                .sample(sample_values(&self.vhost_counts(&v), &vd.values()));
        }
        for c in self.registry.list() {
            for ch in c.channel_list() {
                ch.rates.sample(sample_values(&ch.stats.counts(), &[]));
            }
            let (r, s) = (
                c.recv_oct.load(std::sync::atomic::Ordering::Relaxed),
                c.send_oct.load(std::sync::atomic::Ordering::Relaxed),
            );
            c.rates.sample(vec![r, s]);
        }
        self.rates
            .sample(sample_values(&self.node_counts(), &node.values()));
    }

    /// Sample every `http.collect_statistics_interval` until the broker is dropped.
    pub fn spawn_sampler(self: &Arc<Self>) {
        let every = Duration::from_millis(self.config.http.collect_statistics_interval.max(100));
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { return };
                b.sample();
            }
        });
    }
}

/// Index of the first depth value in a queue's, vhost's or the node's samples.
pub const DEPTHS_AT: usize = STATS;
