//! Routing through every exchange type, exchange-to-exchange bindings, alternate and internal
//! exchanges, binding lifecycle, and message properties/bodies delivered intact — checked against
//! RabbitMQ's documented behaviour through lapin.
mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

/// The reply code of a channel or connection close carried by a lapin error.
fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

fn expect_code<T: std::fmt::Debug>(r: lapin::Result<T>, want: u16) {
    match r {
        Ok(v) => panic!("expected reply code {want}, got Ok({v:?})"),
        Err(e) => assert_eq!(code(&e), Some(want), "wrong error: {e}"),
    }
}

async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    exchange_with(
        ch,
        name,
        kind,
        ExchangeDeclareOptions::default(),
        table(&[]),
    )
    .await;
}

async fn exchange_with(
    ch: &Channel,
    name: &str,
    kind: ExchangeKind,
    opts: ExchangeDeclareOptions,
    args: FieldTable,
) {
    within(5, ch.exchange_declare(name.into(), kind, opts, args))
        .await
        .expect("exchange.declare");
}

async fn bind(ch: &Channel, queue: &str, ex: &str, key: &str) {
    bind_args(ch, queue, ex, key, table(&[])).await;
}

async fn bind_args(ch: &Channel, queue: &str, ex: &str, key: &str, args: FieldTable) {
    within(
        5,
        ch.queue_bind(
            queue.into(),
            ex.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .expect("queue.bind");
}

async fn e2e(ch: &Channel, dest: &str, source: &str, key: &str) {
    within(
        5,
        ch.exchange_bind(
            dest.into(),
            source.into(),
            key.into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("exchange.bind");
}

async fn send(ch: &Channel, ex: &str, key: &str, body: &[u8]) {
    send_props(ch, ex, key, body, BasicProperties::default()).await;
}

async fn send_props(ch: &Channel, ex: &str, key: &str, body: &[u8], props: BasicProperties) {
    within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            body,
            props,
        ),
    )
    .await
    .expect("basic.publish");
}

/// Every ready message of `queue`, in order (basic.get until get-empty). Publishes on the same
/// channel before this call are routed before the first get: the broker handles a channel's
/// frames in order.
async fn drain(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(b) = within(5, get_body(ch, queue)).await {
        out.push(b);
    }
    out
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn headers(entries: &[(&str, AMQPValue)]) -> BasicProperties {
    BasicProperties::default().with_headers(table(entries))
}

async fn passive_exchange(ch: &Channel, name: &str) -> lapin::Result<()> {
    within(
        5,
        ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
}

/// Publish on a confirm channel and return how the broker answered: the channel error code if
/// it closed the channel. Deterministic way to observe an asynchronous publish error.
async fn publish_error(ch: &Channel, ex: &str, key: &str, props: BasicProperties) -> Option<u16> {
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            ex.into(),
            key.into(),
            BasicPublishOptions::default(),
            b"x",
            props,
        ),
    )
    .await
    .expect("basic.publish");
    match within(5, confirm).await {
        Ok(c) => panic!("publish was confirmed: {c:?}"),
        Err(e) => code(&e),
    }
}

#[tokio::test]
async fn direct_exchange_routes_by_exact_key() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "logs_direct", ExchangeKind::Direct).await;
    for q in ["errors", "infos"] {
        declare(&ch, q).await;
    }
    bind(&ch, "errors", "logs_direct", "error").await;
    bind(&ch, "infos", "logs_direct", "info").await;
    send(&ch, "logs_direct", "error", b"e1").await;
    send(&ch, "logs_direct", "info", b"i1").await;
    send(&ch, "logs_direct", "warning", b"w1").await;
    send(&ch, "logs_direct", "error.x", b"e2").await;
    assert_eq!(drain(&ch, "errors").await, [b"e1"]);
    assert_eq!(drain(&ch, "infos").await, [b"i1"]);
    b.stop().await;
}

#[tokio::test]
async fn fanout_delivers_one_copy_to_each_queue() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "fan", ExchangeKind::Fanout).await;
    for q in ["f1", "f2", "f3"] {
        declare(&ch, q).await;
        bind(&ch, q, "fan", "").await;
    }
    // A second binding of f1 with another key must not produce a second copy.
    bind(&ch, "f1", "fan", "other").await;
    send(&ch, "fan", "ignored-key", b"hello").await;
    for q in ["f1", "f2", "f3"] {
        assert_eq!(drain(&ch, q).await, [b"hello"], "queue {q}");
    }
    b.stop().await;
}

