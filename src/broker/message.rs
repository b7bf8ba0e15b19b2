//! A message as the broker holds it: routing info, raw properties and body, all `Bytes` that share
//! the memory they were read into, so fanout to N queues copies nothing.

use crate::protocol::properties;
use crate::store::Location;
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
    /// `delivery_mode = 2`, read once when the message arrives.
    pub persistent: bool,
    /// The broker dead-lettered this message: its `x-death` headers are the broker's own
    /// (a publisher's are not interpreted, as in RabbitMQ 4).
    pub dead_lettered: bool,
    /// The properties still hold the publisher's `BCC` header: kept only in queues with a
    /// dead-letter exchange (a dead letter is routed with its BCC keys too, as RabbitMQ), and
    /// removed from what consumers see (`sender_selected::shown`).
    pub bcc: bool,
}

impl Message {
    /// Read `delivery_mode` from raw properties.
    pub fn persistent_in(props: &[u8]) -> bool {
        properties::delivery_mode(props) == Some(2)
    }

    /// A copy of this message in one allocation of its own. A message read off the socket shares
    /// the connection's 64 KiB read buffer; one that waits in a queue would otherwise keep that
    /// whole buffer alive for a few bytes of its own.
    pub fn compacted(&self) -> Message {
        let (e, r, p) = (
            self.exchange.len(),
            self.routing_key.len(),
            self.properties.len(),
        );
        let mut b = bytes::BytesMut::with_capacity(e + r + p + self.body.len());
        b.extend_from_slice(&self.exchange);
        b.extend_from_slice(&self.routing_key);
        b.extend_from_slice(&self.properties);
        b.extend_from_slice(&self.body);
        let mut all = b.freeze();
        Message {
            exchange: all.split_to(e),
            routing_key: all.split_to(r),
            properties: all.split_to(p),
            body: all,
            persistent: self.persistent,
            dead_lettered: self.dead_lettered,
            bcc: self.bcc,
        }
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
    /// Where the message's record is in the queue's log (persistent messages in durable queues).
    pub loc: Option<Location>,
    pub msg: Message,
    /// Absolute expiry in unix milliseconds (0: never); kept when the message is requeued.
    pub expires: u64,
    /// Times the message came back unsettled (a delivery-limited queue's delivery count).
    pub returns: u32,
}

impl QueuedMessage {
    /// A message entering a queue for the first time.
    pub fn new(seq: u64, loc: Option<Location>, msg: Message, expires: u64) -> QueuedMessage {
        QueuedMessage {
            seq,
            redelivered: false,
            loc,
            msg,
            expires,
            returns: 0,
        }
    }
}
