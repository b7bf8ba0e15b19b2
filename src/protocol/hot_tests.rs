//! Tests for the hot-path codec: round trips against amq-protocol as the oracle, garbage input.
use super::*;
use crate::protocol::properties::tests::{arb_mutations, arb_properties, arb_shortstr, mutate};
use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::basic::{self, AMQPMethod};
use amq_protocol::protocol::{AMQPClass, BasicProperties};
use amq_protocol::types::ShortString;
use proptest::collection::vec;
use proptest::prelude::*;

/// amq-protocol's bytes for a whole frame.
fn oracle_encode(frame: &AMQPFrame) -> Vec<u8> {
    let res = gen_frame(frame)(Vec::new().into());
    res.expect("amq-protocol encodes the frame").into_inner().0
}

/// amq-protocol's reading of exactly one frame.
fn oracle_parse(bytes: &[u8]) -> AMQPFrame {
    let (rest, frame) = parse_frame(bytes).expect("amq-protocol parses our frame");
    assert!(rest.is_empty(), "{} bytes after the frame", rest.len());
    frame
}

/// amq-protocol's reading of a method payload, all of it consumed (as `parse_frame` does).
fn oracle_method(payload: &[u8]) -> Option<AMQPMethod> {
    match amq_protocol::protocol::parse_class(payload) {
        Ok(([], AMQPClass::Basic(m))) => Some(m),
        _ => None,
    }
}

/// Split one encoded frame into (type, channel, payload), checking size and frame-end.
fn unframe(bytes: &[u8]) -> (u8, u16, Bytes) {
    assert!(bytes.len() >= FRAME_OVERHEAD);
    let size = u32::from_be_bytes(bytes[3..7].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), size + FRAME_OVERHEAD);
    assert_eq!(bytes[bytes.len() - 1], FRAME_END);
    let channel = u16::from_be_bytes([bytes[1], bytes[2]]);
    (
        bytes[0],
        channel,
        Bytes::copy_from_slice(&bytes[7..7 + size]),
    )
}

fn method_frame(channel: u16, m: AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(channel, AMQPClass::Basic(m))
}

fn ss(s: &str) -> ShortString {
    ShortString::from(s)
}

fn arb_publish() -> impl Strategy<Value = basic::Publish> {
    (arb_shortstr(), arb_shortstr(), any::<bool>(), any::<bool>()).prop_map(
        |(exchange, routing_key, mandatory, immediate)| basic::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory,
            immediate,
        },
    )
}

fn arb_ack_method() -> impl Strategy<Value = AMQPMethod> {
    prop_oneof![
        (any::<u64>(), any::<bool>()).prop_map(|(delivery_tag, multiple)| AMQPMethod::Ack(
            basic::Ack {
                delivery_tag,
                multiple
            }
        )),
        (any::<u64>(), any::<bool>()).prop_map(|(delivery_tag, requeue)| AMQPMethod::Reject(
            basic::Reject {
                delivery_tag,
                requeue
            }
        )),
        (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
            |(delivery_tag, multiple, requeue)| {
                AMQPMethod::Nack(basic::Nack {
                    delivery_tag,
                    multiple,
                    requeue,
                })
            }
        ),
    ]
}

fn expected_ack(m: &AMQPMethod) -> Option<AckArgs> {
    match m {
        AMQPMethod::Ack(a) => Some(AckArgs {
            delivery_tag: a.delivery_tag,
            multiple: a.multiple,
            requeue: false,
        }),
        AMQPMethod::Reject(r) => Some(AckArgs {
            delivery_tag: r.delivery_tag,
            multiple: false,
            requeue: r.requeue,
        }),
        AMQPMethod::Nack(n) => Some(AckArgs {
            delivery_tag: n.delivery_tag,
            multiple: n.multiple,
            requeue: n.requeue,
        }),
        _ => None,
    }
}

fn same_publish(ours: &Publish, theirs: &basic::Publish) -> bool {
    ours.exchange == theirs.exchange.as_str().as_bytes()
        && ours.routing_key == theirs.routing_key.as_str().as_bytes()
        && ours.mandatory == theirs.mandatory
        && ours.immediate == theirs.immediate
}