#[tokio::test]
async fn topic_exchange_tutorial_five() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "topic_logs", ExchangeKind::Topic).await;
    declare(&ch, "q1").await;
    declare(&ch, "q2").await;
    bind(&ch, "q1", "topic_logs", "*.orange.*").await;
    bind(&ch, "q2", "topic_logs", "*.*.rabbit").await;
    bind(&ch, "q2", "topic_logs", "lazy.#").await;
    let cases: &[(&str, bool, bool)] = &[
        ("quick.orange.rabbit", true, true),
        ("lazy.orange.elephant", true, true),
        ("quick.orange.fox", true, false),
        ("lazy.brown.fox", false, true),
        ("lazy.pink.rabbit", false, true), // matches both q2 bindings: one copy
        ("quick.brown.fox", false, false),
        ("orange", false, false),
        ("quick.orange.male.rabbit", false, false),
        ("lazy.orange.male.rabbit", false, true),
        ("lazy", false, true), // '#' matches zero words
    ];
    for (key, _, _) in cases {
        send(&ch, "topic_logs", key, key.as_bytes()).await;
    }
    let want = |pick: fn(&(&str, bool, bool)) -> bool| -> Vec<Vec<u8>> {
        cases
            .iter()
            .filter(|c| pick(c))
            .map(|c| c.0.as_bytes().to_vec())
            .collect()
    };
    assert_eq!(drain(&ch, "q1").await, want(|c| c.1));
    assert_eq!(drain(&ch, "q2").await, want(|c| c.2));
    b.stop().await;
}

