//! Receiving published messages: basic.publish, content header, body frames, then routing to
//! queues, mandatory returns and publisher confirms.

use super::channel::Content;
use super::Conn;
use crate::broker::message::Message;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::frame::RawFrame;
use crate::protocol::hot::{self, ContentHeader, Publish};
use crate::protocol::CLASS_BASIC;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

impl Conn {
    pub(super) fn on_publish(&mut self, chan: u16, p: Publish) -> AmqpResult<()> {
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
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
                // Second frame: switch from zero-copy to one buffer of the final size.
                let cap = usize::try_from(header.body_size).unwrap_or(usize::MAX);
                rest.reserve(cap);
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
        let ex = self.resolve_exchange(chan, &p.exchange)?;
        if ex.options.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal {}",
                ex.describe()
            ))
            .on(60, 40));
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
        let msg = Message {
            exchange: p.exchange,
            routing_key: p.routing_key,
            properties: header.properties,
            body,
        };
        ex.published_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut targets = std::mem::take(&mut self.route_out);
        targets.clear();
        self.vhost
            .route(&ex, &msg, &mut targets, &mut self.route_seen);
        if targets.is_empty() {
            if p.mandatory {
                hot::encode_return(
                    &mut self.wbuf,
                    chan,
                    312,
                    b"NO_ROUTE",
                    &msg.exchange,
                    &msg.routing_key,
                );
                hot::encode_content_header(
                    &mut self.wbuf,
                    chan,
                    msg.body.len() as u64,
                    &msg.properties,
                );
                hot::encode_body(&mut self.wbuf, chan, &msg.body, self.frame_max);
            }
        } else {
            let last = targets.len() - 1;
            for (i, q) in targets.drain(..).enumerate() {
                // The last queue takes the message itself; the others share its bytes.
                if i == last {
                    q.publish(msg);
                    break;
                }
                q.publish(msg.clone());
            }
        }
        self.route_out = targets;
        self.confirm_one(chan)
    }

    /// The exchange a publish names, from the channel's one-entry cache when it matches.
    fn resolve_exchange(
        &mut self,
        chan: u16,
        name: &Bytes,
    ) -> AmqpResult<Arc<crate::broker::exchange::Exchange>> {
        let ch = self.ch(chan)?;
        if let Some((n, e)) = &ch.last_exchange {
            if n == name && !e.is_deleted() {
                return Ok(e.clone());
            }
        }
        let s = std::str::from_utf8(name).unwrap_or("");
        let Some(e) = self.vhost.exchange(s) else {
            return Err(AmqpError::not_found(format!(
                "no exchange '{s}' in vhost '{}'",
                self.vhost.name
            ))
            .on(60, 40));
        };
        self.ch(chan)?.last_exchange = Some((name.clone(), e.clone()));
        Ok(e)
    }

    /// Mark the channel's current publish as confirmed (sent at the end of the batch, coalesced).
    fn confirm_one(&mut self, chan: u16) -> AmqpResult<()> {
        let ch = self.ch(chan)?;
        if ch.confirm {
            let was_clean = ch.confirm_upto == ch.confirmed;
            ch.confirm_upto = ch.publish_seq;
            if was_clean {
                self.confirm_dirty.push(chan);
            }
        }
        Ok(())
    }

    /// Send one basic.ack (multiple when it covers more than one) per channel with confirms due.
    pub(super) fn flush_confirms(&mut self) {
        let dirty = std::mem::take(&mut self.confirm_dirty);
        for &chan in &dirty {
            if let Some(Some(ch)) = self.channels.get_mut(usize::from(chan)) {
                if ch.confirm_upto > ch.confirmed {
                    let multiple = ch.confirm_upto - ch.confirmed > 1;
                    hot::encode_confirm_ack(&mut self.wbuf, chan, ch.confirm_upto, multiple);
                    ch.confirmed = ch.confirm_upto;
                }
            }
        }
        self.confirm_dirty = dirty;
        self.confirm_dirty.clear();
    }
}
