//! Receiving published messages: basic.publish, content header, body frames, then routing to
//! queues, mandatory returns and publisher confirms.

use super::channel::Content;
use super::channel::PendingConfirm;
use super::Conn;
use crate::broker::direct_reply::reply_token;
use crate::broker::exchange::delayed;
use crate::broker::message::Message;
use crate::broker::permissions::{Kind, Perm};
use crate::broker::persist::{ConfirmWaiter, SyncTicket};
use crate::broker::queue::{ttl, Enqueued, Queue};
use crate::broker::sender_selected;
use crate::broker::stats::Stat;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::frame::RawFrame;
use crate::protocol::hot::{self, ContentHeader, Publish};
use crate::protocol::CLASS_BASIC;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// The most publishes one deferred sync request covers before it is handed over mid-batch: a
/// batch (up to 64 KiB read, ~700 small publishes) asks a few times, so the first of its
/// publishes need not wait for the whole batch before their fsync can start.
const SYNC_RUN: u64 = 128;

/// A published message on its way to routing, with what routing needs besides the message.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub msg: Message,
    pub mandatory: bool,
    /// Extra routing keys from the CC and BCC headers.
    pub cc: Vec<Bytes>,
    /// It has a BCC header, removed before delivery.
    pub bcc: bool,
}

impl Conn {
    pub(super) fn on_publish(&mut self, chan: u16, p: Publish) -> AmqpResult<()> {
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        self.check_alarm();
        let ch = self.ch(chan)?;
        if ch.confirm {
            ch.publish_seq += 1;
        }
        ch.content = Content::Header(p);
        Ok(())
    }

    pub(super) fn on_header(&mut self, chan: u16, f: &RawFrame) -> AmqpResult<()> {
        let max = self.broker.config.limits.max_message_size;
        let ch = self.ch(chan)?;
        let Content::Header(publish) = std::mem::take(&mut ch.content) else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        let header = hot::decode_content_header(&f.payload)
            .map_err(|e| AmqpError::frame_error(format!("content header: {e}")))?;
        if header.class_id != CLASS_BASIC {
            return Err(AmqpError::unexpected_frame(format!(
                "content header for class {} does not match basic.publish",
                header.class_id
            )));
        }
        if header.body_size > max {
            return Err(AmqpError::precondition_failed(format!(
                "message size {} is larger than configured max size {max}",
                header.body_size
            ))
            .on(60, 40));
        }
        if header.body_size == 0 {
            return self.complete(chan, publish, header, Bytes::new());
        }
        ch.content = Content::Body {
            publish,
            header,
            first: Bytes::new(),
            rest: BytesMut::new(),
            received: 0,
        };
        Ok(())
    }

    pub(super) fn on_body(&mut self, chan: u16, f: &RawFrame) -> AmqpResult<()> {
        let ch = self.ch(chan)?;
        let Content::Body {
            header,
            first,
            rest,
            received,
            ..
        } = &mut ch.content
        else {
            return Err(AmqpError::unexpected_frame(
                "expected method frame, got non method frame instead",
            ));
        };
        let n = f.payload.len() as u64;
        if *received + n > header.body_size {
            return Err(AmqpError::frame_error(format!(
                "body of {} bytes exceeds the {} announced in the content header",
                *received + n,
                header.body_size
            )));
        }
        if *received == 0 {
            *first = f.payload.clone();
        } else {
            if rest.is_empty() {
                // Second frame: switch from zero-copy to one buffer. Sized for the announced
                // body only up to 1 MiB, then grown as bytes arrive: a header's claim alone
                // (up to max_message_size, on every channel) must not reserve memory.
                let cap = usize::try_from(header.body_size).unwrap_or(usize::MAX);
                rest.reserve(cap.min(1 << 20));
                rest.extend_from_slice(first);
            }
            rest.extend_from_slice(&f.payload);
        }
        *received += n;
        if *received < header.body_size {
            return Ok(());
        }
        let Content::Body {
            publish,
            header,
            first,
            rest,
            ..
        } = std::mem::take(&mut ch.content)
        else {
            return Ok(());
        };
        let body = if rest.is_empty() {
            first
        } else {
            rest.freeze()
        };
        self.complete(chan, publish, header, body)
    }

