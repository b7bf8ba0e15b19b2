//! Routing micro-benchmarks: the exchange types (direct, fanout, topic trie, headers matching) and
//! a whole `VHost::route` through exchanges with 10k bindings to 10k queues. Run on demand (not in
//! CI):
//!
//! ```text
//! cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Besides Criterion's timings, `cargo bench` prints heap allocations per route (`allocs/op`).

mod common;

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use warren::broker::exchange::headers::{self, XMatch};
use warren::broker::exchange::topic::TopicTrie;
use warren::broker::exchange::{Exchange, ExchangeOptions, LazyHeaders};
use warren::broker::message::Message;
use warren::broker::queue::QueueOptions;
use warren::broker::vhost::VHost;

const CONN: u64 = 1;
const REGIONS: [&str; 4] = ["eu", "us", "ap", "sa"];
/// Queues in the vhost (and bindings of the 10k-binding exchanges).
const QUEUES: usize = 10_000;

/// The `i`-th binding pattern of a realistic topic exchange: five families of patterns, `n` (the
/// entity number) and the region varying, one `logs.#` catch-all.
fn topic_pattern(i: usize) -> String {
    let n = i / 5;
    let region = REGIONS[n % REGIONS.len()];
    match i % 5 {
        0 => format!("orders.{region}.{n}.*"),
        1 if n == 0 => "logs.#".to_string(),
        1 => format!("logs.{region}.{n}.#"),
        2 => format!("metrics.host{n}.*.cpu"),
        3 => format!("*.{region}.{n}.created"),
        _ => format!("audit.{region}.#.{n}"),
    }
}

/// A key matched by exactly two of the first `bindings` patterns (`orders.<r>.<n>.*` and
/// `*.<r>.<n>.created`), and one matched by none (an entity number nobody bound).
fn topic_keys(bindings: usize) -> (String, String) {
    let n = bindings / 5 / 2;
    let region = REGIONS[n % REGIONS.len()];
    let hit = format!("orders.{region}.{n}.created");
    let miss = format!("orders.{region}.{}.created", bindings / 5 + 1);
    (hit, miss)
}

fn message(routing_key: &str, properties: Bytes) -> Message {
    Message {
        exchange: Bytes::from_static(b"bench"),
        routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
        properties,
        body: Bytes::from_static(&[b'x'; 16]),
        persistent: false,
        dead_lettered: false,
        bcc: false,
    }
}

/// Raw properties with no property set (flags word 0).
fn no_properties() -> Bytes {
    Bytes::from_static(&[0, 0])
}

/// Raw properties carrying `headers`, as they arrive in a content header frame.
fn properties_with_headers(headers: FieldTable) -> Bytes {
    let frame = AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: 16,
            properties: BasicProperties::default().with_headers(headers),
        },
    );
    let bytes = gen_frame(&frame)(WriteContext::from(Vec::new()))
        .expect("amq-protocol encodes")
        .write;
    // Frame header (7), class + weight + body size (12) ... frame end (1).
    Bytes::copy_from_slice(&bytes[7 + 12..bytes.len() - 1])
}

/// `n` header criteria `h0..h{n-1}`, alternating long strings and integers.
fn criteria(n: usize) -> Vec<(String, AMQPValue)> {
    (0..n)
        .map(|i| {
            let v = if i % 2 == 0 {
                AMQPValue::LongString(LongString::from(format!("value-{i}")))
            } else {
                AMQPValue::LongInt(i as i32)
            };
            (format!("h{i}"), v)
        })
        .collect()
}

