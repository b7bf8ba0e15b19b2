//! A message as the broker holds it: routing info, raw properties and body, all `Bytes` that share
//! the memory they were read into, so fanout to N queues copies nothing.

use crate::protocol::properties;
use bytes::Bytes;

/// One published message. Cloning bumps reference counts only.
#[derive(Clone, Debug)]
pub struct Message {
    /// Exchange it was published to (as the publisher named it).
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// Raw property flags + list, validated, re-sent verbatim to consumers.
    pub properties: Bytes,
    pub body: Bytes,
}

impl Message {
    /// `delivery_mode = 2`.
    pub fn is_persistent(&self) -> bool {
        properties::delivery_mode(&self.properties) == Some(2)
    }

    /// Bytes this message accounts for in a queue (body only, as RabbitMQ's `message_bytes`).
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }
}

/// A message inside a queue: its queue-local sequence number keeps requeued messages in their
/// original order.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    pub seq: u64,
    pub redelivered: bool,
    pub msg: Message,
}
