//! Deeply nested field tables in method arguments and content properties must not crash the broker (stack overflow in a
//! recursive parser): the client gets a connection error and everyone else carries on.
use crate::common;
use crate::raw_amqp;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A field table `{ "x": [[[...]]] }` nested `depth` arrays deep, with its u32 length prefix.
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

fn method_frame(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![1u8];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

#[tokio::test]
async fn nested_client_properties_do_not_crash_the_broker() {
    let b = Broker::start().await;
    let mut s = b.raw().await;
    s.write_all(b"AMQP\x00\x00\x09\x01").await.expect("header");
    let mut buf = vec![0u8; 4096];
    let _ = within(5, s.read(&mut buf)).await.expect("connection.start");
    let mut p = vec![0, 10, 0, 11];
    p.extend_from_slice(&nested_table(20_000));
    p.extend_from_slice(&[5, b'P', b'L', b'A', b'I', b'N']);
    let resp = b"\0guest\0guest";
    p.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    p.extend_from_slice(resp);
    p.extend_from_slice(&[5, b'e', b'n', b'_', b'U', b'S']);
    let _ = s.write_all(&method_frame(0, &p)).await;
    // The broker answers with a close or drops the socket; either way it must still serve others.
    let _ = within(5, s.read(&mut buf)).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "still-alive").await;
    publish(&ch, "still-alive", b"ok").await;
    assert_eq!(
        within(5, get_body(&ch, "still-alive")).await.as_deref(),
        Some(&b"ok"[..])
    );
    b.stop().await;
}

/// A client sending connection.start (a server method, whose server-properties table the
/// nesting guard did not cover) with a deep table instead of start-ok: one unauthenticated 100 KB
/// frame overflowed the stack and aborted the broker. Found while writing the field_table fuzz
/// target (listing every method whose table reaches amq-protocol's recursive parser).
#[tokio::test]
async fn nested_connection_start_does_not_crash_the_broker() {
    let b = Broker::start().await;
    let mut s = b.raw().await;
    s.write_all(b"AMQP\x00\x00\x09\x01").await.expect("header");
    let mut buf = vec![0u8; 4096];
    let _ = within(5, s.read(&mut buf)).await.expect("connection.start");
    let mut p = vec![0, 10, 0, 10, 0, 9];
    p.extend_from_slice(&nested_table(20_000));
    p.extend_from_slice(&[0, 0, 0, 5, b'P', b'L', b'A', b'I', b'N']);
    p.extend_from_slice(&[0, 0, 0, 5, b'e', b'n', b'_', b'U', b'S']);
    let _ = s.write_all(&method_frame(0, &p)).await;
    let _ = within(5, s.read(&mut buf)).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "still-alive").await;
    publish(&ch, "still-alive", b"ok").await;
    assert_eq!(
        within(5, get_body(&ch, "still-alive")).await.as_deref(),
        Some(&b"ok"[..])
    );
    b.stop().await;
}

/// publish + a content header whose `headers` property is `nested_table(depth)`, + a body.
fn publish_nested(depth: usize) -> Vec<u8> {
    let mut wire = raw_amqp::publish_frame(1, "", "nested");
    let mut h = vec![0, 60, 0, 0];
    h.extend_from_slice(&2u64.to_be_bytes());
    h.extend_from_slice(&[0x20, 0x00]); // property flags: headers only
    h.extend_from_slice(&nested_table(depth));
    wire.extend_from_slice(&raw_amqp::frame(2, 1, &h));
    wire.extend_from_slice(&raw_amqp::body(1, b"ok"));
    wire
}

/// Content properties nested past 64 levels (the headers table being level 1): 501 FRAME_ERROR
/// for that connection, as for any undecodable content header. (RabbitMQ has no such limit; no
/// real client nests headers anywhere near it.) At the limit the message is routed and
/// delivered with its headers intact; 20,000 levels in one frame leave the broker up.
#[tokio::test]
async fn nested_content_properties_are_bounded() {
    let b = Broker::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "nested").await;
    // nested_table(62): the table (level 1) holds 63 arrays, levels 2..=64.
    let mut r = raw_amqp::Raw::open(b.addr()).await;
    r.open_channel(1).await;
    r.send(&publish_nested(62)).await;
    let got = within(5, async {
        loop {
            let m = ch
                .basic_get(
                    "nested".into(),
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get");
            if let Some(m) = m {
                break m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(got.delivery.data, b"ok");
    assert!(got.delivery.properties.headers().is_some());
    for depth in [63, 20_000] {
        let mut r = raw_amqp::Raw::open(b.addr()).await;
        r.open_channel(1).await;
        r.send(&publish_nested(depth)).await;
        assert_eq!(within(5, r.close_code()).await, 501, "depth {depth}");
    }
    publish(&ch, "nested", b"still").await;
    assert_eq!(
        within(5, get_body(&ch, "nested")).await.as_deref(),
        Some(&b"still"[..])
    );
    b.stop().await;
}