proptest! {
    // ---- client → broker: amq-protocol encodes, we decode ----

    #[test]
    fn publish_from_oracle(p in arb_publish(), channel in any::<u16>()) {
        let bytes = oracle_encode(&method_frame(channel, AMQPMethod::Publish(p.clone())));
        let (kind, ch, payload) = unframe(&bytes);
        prop_assert_eq!((kind, ch), (FRAME_METHOD, channel));
        let ours = decode_publish(&payload).unwrap();
        prop_assert!(same_publish(&ours, &p), "{:?} vs {:?}", ours, p);
        // Zero copy: the names point into the payload.
        let range = payload.as_ptr_range();
        prop_assert!(ours.exchange.is_empty() || range.contains(&ours.exchange.as_ptr()));
        prop_assert!(ours.routing_key.is_empty() || range.contains(&ours.routing_key.as_ptr()));
    }

    #[test]
    fn publish_agrees_with_oracle_on_mutations(p in arb_publish(), muts in arb_mutations()) {
        let bytes = oracle_encode(&method_frame(1, AMQPMethod::Publish(p)));
        let mut payload = unframe(&bytes).2.to_vec();
        mutate(&mut payload, &muts);
        let ours = decode_publish(&Bytes::from(payload.clone()));
        match oracle_method(&payload) {
            Some(AMQPMethod::Publish(theirs)) => {
                let ours = ours.unwrap();
                prop_assert!(same_publish(&ours, &theirs), "{:?} vs {:?}", ours, theirs);
            }
            _ => prop_assert!(ours.is_err(), "{:?} accepted {:?}", ours, payload),
        }
    }

    #[test]
    fn acks_from_oracle(m in arb_ack_method(), channel in any::<u16>()) {
        let expected = expected_ack(&m).unwrap();
        let bytes = oracle_encode(&method_frame(channel, m));
        let (_, _, payload) = unframe(&bytes);
        prop_assert_eq!(decode_ack(&payload), Ok(expected));
    }

    #[test]
    fn acks_agree_with_oracle_on_mutations(m in arb_ack_method(), muts in arb_mutations()) {
        let bytes = oracle_encode(&method_frame(1, m));
        let mut payload = unframe(&bytes).2.to_vec();
        mutate(&mut payload, &muts);
        let ours = decode_ack(&payload);
        match oracle_method(&payload).as_ref().and_then(expected_ack) {
            Some(theirs) => prop_assert_eq!(ours, Ok(theirs)),
            None => prop_assert!(ours.is_err(), "{:?} accepted {:?}", ours, payload),
        }
    }

    #[test]
    fn content_header_from_oracle(
        properties in arb_properties(),
        body_size in any::<u64>(),
        channel in any::<u16>(),
    ) {
        let header = AMQPContentHeader { class_id: CLASS_BASIC, body_size, properties };
        let frame = AMQPFrame::Header(channel, header);
        let bytes = oracle_encode(&frame);
        let (kind, ch, payload) = unframe(&bytes);
        prop_assert_eq!((kind, ch), (FRAME_HEADER, channel));
        let ours = decode_content_header(&payload).unwrap();
        prop_assert_eq!(ours.class_id, CLASS_BASIC);
        prop_assert_eq!(ours.body_size, body_size);
        prop_assert_eq!(&ours.properties[..], &payload[CONTENT_HEADER_PREFIX..]);
        // Re-sent verbatim: byte-identical to amq-protocol's frame, and parsed back the same.
        let mut out = BytesMut::new();
        encode_content_header(&mut out, channel, ours.body_size, &ours.properties);
        prop_assert_eq!(&out[..], &bytes[..]);
        prop_assert_eq!(oracle_parse(&out), frame);
    }

    #[test]
    fn decoders_never_panic(bytes in vec(any::<u8>(), 0..200), method in any::<u16>()) {
        let with_ids = [&[0, 60][..], &method.to_be_bytes(), &bytes].concat();
        for input in [Bytes::from(bytes), Bytes::from(with_ids)] {
            let _ = decode_publish(&input);
            let _ = decode_ack(&input);
            if let Ok(h) = decode_content_header(&input) {
                prop_assert_eq!(crate::protocol::properties::validate(&h.properties), Ok(()));
            }
        }
    }

    // ---- broker → client: we encode, amq-protocol decodes ----

    #[test]
    fn deliver_to_oracle(
        consumer_tag in arb_shortstr(),
        delivery_tag in any::<u64>(),
        redelivered in any::<bool>(),
        exchange in arb_shortstr(),
        routing_key in arb_shortstr(),
        channel in any::<u16>(),
    ) {
        let mut out = BytesMut::from(&b"prefix"[..]);
        encode_deliver(&mut out, channel, consumer_tag.as_bytes(), delivery_tag, redelivered,
            exchange.as_bytes(), routing_key.as_bytes());
        let expected = method_frame(channel, AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: consumer_tag.into(),
            delivery_tag,
            redelivered,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        }));
        prop_assert_eq!(&out[..6], b"prefix");
        prop_assert_eq!(&out[6..], &oracle_encode(&expected)[..]);
        prop_assert_eq!(oracle_parse(&out[6..]), expected);
    }

    #[test]
    fn get_ok_to_oracle(
        delivery_tag in any::<u64>(),
        redelivered in any::<bool>(),
        exchange in arb_shortstr(),
        routing_key in arb_shortstr(),
        message_count in any::<u32>(),
        channel in any::<u16>(),
    ) {
        let mut out = BytesMut::new();
        encode_get_ok(&mut out, channel, delivery_tag, redelivered, exchange.as_bytes(),
            routing_key.as_bytes(), message_count);
        let expected = method_frame(channel, AMQPMethod::GetOk(basic::GetOk {
            delivery_tag,
            redelivered,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            message_count,
        }));
        prop_assert_eq!(&out[..], &oracle_encode(&expected)[..]);
        prop_assert_eq!(oracle_parse(&out), expected);
    }

    #[test]
    fn return_to_oracle(
        reply_code in any::<u16>(),
        reply_text in arb_shortstr(),
        exchange in arb_shortstr(),
        routing_key in arb_shortstr(),
        channel in any::<u16>(),
    ) {
        let mut out = BytesMut::new();
        encode_return(&mut out, channel, reply_code, reply_text.as_bytes(), exchange.as_bytes(),
            routing_key.as_bytes());
        let expected = method_frame(channel, AMQPMethod::Return(basic::Return {
            reply_code,
            reply_text: reply_text.into(),
            exchange: exchange.into(),
            routing_key: routing_key.into(),
        }));
        prop_assert_eq!(&out[..], &oracle_encode(&expected)[..]);
        prop_assert_eq!(oracle_parse(&out), expected);
    }

    #[test]
    fn confirms_to_oracle(delivery_tag in any::<u64>(), multiple in any::<bool>(), channel in any::<u16>()) {
        let mut out = BytesMut::new();
        encode_confirm_ack(&mut out, channel, delivery_tag, multiple);
        let ack = method_frame(channel, AMQPMethod::Ack(basic::Ack { delivery_tag, multiple }));
        prop_assert_eq!(&out[..], &oracle_encode(&ack)[..]);
        prop_assert_eq!(oracle_parse(&out), ack);
        let mut out = BytesMut::new();
        encode_confirm_nack(&mut out, channel, delivery_tag, multiple);
        let nack = method_frame(channel, AMQPMethod::Nack(basic::Nack { delivery_tag, multiple, requeue: false }));
        prop_assert_eq!(&out[..], &oracle_encode(&nack)[..]);
        prop_assert_eq!(oracle_parse(&out), nack);
    }

    #[test]
    fn content_header_to_oracle(properties in arb_properties(), body_size in any::<u64>(), channel in any::<u16>()) {
        let header = AMQPContentHeader { class_id: CLASS_BASIC, body_size, properties };
        let expected = AMQPFrame::Header(channel, header);
        let raw = oracle_encode(&expected);
        let props = &raw[7 + CONTENT_HEADER_PREFIX..raw.len() - 1];
        let mut out = BytesMut::new();
        encode_content_header(&mut out, channel, body_size, props);
        prop_assert_eq!(oracle_parse(&out), expected);
    }

    #[test]
    fn body_split_into_frames(
        body in vec(any::<u8>(), 0..3000),
        frame_max in prop_oneof![Just(0u32), 9u32..600, Just(4096u32), Just(131072u32)],
        channel in any::<u16>(),
    ) {
        let mut out = BytesMut::new();
        encode_body(&mut out, channel, &body, frame_max);
        let limit = if frame_max == 0 { usize::MAX } else { frame_max as usize - FRAME_OVERHEAD };
        let mut rest = &out[..];
        let mut joined = Vec::new();
        let mut frames = 0;
        while !rest.is_empty() {
            let (next, frame) = parse_frame(rest).expect("a body frame");
            let AMQPFrame::Body(ch, chunk) = frame else { panic!("not a body frame") };
            prop_assert_eq!(ch, channel);
            prop_assert!(!chunk.is_empty() && chunk.len() <= limit);
            // Every frame but the last is full.
            prop_assert!(next.is_empty() || chunk.len() == limit);
            joined.extend_from_slice(&chunk);
            frames += 1;
            rest = next;
        }
        prop_assert_eq!(joined, body.clone());
        prop_assert_eq!(frames, if body.is_empty() { 0 } else { body.len().div_ceil(limit.min(body.len())) });
    }
}

