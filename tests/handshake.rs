//! Connection opening and closing as RabbitMQ does it: protocol header, connection.start
//! properties, PLAIN/AMQPLAIN, authentication failures, vhost access, tune negotiation,
//! heartbeats, close in both directions and broker shutdown.

use crate::common;
use crate::raw_amqp;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, connection, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use common::*;
use futures_lite::StreamExt;
use lapin::{Connection, ConnectionProperties};
use raw_amqp::*;
use std::time::{Duration, Instant};
use warren::config::UserConfig;

const CAPABILITIES: [&str; 9] = [
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
    "direct_reply_to",
];

/// The connection.close a failed handshake ends with (None: socket closed without one).
fn close_of(reply: Option<(u16, AMQPClass)>) -> Option<connection::Close> {
    match reply {
        Some((0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => Some(c),
        None => None,
        Some(other) => panic!("expected connection.close, got {other:?}"),
    }
}

fn long_str(t: &FieldTable, key: &str) -> String {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("server property {key}: expected a long string, got {other:?}"),
    }
}

/// A lapin connection works: open a channel and declare a queue.
async fn lapin_works(c: &Connection) {
    let ch = c.create_channel().await.expect("channel");
    declare(&ch, "").await;
}

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_then_close() {
    let b = Broker::start().await;
    for wrong in [
        &b"AMQP\x00\x00\x08\x00"[..], // 0-8
        &b"AMQP\x01\x01\x00\x0a"[..], // 0-10 style
        &b"AMQP\x00\x01\x00\x00"[..], // 1.0
        &b"GET / HTTP/1.1\r\n\r\n"[..],
    ] {
        within(5, async {
            let mut r = Raw::connect(b.addr()).await;
            r.send(wrong).await;
            let got = r.read_bytes(8).await.expect("the broker's protocol header");
            assert_eq!(&got[..], HEADER, "reply to {wrong:?}");
            assert!(
                r.closed_within(Duration::from_secs(3)).await,
                "socket not closed after a wrong header {wrong:?}"
            );
        })
        .await;
    }
    // The listener is unharmed.
    within(5, async { lapin_works(&b.connect().await).await }).await;
    b.stop().await;
}

#[tokio::test]
async fn connection_start_has_rabbitmq_server_properties() {
    let b = Broker::start_with(|c| c.cluster_name = "test-cluster".into()).await;
    within(5, async {
        let mut r = Raw::connect(b.addr()).await;
        r.send(HEADER).await;
        // Parse the very first frame the broker sends with amq-protocol's parse_frame.
        let start = match r.read_frame().await.expect("connection.start") {
            AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(s))) => s,
            other => panic!("expected connection.start on channel 0, got {other:?}"),
        };
        assert_eq!((start.version_major, start.version_minor), (0, 9));
        let p = &start.server_properties;
        assert_eq!(long_str(p, "product"), "warren");
        assert!(!long_str(p, "version").is_empty());
        assert!(!long_str(p, "platform").is_empty());
        assert_eq!(long_str(p, "cluster_name"), "test-cluster");
        let caps = match p.inner().get("capabilities") {
            Some(AMQPValue::FieldTable(t)) => t,
            other => panic!("capabilities: expected a table, got {other:?}"),
        };
        for c in CAPABILITIES {
            assert_eq!(
                caps.inner().get(c),
                Some(&AMQPValue::Boolean(true)),
                "capability {c}"
            );
        }
        let mechs = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        let mechs: Vec<&str> = mechs.split_whitespace().collect();
        assert!(mechs.contains(&"PLAIN"), "mechanisms {mechs:?}");
        assert!(mechs.contains(&"AMQPLAIN"), "mechanisms {mechs:?}");
        let locales = String::from_utf8_lossy(start.locales.as_bytes()).into_owned();
        assert!(
            locales.split_whitespace().any(|l| l == "en_US"),
            "locales {locales:?}"
        );
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn plain_login_succeeds() {
    let b = Broker::start().await;
    within(5, async {
        // Raw: PLAIN "\0guest\0guest" reaches connection.open-ok.
        let mut r = Raw::open(b.addr()).await;
        r.open_channel(1).await;
        // lapin uses PLAIN by default.
        let c = Connection::connect(
            &format!("{}?auth_mechanism=plain", b.url()),
            ConnectionProperties::default(),
        )
        .await
        .expect("lapin PLAIN login");
        lapin_works(&c).await;
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn amqplain_login_succeeds() {
    let b = Broker::start().await;
    within(5, async {
        let login = Login {
            mechanism: "AMQPLAIN".into(),
            response: amqplain_response("guest", "guest"),
            ..Login::default()
        };
        let mut r = Raw::open_with(b.addr(), &login).await;
        r.open_channel(1).await;
        let c = Connection::connect(
            &format!("{}?auth_mechanism=amqplain", b.url()),
            ConnectionProperties::default(),
        )
        .await
        .expect("lapin AMQPLAIN login");
        lapin_works(&c).await;
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn bad_password_with_auth_failure_close_gets_403() {
    let b = Broker::start().await;
    within(10, async {
        for login in [
            Login {
                response: plain_response("guest", "wrong"),
                ..Login::default()
            },
            Login {
                mechanism: "AMQPLAIN".into(),
                response: amqplain_response("guest", "wrong"),
                ..Login::default()
            },
            Login {
                response: plain_response("nobody", "guest"),
                ..Login::default()
            },
        ] {
            let mut r = Raw::connect(b.addr()).await;
            let close = close_of(r.login(&login).await).expect("connection.close");
            assert_eq!(close.reply_code, 403, "{close:?}");
            assert!(
                close.reply_text.as_str().starts_with("ACCESS_REFUSED"),
                "{close:?}"
            );
            assert_eq!((close.class_id, close.method_id), (10, 11), "{close:?}");
            assert!(r.closed_within(Duration::from_secs(3)).await);
        }
        // lapin announces authentication_failure_close and sees the 403.
        let url = format!("amqp://guest:wrong@{}/%2f", b.addr());
        let e = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect_err("login with a bad password");
        assert_eq!(reply_code(&e), Some(403), "{e:?}");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn bad_password_without_capability_just_closes_the_socket() {
    let b = Broker::start().await;
    within(10, async {
        let login = Login {
            response: plain_response("guest", "wrong"),
            auth_failure_close: false,
            ..Login::default()
        };
        let mut r = Raw::connect(b.addr()).await;
        // No connection.close, no tune: the next thing is EOF.
        assert!(
            r.login(&login).await.is_none(),
            "expected the socket to close"
        );
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_vhost_gets_530() {
    let b = Broker::start().await;
    within(5, async {
        let mut r = Raw::connect(b.addr()).await;
        let login = Login {
            vhost: "nope".into(),
            ..Login::default()
        };
        let close = close_of(r.try_handshake(&login).await).expect("connection.close");
        assert_eq!(close.reply_code, 530, "{close:?}");
        assert!(
            close.reply_text.as_str().starts_with("NOT_ALLOWED"),
            "{close:?}"
        );
        assert_eq!((close.class_id, close.method_id), (10, 40), "{close:?}");
        assert!(r.closed_within(Duration::from_secs(3)).await);

        let url = format!("amqp://guest:guest@{}/nope", b.addr());
        let e = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect_err("open of a missing vhost");
        assert_eq!(reply_code(&e), Some(530), "{e:?}");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn configured_user_logs_in_and_is_limited_to_its_vhosts() {
    let b = Broker::start_with(|c| {
        c.vhosts = vec!["/".into(), "other".into()];
        c.users = vec![UserConfig {
            name: "app".into(),
            password: Some("s3cret".into()),
            password_hash: None,
            tags: vec![],
            vhosts: vec!["/".into()],
        }];
    })
    .await;
    within(10, async {
        let url = format!("amqp://app:s3cret@{}/%2f", b.addr());
        let c = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect("configured user logs in");
        lapin_works(&c).await;

        let url = format!("amqp://app:wrong@{}/%2f", b.addr());
        let e = Connection::connect(&url, ConnectionProperties::default())
            .await
            .expect_err("wrong password");
        assert_eq!(reply_code(&e), Some(403), "{e:?}");

        // A vhost that exists but the user may not open: 530.
        let mut r = Raw::connect(b.addr()).await;
        let login = Login {
            response: plain_response("app", "s3cret"),
            vhost: "other".into(),
            ..Login::default()
        };
        let close = close_of(r.try_handshake(&login).await).expect("connection.close");
        assert_eq!(close.reply_code, 530, "{close:?}");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn guest_logs_in_from_loopback() {
    let b = Broker::start().await;
    within(5, async { lapin_works(&b.connect().await).await }).await;
    b.stop().await;
}

/// A local non-loopback address of this host, if it has one (no packet is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn guest_is_refused_from_a_non_loopback_address() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this host; skipping");
        return;
    };
    let b = Broker::start_with(|c| c.bind = "0.0.0.0".into()).await;
    let addr = std::net::SocketAddr::new(ip, b.addr().port());
    within(5, async {
        let mut r = Raw::connect(addr).await;
        let close = close_of(r.login(&Login::default()).await).expect("connection.close");
        assert_eq!(close.reply_code, 403, "{close:?}");
        // RabbitMQ's `auth_fail`: the client learns only that the login was refused.
        assert_eq!(
            close.reply_text.as_str(),
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. \
             For details see the broker logfile.",
            "{close:?}"
        );
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn tune_offers_rabbitmq_defaults() {
    let b = Broker::start().await;
    within(5, async {
        let r = Raw::open(b.addr()).await;
        let t = r.tune.expect("tune");
        assert_eq!(
            (t.channel_max, t.frame_max, t.heartbeat),
            (2047, 131_072, 60)
        );
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn client_can_lower_frame_max() {
    let b = Broker::start().await;
    within(10, async {
        let login = Login {
            frame_max: Some(4096),
            ..Login::default()
        };
        let mut r = Raw::open_with(b.addr(), &login).await;
        r.open_channel(1).await;
        let declare = queue::Declare {
            queue: "fm".into(),
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        r.send_method(1, AMQPClass::Queue(queue::AMQPMethod::Declare(declare)))
            .await;
        r.read_method().await.expect("declare-ok");
        // Publish 10000 bytes as frames that fit 4096.
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        r.send(&publish_frame(1, "", "fm")).await;
        r.send(&content_header(1, data.len() as u64)).await;
        for chunk in data.chunks(4096 - 8) {
            r.send(&body(1, chunk)).await;
        }
        let get = basic::Get {
            queue: "fm".into(),
            no_ack: true,
        };
        r.send_method(1, AMQPClass::Basic(basic::AMQPMethod::Get(get)))
            .await;
        // The broker must split the delivery by the frame_max we negotiated.
        let mut got = Vec::new();
        let mut frames = 0;
        while got.len() < data.len() {
            let f = r.read_raw_frame().await.expect("frame");
            assert!(
                f.payload.len() + 8 <= 4096,
                "frame of {} bytes exceeds the negotiated frame_max",
                f.payload.len() + 8
            );
            if f.kind == 3 {
                got.extend_from_slice(&f.payload);
                frames += 1;
            }
        }
        assert_eq!(got, data);
        assert!(frames >= 3, "body came in {frames} frames");
        // And a frame above the lowered limit is now a frame error.
        r.send(&frame(3, 1, &vec![0u8; 5000])).await;
        assert_eq!(r.close_code().await, 501);
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn client_can_lower_channel_max() {
    let b = Broker::start().await;
    within(10, async {
        let login = Login {
            channel_max: Some(3),
            ..Login::default()
        };
        let mut r = Raw::open_with(b.addr(), &login).await;
        for ch in 1..=3 {
            r.open_channel(ch).await;
        }
        // RabbitMQ: "NOT_ALLOWED - number of channels opened (3) has reached the negotiated
        // channel_max (3)", a connection error.
        r.send_method(
            4,
            AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Open(
                amq_protocol::protocol::channel::Open {},
            )),
        )
        .await;
        let close = r.connection_close().await.expect("connection.close");
        assert_eq!(close.reply_code, 530, "{close:?}");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn frame_max_below_4096_gets_530() {
    let b = Broker::start().await;
    within(5, async {
        let mut r = Raw::connect(b.addr()).await;
        let login = Login {
            frame_max: Some(1024),
            ..Login::default()
        };
        let close = close_of(r.try_handshake(&login).await).expect("connection.close");
        assert_eq!(close.reply_code, 530, "{close:?}");
        assert_eq!((close.class_id, close.method_id), (10, 31), "{close:?}");
        assert!(r.closed_within(Duration::from_secs(3)).await);
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn tune_ok_above_the_server_limits_gets_530() {
    // RabbitMQ (rabbit_reader:validate_negotiated_integer_value) refuses a client value above the
    // server's, and 0 ("no limit") when the server has a limit.
    let b = Broker::start().await;
    for (frame_max, channel_max) in [
        (Some(131_073), None),
        (Some(0), None),
        (None, Some(2048)),
        (None, Some(0)),
    ] {
        within(5, async {
            let mut r = Raw::connect(b.addr()).await;
            let login = Login {
                frame_max,
                channel_max,
                ..Login::default()
            };
            let close = close_of(r.try_handshake(&login).await).expect("connection.close");
            assert_eq!(
                close.reply_code, 530,
                "frame_max={frame_max:?} channel_max={channel_max:?}: {close:?}"
            );
        })
        .await;
    }
    b.stop().await;
}

#[tokio::test]
async fn server_sends_heartbeats_when_idle() {
    let b = Broker::start().await;
    within(10, async {
        let login = Login {
            heartbeat: Some(1),
            ..Login::default()
        };
        let mut r = Raw::open_with(b.addr(), &login).await;
        // Keep ourselves alive with our own heartbeats and count the broker's for 3 s.
        let hb = frame(8, 0, &[]);
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let deadline = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(deadline);
        let mut seen = 0;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = tick.tick() => r.send(&hb).await,
                f = r.read_frame() => match f {
                    Some(AMQPFrame::Heartbeat) => seen += 1,
                    Some(other) => panic!("unexpected frame {other:?}"),
                    None => panic!("broker closed a connection that sent heartbeats"),
                },
            }
        }
        // Interval 1 s, so at least one every second while idle.
        assert!(seen >= 2, "only {seen} heartbeats in 3 s");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_two_intervals() {
    let b = Broker::start().await;
    within(10, async {
        let login = Login {
            heartbeat: Some(1),
            ..Login::default()
        };
        let mut r = Raw::open_with(b.addr(), &login).await;
        let t0 = Instant::now();
        // Read (and ignore) the broker's heartbeats; send nothing.
        while let Some(f) = r.read_frame().await {
            assert!(matches!(f, AMQPFrame::Heartbeat), "unexpected frame {f:?}");
        }
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(5),
            "dropped after {waited:?}, expected about 2 s"
        );
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn client_close_gets_close_ok() {
    let b = Broker::start().await;
    within(5, async {
        let mut r = Raw::open(b.addr()).await;
        r.open_channel(1).await;
        let close = connection::Close {
            reply_code: 200,
            reply_text: "bye".into(),
            class_id: 0,
            method_id: 0,
        };
        r.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(close)),
        )
        .await;
        match r.read_method().await {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)))) => {}
            other => panic!("expected connection.close-ok, got {other:?}"),
        }
        assert!(r.closed_within(Duration::from_secs(3)).await);
        // lapin's close completes too.
        let c = b.connect().await;
        c.close(200, "bye".into()).await.expect("lapin close");
    })
    .await;
    b.stop().await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_320_and_returns() {
    let b = Broker::start().await;
    let lapin_conn = within(5, b.connect()).await;
    let mut events = lapin_conn.events_listener();
    let mut r = within(5, Raw::open(b.addr())).await;
    let stop = tokio::spawn(b.stop());
    within(5, async {
        assert_eq!(r.close_code().await, 320);
        assert!(r.closed_within(Duration::from_secs(3)).await);
    })
    .await;
    within(5, async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => {
                    assert_eq!(reply_code(&e), Some(320), "{e:?}");
                    break;
                }
                Some(_) => continue,
                None => panic!("lapin saw no error event"),
            }
        }
    })
    .await;
    within(10, stop).await.expect("shutdown task");
    assert!(!lapin_conn.status().connected());
}