#[tokio::test]
async fn topic_hash_alone_matches_everything_and_star_exactly_one_word() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "all").await;
    declare(&ch, "one").await;
    bind(&ch, "all", "amq.topic", "#").await;
    bind(&ch, "one", "amq.topic", "*").await;
    for key in ["", "a", "a.b"] {
        send(&ch, "amq.topic", key, key.as_bytes()).await;
    }
    assert_eq!(drain(&ch, "all").await, [&b""[..], b"a", b"a.b"]);
    assert_eq!(drain(&ch, "one").await, [b"a"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_exchange_x_match_all() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "hdr", ExchangeKind::Headers).await;
    declare(&ch, "pdf_reports").await;
    let args = table(&[
        ("x-match", s("all")),
        ("format", s("pdf")),
        ("type", s("report")),
    ]);
    bind_args(&ch, "pdf_reports", "hdr", "", args).await;
    let both = headers(&[
        ("format", s("pdf")),
        ("type", s("report")),
        ("extra", s("ignored")),
    ]);
    send_props(&ch, "hdr", "", b"both", both).await;
    let one = headers(&[("format", s("pdf"))]);
    send_props(&ch, "hdr", "", b"one", one).await;
    let wrong = headers(&[("format", s("zip")), ("type", s("report"))]);
    send_props(&ch, "hdr", "", b"wrong", wrong).await;
    send(&ch, "hdr", "", b"none").await;
    assert_eq!(drain(&ch, "pdf_reports").await, [b"both"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_exchange_x_match_any() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "hdr", ExchangeKind::Headers).await;
    declare(&ch, "pdf_or_report").await;
    let args = table(&[
        ("x-match", s("any")),
        ("format", s("pdf")),
        ("type", s("report")),
    ]);
    bind_args(&ch, "pdf_or_report", "hdr", "", args).await;
    send_props(&ch, "hdr", "", b"format", headers(&[("format", s("pdf"))])).await;
    send_props(&ch, "hdr", "", b"type", headers(&[("type", s("report"))])).await;
    let neither = headers(&[("format", s("zip")), ("type", s("log"))]);
    send_props(&ch, "hdr", "", b"neither", neither).await;
    send(&ch, "hdr", "", b"none").await;
    assert_eq!(drain(&ch, "pdf_or_report").await, [&b"format"[..], b"type"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_exchange_all_ignores_x_headers_but_all_with_x_does_not() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "hdr", ExchangeKind::Headers).await;
    declare(&ch, "plain_all").await;
    declare(&ch, "with_x").await;
    let binding = |mode: &str| {
        table(&[
            ("x-match", s(mode)),
            ("x-tenant", s("acme")),
            ("kind", s("k")),
        ])
    };
    bind_args(&ch, "plain_all", "hdr", "", binding("all")).await;
    bind_args(&ch, "with_x", "hdr", "", binding("all-with-x")).await;
    let no_x = headers(&[("kind", s("k"))]);
    send_props(&ch, "hdr", "", b"no-x", no_x).await;
    let with_x = headers(&[("kind", s("k")), ("x-tenant", s("acme"))]);
    send_props(&ch, "hdr", "", b"with-x", with_x).await;
    let other_x = headers(&[("kind", s("k")), ("x-tenant", s("other"))]);
    send_props(&ch, "hdr", "", b"other-x", other_x).await;
    // `all` compares only the non-x- binding arguments.
    assert_eq!(
        drain(&ch, "plain_all").await,
        [&b"no-x"[..], b"with-x", b"other-x"]
    );
    assert_eq!(drain(&ch, "with_x").await, [b"with-x"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_exchange_any_with_x_matches_on_x_headers() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "hdr", ExchangeKind::Headers).await;
    declare(&ch, "plain_any").await;
    declare(&ch, "any_x").await;
    let binding = |mode: &str| table(&[("x-match", s(mode)), ("x-tenant", s("acme"))]);
    bind_args(&ch, "plain_any", "hdr", "", binding("any")).await;
    bind_args(&ch, "any_x", "hdr", "", binding("any-with-x")).await;
    let tenant = headers(&[("x-tenant", s("acme"))]);
    send_props(&ch, "hdr", "", b"tenant", tenant).await;
    // `any` ignores x- arguments, so a binding with only x- arguments matches nothing.
    assert!(drain(&ch, "plain_any").await.is_empty());
    assert_eq!(drain(&ch, "any_x").await, [b"tenant"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_exchange_predeclared_amq_match_and_amq_headers() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for ex in ["amq.match", "amq.headers"] {
        declare(&ch, ex.trim_start_matches("amq.")).await;
        let args = table(&[("x-match", s("all")), ("via", s(ex))]);
        bind_args(&ch, ex.trim_start_matches("amq."), ex, "", args).await;
        send_props(&ch, ex, "", ex.as_bytes(), headers(&[("via", s(ex))])).await;
    }
    assert_eq!(drain(&ch, "match").await, [b"amq.match"]);
    assert_eq!(drain(&ch, "headers").await, [b"amq.headers"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_binding_without_x_match_defaults_to_all() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "default_all").await;
    let args = table(&[("a", s("1")), ("b", s("2"))]);
    bind_args(&ch, "default_all", "amq.headers", "", args).await;
    let one = headers(&[("a", s("1"))]);
    send_props(&ch, "amq.headers", "", b"one", one).await;
    let both = headers(&[("a", s("1")), ("b", s("2"))]);
    send_props(&ch, "amq.headers", "", b"both", both).await;
    assert_eq!(drain(&ch, "default_all").await, [b"both"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_binding_compares_values_and_void_means_present() {
    // RabbitMQ compares header values (the string "1" is not the integer 1, integers of any width
    // are), and a void binding value only asks for the header to be present.
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "typed").await;
    let args = table(&[("x-match", s("all")), ("n", AMQPValue::LongInt(1))]);
    bind_args(&ch, "typed", "amq.headers", "", args).await;
    declare(&ch, "present").await;
    let args = table(&[("x-match", s("all")), ("flag", AMQPValue::Void)]);
    bind_args(&ch, "present", "amq.headers", "", args).await;
    send_props(&ch, "amq.headers", "", b"string", headers(&[("n", s("1"))])).await;
    let short = headers(&[("n", AMQPValue::ShortInt(1))]);
    send_props(&ch, "amq.headers", "", b"short", short).await;
    let flagged = headers(&[("flag", s("anything"))]);
    send_props(&ch, "amq.headers", "", b"flagged", flagged).await;
    assert_eq!(drain(&ch, "typed").await, [b"short"]);
    assert_eq!(drain(&ch, "present").await, [b"flagged"]);
    b.stop().await;
}

#[tokio::test]
async fn headers_binding_with_invalid_x_match_is_406() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "badmatch").await;
    let args = table(&[("x-match", s("some"))]);
    let r = within(
        5,
        ch.queue_bind(
            "badmatch".into(),
            "amq.headers".into(),
            "".into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await;
    expect_code(r, 406);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "by-name").await;
    send(&ch, "", "by-name", b"direct to queue").await;
    send(&ch, "", "no-such-queue", b"dropped").await;
    assert_eq!(drain(&ch, "by-name").await, [b"direct to queue"]);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_cannot_be_bound() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "q").await;
    let r = within(
        5,
        ch.queue_bind(
            "q".into(),
            "".into(),
            "q".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    // Nor as either end of an exchange-to-exchange binding.
    let ch = c.create_channel().await.expect("channel");
    exchange(&ch, "x", ExchangeKind::Fanout).await;
    let r = within(
        5,
        ch.exchange_bind(
            "x".into(),
            "".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    let ch = c.create_channel().await.expect("channel");
    let r = within(
        5,
        ch.exchange_bind(
            "".into(),
            "x".into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    expect_code(r, 403);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_cannot_be_declared_even_passively() {
    // RabbitMQ: check_not_default_exchange runs for passive declares too (403).
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    expect_code(passive_exchange(&ch, "").await, 403);
    b.stop().await;
}

#[tokio::test]
async fn default_exchange_cannot_be_deleted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let r = within(
        5,
        ch.exchange_delete("".into(), ExchangeDeleteOptions::default()),
    )
    .await;
    expect_code(r, 403);
    b.stop().await;
}

#[tokio::test]
async fn predeclared_exchanges_exist() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for name in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        passive_exchange(&ch, name)
            .await
            .unwrap_or_else(|e| panic!("passive declare of {name}: {e}"));
    }
    // And they route as their type says.
    declare(&ch, "pq").await;
    bind(&ch, "pq", "amq.direct", "k").await;
    bind(&ch, "pq", "amq.fanout", "").await;
    send(&ch, "amq.direct", "k", b"direct").await;
    send(&ch, "amq.fanout", "whatever", b"fanout").await;
    assert_eq!(drain(&ch, "pq").await, [&b"direct"[..], b"fanout"]);
    b.stop().await;
}

#[tokio::test]
async fn exchange_to_exchange_chain() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "front", ExchangeKind::Direct).await;
    exchange(&ch, "middle", ExchangeKind::Topic).await;
    exchange(&ch, "back", ExchangeKind::Fanout).await;
    e2e(&ch, "middle", "front", "orders.eu").await;
    e2e(&ch, "back", "middle", "orders.*").await;
    declare(&ch, "sink").await;
    bind(&ch, "sink", "back", "").await;
    send(&ch, "front", "orders.eu", b"through").await;
    send(&ch, "front", "orders.us", b"not bound at front").await;
    send(&ch, "middle", "orders.us", b"enters at middle").await;
    assert_eq!(
        drain(&ch, "sink").await,
        [&b"through"[..], b"enters at middle"]
    );
    b.stop().await;
}

#[tokio::test]
async fn exchange_binding_cycle_delivers_one_copy_per_queue() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "cyc_a", ExchangeKind::Fanout).await;
    exchange(&ch, "cyc_b", ExchangeKind::Fanout).await;
    e2e(&ch, "cyc_b", "cyc_a", "").await;
    e2e(&ch, "cyc_a", "cyc_b", "").await;
    declare(&ch, "qa").await;
    declare(&ch, "qb").await;
    bind(&ch, "qa", "cyc_a", "").await;
    bind(&ch, "qb", "cyc_b", "").await;
    send(&ch, "cyc_a", "", b"from a").await;
    send(&ch, "cyc_b", "", b"from b").await;
    assert_eq!(drain(&ch, "qa").await, [&b"from a"[..], b"from b"]);
    assert_eq!(drain(&ch, "qb").await, [&b"from a"[..], b"from b"]);
    b.stop().await;
}

#[tokio::test]
async fn diamond_of_exchanges_delivers_one_copy() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    for x in ["top", "left", "right"] {
        exchange(&ch, x, ExchangeKind::Fanout).await;
    }
    e2e(&ch, "left", "top", "").await;
    e2e(&ch, "right", "top", "").await;
    declare(&ch, "bottom").await;
    bind(&ch, "bottom", "left", "").await;
    bind(&ch, "bottom", "right", "").await;
    send(&ch, "top", "", b"once").await;
    assert_eq!(drain(&ch, "bottom").await, [b"once"]);
    b.stop().await;
}

#[tokio::test]
async fn alternate_exchange_receives_unroutable_messages() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "ae", ExchangeKind::Fanout).await;
    declare(&ch, "unrouted").await;
    bind(&ch, "unrouted", "ae", "").await;
    let args = table(&[("alternate-exchange", s("ae"))]);
    let opts = ExchangeDeclareOptions::default();
    exchange_with(&ch, "main", ExchangeKind::Direct, opts, args).await;
    declare(&ch, "routed").await;
    bind(&ch, "routed", "main", "good").await;
    send(&ch, "main", "good", b"routed").await;
    send(&ch, "main", "bad", b"to ae").await;
    assert_eq!(drain(&ch, "routed").await, [b"routed"]);
    assert_eq!(drain(&ch, "unrouted").await, [b"to ae"]);
    b.stop().await;
}

#[tokio::test]
async fn mandatory_message_caught_by_alternate_exchange_is_not_returned() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "ae2", ExchangeKind::Fanout).await;
    declare(&ch, "caught").await;
    bind(&ch, "caught", "ae2", "").await;
    let args = table(&[("alternate-exchange", s("ae2"))]);
    let opts = ExchangeDeclareOptions::default();
    exchange_with(&ch, "main2", ExchangeKind::Direct, opts, args).await;
    within(5, ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(
        5,
        ch.basic_publish(
            "main2".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"m",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let c = within(5, confirm).await.expect("confirm");
    assert!(
        matches!(c, lapin::Confirmation::Ack(None)),
        "expected a plain ack, got {c:?}"
    );
    assert_eq!(drain(&ch, "caught").await, [b"m"]);
    b.stop().await;
}

#[tokio::test]
async fn publishing_to_internal_exchange_is_refused() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let opts = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    exchange_with(&ch, "internal_x", ExchangeKind::Fanout, opts, table(&[])).await;
    assert_eq!(
        publish_error(&ch, "internal_x", "", BasicProperties::default()).await,
        Some(403)
    );
    // The connection survives the channel error.
    let ch = c.create_channel().await.expect("channel after 403");
    declare(&ch, "still-works").await;
    b.stop().await;
}

#[tokio::test]
async fn internal_exchange_routes_through_exchange_binding() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let opts = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    exchange_with(&ch, "inner", ExchangeKind::Fanout, opts, table(&[])).await;
    exchange(&ch, "outer", ExchangeKind::Direct).await;
    e2e(&ch, "inner", "outer", "k").await;
    declare(&ch, "behind_inner").await;
    bind(&ch, "behind_inner", "inner", "").await;
    send(&ch, "outer", "k", b"via outer").await;
    assert_eq!(drain(&ch, "behind_inner").await, [b"via outer"]);
    b.stop().await;
}

#[tokio::test]
async fn unbind_stops_routing() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "ub", ExchangeKind::Direct).await;
    declare(&ch, "ubq").await;
    bind(&ch, "ubq", "ub", "k").await;
    send(&ch, "ub", "k", b"before").await;
    within(
        5,
        ch.queue_unbind("ubq".into(), "ub".into(), "k".into(), table(&[])),
    )
    .await
    .expect("queue.unbind");
    send(&ch, "ub", "k", b"after").await;
    assert_eq!(drain(&ch, "ubq").await, [b"before"]);
    b.stop().await;
}

