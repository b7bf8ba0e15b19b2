//! Writes the checked-in seed corpus, fuzz/corpus/<target>/, from real frames encoded by
//! amq-protocol: `cargo run --bin gen_corpus` from fuzz/ (existing seeds are overwritten).

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{
    basic, channel, confirm, exchange, queue, tx, AMQPClass, BasicProperties,
};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};
use std::path::Path;
use warren_fuzz::{frame, handshake, method_payload, record};

fn header_payload(body_size: u64, properties: BasicProperties) -> Vec<u8> {
    let f = AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size,
            properties,
        },
    );
    let bytes = gen_frame(&f)(Vec::new().into())
        .map(|c| c.write)
        .expect("encode header");
    bytes[7..bytes.len() - 1].to_vec()
}

fn table(depth: usize) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "s".into(),
        AMQPValue::LongString(LongString::from(&b"v"[..])),
    );
    t.insert("i".into(), AMQPValue::LongInt(-7));
    t.insert("b".into(), AMQPValue::Boolean(true));
    t.insert(
        "a".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::ShortShortInt(1)])),
    );
    if depth > 0 {
        t.insert("t".into(), AMQPValue::FieldTable(table(depth - 1)));
    }
    t
}

fn props() -> Vec<BasicProperties> {
    vec![
        BasicProperties::default(),
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("text/plain".into()),
        BasicProperties::default()
            .with_headers(table(2))
            .with_priority(5)
            .with_expiration("60000".into())
            .with_user_id("guest".into())
            .with_message_id("m1".into())
            .with_timestamp(1_700_000_000),
        BasicProperties::default()
            .with_headers(table(0))
            .with_reply_to("amq.rabbitmq.reply-to".into()),
    ]
}

fn publish(exchange: &str, key: &str, mandatory: bool) -> Vec<u8> {
    method_payload(AMQPClass::Basic(basic::AMQPMethod::Publish(
        basic::Publish {
            exchange: exchange.into(),
            routing_key: key.into(),
            mandatory,
            immediate: false,
        },
    )))
}

fn declare(name: &str, durable: bool, arguments: FieldTable) -> Vec<u8> {
    method_payload(AMQPClass::Queue(queue::AMQPMethod::Declare(
        queue::Declare {
            queue: name.into(),
            passive: false,
            durable,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments,
        },
    )))
}

fn consume(q: &str, no_ack: bool) -> Vec<u8> {
    method_payload(AMQPClass::Basic(basic::AMQPMethod::Consume(
        basic::Consume {
            queue: q.into(),
            consumer_tag: "".into(),
            no_local: false,
            no_ack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        },
    )))
}

fn ack_payload(method: u16, tag: u64, bits: u8) -> Vec<u8> {
    let mut v = vec![0, 60];
    v.extend_from_slice(&method.to_be_bytes());
    v.extend_from_slice(&tag.to_be_bytes());
    v.push(bits);
    v
}

