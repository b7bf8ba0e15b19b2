//! Frame and method dispatch: one arm per AMQP method. This is the only place where an
//! `AmqpError` becomes a channel.close or connection.close.

use super::channel::{Channel, Content};
use super::handshake::truncate;
use super::Conn;
use crate::broker::permissions::{Kind, Perm};
use crate::broker::queue::QueueOptions;
use crate::error::{AmqpError, AmqpResult, Scope};
use crate::protocol::frame::{decode_method, encode_method, split_frame, RawFrame, Split};
use crate::protocol::{hot, BASIC_ACK, BASIC_NACK, BASIC_PUBLISH, BASIC_REJECT, CLASS_BASIC};
use crate::protocol::{FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use amq_protocol::protocol::{
    access, basic, channel, confirm, connection, exchange, queue, tx, AMQPClass,
};
use amq_protocol::types::ShortString;
use bytes::BytesMut;

/// Method ids for error reports when amq-protocol could not even decode the method.
fn ids(payload: &[u8]) -> (u16, u16) {
    if payload.len() < 4 {
        return (0, 0);
    }
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        u16::from_be_bytes([payload[2], payload[3]]),
    )
}

impl Conn {
    /// Split and handle every complete frame in the read buffer.
    pub(super) fn process_frames(&mut self, rbuf: &mut BytesMut) {
        loop {
            if self.done || (self.closing && self.desynced) {
                rbuf.clear();
                return;
            }
            // The peer is not reading what we answer: leave the rest in the buffer until the
            // writer catches up (the run loop stops reading meanwhile).
            if self.wbuf.len() + self.out.queued() > super::writer::READ_PAUSE {
                return;
            }
            let f = match split_frame(rbuf, self.frame_max) {
                Split::Frame(f) => f,
                Split::Incomplete => return,
                Split::TooLarge { size } => {
                    self.desynced = true;
                    let e = AmqpError::frame_error(format!(
                        "frame size {} exceeds frame_max {}",
                        u64::from(size) + 8,
                        self.frame_max
                    ));
                    self.close_connection(e);
                    continue;
                }
                Split::BadFrameEnd => {
                    self.desynced = true;
                    self.close_connection(AmqpError::frame_error("invalid frame end octet"));
                    continue;
                }
            };
            let chan = f.channel;
            if let Err(e) = self.handle_frame(f) {
                self.fail(chan, e);
            }
        }
    }

    /// Turn an error into the close RabbitMQ would send.
    pub(super) fn fail(&mut self, chan: u16, e: AmqpError) {
        if e.scope == Scope::Channel && chan != 0 {
            tracing::debug!(peer = %self.peer, channel = chan, code = e.code, "channel error: {}", e.text);
            let close = channel::Close {
                reply_code: e.code,
                reply_text: ShortString::from(truncate(&e.text)),
                class_id: e.class_id,
                method_id: e.method_id,
            };
            self.send(chan, AMQPClass::Channel(channel::AMQPMethod::Close(close)));
            if let Some(ch) = self.channel_slot(chan).take() {
                self.release_channel(ch);
            }
            // Keep the number taken until the client's close-ok.
            *self.channel_slot(chan) = Some(Box::new(Channel {
                closing: true,
                ..Channel::new()
            }));
        } else {
            self.close_connection(e);
        }
    }

    /// Send connection.close and stop processing anything but close-ok.
    pub(super) fn close_connection(&mut self, e: AmqpError) {
        if self.closing {
            return;
        }
        if e.code == crate::error::code::CONNECTION_FORCED {
            tracing::info!(peer = %self.peer, "closing connection: {}", e.text);
        } else {
            tracing::warn!(peer = %self.peer, code = e.code, "connection error: {}", e.text);
        }
        self.closing = true;
        self.send(0, super::handshake::close_method(&e));
    }

    pub(super) fn send(&mut self, chan: u16, m: AMQPClass) {
        encode_method(&mut self.wbuf, chan, m);
    }

    pub(super) fn channel_slot(&mut self, chan: u16) -> &mut Option<Box<Channel>> {
        let i = usize::from(chan);
        if self.channels.len() <= i {
            self.channels.resize_with(i + 1, || None);
        }
        &mut self.channels[i]
    }

