//! Differential: warren's hand-written hot-path codec (`protocol::hot`) against amq-protocol, the
//! reference, on the same bytes. Decoders: whatever warren accepts amq-protocol accepts with the
//! same values, and where amq-protocol accepts warren does too (except the property-flag bits 0/1
//! and nesting past 64 levels, which warren refuses on purpose: see protocol/properties.rs).
//! Encoders: what warren writes amq-protocol reads back as the values given. Nothing panics.
#![no_main]

use amq_protocol::frame::{parse_frame, AMQPFrame};
use amq_protocol::protocol::{basic, AMQPClass};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren::protocol::hot::{self, AckArgs};
use warren::protocol::{properties, CodecError};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => publish(rest),
        1 => ack(rest),
        2 => content_header(rest),
        _ => encoders(rest),
    }
});

/// amq-protocol's reading of a method payload (all bytes consumed), for basic methods only: the
/// caller makes sure no field table is involved (the reference parser recurses without bound).
fn oracle_basic(payload: &[u8]) -> Option<basic::AMQPMethod> {
    match amq_protocol::protocol::parse_class(payload) {
        Ok(([], AMQPClass::Basic(m))) => Some(m),
        _ => None,
    }
}

fn ids(p: &[u8]) -> Option<(u16, u16)> {
    Some((
        u16::from_be_bytes([*p.first()?, *p.get(1)?]),
        u16::from_be_bytes([*p.get(2)?, *p.get(3)?]),
    ))
}

fn publish(rest: &[u8]) {
    let payload = Bytes::copy_from_slice(rest);
    let ours = hot::decode_publish(&payload);
    if ids(rest) != Some((60, 40)) {
        assert!(
            ours.is_err(),
            "decode_publish took another method: {ours:?}"
        );
        return;
    }
    match (ours, oracle_basic(rest)) {
        (Ok(p), Some(basic::AMQPMethod::Publish(o))) => {
            assert_eq!(&p.exchange[..], o.exchange.as_str().as_bytes());
            assert_eq!(&p.routing_key[..], o.routing_key.as_str().as_bytes());
            assert_eq!(p.mandatory, o.mandatory);
            assert_eq!(p.immediate, o.immediate);
        }
        (Err(_), None) => {}
        (ours, theirs) => panic!("publish disagrees: warren {ours:?}, amq-protocol {theirs:?}"),
    }
}

fn ack(rest: &[u8]) {
    let ours = hot::decode_ack(rest);
    if !matches!(ids(rest), Some((60, 80 | 90 | 120))) {
        assert!(ours.is_err(), "decode_ack took another method: {ours:?}");
        return;
    }
    let theirs = oracle_basic(rest).map(|m| match m {
        basic::AMQPMethod::Ack(a) => AckArgs {
            delivery_tag: a.delivery_tag,
            multiple: a.multiple,
            requeue: false,
        },
        basic::AMQPMethod::Reject(r) => AckArgs {
            delivery_tag: r.delivery_tag,
            multiple: false,
            requeue: r.requeue,
        },
        basic::AMQPMethod::Nack(n) => AckArgs {
            delivery_tag: n.delivery_tag,
            multiple: n.multiple,
            requeue: n.requeue,
        },
        other => panic!("amq-protocol read {other:?} for an ack id"),
    });
    assert_eq!(ours.ok(), theirs, "ack disagrees on {rest:?}");
}

/// Warren refuses these on purpose where amq-protocol accepts (documented in properties.rs).
fn stricter_on_purpose(props: &[u8], e: &CodecError) -> bool {
    let flags = u16::from_be_bytes([
        props.first().copied().unwrap_or(0),
        props.get(1).copied().unwrap_or(0),
    ]);
    flags & 0b11 != 0 || *e == CodecError::Invalid("field tables nested too deep")
}

fn content_header(rest: &[u8]) {
    let payload = Bytes::copy_from_slice(rest);
    let ours = hot::decode_content_header(&payload);
    if let Err(CodecError::Invalid("field tables nested too deep")) = ours {
        return; // the reference would recurse as deep as the input goes
    }
    let framed = warren_fuzz::frame(2, 1, rest);
    let theirs = match parse_frame(&framed[..]) {
        Ok(([], AMQPFrame::Header(_, h))) => Some(h),
        _ => None,
    };
    match (ours, theirs) {
        (Ok(h), Some(o)) => {
            assert_eq!(h.class_id, o.class_id);
            assert_eq!(h.body_size, o.body_size);
            let p = &h.properties[..];
            let op = &o.properties;
            assert_eq!(properties::delivery_mode(p), *op.delivery_mode());
            assert_eq!(properties::priority(p), *op.priority());
            assert_eq!(
                properties::expiration(p),
                op.expiration().as_ref().map(|s| s.as_str().as_bytes())
            );
            assert_eq!(
                properties::user_id(p),
                op.user_id().as_ref().map(|s| s.as_str().as_bytes())
            );
            let headers =
                properties::headers(p).expect("validated properties have readable headers");
            // Compared as text: a NaN double is not equal to itself.
            assert_eq!(format!("{headers:?}"), format!("{:?}", op.headers()));
        }
        (Err(_), None) => {}
        (Err(e), Some(_)) if rest.len() >= 12 && stricter_on_purpose(&rest[12..], &e) => {}
        (ours, theirs) => {
            panic!("content header disagrees: warren {ours:?}, amq-protocol {theirs:?}")
        }
    }
}

