//! Codec micro-benchmarks: warren's hand-written hot-path codec (`protocol::hot`) and frame splitter
//! (`protocol::frame::split_frame`) side by side with amq-protocol's `parse_frame` / `gen_frame` on
//! the same frames. Run on demand (not in CI):
//!
//! ```text
//! cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Every frame is produced by amq-protocol, so both sides read identical bytes. Besides Criterion's
//! timings, `cargo bench` prints heap allocations per operation (`allocs/op` lines).

mod common;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::basic::{self, AMQPMethod};
use amq_protocol::protocol::{AMQPClass, BasicProperties};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use warren::protocol::frame::{split_frame, Split};
use warren::protocol::hot;

const CHANNEL: u16 = 1;
const FRAME_MAX: u32 = 131_072;
const EXCHANGE: &str = "orders";
const ROUTING_KEY: &str = "orders.eu.42.created";
const CONSUMER_TAG: &str = "amq.ctag-Jf3sX1dE0lq8pYw2rTz9kA";
/// Messages per batch in the inbound-stream benchmarks (3 frames each).
const BATCH: usize = 100;

/// amq-protocol's bytes for one whole frame.
fn frame_bytes(frame: &AMQPFrame) -> Vec<u8> {
    let ctx = gen_frame(frame)(WriteContext::from(Vec::new())).expect("amq-protocol encodes");
    ctx.write
}

/// The payload of a whole frame (between the 7-byte header and the frame-end octet).
fn payload(frame: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&frame[7..frame.len() - 1])
}

fn publish_frame() -> AMQPFrame {
    AMQPFrame::Method(
        CHANNEL,
        AMQPClass::Basic(AMQPMethod::Publish(basic::Publish {
            exchange: EXCHANGE.into(),
            routing_key: ROUTING_KEY.into(),
            mandatory: false,
            immediate: false,
        })),
    )
}

fn ack_frame() -> AMQPFrame {
    AMQPFrame::Method(
        CHANNEL,
        AMQPClass::Basic(AMQPMethod::Ack(basic::Ack {
            delivery_tag: 1_234_567,
            multiple: true,
        })),
    )
}

fn deliver_frame() -> AMQPFrame {
    AMQPFrame::Method(
        CHANNEL,
        AMQPClass::Basic(AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: CONSUMER_TAG.into(),
            delivery_tag: 1_234_567,
            redelivered: false,
            exchange: EXCHANGE.into(),
            routing_key: ROUTING_KEY.into(),
        })),
    )
}

/// No properties at all (what a load generator sends with 16-byte bodies).
fn empty_properties() -> BasicProperties {
    BasicProperties::default()
}

/// A typical application message: content type, persistent, message id, timestamp, two headers.
fn typical_properties() -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-trace-id".into(),
        AMQPValue::LongString(LongString::from("4bf92f3577b34da6a3ce929d0e0e4736")),
    );
    headers.insert("attempt".into(), AMQPValue::LongInt(1));
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id("m-000000001234567".into())
        .with_timestamp(1_760_000_000)
        .with_headers(headers)
}

fn header_frame(body_size: u64, properties: BasicProperties) -> AMQPFrame {
    AMQPFrame::Header(
        CHANNEL,
        AMQPContentHeader {
            class_id: 60,
            body_size,
            properties,
        },
    )
}

/// Decode one frame of each hot inbound kind: warren's decoder on the payload vs amq-protocol's
/// `parse_frame` on the whole frame.
fn decode(c: &mut Criterion) {
    decode_case(c, "publish", &publish_frame(), |p| {
        hot::decode_publish(p).unwrap()
    });
    decode_case(
        c,
        "content_header_empty",
        &header_frame(16, empty_properties()),
        |p| hot::decode_content_header(p).unwrap(),
    );
    decode_case(
        c,
        "content_header_typical",
        &header_frame(16, typical_properties()),
        |p| hot::decode_content_header(p).unwrap(),
    );
    decode_case(c, "ack", &ack_frame(), |p| hot::decode_ack(p).unwrap());
}