fn table(entries: impl IntoIterator<Item = (String, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

fn binding_args(mode: &str, n: usize) -> FieldTable {
    let mut t = table(criteria(n));
    t.insert(
        "x-match".into(),
        AMQPValue::LongString(LongString::from(mode)),
    );
    t
}

/// A vhost with `QUEUES` queues `q0..` and one exchange per kind, `bind` deciding each queue's
/// bindings.
fn vhost() -> VHost {
    let v = VHost::new("/", None);
    for i in 0..QUEUES {
        let opts = QueueOptions {
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
        };
        v.declare_queue(&format!("q{i}"), false, opts, CONN)
            .expect("declare queue");
    }
    v
}

fn declare_exchange(v: &VHost, name: &str, kind: &str) -> Arc<Exchange> {
    v.declare_exchange(name, kind, false, |kind| ExchangeOptions {
        kind,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::default(),
    })
    .expect("declare exchange")
}

fn bind(v: &VHost, queue: usize, exchange: &str, key: &str, args: &FieldTable) {
    v.bind_queue(&format!("q{queue}"), exchange, key, args, CONN)
        .expect("bind");
}

/// Destinations `ex`'s own bindings select for `msg` (no dedup, no exchange hops).
fn route_local(ex: &Exchange, msg: &Message) -> usize {
    let mut n = 0;
    ex.route_local(msg, &mut LazyHeaders::default(), &mut |d| {
        black_box(d);
        n += 1;
    });
    n
}

fn topic_trie(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_trie");
    for bindings in [10usize, 1_000, 10_000] {
        let mut trie = TopicTrie::new();
        for i in 0..bindings {
            assert!(trie.insert(&topic_pattern(i), i as u32));
        }
        let (hit, miss) = topic_keys(bindings);
        let count = |key: &str| {
            let mut n = 0;
            trie.route(key.as_bytes(), &mut |d: &u32| {
                black_box(d);
                n += 1;
            });
            n
        };
        assert_eq!(count(&hit), 2, "{hit}");
        assert_eq!(count(&miss), 0, "{miss}");
        for (what, key) in [("match", &hit), ("no_match", &miss)] {
            g.bench_with_input(BenchmarkId::new(what, bindings), key, |b, key| {
                b.iter(|| count(black_box(key)))
            });
            common::report_allocs(&format!("topic_trie/{what}/{bindings}"), 1000, 1, || {
                black_box(count(black_box(key)));
            });
        }
    }
    g.finish();
}

fn headers_match(c: &mut Criterion) {
    let mut g = c.benchmark_group("headers_matches_10_criteria");
    let all = binding_args("all", 10);
    let any = binding_args("any", 10);
    // The message carries every criterion, plus five unrelated headers.
    let extra = (0..5).map(|i| (format!("other{i}"), AMQPValue::LongInt(i)));
    let full = table(criteria(10).into_iter().chain(extra));
    // Only the criterion checked last (`h9`, tables iterate in key order) matches.
    let last_only = table(criteria(10).into_iter().skip(9));
    // The last criterion has the wrong value.
    let mut wrong_last = full.clone();
    wrong_last.insert("h9".into(), AMQPValue::LongInt(-1));
    let unrelated = table((0..5).map(|i| (format!("other{i}"), AMQPValue::LongInt(i))));
    let cases: [(&str, XMatch, &FieldTable, &FieldTable, bool); 4] = [
        ("all/match", XMatch::All, &all, &full, true),
        ("all/last_differs", XMatch::All, &all, &wrong_last, false),
        ("any/last_matches", XMatch::Any, &any, &last_only, true),
        ("any/none", XMatch::Any, &any, &unrelated, false),
    ];
    for (name, mode, args, hdrs, expect) in cases {
        assert_eq!(headers::parse_x_match(args), Ok(mode));
        assert_eq!(headers::matches(mode, args, Some(hdrs)), expect, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| headers::matches(mode, black_box(args), Some(black_box(hdrs))))
        });
    }
    g.finish();
}

/// One vhost with 10k queues for the exchange and vhost benchmarks (built once: binding 10k queues
/// takes a moment).
fn broker(c: &mut Criterion) {
    let v = vhost();
    exchanges(c, &v);
    vhost_route(c, &v);
}