#[tokio::test]
async fn exchange_unbind_stops_routing() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "src", ExchangeKind::Fanout).await;
    exchange(&ch, "dst", ExchangeKind::Fanout).await;
    e2e(&ch, "dst", "src", "").await;
    declare(&ch, "dq").await;
    bind(&ch, "dq", "dst", "").await;
    send(&ch, "src", "", b"before").await;
    within(
        5,
        ch.exchange_unbind(
            "dst".into(),
            "src".into(),
            "".into(),
            ExchangeUnbindOptions::default(),
            table(&[]),
        ),
    )
    .await
    .expect("exchange.unbind");
    send(&ch, "src", "", b"after").await;
    assert_eq!(drain(&ch, "dq").await, [b"before"]);
    b.stop().await;
}

#[tokio::test]
async fn exchange_delete_if_unused() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    exchange(&ch, "used", ExchangeKind::Direct).await;
    declare(&ch, "uq").await;
    bind(&ch, "uq", "used", "k").await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    expect_code(
        within(5, ch.exchange_delete("used".into(), if_unused)).await,
        406,
    );
    let ch = c.create_channel().await.expect("channel");
    passive_exchange(&ch, "used")
        .await
        .expect("still there after the failed delete");
    within(
        5,
        ch.queue_unbind("uq".into(), "used".into(), "k".into(), table(&[])),
    )
    .await
    .expect("unbind");
    within(5, ch.exchange_delete("used".into(), if_unused))
        .await
        .expect("if-unused delete of an unbound exchange");
    expect_code(passive_exchange(&ch, "used").await, 404);
    b.stop().await;
}

