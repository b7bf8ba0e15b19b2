//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to` pseudo-queue): an RPC client consumes
//! from the pseudo-queue in no-ack mode, its requests' `reply_to` is rewritten to
//! `amq.rabbitmq.reply-to.<token>`, and a reply published to the default exchange with that
//! routing key goes straight to the client's channel, never through a queue. The registry maps
//! tokens to the consuming channels; it is touched only by direct reply-to traffic.

use crate::broker::message::Message;
use crate::broker::queue::consumer::ClientEvent;
use dashmap::DashMap;
use tokio::sync::mpsc::UnboundedSender;

/// The pseudo-queue's name.
pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// What a rewritten `reply_to` starts with.
pub const PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Where replies for one token go: a channel's reply consumer.
#[derive(Debug)]
pub struct ReplyTarget {
    pub tx: UnboundedSender<ClientEvent>,
    pub channel: u16,
    pub consumer_id: u64,
}

/// Every direct reply-to consumer of the broker, by token.
#[derive(Debug, Default)]
pub struct DirectReply {
    targets: DashMap<Box<str>, ReplyTarget>,
}

impl DirectReply {
    /// Register a reply consumer; returns its token (random, so that nobody can guess where to
    /// send replies they were not asked for).
    pub fn register(&self, target: ReplyTarget) -> Box<str> {
        use base64::Engine;
        let bytes: [u8; 18] = rand::random();
        let token: Box<str> = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(bytes)
            .into();
        self.targets.insert(token.clone(), target);
        token
    }

    pub fn unregister(&self, token: &str) {
        self.targets.remove(token);
    }

    /// Queue-declare semantics of a pseudo-queue name: the bare name always "exists", a
    /// generated one while its consumer does.
    pub fn exists(&self, name: &str) -> bool {
        name == PSEUDO_QUEUE
            || name
                .strip_prefix(PREFIX)
                .is_some_and(|t| self.targets.contains_key(t))
    }

    /// Hand a reply to the consumer its routing key names. A token nobody consumes (unknown,
    /// or its consumer gone) gives the message back: it is unroutable, as in RabbitMQ (a
    /// mandatory reply is returned). A consumer whose connection is ending drops it.
    /// Returns the message when it could not be handed on.
    pub fn deliver(&self, token: &str, message: Message) -> Option<Message> {
        match self.targets.get(token) {
            Some(t) => {
                let _ = t.tx.send(ClientEvent::Reply {
                    channel: t.channel,
                    consumer_id: t.consumer_id,
                    message,
                });
                None
            }
            None => Some(message),
        }
    }
}

/// The token of a routing key that addresses a reply consumer (default exchange only).
pub fn reply_token(routing_key: &[u8]) -> Option<&str> {
    let rest = routing_key.strip_prefix(PREFIX.as_bytes())?;
    std::str::from_utf8(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tokens() {
        let r = DirectReply::default();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let t = r.register(ReplyTarget {
            tx,
            channel: 1,
            consumer_id: 7,
        });
        assert!(r.exists(PSEUDO_QUEUE));
        assert!(r.exists(&format!("{PREFIX}{t}")));
        assert!(!r.exists(&format!("{PREFIX}nope")));
        assert_eq!(reply_token(format!("{PREFIX}{t}").as_bytes()), Some(&*t));
        assert_eq!(reply_token(b"amq.rabbitmq.reply-to"), None);
        r.unregister(&t);
        assert!(!r.exists(&format!("{PREFIX}{t}")));
    }
}
