//! The frame splitter: cuts complete frames out of a read buffer without copying, checking the size
//! from the 7-byte header before buffering, and encodes rare methods through amq-protocol.

use super::{CodecError, FRAME_END, FRAME_OVERHEAD};
use amq_protocol::frame::{gen_frame, AMQPFrame};
use amq_protocol::protocol::AMQPClass;
use bytes::{Buf, Bytes, BytesMut};

/// One frame as it came off the wire: the payload shares the read buffer's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// What the splitter found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A whole frame, removed from the buffer.
    Frame(RawFrame),
    /// Not enough bytes yet.
    Incomplete,
    /// The declared payload exceeds `frame_max` (checked before buffering the payload).
    TooLarge { size: u32 },
    /// The frame-end octet was not 0xCE.
    BadFrameEnd,
}

/// Cut the next frame from `buf`. `frame_max` bounds the whole frame (header + payload + end), as
/// negotiated in tune; 0 means unlimited (only used before tune).
pub fn split_frame(buf: &mut BytesMut, frame_max: u32) -> Split {
    if buf.len() < 7 {
        return Split::Incomplete;
    }
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    // As RabbitMQ, tolerate a payload of up to frame_max itself: some clients count frame_max as
    // the payload limit and overshoot the whole-frame limit by the 8 bytes of framing.
    if frame_max != 0 && size > frame_max {
        return Split::TooLarge { size };
    }
    let total = size as usize + FRAME_OVERHEAD;
    if buf.len() < total {
        return Split::Incomplete;
    }
    if buf[total - 1] != FRAME_END {
        return Split::BadFrameEnd;
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let mut frame = buf.split_to(total);
    frame.advance(7);
    frame.truncate(size as usize);
    Split::Frame(RawFrame {
        kind,
        channel,
        payload: frame.freeze(),
    })
}

/// Encode any method through amq-protocol (used for everything but the hot frames).
pub fn encode_method(out: &mut BytesMut, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    // Generation into a Vec cannot run out of space; a failure would be an amq-protocol bug, and
    // dropping the frame is the only sane answer there.
    let res = gen_frame(&frame)(Vec::with_capacity(64).into()).map(|ctx| ctx.write);
    match res {
        Ok(v) => out.extend_from_slice(&v),
        Err(e) => tracing::error!("amq-protocol failed to encode a method frame: {e:?}"),
    }
}

/// Decode a non-hot method payload with amq-protocol.
pub fn decode_method(payload: &[u8]) -> Result<AMQPClass, CodecError> {
    super::properties::check_method_tables(payload)?;
    match amq_protocol::protocol::parse_class(payload) {
        Ok((_, class)) => Ok(class),
        Err(_) => Err(CodecError::Invalid("method arguments")),
    }
}

/// Heartbeat frame bytes.
pub const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, FRAME_END];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_checks_size_before_buffering() {
        let mut b = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0xCE, 1, 0, 1][..]);
        match split_frame(&mut b, 4096) {
            Split::Frame(f) => {
                assert_eq!(f.kind, 8);
                assert!(f.payload.is_empty())
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(split_frame(&mut b, 4096), Split::Incomplete);
        let mut big = BytesMut::from(&[1u8, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert_eq!(
            split_frame(&mut big, 131072),
            Split::TooLarge { size: u32::MAX }
        );
        let mut bad = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0xCD][..]);
        assert_eq!(split_frame(&mut bad, 4096), Split::BadFrameEnd);
    }

    /// A field table `{ "x": [[[...]]] }` nested `depth` arrays deep, length prefix included.
    fn nested_table(depth: usize) -> Vec<u8> {
        let mut v: Vec<u8> = vec![b'A', 0, 0, 0, 0];
        for _ in 0..depth {
            let mut outer = vec![b'A'];
            outer.extend_from_slice(&(v.len() as u32).to_be_bytes());
            outer.extend_from_slice(&v);
            v = outer;
        }
        let mut entry = vec![1u8, b'x'];
        entry.extend_from_slice(&v);
        let mut t = (entry.len() as u32).to_be_bytes().to_vec();
        t.extend_from_slice(&entry);
        t
    }

    /// Every 0-9-1 method that carries a field table (server methods too: a client may send
    /// anything), with its table nested deeper than the guard allows, is refused instead of
    /// overflowing the stack; at the limit it decodes.
    #[test]
    fn every_method_table_is_depth_checked() {
        use amq_protocol::protocol::{basic, connection, exchange, queue};
        use amq_protocol::types::{AMQPValue, FieldTable, LongString};
        let mut marker = FieldTable::default();
        marker.insert(
            "zz".into(),
            AMQPValue::LongString(LongString::from(&b"MARK"[..])),
        );
        let t = || marker.clone();
        let methods = [
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: t(),
                mechanisms: LongString::from(&b"PLAIN"[..]),
                locales: LongString::from(&b"en_US"[..]),
            })),
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: t(),
                mechanism: "PLAIN".into(),
                response: LongString::from(&b"x"[..]),
                locale: "en_US".into(),
            })),
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: "x".into(),
                kind: "topic".into(),
                passive: false,
                durable: false,
                auto_delete: false,
                internal: false,
                nowait: false,
                arguments: t(),
            })),
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind {
                destination: "a".into(),
                source: "b".into(),
                routing_key: "k".into(),
                nowait: false,
                arguments: t(),
            })),
            AMQPClass::Exchange(exchange::AMQPMethod::Unbind(exchange::Unbind {
                destination: "a".into(),
                source: "b".into(),
                routing_key: "k".into(),
                nowait: false,
                arguments: t(),
            })),
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "q".into(),
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                nowait: false,
                arguments: t(),
            })),
            AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: "q".into(),
                exchange: "x".into(),
                routing_key: "k".into(),
                nowait: false,
                arguments: t(),
            })),
            AMQPClass::Queue(queue::AMQPMethod::Unbind(queue::Unbind {
                queue: "q".into(),
                exchange: "x".into(),
                routing_key: "k".into(),
                arguments: t(),
            })),
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: "q".into(),
                consumer_tag: "c".into(),
                no_local: false,
                no_ack: false,
                exclusive: false,
                nowait: false,
                arguments: t(),
            })),
        ];
        let mut table = BytesMut::new();
        encode_method(
            &mut table,
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: t(),
                mechanism: "".into(),
                response: LongString::from(&b""[..]),
                locale: "".into(),
            })),
        );
        // start-ok's table comes first: its bytes, length prefix included.
        let marker_bytes = table[11..11 + 4 + 12].to_vec();
        for m in methods {
            let mut f = BytesMut::new();
            encode_method(&mut f, 1, m.clone());
            let payload = &f[7..f.len() - 1];
            let at = payload
                .windows(marker_bytes.len())
                .position(|w| w == marker_bytes)
                .expect("table in the method");
            let splice = |depth: usize| {
                let mut p = payload[..at].to_vec();
                p.extend_from_slice(&nested_table(depth));
                p.extend_from_slice(&payload[at + marker_bytes.len()..]);
                p
            };
            assert!(decode_method(&splice(20_000)).is_err(), "{m:?}");
            // The headers-style count: the table is level 1, so 62 arrays inside reach 63.
            assert!(decode_method(&splice(62)).is_ok(), "{m:?}");
        }
    }
}