    /// The open channel `chan` (callers have checked it exists).
    pub(super) fn ch(&mut self, chan: u16) -> AmqpResult<&mut Channel> {
        match self.channels.get_mut(usize::from(chan)) {
            Some(Some(c)) => Ok(c),
            _ => Err(AmqpError::channel_error(format!(
                "channel {chan} is not open"
            ))),
        }
    }

    fn handle_frame(&mut self, f: RawFrame) -> AmqpResult<()> {
        match f.kind {
            FRAME_HEARTBEAT => {
                if f.channel != 0 {
                    // RabbitMQ: unexpected_frame (505).
                    return Err(AmqpError::unexpected_frame(
                        "heartbeat frame on a non-zero channel",
                    ));
                }
                return Ok(());
            }
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY => {}
            k => return Err(AmqpError::frame_error(format!("unknown frame type {k}"))),
        }
        if self.closing {
            // Only the close handshake matters now.
            if f.kind == FRAME_METHOD && f.channel == 0 {
                match decode_method(&f.payload) {
                    Ok(AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
                        self.done = true
                    }
                    Ok(AMQPClass::Connection(connection::AMQPMethod::Close(_))) => {
                        self.send(
                            0,
                            AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                connection::CloseOk {},
                            )),
                        );
                        self.done = true;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        if f.channel == 0 {
            if f.kind != FRAME_METHOD {
                return Err(AmqpError::unexpected_frame("content frame on channel 0"));
            }
            return self.connection_method(&f);
        }
        if f.channel > self.channel_max {
            // RabbitMQ: 530, "number of channels opened (N) has reached the negotiated
            // channel_max (N)". Numbers 1..=channel_max allow at most channel_max channels, so
            // a number above it is where that limit is hit.
            let (open, max) = (
                self.channels.iter().filter(|c| c.is_some()).count(),
                self.channel_max,
            );
            let text = if open >= usize::from(max) {
                format!("number of channels opened ({open}) has reached the negotiated channel_max ({max})")
            } else {
                format!(
                    "channel {} is above the negotiated channel_max ({max})",
                    f.channel
                )
            };
            return Err(AmqpError::not_allowed(text));
        }
        let chan = f.channel;
        let closing = match self.channels.get(usize::from(chan)) {
            Some(Some(c)) => c.closing,
            _ => {
                return match (f.kind, decode_method(&f.payload)) {
                    (FRAME_METHOD, Ok(AMQPClass::Channel(channel::AMQPMethod::Open(_)))) => {
                        let slot =
                            crate::broker::limits::open_channel(&self.slot.user, &self.user.name)
                                .map_err(|e| e.on(20, 10))?;
                        let epoch = self.broker.next_id();
                        let info = self.info.open_channel(chan);
                        *self.channel_slot(chan) = Some(Box::new(Channel {
                            epoch,
                            info,
                            user_slot: Some(slot),
                            ..Channel::new()
                        }));
                        self.send(
                            chan,
                            AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                        );
                        Ok(())
                    }
                    // RabbitMQ starts the channel and feeds it the frame: a content frame is
                    // then out of order (505), any other method is not channel.open (504).
                    (FRAME_HEADER | FRAME_BODY, _) => Err(AmqpError::unexpected_frame(
                        "expected method frame, got non method frame instead",
                    )),
                    _ => Err(AmqpError::channel_error(format!(
                        "expected 'channel.open' on channel {chan}"
                    ))),
                };
            }
        };
        if closing {
            // After our channel.close only close-ok (or a crossing close) counts.
            if f.kind == FRAME_METHOD {
                match decode_method(&f.payload) {
                    Ok(AMQPClass::Channel(channel::AMQPMethod::CloseOk(_))) => {
                        *self.channel_slot(chan) = None
                    }
                    Ok(AMQPClass::Channel(channel::AMQPMethod::Close(_))) => {
                        self.send(
                            chan,
                            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                        );
                        *self.channel_slot(chan) = None;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        match f.kind {
            FRAME_METHOD => {
                if !matches!(self.ch(chan)?.content, Content::Idle) {
                    return Err(AmqpError::unexpected_frame(
                        "expected content header for class 60, got non content header frame instead",
                    ));
                }
                self.channel_method(chan, &f)
            }
            FRAME_HEADER => self.on_header(chan, &f),
            _ => self.on_body(chan, &f),
        }
    }

    fn connection_method(&mut self, f: &RawFrame) -> AmqpResult<()> {
        let (c, m) = ids(&f.payload);
        let method = decode_method(&f.payload).map_err(|_| undecodable(&f.payload, c, m))?;
        match method {
            AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
                tracing::debug!(peer = %self.peer, code = close.reply_code, "client closed: {}", close.reply_text);
                self.send(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                self.done = true;
                Ok(())
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => {
                self.done = true;
                Ok(())
            }
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                self.send(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                        connection::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            _ => Err(AmqpError::command_invalid("unexpected method on channel 0").on(c, m)),
        }
    }

    fn channel_method(&mut self, chan: u16, f: &RawFrame) -> AmqpResult<()> {
        let (c, m) = ids(&f.payload);
        if c == CLASS_BASIC {
            match m {
                BASIC_PUBLISH => {
                    let p = hot::decode_publish(&f.payload).map_err(|e| {
                        AmqpError::frame_error(format!("cannot decode basic.publish: {e}")).on(c, m)
                    })?;
                    return self.on_publish(chan, p).map_err(|e| e.on(c, m));
                }
                BASIC_ACK | BASIC_NACK | BASIC_REJECT => {
                    let a = hot::decode_ack(&f.payload).map_err(|e| {
                        AmqpError::frame_error(format!("cannot decode basic ack: {e}")).on(c, m)
                    })?;
                    return self.on_ack(chan, m, a).map_err(|e| e.on(c, m));
                }
                10 if f.payload.len() >= 8 => {
                    let size = u32::from_be_bytes([
                        f.payload[4],
                        f.payload[5],
                        f.payload[6],
                        f.payload[7],
                    ]);
                    if size != 0 {
                        return Err(AmqpError::not_implemented(format!(
                            "prefetch_size!=0 ({size})"
                        ))
                        .on(c, m));
                    }
                }
                _ => {}
            }
        }
        let method = decode_method(&f.payload).map_err(|_| undecodable(&f.payload, c, m))?;
        self.method(chan, method).map_err(|e| e.on(c, m))
    }

    fn method(&mut self, chan: u16, method: AMQPClass) -> AmqpResult<()> {
        use AMQPClass as C;
        match method {
            C::Channel(channel::AMQPMethod::Open(_)) => {
                Err(AmqpError::channel_error("second 'channel.open' seen"))
            }
            C::Channel(channel::AMQPMethod::Close(_)) => {
                if let Some(ch) = self.channel_slot(chan).take() {
                    self.release_channel(ch);
                }
                self.send(
                    chan,
                    C::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                Ok(())
            }
            C::Channel(channel::AMQPMethod::CloseOk(_))
            | C::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            C::Channel(channel::AMQPMethod::Flow(fl)) => {
                // As RabbitMQ: a client may not pause the server's deliveries this way (it uses
                // basic.qos), so active=false is refused with 540.
                if !fl.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.send(
                    chan,
                    C::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: true,
                    })),
                );
                Ok(())
            }
            C::Access(access::AMQPMethod::Request(_)) => {
                self.send(
                    chan,
                    C::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            C::Exchange(m) => self.exchange_method(chan, m),
            C::Queue(m) => self.queue_method(chan, m),
            C::Basic(m) => self.basic_method(chan, m),
            C::Confirm(confirm::AMQPMethod::Select(s)) => {
                let ch = self.ch(chan)?;
                if ch.tx.is_some() {
                    return Err(AmqpError::precondition_failed(
                        "cannot switch from tx to confirm mode",
                    ));
                }
                ch.confirm = true;
                ch.info
                    .confirm
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                if !s.nowait {
                    self.send(
                        chan,
                        C::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            C::Tx(tx::AMQPMethod::Select(_)) => self.on_tx_select(chan),
            C::Tx(tx::AMQPMethod::Commit(_)) => self.on_tx_commit(chan),
            C::Tx(tx::AMQPMethod::Rollback(_)) => self.on_tx_rollback(chan),
            _ => Err(AmqpError::command_invalid("method not allowed here")),
        }
    }

    fn exchange_method(&mut self, chan: u16, m: exchange::AMQPMethod) -> AmqpResult<()> {
        use exchange::AMQPMethod as E;
        let v = self.vhost.clone();
        let (nowait, reply) = match m {
            E::Declare(d) => {
                let (durable, auto_delete, internal, arguments) =
                    (d.durable, d.auto_delete, d.internal, d.arguments);
                v.declare_exchange_as(
                    d.exchange.as_str(),
                    d.kind.as_str(),
                    d.passive,
                    |kind| crate::broker::exchange::ExchangeOptions {
                        kind,
                        durable,
                        auto_delete,
                        internal,
                        arguments,
                    },
                    Some(&mut self.authz),
                )?;
                (d.nowait, E::DeclareOk(exchange::DeclareOk {}))
            }
            E::Delete(d) => {
                let name = d.exchange.as_str();
                // The default and amq.* exchanges are refused by the vhost, as RabbitMQ refuses
                // them before it looks at permissions.
                if !name.is_empty() && !name.starts_with("amq.") {
                    self.authz.check(Perm::Configure, Kind::Exchange, name)?;
                }
                v.delete_exchange(name, d.if_unused)?;
                (d.nowait, E::DeleteOk(exchange::DeleteOk {}))
            }
            E::Bind(b) => {
                self.check_binding(
                    Kind::Exchange,
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                )?;
                v.bind_exchange(
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                (b.nowait, E::BindOk(exchange::BindOk {}))
            }
            E::Unbind(b) => {
                self.check_binding(
                    Kind::Exchange,
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                )?;
                v.unbind_exchange(
                    b.destination.as_str(),
                    b.source.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                )?;
                (b.nowait, E::UnbindOk(exchange::UnbindOk {}))
            }
            _ => return Err(AmqpError::command_invalid("method not allowed here")),
        };
        if !nowait {
            self.send(chan, AMQPClass::Exchange(reply));
        }
        Ok(())
    }

    fn queue_method(&mut self, chan: u16, m: queue::AMQPMethod) -> AmqpResult<()> {
        use queue::AMQPMethod as Q;
        let v = self.vhost.clone();
        let conn = self.id;
        let (nowait, reply) = match m {
            Q::Declare(d) => {
                if let Some(r) = self.declare_reply_to(d.queue.as_str()) {
                    // amq.rabbitmq.reply-to(.*): a pseudo-queue, never created.
                    return self.reply_declare_ok(chan, d.nowait, r?);
                }
                let opts = QueueOptions {
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: d.arguments,
                };
                let r = v.declare_queue_as(
                    d.queue.as_str(),
                    d.passive,
                    opts,
                    conn,
                    Some(&mut self.authz),
                )?;
                let ok = queue::DeclareOk {
                    queue: ShortString::from(r.name.to_string()),
                    message_count: r.messages,
                    consumer_count: r.consumers,
                };
                (d.nowait, Q::DeclareOk(ok))
            }
            Q::Bind(b) => {
                self.check_binding(
                    Kind::Queue,
                    b.queue.as_str(),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                )?;
                v.bind_queue(
                    b.queue.as_str(),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn,
                )?;
                (b.nowait, Q::BindOk(queue::BindOk {}))
            }
            Q::Unbind(b) => {
                self.check_binding(
                    Kind::Queue,
                    b.queue.as_str(),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                )?;
                v.unbind_queue(
                    b.queue.as_str(),
                    b.exchange.as_str(),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn,
                )?;
                (false, Q::UnbindOk(queue::UnbindOk {}))
            }
            Q::Purge(p) => {
                self.authz
                    .check(Perm::Read, Kind::Queue, p.queue.as_str())?;
                let n = v.purge_queue(p.queue.as_str(), conn)?;
                (p.nowait, Q::PurgeOk(queue::PurgeOk { message_count: n }))
            }
            Q::Delete(d) => {
                self.authz
                    .check(Perm::Configure, Kind::Queue, d.queue.as_str())?;
                let n = v.delete_queue(d.queue.as_str(), d.if_unused, d.if_empty, conn)?;
                (d.nowait, Q::DeleteOk(queue::DeleteOk { message_count: n }))
            }
            _ => return Err(AmqpError::command_invalid("method not allowed here")),
        };
        if !nowait {
            self.send(chan, AMQPClass::Queue(reply));
        }
        Ok(())
    }

    /// queue.bind/unbind and exchange.bind/unbind: write on the destination, read on the
    /// source (RabbitMQ's order; a default exchange on either end is refused by the vhost
    /// before the source's permission is looked at).
    /// Then, for a topic source the user has a topic permission on, read on the binding key.
    fn check_binding(
        &mut self,
        dest_kind: Kind,
        dest: &str,
        source: &str,
        key: &str,
    ) -> AmqpResult<()> {
        self.authz.check(Perm::Write, dest_kind, dest)?;
        let default_end = source.is_empty() || (dest_kind == Kind::Exchange && dest.is_empty());
        if !default_end {
            self.authz.check(Perm::Read, Kind::Exchange, source)?;
            if self.authz.topic_checked(source)
                && self
                    .vhost
                    .exchange(source)
                    .is_some_and(|e| e.kind() == crate::broker::exchange::ExchangeKind::Topic)
            {
                self.authz.check_topic(Perm::Read, source, key)?;
            }
        }
        Ok(())
    }

    fn reply_declare_ok(
        &mut self,
        chan: u16,
        nowait: bool,
        ok: queue::DeclareOk,
    ) -> AmqpResult<()> {
        if !nowait {
            self.send(chan, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)));
        }
        Ok(())
    }

    fn basic_method(&mut self, chan: u16, m: basic::AMQPMethod) -> AmqpResult<()> {
        use basic::AMQPMethod as B;
        match m {
            B::Qos(q) => {
                // prefetch_size was checked on the raw frame (amq-protocol drops it). The limit
                // is per consumer; with `global` it also applies to the channel's existing
                // consumers at once (Celery raises a global prefetch for ETA tasks and expects
                // its running consumer to see it).
                let ch = self.ch(chan)?;
                ch.prefetch = q.prefetch_count;
                if q.global {
                    ch.global_prefetch = q.prefetch_count;
                } else {
                    ch.consumer_prefetch = q.prefetch_count;
                }
                ch.info
                    .prefetch
                    .store(q.prefetch_count, std::sync::atomic::Ordering::Relaxed);
                if q.global {
                    for (id, c) in &ch.consumers {
                        c.queue.set_prefetch(*id, q.prefetch_count);
                    }
                }
                self.send(chan, AMQPClass::Basic(B::QosOk(basic::QosOk {})));
                Ok(())
            }
            B::Consume(c) => self.on_consume(chan, c),
            B::Cancel(c) => self.on_cancel(chan, c),
            B::Get(g) => self.on_get(chan, g),
            B::Recover(r) => self.on_recover(chan, r.requeue, true),
            B::RecoverAsync(r) => self.on_recover(chan, r.requeue, false),
            _ => Err(AmqpError::command_invalid("method not allowed here")),
        }
    }
}

/// The error for a method frame amq-protocol could not decode. As RabbitMQ: a payload too short
/// for the ids is an unknown frame and undecodable arguments are `rabbit_misc:frame_error`, both
/// 501; an id pair that is no AMQP 0-9-1 method is 503 (RabbitMQ drops the socket there).
fn undecodable(payload: &[u8], c: u16, m: u16) -> AmqpError {
    if payload.len() < 4 {
        AmqpError::frame_error("method frame too short for class and method ids")
    } else if !known_method(c, m) {
        AmqpError::command_invalid(format!("unknown method {c}/{m}")).on(c, m)
    } else {
        AmqpError::frame_error(format!("cannot decode arguments of method {c}/{m}")).on(c, m)
    }
}

/// Is (class, method) a method of AMQP 0-9-1 at all? Distinguishes an undecodable known method
/// (501) from an unknown one (503).
fn known_method(class: u16, method: u16) -> bool {
    let max = match class {
        10 => 61,
        20 => 41,
        30 => 11,
        40 => 51,
        50 => 51,
        60 => 120,
        85 => 11,
        90 => 31,
        _ => return false,
    };
    method <= max && method % 10 <= 1
        || (class == 60 && [50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120].contains(&method))
}