fn publish_payload(exchange: &[u8], routing_key: &[u8], bits: u8) -> Vec<u8> {
    let mut v = vec![0, 60, 0, 40, 0, 0, exchange.len() as u8];
    v.extend_from_slice(exchange);
    v.push(routing_key.len() as u8);
    v.extend_from_slice(routing_key);
    v.push(bits);
    v
}

#[test]
fn publish_edge_cases() {
    let ok = publish_payload(b"amq.direct", b"rk", 0b11);
    let p = decode_publish(&Bytes::from(ok.clone())).unwrap();
    assert_eq!(
        (
            &p.exchange[..],
            &p.routing_key[..],
            p.mandatory,
            p.immediate
        ),
        (&b"amq.direct"[..], &b"rk"[..], true, true)
    );
    // Every proper prefix is truncated.
    for n in 0..ok.len() {
        assert!(
            matches!(
                decode_publish(&Bytes::copy_from_slice(&ok[..n])),
                Err(CodecError::Truncated(_))
            ),
            "prefix {n}"
        );
    }
    // A trailing byte: amq-protocol's parse_frame rejects it (all_consuming), so do we.
    let mut trailing = ok.clone();
    trailing.push(0);
    assert_eq!(
        decode_publish(&Bytes::from(trailing.clone())),
        Err(CodecError::Invalid("trailing bytes"))
    );
    assert!(oracle_method(&trailing).is_none());
    // Undefined bits 2..7 are ignored, as amq-protocol does.
    let p = decode_publish(&Bytes::from(publish_payload(b"", b"", 0xFC))).unwrap();
    assert!(!p.mandatory && !p.immediate);
    // Non-UTF-8 names.
    let bad = publish_payload(b"\xC3", b"", 0);
    assert_eq!(
        decode_publish(&Bytes::from(bad.clone())),
        Err(CodecError::Invalid("short string is not UTF-8"))
    );
    assert!(oracle_method(&bad).is_none());
    // Another method or class.
    let mut other = ok.clone();
    other[3] = 60;
    assert_eq!(
        decode_publish(&Bytes::from(other)),
        Err(CodecError::Invalid("method id"))
    );
    let mut other = ok;
    other[1] = 50;
    assert_eq!(
        decode_publish(&Bytes::from(other)),
        Err(CodecError::Invalid("method id"))
    );
}

