//! Deeply nested field tables in method arguments must not crash the broker (stack overflow in a
//! recursive parser): the client gets a connection error and everyone else carries on.
mod common;
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
