//! Limits on a queue: length (`x-max-length`, `x-max-length-bytes`, counting ready messages and
//! their body bytes, as RabbitMQ does) with `x-overflow`, and the delivery limit of quorum queues
//! (`x-delivery-limit`, default 20): a message that comes back more often than that is
//! dead-lettered (reason `delivery_limit`) or dropped, and every redelivery carries its count
//! in the `x-delivery-count` header.

use super::args::Features;
use super::classic::ClassicState;
use super::Queue;
use crate::broker::deadletter::Reason;
use crate::broker::message::{Message, QueuedMessage};
use crate::protocol::props_edit;
use amq_protocol::types::{AMQPValue, ShortString};

impl ClassicState {
    /// Would `msg` take the queue past a length limit? (reject-publish decides before the
    /// message is enqueued, even when a consumer could take it at once, as RabbitMQ does.)
    /// A quorum queue works as RabbitMQ's `rabbit_fifo`: it takes the message that puts it over
    /// its limit, then refuses until it is back at 80% of the limit.
    pub fn would_overflow(&mut self, f: &Features, msg: &Message) -> bool {
        let len = self.len() as u64 + 1;
        let bytes = self.bytes() + msg.size();
        let over = f.max_length.is_some_and(|max| len > max)
            || f.max_length_bytes.is_some_and(|max| bytes > max);
        if !f.quorum {
            return over;
        }
        if self.rejecting {
            let soft = |max: u64| (max as f64 * 0.8) as u64;
            let below = f
                .max_length
                .map_or(true, |max| self.len() as u64 <= soft(max))
                && f.max_length_bytes
                    .map_or(true, |max| self.bytes() <= soft(max));
            if !below {
                return true;
            }
            self.rejecting = false;
        }
        self.rejecting = over;
        false
    }

    /// drop-head: remove messages from the head until the queue is within its limits; each is
    /// dead-lettered with reason `maxlen` (or dropped).
    pub fn drop_over_limit(&mut self, queue: &Queue, f: &Features) {
        let over = |st: &ClassicState| {
            f.max_length.is_some_and(|max| st.len() as u64 > max)
                || f.max_length_bytes.is_some_and(|max| st.bytes() > max)
        };
        while over(self) {
            if !self.discard_next(queue, Reason::Maxlen) {
                break;
            }
        }
    }

    /// An unsettled message comes back to a queue that counts returns: past the delivery limit it
    /// leaves (reason `delivery_limit`); otherwise it is requeued carrying `x-delivery-count`.
    pub fn returned(&mut self, queue: &Queue, f: &Features, mut m: QueuedMessage) {
        m.returns = m.returns.saturating_add(1);
        if f.delivery_limit
            .is_some_and(|limit| u64::from(m.returns) > limit)
        {
            return self.discard(queue, m, Reason::DeliveryLimit);
        }
        show_delivery_count(&mut m);
        self.requeue(m);
    }
}

impl ClassicState {
    /// Messages recovered with more returns than the delivery limit allows (a restart counts a
    /// delivery that was outstanding as returned, as a quorum queue does when its consumer
    /// goes): they leave now, dead-lettered (reason `delivery_limit`) or dropped, as RabbitMQ
    /// does with the return that takes a message past its limit.
    pub fn drop_past_delivery_limit(&mut self, queue: &Queue) {
        let limit = self
            .features
            .as_ref()
            .filter(|f| f.count_returns)
            .and_then(|f| f.delivery_limit);
        let Some(limit) = limit else { return };
        for i in 0..self.lanes.len() {
            let ready = std::mem::take(&mut self.lanes[i].ready);
            for m in ready {
                if u64::from(m.returns) > limit {
                    self.account_out(&m.msg);
                    self.discard(queue, m, Reason::DeliveryLimit);
                } else {
                    self.lanes[i].ready.push_back(m);
                }
            }
            let paged = std::mem::take(&mut self.lanes[i].paged);
            for p in paged {
                if u64::from(p.returns) > limit {
                    self.paged_count -= 1;
                    self.paged_bytes -= u64::from(p.size);
                    self.discard_paged(queue, p, Reason::DeliveryLimit);
                } else {
                    self.lanes[i].paged.push_back(p);
                }
            }
        }
    }
}

/// Write a message's count of returns into its `x-delivery-count` header (after a return, and
/// for messages recovered with returns counted before a restart).
pub fn show_delivery_count(m: &mut QueuedMessage) {
    let count = i64::from(m.returns);
    let edited = props_edit::edit(&m.msg.properties, false, |h| {
        h.insert(
            ShortString::from("x-delivery-count"),
            AMQPValue::LongLongInt(count),
        );
    });
    match edited {
        Ok(p) => m.msg.properties = p,
        Err(e) => tracing::warn!("could not set x-delivery-count: {e}"),
    }
}