#[test]
fn ack_edge_cases() {
    let mut ack = vec![0, 60, 0, 80];
    ack.extend_from_slice(&5u64.to_be_bytes());
    ack.push(0b11);
    assert_eq!(
        decode_ack(&ack),
        Ok(AckArgs {
            delivery_tag: 5,
            multiple: true,
            requeue: false
        })
    );
    ack[3] = 90;
    assert_eq!(
        decode_ack(&ack),
        Ok(AckArgs {
            delivery_tag: 5,
            multiple: false,
            requeue: true
        })
    );
    ack[3] = 120;
    assert_eq!(
        decode_ack(&ack),
        Ok(AckArgs {
            delivery_tag: 5,
            multiple: true,
            requeue: true
        })
    );
    for n in 0..ack.len() {
        assert!(
            matches!(decode_ack(&ack[..n]), Err(CodecError::Truncated(_))),
            "prefix {n}"
        );
    }
    ack.push(0);
    assert_eq!(decode_ack(&ack), Err(CodecError::Invalid("trailing bytes")));
    ack.pop();
    ack[3] = 40;
    assert_eq!(decode_ack(&ack), Err(CodecError::Invalid("method id")));
}

#[test]
fn content_header_edge_cases() {
    let mut out = BytesMut::new();
    encode_content_header(&mut out, 3, 10, &[0x10, 0, 2]);
    let (_, _, payload) = unframe(&out);
    let h = decode_content_header(&payload).unwrap();
    assert_eq!(
        h,
        ContentHeader {
            class_id: 60,
            body_size: 10,
            properties: payload.slice(12..)
        }
    );
    for n in 0..payload.len() {
        assert!(
            decode_content_header(&payload.slice(..n)).is_err(),
            "prefix {n}"
        );
    }
    let mut bad = payload.to_vec();
    bad.push(0);
    assert_eq!(
        decode_content_header(&Bytes::from(bad)),
        Err(CodecError::Invalid("trailing bytes"))
    );
    let mut bad = payload.to_vec();
    bad[13] |= 1;
    assert_eq!(
        decode_content_header(&Bytes::from(bad)),
        Err(CodecError::Invalid("property flags continuation"))
    );
    let deep = crate::protocol::properties::tests::nested_props(100_000, b'A');
    let mut payload = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    payload.extend_from_slice(&deep);
    assert!(decode_content_header(&Bytes::from(payload)).is_err());
}