#[tokio::test]
async fn exchange_delete_removes_its_bindings() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "gone", ExchangeKind::Fanout).await;
    declare(&ch, "gq").await;
    bind(&ch, "gq", "gone", "").await;
    within(
        5,
        ch.exchange_delete("gone".into(), ExchangeDeleteOptions::default()),
    )
    .await
    .expect("delete");
    // Redeclared under the same name it starts without bindings.
    exchange(&ch, "gone", ExchangeKind::Fanout).await;
    send(&ch, "gone", "", b"x").await;
    assert!(drain(&ch, "gq").await.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    exchange_with(&ch, "ad", ExchangeKind::Direct, opts, table(&[])).await;
    // Never bound: it stays.
    passive_exchange(&ch, "ad")
        .await
        .expect("unbound auto-delete");
    declare(&ch, "adq1").await;
    declare(&ch, "adq2").await;
    bind(&ch, "adq1", "ad", "a").await;
    bind(&ch, "adq2", "ad", "b").await;
    within(
        5,
        ch.queue_unbind("adq1".into(), "ad".into(), "a".into(), table(&[])),
    )
    .await
    .expect("unbind");
    passive_exchange(&ch, "ad")
        .await
        .expect("one binding is left");
    within(
        5,
        ch.queue_unbind("adq2".into(), "ad".into(), "b".into(), table(&[])),
    )
    .await
    .expect("unbind");
    expect_code(passive_exchange(&ch, "ad").await, 404);
    b.stop().await;
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_bound_queue_is_deleted() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    exchange_with(&ch, "ad2", ExchangeKind::Fanout, opts, table(&[])).await;
    declare(&ch, "adq").await;
    bind(&ch, "adq", "ad2", "").await;
    within(
        5,
        ch.queue_delete("adq".into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete");
    expect_code(passive_exchange(&ch, "ad2").await, 404);
    b.stop().await;
}

#[tokio::test]
async fn bindings_with_different_arguments_are_distinct() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    exchange(&ch, "args_x", ExchangeKind::Direct).await;
    declare(&ch, "aq").await;
    let a1 = table(&[("v", AMQPValue::LongInt(1))]);
    let a2 = table(&[("v", AMQPValue::LongInt(2))]);
    bind_args(&ch, "aq", "args_x", "k", a1.clone()).await;
    bind_args(&ch, "aq", "args_x", "k", a2.clone()).await;
    // Two bindings to the same queue: still one copy.
    send(&ch, "args_x", "k", b"1").await;
    assert_eq!(drain(&ch, "aq").await, [b"1"]);
    // Removing one leaves the other in place.
    within(
        5,
        ch.queue_unbind("aq".into(), "args_x".into(), "k".into(), a1),
    )
    .await
    .expect("unbind a1");
    send(&ch, "args_x", "k", b"2").await;
    assert_eq!(drain(&ch, "aq").await, [b"2"]);
    within(
        5,
        ch.queue_unbind("aq".into(), "args_x".into(), "k".into(), a2),
    )
    .await
    .expect("unbind a2");
    send(&ch, "args_x", "k", b"3").await;
    assert!(drain(&ch, "aq").await.is_empty());
    b.stop().await;
}

fn every_property() -> BasicProperties {
    let mut nested = FieldTable::default();
    nested.insert("inner-int".into(), AMQPValue::LongLongInt(-42));
    nested.insert("inner-str".into(), s("deep"));
    let mut deeper = FieldTable::default();
    deeper.insert("leaf".into(), AMQPValue::Boolean(false));
    nested.insert("deeper".into(), AMQPValue::FieldTable(deeper));
    let array = FieldArray::from(vec![
        AMQPValue::LongInt(1),
        s("two"),
        AMQPValue::Boolean(true),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::ShortShortInt(-3)])),
        AMQPValue::FieldTable(table(&[("k", s("v"))])),
    ]);
    let hdrs = table(&[
        ("bool-true", AMQPValue::Boolean(true)),
        ("bool-false", AMQPValue::Boolean(false)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(60000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(i64::MIN)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 12345,
            }),
        ),
        ("string", s("héllo wörld")),
        (
            "bytes",
            AMQPValue::ByteArray(ByteArray::from(vec![0u8, 1, 2, 255, 0xCE])),
        ),
        (
            "binary-longstr",
            AMQPValue::LongString(vec![0u8, 0xCE].into()),
        ),
        ("timestamp", AMQPValue::Timestamp(1_700_000_000)),
        ("void", AMQPValue::Void),
        ("array", AMQPValue::FieldArray(array)),
        ("nested", AMQPValue::FieldTable(nested)),
        ("empty-table", AMQPValue::FieldTable(FieldTable::default())),
        ("empty-array", AMQPValue::FieldArray(FieldArray::default())),
    ]);
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(hdrs)
        .with_delivery_mode(2)
        .with_priority(7)
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_expiration("600000".into())
        .with_message_id("msg-1".into())
        .with_timestamp(1_700_000_123)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("warren-tests".into())
}

