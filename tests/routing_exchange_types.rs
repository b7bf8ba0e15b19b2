//! Routing through each exchange type, checked against RabbitMQ's documented behaviour through
//! lapin: direct (exact key), fanout (a copy per queue), topic (`*`, `#`, tutorial five) and
//! headers (x-match all and any, `x-` headers, value comparison and void, the predeclared
//! amq.match and amq.headers, a missing or invalid x-match).
use crate::common;
use common::routing::*;
use common::*;

use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::ExchangeKind;

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
    let text = r.as_ref().map(|_| ()).unwrap_err().to_string();
    // RabbitMQ 4's words, the value printed as an Erlang binary.
    assert!(
        text.contains("Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, or any-with-x"),
        "{text}"
    );
    expect_code(r, 406);
    let (_c, ch) = b.channel().await;
    let args = table(&[("x-match", AMQPValue::ShortShortInt(1))]);
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
    let text = r.as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(
        text.contains("Invalid x-match field type byte (value 1); expected longstr"),
        "{text}"
    );
    b.stop().await;
}