    /// A whole message arrived: route it, store it in every queue it reaches, return or confirm.
    fn complete(
        &mut self,
        chan: u16,
        p: Publish,
        header: ContentHeader,
        body: Bytes,
    ) -> AmqpResult<()> {
        let (ex, topic_checked) = self.resolve_exchange(chan, &p.exchange)?;
        if ex.options.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal {}",
                ex.describe()
            ))
            .on(60, 40));
        }
        if topic_checked {
            // RabbitMQ's topic authorisation, after the internal-exchange check as there.
            let x = String::from_utf8_lossy(&p.exchange);
            self.authz
                .check_topic(Perm::Write, &x, &String::from_utf8_lossy(&p.routing_key))
                .map_err(|e| e.on(60, 40))?;
        }
        // RabbitMQ's validated user-id: a claimed user_id must be the authenticated user.
        if let Some(claimed) = crate::protocol::properties::user_id(&header.properties) {
            if claimed != self.user.name.as_bytes() && !self.user.has_tag("impersonator") {
                return Err(AmqpError::precondition_failed(format!(
                    "user_id property set to '{}' but authenticated user was '{}'",
                    String::from_utf8_lossy(claimed),
                    self.user.name
                ))
                .on(60, 40));
            }
        }
        // As RabbitMQ: an expiration that is not a valid TTL closes the channel.
        if let Some(e) = crate::protocol::properties::expiration(&header.properties) {
            if let Err(why) = ttl::parse_expiration(e) {
                return Err(AmqpError::precondition_failed(format!(
                    "invalid expiration '{}': {why}",
                    String::from_utf8_lossy(e)
                ))
                .on(60, 40));
            }
        }
        // Direct reply-to: a request's reply_to names this channel's reply consumer.
        let properties = self.rewrite_reply_to(chan, header.properties)?;
        let msg = Message {
            exchange: p.exchange,
            routing_key: p.routing_key,
            persistent: Message::persistent_in(&properties),
            properties,
            body,
            dead_lettered: false,
            bcc: false,
        };
        // CC / BCC headers: extra routing keys (a bad one fails the publish, as RabbitMQ).
        let (cc, bcc) = sender_selected::extra_keys(&msg.properties)
            .map_err(|e| AmqpError::precondition_failed(e).on(60, 40))?;
        ex.stats.inc(Stat::PublishIn);
        self.ch(chan)?.info.stats.inc(Stat::Publish);
        let out = Outgoing {
            msg,
            mandatory: p.mandatory,
            cc,
            bcc,
        };
        let (confirm, seq, epoch) = {
            let ch = self.ch(chan)?;
            if let Some(t) = ch.tx.as_mut() {
                // Routed and stored at tx.commit.
                t.publish(ex, out);
                return Ok(());
            }
            (ch.confirm, ch.publish_seq, ch.epoch)
        };
        let waiter = confirm.then_some((epoch, seq));
        let (returned, waits, failed, rejected) = self.route_and_store(chan, &ex, out, waiter);
        if confirm {
            self.confirm_publish(chan, seq, waits, failed || rejected)?;
            if returned {
                self.flush_channel_confirms(chan);
            }
        } else if failed {
            // A publisher without confirms has no nack to hear: close its channel instead.
            return Err(
                AmqpError::store_failed("could not store the message; see the broker log")
                    .on(60, 40),
            );
        }
        Ok(())
    }

    /// Route `msg` from `ex` and put it in every queue it reaches (or hand it to a direct
    /// reply-to consumer); an unroutable mandatory message is returned. `waiter` is the
    /// (channel epoch, sequence number) log syncs report back with, when the caller waits for
    /// them. Returns (returned, syncs to wait for, a store failed, a length limit refused it
    /// somewhere: a confirming publisher is nacked, others lose it silently).
    pub(super) fn route_and_store(
        &mut self,
        chan: u16,
        ex: &Arc<crate::broker::exchange::Exchange>,
        out: Outgoing,
        waiter: Option<(u64, u64)>,
    ) -> (bool, u32, bool, bool) {
        let Outgoing {
            mut msg,
            mandatory,
            cc,
            bcc,
        } = out;
        if let Some(d) = ex.delayed() {
            if let Some(delay) = delayed::delay_of(&msg.properties) {
                // Held until its time (counts as routed: the plugin does not support mandatory).
                ex.stats.inc(Stat::PublishOut);
                return match d.hold(msg, delay) {
                    Ok(Some(ticket)) => match waiter {
                        Some((epoch, seq)) => {
                            d.sync_then(ConfirmWaiter {
                                tx: self.events_tx.clone(),
                                channel: chan,
                                epoch,
                                seq,
                                last: seq,
                                ticket,
                            });
                            (false, 1, false, false)
                        }
                        None => (false, 0, false, false),
                    },
                    Ok(None) => (false, 0, false, false),
                    Err(e) => {
                        tracing::error!(exchange = %ex.name, "could not store a delayed message: {e}");
                        (false, 0, true, false)
                    }
                };
            }
        }
        let mut reply_unroutable = false;
        if ex.is_default() {
            if let Some(token) = reply_token(&msg.routing_key) {
                let token = token.to_owned();
                match self.broker.direct_reply.deliver(&token, msg) {
                    None => {
                        ex.stats.inc(Stat::PublishOut);
                        return (false, 0, false, false);
                    }
                    // No consumer has this token: unroutable (returned when mandatory).
                    Some(m) => {
                        msg = m;
                        reply_unroutable = true;
                    }
                }
            }
        }
        let mut targets = std::mem::take(&mut self.route_out);
        targets.clear();
        if !reply_unroutable {
            self.vhost
                .route(ex, &msg, &mut targets, &mut self.route_seen);
        }
        if !cc.is_empty() {
            for key in cc {
                let m = Message {
                    routing_key: key,
                    ..msg.clone()
                };
                self.vhost.route(ex, &m, &mut targets, &mut self.route_seen);
            }
            // Each queue gets the message once, whatever number of keys reached it.
            targets.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
            targets.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        // Sender-selected distribution: BCC routing keys are not shown to consumers. A queue
        // with a dead-letter exchange keeps them (marked), because a dead letter is routed with
        // its original keys, BCC included, as RabbitMQ does; delivery removes the header.
        let mut with_bcc = None;
        if bcc {
            if let Some(p) = sender_selected::without_bcc(&msg.properties) {
                with_bcc = Some(Message {
                    bcc: true,
                    ..msg.clone()
                });
                msg.properties = p;
            }
        }
        let returned = targets.is_empty() && mandatory;
        if !targets.is_empty() {
            ex.stats.inc(Stat::PublishOut);
        } else if let Some(Some(ch)) = self.channels.get(usize::from(chan)) {
            ch.info.stats.inc(if returned {
                Stat::ReturnUnroutable
            } else {
                Stat::DropUnroutable
            });
        }
        if returned {
            // As RabbitMQ: a returned message's ack directly follows its return, with every
            // earlier publish acked before it. Clients (lapin, the Java client) pair a return
            // with the next ack, so a coalesced ack must not cover it.
            self.flush_channel_confirms(chan);
            let w = &mut self.wbuf;
            hot::encode_return(w, chan, 312, b"NO_ROUTE", &msg.exchange, &msg.routing_key);
            hot::encode_content_header(w, chan, msg.body.len() as u64, &msg.properties);
            hot::encode_body(w, chan, &msg.body, self.frame_max);
        }
        let (mut waits, mut failed, mut rejected) = (0u32, false, false);
        let last = targets.len().saturating_sub(1);
        let mut msg = Some(msg);
        for (i, q) in targets.drain(..).enumerate() {
            // The last queue takes the message itself; the others share its bytes.
            let m = match &with_bcc {
                Some(full) if q.dead_letters() => Some(full.clone()),
                _ if i == last => msg.take(),
                _ => msg.clone(),
            };
            let Some(m) = m else { break };
            match q.enqueue(m) {
                Ok(Enqueued::Stored(Some(ticket))) => {
                    if let Some((epoch, seq)) = waiter {
                        waits += 1;
                        self.defer_sync(&q, chan, epoch, seq, ticket);
                    }
                }
                Ok(Enqueued::Stored(None)) => {}
                Ok(Enqueued::Rejected) => rejected = true,
                Err(e) => {
                    tracing::error!(queue = %q.name, "could not store a message: {e}");
                    failed = true;
                }
            }
            if q.flow.is_congested() && self.flow_wait.is_none() && !self.consumes() {
                self.flow_wait = Some(q);
            }
        }
        self.route_out = targets;
        (returned, waits, failed, rejected)
    }

    /// Ask for a sync of `q`'s log with a confirm waiter for publish `seq` — at the end of the
    /// batch, as one request for a run of publishes on one channel into one queue (the common
    /// case of a confirming publisher): one hand-off to the commit thread and one notice back
    /// per run instead of per message.
    fn defer_sync(&mut self, q: &Arc<Queue>, chan: u16, epoch: u64, seq: u64, ticket: SyncTicket) {
        if let Some((pq, pw)) = &mut self.pending_sync {
            if Arc::ptr_eq(pq, q)
                && pw.channel == chan
                && pw.epoch == epoch
                && pw.last + 1 == seq
                && pw.ticket.same_log(&ticket)
            {
                // The first ticket stays: the run is nacked whole if its first append is lost.
                pw.last = seq;
                if pw.last - pw.seq + 1 >= SYNC_RUN {
                    // Long enough: let the commit thread start on it while the batch goes on.
                    self.flush_sync();
                }
                return;
            }
        }
        self.flush_sync();
        self.pending_sync = Some((
            q.clone(),
            ConfirmWaiter {
                tx: self.events_tx.clone(),
                channel: chan,
                epoch,
                seq,
                last: seq,
                ticket,
            },
        ));
    }

    /// Hand the deferred sync request (if any) to the commit thread.
    pub(super) fn flush_sync(&mut self) {
        if let Some((q, w)) = self.pending_sync.take() {
            q.sync_then(w);
        }
    }

    /// Does this connection consume? Its acks arrive on the socket flow control would stop
    /// reading, so it is never throttled (that could deadlock it against its own queue).
    fn consumes(&self) -> bool {
        self.channels
            .iter()
            .flatten()
            .any(|c| !c.consumers.is_empty())
    }

    /// The exchange a publish names, with write permission on it checked (before the lookup,
    /// as RabbitMQ does), from the channel's one-entry cache when it matches: a run of
    /// publishes to one exchange costs one relaxed load of the access generation. Also: must
    /// the routing key pass a topic permission?
    fn resolve_exchange(
        &mut self,
        chan: u16,
        name: &Bytes,
    ) -> AmqpResult<(Arc<crate::broker::exchange::Exchange>, bool)> {
        let generation = self.authz.generation();
        let ch = self.ch(chan)?;
        if let Some((n, e, g, topic)) = &ch.last_exchange {
            if n == name && *g == generation && !e.is_deleted() {
                return Ok((e.clone(), *topic));
            }
        }
        let s = std::str::from_utf8(name).unwrap_or("");
        self.authz
            .check(Perm::Write, Kind::Exchange, s)
            .map_err(|e| e.on(60, 40))?;
        let Some(e) = self.vhost.exchange(s) else {
            return Err(AmqpError::not_found(format!(
                "no exchange '{s}' in vhost '{}'",
                self.vhost.name
            ))
            .on(60, 40));
        };
        let topic =
            e.kind() == crate::broker::exchange::ExchangeKind::Topic && self.authz.topic_checked(s);
        self.ch(chan)?.last_exchange = Some((name.clone(), e.clone(), generation, topic));
        Ok((e, topic))
    }

    /// Publish `seq` is in every target queue; it still waits for `waits` log syncs. Confirms go
    /// out in sequence order, coalesced into one `multiple` ack per channel per batch.
    fn confirm_publish(&mut self, chan: u16, seq: u64, waits: u32, failed: bool) -> AmqpResult<()> {
        let ch = self.ch(chan)?;
        if waits == 0 && !failed && ch.unconfirmed.is_empty() {
            ch.confirm_upto = seq;
            self.mark_confirm_dirty(chan);
            return Ok(());
        }
        ch.unconfirmed
            .push_back(PendingConfirm { seq, waits, failed });
        self.drain_confirms(chan);
        Ok(())
    }

    /// A log sync that publishes `seq..=last` waited for finished.
    pub(super) fn on_stored(&mut self, chan: u16, epoch: u64, seq: u64, last: u64, ok: bool) {
        let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
            return;
        };
        if ch.epoch != epoch || ch.closing || self.closing {
            return;
        }
        if ch.tx.is_some() {
            // A transactional channel has no confirms: the syncs were for commits.
            return self.tx_stored(chan, seq, last, ok);
        }
        // Every publish of the run waited for this queue, so each is still pending here.
        let start = ch.unconfirmed.partition_point(|p| p.seq < seq);
        for p in ch.unconfirmed.range_mut(start..) {
            if p.seq > last {
                break;
            }
            p.waits = p.waits.saturating_sub(1);
            p.failed |= !ok;
        }
        self.drain_confirms(chan);
    }

    /// Confirm every leading publish that waits for nothing more; a failed one is nacked after
    /// the acks before it are sent.
    fn drain_confirms(&mut self, chan: u16) {
        let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) else {
            return;
        };
        let mut dirty = false;
        while ch.unconfirmed.front().is_some_and(|p| p.waits == 0) {
            let Some(p) = ch.unconfirmed.pop_front() else {
                break;
            };
            if p.failed {
                if ch.confirm_upto > ch.confirmed {
                    let multiple = ch.confirm_upto - ch.confirmed > 1;
                    hot::encode_confirm_ack(&mut self.wbuf, chan, ch.confirm_upto, multiple);
                }
                hot::encode_confirm_nack(&mut self.wbuf, chan, p.seq, false);
                ch.info
                    .stats
                    .add(Stat::Confirm, p.seq.saturating_sub(ch.confirmed));
                ch.confirmed = p.seq;
            } else {
                dirty = true;
            }
            ch.confirm_upto = p.seq;
        }
        if dirty {
            self.mark_confirm_dirty(chan);
        }
    }

    fn mark_confirm_dirty(&mut self, chan: u16) {
        if !self.confirm_dirty.contains(&chan) {
            self.confirm_dirty.push(chan);
        }
    }

    /// Send one basic.ack (multiple when it covers more than one) per channel with confirms due.
    pub(super) fn flush_confirms(&mut self) {
        let dirty = std::mem::take(&mut self.confirm_dirty);
        for &chan in &dirty {
            self.flush_channel_confirms(chan);
        }
        self.confirm_dirty = dirty;
        self.confirm_dirty.clear();
    }

    /// Send the ack due on one channel now.
    fn flush_channel_confirms(&mut self, chan: u16) {
        if let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) {
            if ch.confirm_upto > ch.confirmed {
                let multiple = ch.confirm_upto - ch.confirmed > 1;
                hot::encode_confirm_ack(&mut self.wbuf, chan, ch.confirm_upto, multiple);
                ch.info
                    .stats
                    .add(Stat::Confirm, ch.confirm_upto - ch.confirmed);
                ch.confirmed = ch.confirm_upto;
            }
        }
    }
}