/// Split `data` into a few strings and numbers for the encoders.
fn fields(data: &[u8]) -> (Vec<String>, u64, u8) {
    let mut parts = data.splitn(4, |&b| b == 0xFF);
    let mut strs = Vec::new();
    for _ in 0..3 {
        strs.push(String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned());
    }
    let tail = parts.next().unwrap_or_default();
    let mut n = [0u8; 8];
    for (d, s) in n.iter_mut().zip(tail) {
        *d = *s;
    }
    (
        strs,
        u64::from_be_bytes(n),
        tail.get(8).copied().unwrap_or(0),
    )
}

/// What the encoder writes for a name: cut to 255 bytes at a character boundary.
fn cut(s: &str) -> &str {
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

fn encoders(data: &[u8]) {
    let (s, number, bits) = fields(data);
    let channel = u16::from(bits) * 7;
    let mut out = BytesMut::new();
    hot::encode_deliver(
        &mut out,
        channel,
        s[0].as_bytes(),
        number,
        bits & 1 != 0,
        s[1].as_bytes(),
        s[2].as_bytes(),
    );
    match parse_frame(&out[..]) {
        Ok(([], AMQPFrame::Method(c, AMQPClass::Basic(basic::AMQPMethod::Deliver(d))))) => {
            assert_eq!(c, channel);
            assert_eq!(d.consumer_tag.as_str(), cut(&s[0]));
            assert_eq!(d.delivery_tag, number);
            assert_eq!(d.redelivered, bits & 1 != 0);
            assert_eq!(d.exchange.as_str(), cut(&s[1]));
            assert_eq!(d.routing_key.as_str(), cut(&s[2]));
        }
        other => panic!("amq-protocol cannot read our deliver: {other:?}"),
    }
    out.clear();
    let count = number as u32;
    hot::encode_get_ok(
        &mut out,
        channel,
        number,
        bits & 2 != 0,
        s[1].as_bytes(),
        s[2].as_bytes(),
        count,
    );
    match parse_frame(&out[..]) {
        Ok(([], AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::GetOk(g))))) => {
            assert_eq!(g.delivery_tag, number);
            assert_eq!(g.redelivered, bits & 2 != 0);
            assert_eq!(g.exchange.as_str(), cut(&s[1]));
            assert_eq!(g.routing_key.as_str(), cut(&s[2]));
            assert_eq!(g.message_count, count);
        }
        other => panic!("amq-protocol cannot read our get-ok: {other:?}"),
    }
    out.clear();
    hot::encode_return(
        &mut out,
        channel,
        312,
        s[0].as_bytes(),
        s[1].as_bytes(),
        s[2].as_bytes(),
    );
    match parse_frame(&out[..]) {
        Ok(([], AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Return(r))))) => {
            assert_eq!(r.reply_code, 312);
            assert_eq!(r.reply_text.as_str(), cut(&s[0]));
            assert_eq!(r.exchange.as_str(), cut(&s[1]));
            assert_eq!(r.routing_key.as_str(), cut(&s[2]));
        }
        other => panic!("amq-protocol cannot read our return: {other:?}"),
    }
    // A property list warren accepted is re-sent verbatim: the reference must read it back.
    if properties::validate(data).is_ok() {
        out.clear();
        hot::encode_content_header(&mut out, channel, number, data);
        match parse_frame(&out[..]) {
            Ok(([], AMQPFrame::Header(c, h))) => {
                assert_eq!(c, channel);
                assert_eq!(h.body_size, number);
            }
            other => panic!("amq-protocol cannot read our content header: {other:?}"),
        }
    }
    // Bodies: cut into frames no larger than frame_max, reassembling to the body.
    let frame_max = 9 + u32::from(bits);
    out.clear();
    hot::encode_body(&mut out, channel, data, frame_max);
    let mut body = Vec::new();
    let mut wire = &out[..];
    while !wire.is_empty() {
        match parse_frame(wire) {
            Ok((rest, AMQPFrame::Body(c, b))) => {
                assert_eq!(c, channel);
                assert!(b.len() + 8 <= frame_max as usize && !b.is_empty());
                body.extend_from_slice(&b);
                wire = rest;
            }
            other => panic!("amq-protocol cannot read our body frame: {other:?}"),
        }
    }
    assert_eq!(body, data);
}
