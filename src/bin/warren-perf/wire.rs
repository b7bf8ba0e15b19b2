//! The client's half of the hot-path codec. warren's `protocol::hot` encodes what a broker sends
//! and decodes what a client sends; a client needs the opposite direction for basic.publish,
//! basic.ack (out) and basic.deliver (in), written here in a few lines each. Content headers,
//! bodies and confirm acks reuse warren's codec (same wire format in both directions).
//!
//! Every body starts with a 16-byte stamp: producer id (16 bits) and sequence number (48 bits)
//! in one big-endian u64, then the send time in ns since the process's start instant.

use bytes::{BufMut, BytesMut};
use warren::protocol::hot::{encode_body, encode_content_header};
use warren::protocol::{BASIC_ACK, BASIC_DELIVER, BASIC_PUBLISH, CLASS_BASIC, FRAME_END};
use warren::protocol::{FRAME_METHOD, FRAME_OVERHEAD};

/// Bytes of the stamp at the start of every body; the smallest `--size`.
pub const STAMP_LEN: usize = 16;
/// Sequence numbers use the low 48 bits of the first word.
const SEQ_MASK: u64 = (1 << 48) - 1;

/// Write the stamp into the first 16 bytes of `body` (which is at least that long).
#[inline]
pub fn stamp(body: &mut [u8], producer: u16, seq: u64, sent_ns: u64) {
    let id = (u64::from(producer) << 48) | (seq & SEQ_MASK);
    if let Some(b) = body.get_mut(..STAMP_LEN) {
        b[..8].copy_from_slice(&id.to_be_bytes());
        b[8..].copy_from_slice(&sent_ns.to_be_bytes());
    }
}

/// Read a stamp: (producer, seq, sent_ns), or None if the body is too short.
#[inline]
pub fn read_stamp(body: &[u8]) -> Option<(u16, u64, u64)> {
    let id = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
    let ts = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    Some(((id >> 48) as u16, id & SEQ_MASK, ts))
}

fn method_header(out: &mut BytesMut, channel: u16, method: u16, args: usize) {
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    out.put_u32((4 + args) as u32);
    out.put_u16(CLASS_BASIC);
    out.put_u16(method);
}

/// Encode `basic.publish` (ticket 0). Names must be ≤ 255 bytes (checked at start-up).
pub fn encode_publish(out: &mut BytesMut, channel: u16, exchange: &[u8], routing_key: &[u8]) {
    let (ex, rk) = (
        &exchange[..exchange.len().min(255)],
        &routing_key[..routing_key.len().min(255)],
    );
    method_header(
        out,
        channel,
        BASIC_PUBLISH,
        2 + 1 + ex.len() + 1 + rk.len() + 1,
    );
    out.put_u16(0);
    out.put_u8(ex.len() as u8);
    out.put_slice(ex);
    out.put_u8(rk.len() as u8);
    out.put_slice(rk);
    out.put_u8(0); // mandatory = immediate = false
    out.put_u8(FRAME_END);
}

/// Encode a client `basic.ack`.
#[inline]
pub fn encode_ack(out: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    method_header(out, channel, BASIC_ACK, 9);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(multiple));
    out.put_u8(FRAME_END);
}

/// What a consumer needs from `basic.deliver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliver {
    pub delivery_tag: u64,
    pub redelivered: bool,
}

/// Is this method payload a `basic.deliver`?
#[inline]
pub fn is_deliver(payload: &[u8]) -> bool {
    payload.get(..4) == Some(&[0, CLASS_BASIC as u8, 0, BASIC_DELIVER as u8])
}

/// Decode a `basic.deliver` payload (class and method ids included) without allocating:
/// consumer-tag shortstr, delivery-tag u64, redelivered bit, exchange and routing-key shortstrs.
pub fn decode_deliver(payload: &[u8]) -> Result<Deliver, &'static str> {
    if !is_deliver(payload) {
        return Err("not a basic.deliver");
    }
    let mut pos = 4;
    let tag_len = *payload.get(pos).ok_or("truncated basic.deliver")? as usize;
    pos += 1 + tag_len;
    let tag = payload
        .get(pos..pos + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or("truncated basic.deliver")?;
    pos += 8;
    let bits = *payload.get(pos).ok_or("truncated basic.deliver")?;
    pos += 1;
    for _ in 0..2 {
        let n = *payload.get(pos).ok_or("truncated basic.deliver")? as usize;
        pos += 1 + n;
    }
    if pos != payload.len() {
        return Err("malformed basic.deliver");
    }
    Ok(Deliver {
        delivery_tag: tag,
        redelivered: bits & 1 != 0,
    })
}