#[tokio::test]
async fn every_property_is_delivered_intact() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "props").await;
    let props = every_property();
    send_props(&ch, "", "props", b"{}", props.clone()).await;
    send_props(&ch, "", "props", b"{}", props.clone()).await;
    // Through basic.get ...
    let got = within(
        5,
        ch.basic_get("props".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    assert_eq!(got.delivery.properties, props);
    assert_eq!(got.delivery.data, b"{}");
    // ... and through basic.deliver.
    let mut consumer = within(
        5,
        ch.basic_consume(
            "props".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            table(&[]),
        ),
    )
    .await
    .expect("consume");
    let d = within(5, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert_eq!(d.properties, props);
    assert_eq!(d.data, b"{}");
    b.stop().await;
}

#[tokio::test]
async fn user_id_must_match_the_authenticated_user() {
    // RabbitMQ's validated user-id: a claimed user_id other than the connection's user is a 406.
    let b = Broker::start().await;
    let c = b.connect().await;
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "uid").await;
    let mallory = BasicProperties::default().with_user_id("mallory".into());
    assert_eq!(publish_error(&ch, "", "uid", mallory).await, Some(406));
    let ch = c.create_channel().await.expect("channel");
    let guest = BasicProperties::default().with_user_id("guest".into());
    send_props(&ch, "", "uid", b"ok", guest).await;
    assert_eq!(drain(&ch, "uid").await, [b"ok"]);
    b.stop().await;
}

#[tokio::test]
async fn multi_frame_body_is_delivered_intact() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "big").await;
    // 1 MiB + 7: eight-plus frames at frame_max 131072, with a ragged last frame.
    let body: Vec<u8> = (0..(1usize << 20) + 7)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect();
    let props = BasicProperties::default().with_message_id("big".into());
    send_props(&ch, "", "big", &body, props.clone()).await;
    send_props(&ch, "", "big", &body, props.clone()).await;
    let got = within(
        10,
        ch.basic_get("big".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    assert_eq!(got.delivery.data.len(), body.len());
    assert!(got.delivery.data == body, "basic.get body differs");
    assert_eq!(got.delivery.properties, props);
    let mut consumer = within(
        5,
        ch.basic_consume(
            "big".into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[]),
        ),
    )
    .await
    .expect("consume");
    let d = within(10, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert!(d.data == body, "basic.deliver body differs");
    within(5, d.ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    b.stop().await;
}

#[tokio::test]
async fn empty_body_is_delivered() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "empty").await;
    let props = BasicProperties::default().with_content_type("text/plain".into());
    send_props(&ch, "", "empty", b"", props.clone()).await;
    send_props(&ch, "", "empty", b"", props.clone()).await;
    let got = within(
        5,
        ch.basic_get("empty".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("get")
    .expect("a message");
    assert!(got.delivery.data.is_empty());
    assert_eq!(got.delivery.properties, props);
    let mut consumer = within(
        5,
        ch.basic_consume(
            "empty".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            table(&[]),
        ),
    )
    .await
    .expect("consume");
    let d = within(5, consumer.next())
        .await
        .expect("delivery")
        .expect("ok");
    assert!(d.data.is_empty());
    assert_eq!(d.properties, props);
    b.stop().await;
}
