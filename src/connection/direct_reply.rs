//! A channel's side of direct reply-to (see `broker::direct_reply`): the no-ack consumer on the
//! `amq.rabbitmq.reply-to` pseudo-queue, the rewrite of a request's `reply_to` to the channel's
//! generated name, replies written straight to the consumer, and queue.declare of the
//! pseudo-queue names, all with RabbitMQ's checks and texts.

use super::channel::ReplyConsumer;
use super::Conn;
use crate::broker::direct_reply::{ReplyTarget, PREFIX, PSEUDO_QUEUE};
use crate::broker::message::Message;
use crate::broker::vhost::generate_name;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::{hot, properties, props_rewrite};
use amq_protocol::protocol::{basic, queue, AMQPClass};
use amq_protocol::types::ShortString;
use bytes::Bytes;
use std::sync::Arc;

impl Conn {
    /// basic.consume on `amq.rabbitmq.reply-to`.
    pub(super) fn consume_reply_to(&mut self, chan: u16, c: basic::Consume) -> AmqpResult<()> {
        let tag: Arc<str> = if c.consumer_tag.as_str().is_empty() {
            Arc::from(generate_name("amq.ctag-").as_str())
        } else {
            Arc::from(c.consumer_tag.as_str())
        };
        let id = self.broker.next_id();
        let events = self.events_tx.clone();
        let ch = self.ch(chan)?;
        if ch.tag_in_use(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        if !c.no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        if ch.reply.is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let token = self.broker.direct_reply.register(ReplyTarget {
            tx: events,
            channel: chan,
            consumer_id: id,
        });
        self.ch(chan)?.reply = Some(Box::new(ReplyConsumer {
            tag: tag.clone(),
            id,
            token,
        }));
        if !c.nowait {
            let ok = basic::ConsumeOk {
                consumer_tag: ShortString::from(tag.to_string()),
            };
            self.send(chan, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        Ok(())
    }

    /// basic.cancel of the reply consumer; false if `tag` is not it.
    pub(super) fn cancel_reply_to(&mut self, chan: u16, tag: &str) -> AmqpResult<bool> {
        let ch = self.ch(chan)?;
        if !ch.reply.as_ref().is_some_and(|r| &*r.tag == tag) {
            return Ok(false);
        }
        if let Some(r) = ch.reply.take() {
            self.broker.direct_reply.unregister(&r.token);
        }
        Ok(true)
    }

    /// The channel ends: its reply consumer goes with it (later replies are dropped).
    pub(super) fn release_reply_to(&self, r: Option<Box<ReplyConsumer>>) {
        if let Some(r) = r {
            self.broker.direct_reply.unregister(&r.token);
        }
    }

    /// A publish whose `reply_to` is the pseudo-queue gets the channel's generated name instead;
    /// without a reply consumer on the channel that is 406, as RabbitMQ.
    pub(super) fn rewrite_reply_to(&mut self, chan: u16, props: Bytes) -> AmqpResult<Bytes> {
        if properties::reply_to(&props) != Some(PSEUDO_QUEUE.as_bytes()) {
            return Ok(props);
        }
        let Some(r) = self.ch(chan)?.reply.as_ref() else {
            return Err(
                AmqpError::precondition_failed("fast reply consumer does not exist").on(60, 40),
            );
        };
        let name = format!("{PREFIX}{}", r.token);
        props_rewrite::set_reply_to(&props, &name)
            .map_err(|e| AmqpError::frame_error(format!("content header: {e}")))
    }

    /// A reply for this connection's reply consumer: written as a no-ack delivery, or dropped
    /// when the consumer is gone.
    pub(super) fn deliver_reply(&mut self, chan: u16, consumer_id: u64, m: Message) {
        if self.closing {
            return;
        }
        let frame_max = self.frame_max;
        let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
            return;
        };
        if ch.closing {
            return;
        }
        let Some(r) = ch.reply.as_ref().filter(|r| r.id == consumer_id) else {
            return;
        };
        let tag = ch.next_tag;
        ch.next_tag += 1;
        let w = &mut self.wbuf;
        hot::encode_deliver(
            w,
            chan,
            r.tag.as_bytes(),
            tag,
            false,
            &m.exchange,
            &m.routing_key,
        );
        hot::encode_content_header(w, chan, m.body.len() as u64, &m.properties);
        hot::encode_body(w, chan, &m.body, frame_max);
    }

    /// queue.declare of a pseudo-queue name: "declared" (0 messages, 1 consumer) when it exists,
    /// 404 otherwise, whatever the flags (RabbitMQ treats every such declare as passive). None
    /// for other names.
    pub(super) fn declare_reply_to(&self, name: &str) -> Option<AmqpResult<queue::DeclareOk>> {
        if name != PSEUDO_QUEUE && !name.starts_with(PREFIX) {
            return None;
        }
        if !self.broker.direct_reply.exists(name) {
            return Some(Err(AmqpError::not_found(format!(
                "no queue '{name}' in vhost '{}'",
                self.vhost.name
            ))));
        }
        Some(Ok(queue::DeclareOk {
            queue: ShortString::from(name.to_string()),
            message_count: 0,
            consumer_count: 1,
        }))
    }
}
