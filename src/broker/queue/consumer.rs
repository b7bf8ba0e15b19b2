//! A consumer as a queue sees it: where to push deliveries and how much credit it has left.

use crate::broker::message::QueuedMessage;
use crate::broker::queue::Queue;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// How many no-ack deliveries may be on their way to one consumer's socket before the queue waits
/// for the connection to report them written: keeps a slow no-ack reader from pulling a whole
/// backlog into memory.
pub const NO_ACK_WINDOW: u32 = 2000;

/// What a queue (or the server) tells a client connection. Connections own their channel state, so
/// the queue hands messages over instead of touching channel state itself.
#[derive(Debug)]
pub enum ClientEvent {
    /// Push a message to a consumer; the connection assigns the delivery tag.
    Deliver(Delivery),
    /// A publish that waited for the log's fsync is durable (`ok`) or could not be stored.
    /// `epoch` tells the channel instance (numbers are reused after close).
    /// Covers every publish `seq..=last` of the channel that waited for this queue.
    Stored {
        channel: u16,
        epoch: u64,
        seq: u64,
        last: u64,
        ok: bool,
    },
    /// The server cancels a consumer (its queue was deleted).
    Cancel { channel: u16, consumer_id: u64 },
    /// A direct reply-to reply for the channel's reply consumer (no queue, no ack).
    Reply {
        channel: u16,
        consumer_id: u64,
        message: crate::broker::message::Message,
    },
    /// Close the whole connection (admin close, shutdown).
    Close { code: u16, text: String },
    /// The vhost's policies changed: delivery timeouts that come from a queue's policy are
    /// worked out again (RabbitMQ reads them at each check, so a change reaches running
    /// consumers).
    PoliciesChanged,
}

/// A message on its way to a consumer.
#[derive(Debug)]
pub struct Delivery {
    pub channel: u16,
    pub consumer_id: u64,
    /// For a no-ack consumer (not counted as unacked by the queue).
    pub no_ack: bool,
    pub queue: Arc<Queue>,
    pub message: QueuedMessage,
}

/// A queue's record of one consumer.
#[derive(Debug)]
pub struct ConsumerEntry {
    pub id: u64,
    pub tag: Arc<str>,
    pub connection_id: u64,
    pub channel: u16,
    pub tx: UnboundedSender<ClientEvent>,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Deliveries unacked (manual ack) or unwritten (no-ack) by this consumer.
    pub outstanding: u32,
    /// Limit on `outstanding`; 0 = none (manual ack without prefetch, window 0).
    pub limit: u32,
    /// The limit a manual-ack consumer gets while its prefetch is 0 (the broker's
    /// `default_consumer_prefetch`): without it, a consumer that never acks would pull the
    /// whole backlog, paged-out messages included, into memory.
    pub window: u32,
    /// `x-priority`: consumers with a higher one get messages first.
    pub priority: i32,
}

impl ConsumerEntry {
    pub fn has_credit(&self) -> bool {
        self.limit == 0 || self.outstanding < self.limit
    }
}

/// Parameters of a new consumer, as the channel asks for it.
pub struct ConsumerSpec {
    pub id: u64,
    pub tag: Arc<str>,
    pub connection_id: u64,
    pub channel: u16,
    pub tx: UnboundedSender<ClientEvent>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub prefetch: u16,
    /// Limit while `prefetch` is 0 (manual ack only); 0 = none.
    pub window: u16,
    /// `x-priority` (0 when absent).
    pub priority: i32,
}

impl From<ConsumerSpec> for ConsumerEntry {
    fn from(s: ConsumerSpec) -> Self {
        ConsumerEntry {
            id: s.id,
            tag: s.tag,
            connection_id: s.connection_id,
            channel: s.channel,
            tx: s.tx,
            no_ack: s.no_ack,
            exclusive: s.exclusive,
            outstanding: 0,
            limit: if s.no_ack {
                NO_ACK_WINDOW
            } else {
                manual_limit(s.prefetch, s.window)
            },
            window: u32::from(s.window),
            priority: s.priority,
        }
    }
}

/// The credit limit of a manual-ack consumer: its prefetch, or the window when it has none.
fn manual_limit(prefetch: u16, window: u16) -> u32 {
    if prefetch == 0 {
        u32::from(window)
    } else {
        u32::from(prefetch)
    }
}
