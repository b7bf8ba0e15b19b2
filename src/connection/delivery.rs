//! The consuming side of a channel: basic.consume/cancel/get, acks, nacks, rejects, recover, the
//! deliveries queues push to this connection, and giving messages back when a channel ends.

use super::channel::{for_each_run, Channel, ChannelConsumer, Unacked};
use super::tx::{apply_settle, SettleKind};
use super::Conn;
use crate::broker::direct_reply::PSEUDO_QUEUE;
use crate::broker::permissions::{Kind, Perm};
use crate::broker::queue::consumer::{ClientEvent, ConsumerSpec, Delivery};
use crate::broker::queue::consumer_opts::{consumer_args, ConsumerArgs};
use crate::broker::registry::ConsumerInfo;
use crate::broker::sender_selected;
use crate::broker::stats::Stat;
use crate::broker::stream::StreamConsumerSpec;
use crate::broker::vhost::generate_name;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::hot::{self, AckArgs};
use crate::protocol::BASIC_ACK;
use amq_protocol::protocol::{basic, AMQPClass};
use amq_protocol::types::ShortString;
use std::sync::Arc;

impl Conn {
    pub(super) fn on_consume(&mut self, chan: u16, c: basic::Consume) -> AmqpResult<()> {
        if c.queue.as_str() == PSEUDO_QUEUE {
            return self.consume_reply_to(chan, c);
        }
        self.authz
            .check(Perm::Read, Kind::Queue, c.queue.as_str())?;
        let q = self.vhost.queue_for(c.queue.as_str(), self.id)?;
        let tag: Arc<str> = if c.consumer_tag.as_str().is_empty() {
            Arc::from(generate_name("amq.ctag-").as_str())
        } else {
            Arc::from(c.consumer_tag.as_str())
        };
        let id = self.broker.next_id();
        let (conn_id, events) = (self.id, self.events_tx.clone());
        if self.ch(chan)?.global_prefetch > 0 && q.queue_type() == "quorum" {
            // RabbitMQ: a quorum queue has no channel-wide limiter (Celery turns global QoS
            // off for quorum queues because of this error).
            return Err(AmqpError::not_implemented(format!(
                "{} does not support global qos",
                q.describe()
            )));
        }
        let cargs = if q.stream.is_none() {
            let module = if q.queue_type() == "quorum" {
                "rabbit_quorum_queue"
            } else {
                "rabbit_classic_queue"
            };
            consumer_args(&c.arguments, &q.describe(), module)?
        } else {
            ConsumerArgs::default()
        };
        let timeout_ms = self.consumer_timeout(cargs.timeout_ms, &q);
        let ch = self.ch(chan)?;
        if ch.tag_in_use(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        let prefetch = ch.prefetch;
        let consumer_prefetch = ch.consumer_prefetch;
        let info = ConsumerInfo {
            id,
            tag: tag.clone(),
            queue: q.name.clone(),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            prefetch,
            arguments: c.arguments.clone(),
        };
        ch.consumers.insert(
            id,
            ChannelConsumer {
                tag: tag.clone(),
                queue: q.clone(),
                no_ack: c.no_ack,
                timeout_ms,
                own_timeout: cargs.timeout_ms,
            },
        );
        let added = match &q.stream {
            Some(s) if consumer_prefetch == 0 => Err(AmqpError::precondition_failed(format!(
                "consumer prefetch count is not set for stream {}",
                q.describe()
            ))),
            // RabbitMQ 4: a hard error, with its words.
            Some(s) if c.no_ack => Err(AmqpError::not_implemented(format!(
                "automatic acknowledgement not supported by stream {}",
                q.describe()
            ))),
            Some(s) => s.add_consumer(
                q.clone(),
                StreamConsumerSpec {
                    id,
                    channel: chan,
                    tag: tag.to_string(),
                    tx: events,
                    prefetch,
                    arguments: c.arguments,
                },
            ),
            None => q.add_consumer(ConsumerSpec {
                id,
                tag: tag.clone(),
                connection_id: conn_id,
                channel: chan,
                tx: events,
                no_ack: c.no_ack,
                exclusive: c.exclusive,
                prefetch,
                window: self.broker.config.limits.default_consumer_prefetch,
                priority: cargs.priority,
            }),
        };
        if let Err(e) = added {
            self.ch(chan)?.consumers.remove(&id);
            return Err(e);
        }
        self.ch(chan)?.info.add_consumer(info);
        // consume-ok still precedes every delivery: the queue hands deliveries over through the
        // event channel, which this task reads only after this frame is handled.
        if !c.nowait {
            let ok = basic::ConsumeOk {
                consumer_tag: ShortString::from(tag.to_string()),
            };
            self.send(chan, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        Ok(())
    }

    pub(super) fn on_cancel(&mut self, chan: u16, c: basic::Cancel) -> AmqpResult<()> {
        let reply = self.cancel_reply_to(chan, c.consumer_tag.as_str())?;
        let ch = self.ch(chan)?;
        if reply {
        } else if let Some(id) = ch.find_consumer_tag(c.consumer_tag.as_str()) {
            if let Some(cc) = ch.consumers.remove(&id) {
                ch.info.remove_consumer(id);
                if cc.queue.remove_consumer(id) {
                    self.vhost.drop_queue(&cc.queue);
                } else if cc.queue.single_active() {
                    // The next registered consumer is the active one now.
                    cc.queue.dispatch_now();
                }
            }
        }
        if !c.nowait {
            let ok = basic::CancelOk {
                consumer_tag: c.consumer_tag,
            };
            self.send(chan, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)));
        }
        Ok(())
    }

    pub(super) fn on_get(&mut self, chan: u16, g: basic::Get) -> AmqpResult<()> {
        self.authz
            .check(Perm::Read, Kind::Queue, g.queue.as_str())?;
        let q = self.vhost.queue_for(g.queue.as_str(), self.id)?;
        if q.stream.is_some() {
            return Err(AmqpError::not_implemented(format!(
                "basic.get not supported by stream queues {}",
                q.describe()
            )));
        }
        if q.queue_type() == "quorum" && q.single_active() {
            return Err(AmqpError::resource_locked(format!(
                "cannot obtain access to locked {}. basic.get operations are not supported by \
                 quorum queues with single active consumer",
                q.describe()
            )));
        }
        let frame_max = self.frame_max;
        let timeout_ms = self.consumer_timeout(None, &q);
        let now_ms = self.now_ms;
        self.ch(chan)?;
        let Some((m, left)) = q.get(g.no_ack) else {
            self.ch(chan)?.info.stats.inc(Stat::GetEmpty);
            self.send(
                chan,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let ch = self.ch(chan)?;
        let tag = ch.take_tag();
        ch.info
            .stats
            .inc(if g.no_ack { Stat::GetNoAck } else { Stat::Get });
        if m.redelivered {
            ch.info.stats.inc(Stat::Redeliver);
        }
        let w = &mut self.wbuf;
        let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
            return Ok(());
        };
        hot::encode_get_ok(
            w,
            chan,
            tag,
            m.redelivered,
            &m.msg.exchange,
            &m.msg.routing_key,
            left,
        );
        let shown = sender_selected::shown(&m.msg);
        let props = shown.as_ref().unwrap_or(&m.msg.properties);
        hot::encode_content_header(w, chan, m.msg.body.len() as u64, props);
        hot::encode_body(w, chan, &m.msg.body, frame_max);
        if !g.no_ack {
            let first = ch.unacked.is_empty();
            ch.unacked.push_back(Unacked {
                tag,
                queue: q,
                consumer: None,
                message: m,
                delivered_ms: now_ms,
            });
            ch.info.unacked.store(
                ch.unacked.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            if first {
                self.arm_timeout(timeout_ms);
            }
        }
        Ok(())
    }

    pub(super) fn on_ack(&mut self, chan: u16, method: u16, a: AckArgs) -> AmqpResult<()> {
        let settles = &mut self.settles;
        let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
            return Err(AmqpError::channel_error(format!(
                "channel {chan} is not open"
            )));
        };
        let Some(range) = ch.unacked_range(a.delivery_tag, a.multiple) else {
            return Err(AmqpError::precondition_failed(format!(
                "unknown delivery tag {}",
                a.delivery_tag
            )));
        };
        let kind = match (method, a.requeue) {
            (BASIC_ACK, _) => SettleKind::Ack,
            (_, true) => SettleKind::Requeue,
            (_, false) => SettleKind::Discard,
        };
        if let Some(t) = ch.tx.as_mut() {
            // Applied (and counted) at tx.commit; already gone from the unacked list (acking
            // the same tag twice is a 406, as RabbitMQ).
            t.settle(kind, ch.unacked.drain(range));
        } else {
            if kind == SettleKind::Ack {
                ch.info.stats.add(Stat::Ack, range.len() as u64);
            }
            apply_settle(settles, kind, ch.unacked.drain(range));
        }
        ch.info.unacked.store(
            ch.unacked.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(())
    }

    pub(super) fn on_recover(&mut self, chan: u16, requeue: bool, reply: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let ch = self.ch(chan)?;
        let items: Vec<Unacked> = ch.unacked.drain(..).collect();
        ch.info
            .unacked
            .store(0, std::sync::atomic::Ordering::Relaxed);
        for_each_run(items, |q, consumer, msgs| q.requeue(consumer, msgs));
        if reply {
            self.send(
                chan,
                AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
            );
        }
        Ok(())
    }

    /// Something a queue (or the server) sent this connection.
    pub(super) fn handle_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Deliver(d) => self.deliver(d),
            ClientEvent::Stored {
                channel,
                epoch,
                seq,
                last,
                ok,
            } => self.on_stored(channel, epoch, seq, last, ok),
            ClientEvent::Cancel {
                channel,
                consumer_id,
            } => {
                let notify = self.caps.consumer_cancel_notify;
                if let Some(Some(ch)) = self.channels.get_mut(usize::from(channel)) {
                    if let Some(c) = ch.consumers.remove(&consumer_id) {
                        ch.info.remove_consumer(consumer_id);
                        if notify && !ch.closing {
                            let m = basic::Cancel {
                                consumer_tag: ShortString::from(c.tag.to_string()),
                                nowait: true,
                            };
                            self.send(channel, AMQPClass::Basic(basic::AMQPMethod::Cancel(m)));
                        }
                    }
                }
            }
            ClientEvent::Reply {
                channel,
                consumer_id,
                message,
            } => self.deliver_reply(channel, consumer_id, message),
            ClientEvent::PoliciesChanged => {
                self.touch_clock();
                self.refresh_consumer_timeouts();
                self.check_consumer_timeouts();
            }
            ClientEvent::Close { code, text } => {
                let e = AmqpError {
                    scope: crate::error::Scope::Connection,
                    code,
                    text,
                    class_id: 0,
                    method_id: 0,
                };
                self.close_connection(e);
            }
        }
    }

    /// Write one delivery, or give it back if its consumer is gone.
    fn deliver(&mut self, d: Delivery) {
        let frame_max = self.frame_max;
        let ch = match self.channels.get_mut(usize::from(d.channel)) {
            Some(Some(ch)) if !ch.closing && !self.closing => ch,
            _ => {
                d.queue.clone().give_back(d);
                return;
            }
        };
        let Channel {
            consumers,
            next_tag,
            unacked,
            info,
            ..
        } = &mut **ch;
        let Some(c) = consumers.get(&d.consumer_id) else {
            // Cancelled (or a stale channel number reused): back to the queue.
            d.queue.clone().give_back(d);
            return;
        };
        let (no_ack, timeout_ms) = (c.no_ack, c.timeout_ms);
        let tag = *next_tag;
        *next_tag += 1;
        let m = &d.message;
        let w = &mut self.wbuf;
        hot::encode_deliver(
            w,
            d.channel,
            c.tag.as_bytes(),
            tag,
            m.redelivered,
            &m.msg.exchange,
            &m.msg.routing_key,
        );
        let shown = sender_selected::shown(&m.msg);
        let props = shown.as_ref().unwrap_or(&m.msg.properties);
        hot::encode_content_header(w, d.channel, m.msg.body.len() as u64, props);
        hot::encode_body(w, d.channel, &m.msg.body, frame_max);
        let kind = if no_ack {
            Stat::DeliverNoAck
        } else {
            Stat::Deliver
        };
        info.stats.inc(kind);
        d.queue.stats.inc(kind);
        if m.redelivered {
            info.stats.inc(Stat::Redeliver);
            d.queue.stats.inc(Stat::Redeliver);
        }
        if no_ack {
            // Credit for no-ack consumers comes back once the batch is handed to the writer.
            self.settles.written(&d.queue, d.consumer_id, &d.message);
        } else {
            let first = unacked.is_empty();
            unacked.push_back(Unacked {
                tag,
                queue: d.queue,
                consumer: Some(d.consumer_id),
                message: d.message,
                delivered_ms: self.now_ms,
            });
            info.unacked
                .store(unacked.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if first {
                self.arm_timeout(timeout_ms);
            }
        }
    }

    /// A channel ends: cancel its consumers, give back its unacked messages.
    pub(super) fn release_channel(&mut self, mut ch: Box<Channel>) {
        self.release_reply_to(ch.reply.take());
        let mut single_active = Vec::new();
        self.info.close_channel(ch.info.number);
        for (id, c) in ch.consumers.drain() {
            if c.queue.remove_consumer(id) {
                self.vhost.drop_queue(&c.queue);
            } else if c.queue.single_active() {
                single_active.push(c.queue);
            }
        }
        let mut items: Vec<Unacked> = ch.unacked.drain(..).collect();
        if let Some(t) = ch.tx.take() {
            // Settled in a transaction that was never committed: still unacked.
            items.extend(t.into_unacked());
            items.sort_by_key(|u| u.tag);
        }
        for_each_run(items, |q, consumer, msgs| q.requeue(consumer, msgs));
        // A single-active-consumer queue fails over only now, so that the next consumer gets
        // the unacked messages just requeued before anything newer.
        for q in single_active {
            q.dispatch_now();
        }
    }
}