fn decode_case<R>(c: &mut Criterion, name: &str, frame: &AMQPFrame, ours: impl Fn(&Bytes) -> R) {
    let whole = frame_bytes(frame);
    let pl = payload(&whole);
    black_box(ours(&pl)); // warren decodes it (the closure unwraps)
    let (rest, parsed) = parse_frame(&whole[..]).expect("amq-protocol parses it");
    assert!(rest.is_empty() && &parsed == frame);

    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.bench_function("warren", |b| b.iter(|| ours(black_box(&pl))));
    common::report_allocs(&format!("decode/{name}/warren"), 1000, 1, || {
        black_box(ours(black_box(&pl)));
    });
    g.bench_function("amq-protocol parse_frame", |b| {
        b.iter(|| parse_frame(black_box(&whole[..])))
    });
    common::report_allocs(
        &format!("decode/{name}/amq-protocol parse_frame"),
        1000,
        1,
        || {
            let _ = black_box(parse_frame(black_box(&whole[..])));
        },
    );
    g.finish();
}

/// The outbound hot path for one message: `basic.deliver` + content header + body frame(s),
/// written into a reused buffer.
fn encode(c: &mut Criterion) {
    for size in [16usize, 1024] {
        let body = vec![b'x'; size];
        let props = typical_properties();
        let raw_props = payload(&frame_bytes(&header_frame(size as u64, props.clone())))
            .slice(12..)
            .to_vec();
        let deliver = deliver_frame();
        let header = header_frame(size as u64, props.clone());
        let body_frame = AMQPFrame::Body(CHANNEL, body.clone());

        // Both sides produce the same bytes.
        let mut ours = BytesMut::with_capacity(4096);
        encode_warren(&mut ours, &raw_props, &body);
        let mut theirs = Vec::with_capacity(4096);
        for f in [&deliver, &header, &body_frame] {
            theirs = gen_frame(f)(WriteContext::from(theirs)).unwrap().write;
        }
        assert_eq!(&ours[..], &theirs[..], "same wire bytes for {size} B");

        let name = format!("encode/deliver+header+body_{size}B");
        let mut g = c.benchmark_group(&name);
        g.throughput(Throughput::Elements(1));
        let mut out = BytesMut::with_capacity(4096);
        g.bench_function("warren", |b| {
            b.iter(|| {
                out.clear();
                encode_warren(&mut out, black_box(&raw_props), black_box(&body));
            })
        });
        common::report_allocs(&format!("{name}/warren"), 1000, 1, || {
            out.clear();
            encode_warren(&mut out, black_box(&raw_props), black_box(&body));
        });

        // The serializer alone, on frames built beforehand.
        let mut buf = Vec::with_capacity(4096);
        let gen = |buf: &mut Vec<u8>| {
            let mut w = std::mem::take(buf);
            w.clear();
            for f in [&deliver, &header, &body_frame] {
                w = gen_frame(black_box(f))(WriteContext::from(w))
                    .unwrap()
                    .write;
            }
            *buf = w;
        };
        g.bench_function("amq-protocol gen_frame", |b| b.iter(|| gen(&mut buf)));
        common::report_allocs(&format!("{name}/amq-protocol gen_frame"), 1000, 1, || {
            gen(&mut buf)
        });

        // What a broker storing amq-protocol types pays per delivery: build the three frames from
        // the stored message (clone the properties, copy the body), then serialize them.
        let build_gen = |buf: &mut Vec<u8>| {
            let frames = [
                AMQPFrame::Method(
                    CHANNEL,
                    AMQPClass::Basic(AMQPMethod::Deliver(basic::Deliver {
                        consumer_tag: ShortString::from(black_box(CONSUMER_TAG)),
                        delivery_tag: 1_234_567,
                        redelivered: false,
                        exchange: ShortString::from(black_box(EXCHANGE)),
                        routing_key: ShortString::from(black_box(ROUTING_KEY)),
                    })),
                ),
                header_frame(size as u64, black_box(&props).clone()),
                AMQPFrame::Body(CHANNEL, black_box(&body[..]).to_vec()),
            ];
            let mut w = std::mem::take(buf);
            w.clear();
            for f in &frames {
                w = gen_frame(f)(WriteContext::from(w)).unwrap().write;
            }
            *buf = w;
        };
        g.bench_function("amq-protocol build+gen_frame", |b| {
            b.iter(|| build_gen(&mut buf))
        });
        common::report_allocs(
            &format!("{name}/amq-protocol build+gen_frame"),
            1000,
            1,
            || build_gen(&mut buf),
        );
        g.finish();
    }
}