fn write(dir: &Path, target: &str, name: &str, data: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    std::fs::write(d.join(name), data).expect("write seed");
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let open_ch = method_payload(AMQPClass::Channel(channel::AMQPMethod::Open(
        channel::Open {},
    )));
    let close_ch = method_payload(AMQPClass::Channel(channel::AMQPMethod::Close(
        channel::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        },
    )));
    let qos = |n| {
        method_payload(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: n,
            global: false,
        })))
    };
    let get = method_payload(AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
        queue: "q".into(),
        no_ack: false,
    })));
    let confirm = method_payload(AMQPClass::Confirm(confirm::AMQPMethod::Select(
        confirm::Select { nowait: false },
    )));
    let tx_select = method_payload(AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})));
    let recover = method_payload(AMQPClass::Basic(basic::AMQPMethod::Recover(
        basic::Recover { requeue: true },
    )));
    let purge = method_payload(AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
        queue: "q".into(),
        nowait: false,
    })));
    let delete = method_payload(AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
        queue: "q".into(),
        if_unused: false,
        if_empty: false,
        nowait: false,
    })));
    let x_declare = method_payload(AMQPClass::Exchange(exchange::AMQPMethod::Declare(
        exchange::Declare {
            exchange: "x".into(),
            kind: "topic".into(),
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        },
    )));
    let bind = method_payload(AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
        queue: "q".into(),
        exchange: "x".into(),
        routing_key: "a.*.#".into(),
        nowait: false,
        arguments: FieldTable::default(),
    })));
    let mut stream_args = FieldTable::default();
    stream_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from(&b"stream"[..])),
    );
    let headers = props();

    // ---- connection: record sequences after the handshake ----
    let m = |p: &[u8]| record(1, 1, p);
    let h = |size: u64, i: usize| record(2, 1, &header_payload(size, headers[i].clone()));
    let b = |body: &[u8]| record(3, 1, body);
    let seqs: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("open_close", vec![m(&open_ch), m(&close_ch)]),
        (
            "publish_get",
            vec![
                m(&open_ch),
                m(&declare("q", false, FieldTable::default())),
                m(&publish("", "q", false)),
                h(5, 0),
                b(b"hello"),
                m(&get),
                m(&ack_payload(80, 1, 0)),
            ],
        ),
        (
            "publish_multi_frame",
            vec![
                m(&open_ch),
                m(&declare("q", false, FieldTable::default())),
                m(&publish("", "q", true)),
                h(6, 2),
                b(b"abc"),
                b(b"def"),
            ],
        ),
        (
            "consume_ack",
            vec![
                m(&open_ch),
                m(&qos(2)),
                m(&declare("q", false, FieldTable::default())),
                m(&consume("q", false)),
                m(&publish("", "q", false)),
                h(1, 1),
                b(b"x"),
                m(&ack_payload(80, 1, 0)),
                m(&ack_payload(120, 0, 3)),
            ],
        ),
        (
            "consume_no_ack",
            vec![
                m(&open_ch),
                m(&declare("q", false, FieldTable::default())),
                m(&consume("q", true)),
                m(&publish("", "q", false)),
                h(1, 0),
                b(b"x"),
            ],
        ),
        (
            "confirms_durable",
            vec![
                m(&open_ch),
                m(&confirm),
                m(&declare("d", true, FieldTable::default())),
                m(&publish("", "d", false)),
                h(2, 1),
                b(b"ok"),
            ],
        ),
        (
            "topic_bind",
            vec![
                m(&open_ch),
                m(&x_declare),
                m(&declare("q", false, FieldTable::default())),
                m(&bind),
                m(&publish("x", "a.b.c", true)),
                h(0, 3),
            ],
        ),
        (
            "reject_recover",
            vec![
                m(&open_ch),
                m(&declare("q", false, FieldTable::default())),
                m(&publish("", "q", false)),
                h(1, 0),
                b(b"r"),
                m(&get),
                m(&ack_payload(90, 1, 1)),
                m(&recover),
                m(&purge),
                m(&delete),
            ],
        ),
        (
            "stream",
            vec![
                m(&open_ch),
                m(&qos(10)),
                m(&declare("s", true, stream_args.clone())),
                m(&publish("", "s", false)),
                h(1, 0),
                b(b"s"),
                m(&consume("s", false)),
            ],
        ),
        (
            "tx_and_heartbeat",
            vec![m(&open_ch), m(&tx_select), record(8, 0, b""), m(&confirm)],
        ),
        (
            "bad_frames",
            vec![
                record(1, 0, &open_ch),
                record(3, 1, b"body first"),
                record(0, 0, &[1, 0, 1, 0xff, 0xff, 0xff, 0xff]),
            ],
        ),
        (
            "raw_bytes",
            vec![
                record(0, 0, &frame(1, 1, &open_ch)),
                record(0, 0, &[1, 0, 1, 0, 0, 0, 4, 0, 20]),
            ],
        ),
    ];
    for (name, recs) in &seqs {
        write(&dir, "connection", name, &recs.concat());
    }

    // ---- frame_split: [frame_max (u16, 0 = unlimited), step] + wire bytes ----
    let mut wire = handshake();
    for (_, recs) in &seqs[..4] {
        wire.extend_from_slice(&warren_fuzz::wire(&recs.concat()));
    }
    write(
        &dir,
        "frame_split",
        "session_unlimited",
        &[&[0, 0, 0][..], &wire].concat(),
    );
    write(
        &dir,
        "frame_split",
        "session_chunked",
        &[&[0, 1, 6][..], &wire[8..]].concat(),
    );
    write(
        &dir,
        "frame_split",
        "too_large",
        &[&[0, 1, 3][..], &[3, 0, 1, 0, 1, 0, 0][..]].concat(),
    );
    write(
        &dir,
        "frame_split",
        "bad_end",
        &[&[0, 0, 0][..], &frame(8, 0, b"")[..7], &[0xCD]].concat(),
    );
    write(
        &dir,
        "frame_split",
        "heartbeats",
        &[&[0, 0, 255][..], &frame(8, 0, b""), &frame(8, 0, b"")].concat(),
    );

    // ---- hot_codec: [selector] + payload ----
    for (i, p) in [
        publish("", "q", false),
        publish("amq.topic", "a.b", true),
        publish("ü", "é", false),
    ]
    .iter()
    .enumerate()
    {
        write(
            &dir,
            "hot_codec",
            &format!("publish_{i}"),
            &[&[0][..], p].concat(),
        );
    }
    for (i, p) in [
        ack_payload(80, 1, 0),
        ack_payload(80, u64::MAX, 1),
        ack_payload(90, 3, 1),
        ack_payload(120, 0, 3),
    ]
    .iter()
    .enumerate()
    {
        write(
            &dir,
            "hot_codec",
            &format!("ack_{i}"),
            &[&[1][..], p].concat(),
        );
    }
    for (i, p) in headers.iter().enumerate() {
        write(
            &dir,
            "hot_codec",
            &format!("header_{i}"),
            &[&[2][..], &header_payload(42, p.clone())].concat(),
        );
    }
    write(
        &dir,
        "hot_codec",
        "encoders_0",
        b"\x03ctag\xffexchange\xffrouting.key\xff\x00\x00\x00\x00\x00\x00\x00\x07\x01",
    );
    write(
        &dir,
        "hot_codec",
        "encoders_1",
        &[&[3][..], &header_payload(0, headers[2].clone())[12..]].concat(),
    );

    // ---- field_table: [selector] + table / property list / method payload ----
    for (i, p) in headers.iter().enumerate() {
        let hp = header_payload(0, p.clone());
        write(
            &dir,
            "field_table",
            &format!("props_{i}"),
            &[&[1][..], &hp[12..]].concat(),
        );
    }
    let hp = header_payload(0, BasicProperties::default().with_headers(table(3)));
    write(
        &dir,
        "field_table",
        "table_nested",
        &[&[0][..], &hp[14..]].concat(),
    );
    let mut q_args = table(1);
    q_args.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
    for (i, p) in [
        declare("q", true, q_args),
        consume("q", false),
        bind.clone(),
        x_declare.clone(),
        stream_args_declare(&stream_args),
    ]
    .iter()
    .enumerate()
    {
        write(
            &dir,
            "field_table",
            &format!("method_{i}"),
            &[&[2][..], p].concat(),
        );
    }
    let start = method_payload(AMQPClass::Connection(
        amq_protocol::protocol::connection::AMQPMethod::Start(
            amq_protocol::protocol::connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: table(2),
                mechanisms: LongString::from(&b"PLAIN"[..]),
                locales: LongString::from(&b"en_US"[..]),
            },
        ),
    ));
    write(
        &dir,
        "field_table",
        "method_start",
        &[&[2][..], &start].concat(),
    );
    let start_ok = &handshake()[8..];
    let size = u32::from_be_bytes([start_ok[3], start_ok[4], start_ok[5], start_ok[6]]) as usize;
    write(
        &dir,
        "field_table",
        "method_start_ok",
        &[&[2][..], &start_ok[7..7 + size]].concat(),
    );
    println!("corpus written to {}", dir.display());
}

fn stream_args_declare(args: &FieldTable) -> Vec<u8> {
    declare("s", true, args.clone())
}