#[test]
fn body_edge_cases() {
    let mut out = BytesMut::new();
    encode_body(&mut out, 1, &[], 4096);
    assert!(out.is_empty());
    // frame_max exactly fits: 10-byte frames carry 2-byte payloads.
    encode_body(&mut out, 1, b"abcde", 10);
    assert_eq!(
        &out[..],
        &[
            3, 0, 1, 0, 0, 0, 2, b'a', b'b', 0xCE, 3, 0, 1, 0, 0, 0, 2, b'c', b'd', 0xCE, 3, 0, 1,
            0, 0, 0, 1, b'e', 0xCE
        ][..]
    );
    // Degenerate frame_max (not negotiable) still terminates.
    let mut out = BytesMut::new();
    encode_body(&mut out, 1, b"xy", 8);
    assert_eq!(out.len(), 2 * (FRAME_OVERHEAD + 1));
    // Unlimited: one frame.
    let mut out = BytesMut::new();
    encode_body(&mut out, 1, &[7; 70_000], 0);
    assert_eq!(out.len(), 70_000 + FRAME_OVERHEAD);
}

#[test]
fn overlong_short_strings_are_cut_at_a_char_boundary() {
    let text = "é".repeat(200); // 400 bytes; byte 255 is the second byte of an 'é'
    let mut out = BytesMut::new();
    encode_return(&mut out, 1, 312, text.as_bytes(), b"x", b"y");
    let AMQPFrame::Method(_, AMQPClass::Basic(AMQPMethod::Return(r))) = oracle_parse(&out) else {
        panic!("not a return")
    };
    assert_eq!(r.reply_text, ss(&text[..254]));
    assert_eq!((r.exchange, r.routing_key), (ss("x"), ss("y")));
    let ascii = "k".repeat(300);
    let mut out = BytesMut::new();
    encode_deliver(&mut out, 1, ascii.as_bytes(), 1, false, b"", b"");
    let AMQPFrame::Method(_, AMQPClass::Basic(AMQPMethod::Deliver(d))) = oracle_parse(&out) else {
        panic!("not a deliver")
    };
    assert_eq!(d.consumer_tag, ss(&ascii[..255]));
}

#[test]
fn default_properties_header_matches_amq_protocol_example() {
    let mut out = BytesMut::new();
    encode_content_header(&mut out, 1, 5, &[0, 0]);
    let expected = AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 5,
            properties: BasicProperties::default(),
        },
    );
    assert_eq!(&out[..], &oracle_encode(&expected)[..]);
}