/// Direct, fanout and headers exchanges on their own (`Exchange::route_local`).
fn exchanges(c: &mut Criterion, v: &VHost) {
    let direct = declare_exchange(v, "direct", "direct");
    for i in 0..QUEUES {
        bind(v, i, "direct", &format!("key.{i}"), &FieldTable::default());
    }
    let fanout10 = declare_exchange(v, "fanout10", "fanout");
    let fanout1k = declare_exchange(v, "fanout1k", "fanout");
    for i in 0..1_000 {
        if i < 10 {
            bind(v, i, "fanout10", "", &FieldTable::default());
        }
        bind(v, i, "fanout1k", "", &FieldTable::default());
    }
    let hx = declare_exchange(v, "headers10", "headers");
    for i in 0..10 {
        // Binding i wants h0..h{i} (x-match all): a message with h0..h4 reaches 5 of them.
        let mut args = table(criteria(i + 1));
        args.insert("x-match".into(), AMQPValue::LongString("all".into()));
        bind(v, i, "headers10", "", &args);
    }

    // A headers exchange with a binding per queue: {x-match: all, type: order, n: i}.
    let hx10k = declare_exchange(v, "headers10k", "headers");
    for i in 0..QUEUES {
        let args = table([
            ("x-match".to_string(), AMQPValue::LongString("all".into())),
            ("type".to_string(), AMQPValue::LongString("order".into())),
            ("n".to_string(), AMQPValue::LongInt(i as i32)),
        ]);
        bind(v, i, "headers10k", "", &args);
    }
    let order_5000 = table([
        ("type".to_string(), AMQPValue::LongString("order".into())),
        ("n".to_string(), AMQPValue::LongInt(5000)),
    ]);

    let mut g = c.benchmark_group("exchange");
    let cases = [
        (
            "direct/10k_bindings",
            &direct,
            message("key.5000", no_properties()),
            1,
        ),
        (
            "direct/10k_bindings_no_match",
            &direct,
            message("key.x", no_properties()),
            0,
        ),
        (
            "fanout/10_bindings",
            &fanout10,
            message("", no_properties()),
            10,
        ),
        (
            "fanout/1k_bindings",
            &fanout1k,
            message("", no_properties()),
            1_000,
        ),
        (
            "headers/10_bindings_incl_header_decode",
            &hx,
            message("", properties_with_headers(table(criteria(5)))),
            5,
        ),
        (
            "headers/10k_bindings_incl_header_decode",
            &hx10k,
            message("", properties_with_headers(order_5000)),
            1,
        ),
    ];
    for (name, ex, msg, expect) in &cases {
        assert_eq!(route_local(ex, msg), *expect, "{name}");
        g.bench_function(*name, |b| b.iter(|| route_local(ex, black_box(msg))));
        common::report_allocs(&format!("exchange/{name}"), 1000, 1, || {
            black_box(route_local(ex, black_box(msg)));
        });
    }
    g.finish();
}

/// A whole `VHost::route` (lock, match, collect `Arc<Queue>`s, dedup) through exchanges with 10k
/// bindings to 10k queues.
fn vhost_route(c: &mut Criterion, v: &VHost) {
    let topic = declare_exchange(v, "topic", "topic");
    for i in 0..QUEUES {
        bind(v, i, "topic", &topic_pattern(i), &FieldTable::default());
    }
    let direct = v.exchange("direct").expect("declared by exchanges()");
    let (hit, miss) = topic_keys(QUEUES);
    let cases = [
        (
            "topic/10k_bindings_match",
            &topic,
            message(&hit, no_properties()),
            2,
        ),
        (
            "topic/10k_bindings_no_match",
            &topic,
            message(&miss, no_properties()),
            0,
        ),
        (
            "direct/10k_bindings_match",
            &direct,
            message("key.5000", no_properties()),
            1,
        ),
    ];
    let mut g = c.benchmark_group("vhost_route");
    let mut out = Vec::with_capacity(16);
    let mut visited = Vec::with_capacity(4);
    for (name, ex, msg, expect) in &cases {
        v.route(ex, msg, &mut out, &mut visited);
        assert_eq!(out.len(), *expect, "{name}");
        out.clear();
        let mut route = || {
            v.route(ex, black_box(msg), &mut out, &mut visited);
            black_box(&out);
            out.clear();
        };
        g.bench_function(*name, |b| b.iter(&mut route));
        common::report_allocs(&format!("vhost_route/{name}"), 1000, 1, &mut route);
    }
    g.finish();
}

criterion_group!(benches, topic_trie, headers_match, broker);
criterion_main!(benches);