fn encode_warren(out: &mut BytesMut, raw_props: &[u8], body: &[u8]) {
    hot::encode_deliver(
        out,
        CHANNEL,
        CONSUMER_TAG.as_bytes(),
        1_234_567,
        false,
        EXCHANGE.as_bytes(),
        ROUTING_KEY.as_bytes(),
    );
    hot::encode_content_header(out, CHANNEL, body.len() as u64, raw_props);
    hot::encode_body(out, CHANNEL, body, FRAME_MAX);
}

/// `BATCH` published messages (publish + header + 16-byte body frames) back to back, as a socket
/// read delivers them.
fn inbound_batch() -> Vec<u8> {
    let one = [
        frame_bytes(&publish_frame()),
        frame_bytes(&header_frame(16, empty_properties())),
        frame_bytes(&AMQPFrame::Body(CHANNEL, vec![b'x'; 16])),
    ]
    .concat();
    one.repeat(BATCH)
}

/// Warren's inbound path on a read buffer: split every frame, decode publish and header; the body
/// payload is used as is. Returns the body bytes seen.
fn warren_inbound(buf: &mut BytesMut) -> usize {
    let mut body_bytes = 0;
    while let Split::Frame(f) = split_frame(buf, FRAME_MAX) {
        match f.kind {
            1 => {
                black_box(hot::decode_publish(&f.payload).unwrap());
            }
            2 => {
                black_box(hot::decode_content_header(&f.payload).unwrap());
            }
            _ => body_bytes += black_box(f.payload).len(),
        }
    }
    body_bytes
}

/// amq-protocol's inbound path on the same bytes: `parse_frame` until the input is used up.
fn amq_inbound(mut input: &[u8]) -> usize {
    let mut body_bytes = 0;
    while !input.is_empty() {
        let (rest, frame) = parse_frame(input).unwrap();
        if let AMQPFrame::Body(_, b) = &frame {
            body_bytes += b.len();
        }
        black_box(frame);
        input = rest;
    }
    body_bytes
}

/// The frame splitter alone, and whole inbound messages (split + decode) against amq-protocol.
fn inbound(c: &mut Criterion) {
    let batch = inbound_batch();
    let frames = (3 * BATCH) as u64;
    assert_eq!(warren_inbound(&mut BytesMut::from(&batch[..])), 16 * BATCH);
    assert_eq!(amq_inbound(&batch), 16 * BATCH);

    let mut g = c.benchmark_group("split_frame");
    g.throughput(Throughput::Elements(frames));
    g.bench_function("warren", |b| {
        b.iter_batched(
            || BytesMut::from(&batch[..]),
            |mut buf| {
                let mut n = 0u32;
                while let Split::Frame(f) = split_frame(&mut buf, FRAME_MAX) {
                    black_box(f);
                    n += 1;
                }
                (n, buf)
            },
            BatchSize::SmallInput,
        )
    });
    common::report_allocs(
        "split_frame/warren (incl. 1 buffer copy per batch)",
        100,
        frames,
        || {
            let mut buf = BytesMut::from(&batch[..]);
            while let Split::Frame(f) = split_frame(&mut buf, FRAME_MAX) {
                black_box(f);
            }
        },
    );
    g.finish();

    let mut g = c.benchmark_group("inbound_message_16B");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("warren split_frame+decode", |b| {
        b.iter_batched(
            || BytesMut::from(&batch[..]),
            |mut buf| (warren_inbound(&mut buf), buf),
            BatchSize::SmallInput,
        )
    });
    common::report_allocs(
        "inbound_message_16B/warren (incl. 1 buffer copy per batch)",
        100,
        BATCH as u64,
        || {
            black_box(warren_inbound(&mut BytesMut::from(&batch[..])));
        },
    );
    g.bench_function("amq-protocol parse_frame", |b| {
        b.iter(|| amq_inbound(black_box(&batch)))
    });
    common::report_allocs(
        "inbound_message_16B/amq-protocol parse_frame",
        100,
        BATCH as u64,
        || {
            black_box(amq_inbound(black_box(&batch)));
        },
    );
    g.finish();
}

criterion_group!(benches, decode, encode, inbound);
criterion_main!(benches);
