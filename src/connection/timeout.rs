//! The delivery acknowledgement timeout (RabbitMQ's consumer timeout): a channel that holds a
//! delivery unacked longer than its timeout is closed with 406 and its unacked messages go back
//! to their queues. No timer per message: each delivery records when it was written (the
//! connection's clock, read once per batch), and one timer per connection wakes for the oldest
//! unacked delivery of its channels. As RabbitMQ, only the oldest delivery of each channel is
//! checked (deliveries are kept in the order they were made).

use super::Conn;
use crate::broker::queue::Queue;
use crate::error::AmqpError;

/// "No check due".
pub(super) const NEVER: u64 = u64::MAX;

/// A consumer's own timeout, else the queue's (argument or policy, as it is now), else the
/// broker's `default`; 0 = none.
fn timeout_for(own: Option<u64>, q: &Queue, default: u64) -> u64 {
    if q.stream.is_some() {
        // A stream consumer's acks only return credit; nothing waits on them.
        return 0;
    }
    own.or_else(|| q.consumer_timeout()).unwrap_or(default)
}

impl Conn {
    /// Read the clock (once per batch of work; deliveries of the batch share the reading).
    pub(super) fn touch_clock(&mut self) {
        self.now_ms = u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    }

    /// The timeout for a consumer: its own `x-consumer-timeout`, else the queue's (argument or
    /// policy), else the broker's `consumer.timeout_ms`; 0 = none.
    pub(super) fn consumer_timeout(&self, own: Option<u64>, q: &Queue) -> u64 {
        timeout_for(own, q, self.broker.config.consumer.timeout_ms)
    }

    /// The timeout that applies now to a delivery on channel `ch`: its consumer's own, else
    /// the queue's as its policy says now (RabbitMQ works it out at each check, so a policy
    /// change reaches running consumers), else the broker's.
    fn timeout_now(&self, ch: &super::channel::Channel, u: &super::channel::Unacked) -> u64 {
        let own = u
            .consumer
            .and_then(|id| ch.consumers.get(&id))
            .and_then(|c| c.own_timeout);
        self.consumer_timeout(own, &u.queue)
    }

    /// A policy changed: work out again the timeout each consumer's next first-unacked
    /// delivery arms the timer with (the check itself always uses the current value, but a
    /// delivery made after the change must wake it in time, also when there was no timeout
    /// before).
    pub(super) fn refresh_consumer_timeouts(&mut self) {
        let default = self.broker.config.consumer.timeout_ms;
        for ch in self.channels.iter_mut().flatten() {
            for c in ch.consumers.values_mut() {
                c.timeout_ms = timeout_for(c.own_timeout, &c.queue, default);
            }
        }
    }

    /// A delivery with `timeout_ms` was just recorded as the first unacked one of its channel:
    /// make sure the connection's timer wakes for it.
    pub(super) fn arm_timeout(&mut self, timeout_ms: u64) {
        if timeout_ms != 0 {
            let due = self.now_ms.saturating_add(timeout_ms);
            self.next_timeout_check = self.next_timeout_check.min(due);
        }
    }

    /// The timer fired: close every channel whose oldest delivery is overdue, and set the timer
    /// for the earliest one still pending.
    pub(super) fn check_consumer_timeouts(&mut self) {
        let now = self.now_ms;
        let mut next = NEVER;
        let mut expired = Vec::new();
        for (i, slot) in self.channels.iter().enumerate() {
            let Some(ch) = slot else { continue };
            if ch.closing {
                continue;
            }
            let Some(u) = ch.unacked.front() else {
                continue;
            };
            let timeout = self.timeout_now(ch, u);
            if timeout == 0 {
                continue;
            }
            let due = u.delivered_ms.saturating_add(timeout);
            if due <= now {
                expired.push(i);
            } else {
                next = next.min(due);
            }
        }
        self.next_timeout_check = next;
        for i in expired {
            if let Ok(chan) = u16::try_from(i) {
                self.time_out(chan);
            }
        }
    }

    fn time_out(&mut self, chan: u16) {
        let Some(Some(ch)) = self.channels.get(usize::from(chan)) else {
            return;
        };
        let Some(u) = ch.unacked.front() else { return };
        let timeout = self.timeout_now(ch, u);
        let consumer = u
            .consumer
            .and_then(|id| ch.consumers.get(&id))
            .map_or_else(|| "basic.get".to_string(), |c| format!("'{}'", c.tag));
        tracing::warn!(
            peer = %self.peer,
            "consumer {consumer} on channel {chan} and {} has timed out waiting for a consumer \
             acknowledgement of a delivery with delivery tag = {}. Timeout used: {timeout} ms. \
             Closing the channel; its {} unacked messages are requeued",
            u.queue.describe(),
            u.tag,
            ch.unacked.len(),
        );
        self.fail(
            chan,
            AmqpError::precondition_failed(format!(
                "delivery acknowledgement on channel {chan} timed out. Timeout value used: \
                 {timeout} ms. This timeout value can be configured, see consumers doc guide to \
                 learn more"
            )),
        );
    }
}