/// A precomputed publish: the method and content-header frames are the same for every message,
/// so encoding one is a copy of that prefix, a 16-byte stamp and the body frame(s).
pub struct PublishTemplate {
    channel: u16,
    prefix: Vec<u8>,
    body: Vec<u8>,
    frame_max: u32,
}

impl PublishTemplate {
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        frame_max: u32,
    ) -> Self {
        let mut b = BytesMut::new();
        encode_publish(&mut b, channel, exchange.as_bytes(), routing_key.as_bytes());
        // Property flags: delivery-mode (bit 12) = 2 when persistent, else no properties.
        let props: &[u8] = if persistent { &[0x10, 0, 2] } else { &[0, 0] };
        encode_content_header(&mut b, channel, size as u64, props);
        PublishTemplate {
            channel,
            prefix: b.to_vec(),
            body: vec![0; size.max(STAMP_LEN)],
            frame_max,
        }
    }

    /// Bytes one message takes on the wire (single body frame).
    pub fn wire_len(&self) -> usize {
        self.prefix.len() + self.body.len() + FRAME_OVERHEAD
    }

    /// Append one publish (method, header, body) to `out`.
    #[inline]
    pub fn encode(&mut self, out: &mut BytesMut, producer: u16, seq: u64, sent_ns: u64) {
        out.extend_from_slice(&self.prefix);
        stamp(&mut self.body, producer, seq, sent_ns);
        encode_body(out, self.channel, &self.body, self.frame_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::{parse_frame, AMQPFrame};
    use amq_protocol::protocol::basic::AMQPMethod;
    use amq_protocol::protocol::AMQPClass;
    use warren::protocol::hot::encode_deliver;

    fn frames(mut bytes: &[u8]) -> Vec<AMQPFrame> {
        let mut v = Vec::new();
        while !bytes.is_empty() {
            let (rest, f) = parse_frame(bytes).expect("amq-protocol parses it");
            v.push(f);
            bytes = rest;
        }
        v
    }

    #[test]
    fn publish_matches_amq_protocol() {
        let mut t = PublishTemplate::new(3, "perf.fanout", "rk", 40, true, 4096);
        let mut out = BytesMut::new();
        t.encode(&mut out, 7, 42, 123_456);
        assert_eq!(out.len(), t.wire_len());
        let f = frames(&out);
        let AMQPFrame::Method(3, AMQPClass::Basic(AMQPMethod::Publish(p))) = &f[0] else {
            panic!("{f:?}")
        };
        assert_eq!(
            (p.exchange.as_str(), p.routing_key.as_str()),
            ("perf.fanout", "rk")
        );
        assert!(!p.mandatory && !p.immediate);
        let AMQPFrame::Header(3, h) = &f[1] else {
            panic!()
        };
        assert_eq!((h.class_id, h.body_size), (60, 40));
        assert_eq!(h.properties.delivery_mode(), &Some(2));
        let AMQPFrame::Body(3, body) = &f[2] else {
            panic!()
        };
        assert_eq!(body.len(), 40);
        assert_eq!(read_stamp(body), Some((7, 42, 123_456)));
        // A body bigger than a frame is split.
        let mut t = PublishTemplate::new(1, "", "q", 10_000, false, 4096);
        let mut out = BytesMut::new();
        t.encode(&mut out, 0, 0, 0);
        assert_eq!(frames(&out).len(), 2 + 3);
    }

    #[test]
    fn ack_matches_amq_protocol() {
        let mut out = BytesMut::new();
        encode_ack(&mut out, 1, 99, true);
        let f = frames(&out);
        let AMQPFrame::Method(1, AMQPClass::Basic(AMQPMethod::Ack(a))) = &f[0] else {
            panic!("{f:?}")
        };
        assert_eq!((a.delivery_tag, a.multiple), (99, true));
    }

    #[test]
    fn deliver_round_trips_with_warren_encoder() {
        let mut out = BytesMut::new();
        encode_deliver(&mut out, 1, b"ctag", u64::MAX - 1, true, b"ex", b"key");
        let payload = &out[7..out.len() - 1];
        let d = decode_deliver(payload).unwrap();
        assert_eq!(
            d,
            Deliver {
                delivery_tag: u64::MAX - 1,
                redelivered: true
            }
        );
        for n in 0..payload.len() {
            assert!(decode_deliver(&payload[..n]).is_err(), "prefix {n}");
        }
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(decode_deliver(&longer).is_err());
    }

    #[test]
    fn stamp_round_trips() {
        let mut b = [0u8; 16];
        stamp(&mut b, u16::MAX, SEQ_MASK, u64::MAX);
        assert_eq!(read_stamp(&b), Some((u16::MAX, SEQ_MASK, u64::MAX)));
        assert_eq!(read_stamp(&b[..15]), None);
    }
}
