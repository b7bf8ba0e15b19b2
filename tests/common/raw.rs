//! A minimal hand-rolled AMQP client for what lapin cannot do: drop the TCP connection without a
//! close handshake, and interleave content frames of several channels. (For tests that put exact
//! bytes on the wire, see tests/raw_amqp/.)
use super::{within, Broker};
use amq_protocol::protocol::{basic, channel, connection, queue, AMQPClass};
use amq_protocol::types::{FieldTable, LongString};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::protocol::frame::{decode_method, encode_method, split_frame, RawFrame, Split};

pub struct Client {
    sock: TcpStream,
    buf: BytesMut,
}

fn frame(kind: u8, chan: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&chan.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

/// A content header with no properties.
fn header(chan: u16, size: u64) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&60u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&size.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    frame(2, chan, &p)
}

impl Client {
    /// Connect, authenticate as guest, open vhost `/` and channel 1.
    pub async fn open(b: &Broker) -> Client {
        let mut c = Client {
            sock: b.raw().await,
            buf: BytesMut::new(),
        };
        c.write(b"AMQP\x00\x00\x09\x01").await;
        let AMQPClass::Connection(connection::AMQPMethod::Start(_)) = c.method().await else {
            panic!("expected connection.start");
        };
        let mut caps = FieldTable::default();
        caps.insert("consumer_cancel_notify".into(), true.into());
        let mut props = FieldTable::default();
        props.insert("capabilities".into(), caps.into());
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongString::from(&b"\0guest\0guest"[..]),
                locale: "en_US".into(),
            })),
        )
        .await;
        let AMQPClass::Connection(connection::AMQPMethod::Tune(t)) = c.method().await else {
            panic!("expected connection.tune");
        };
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat: 0,
            })),
        )
        .await;
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: "/".into(),
            })),
        )
        .await;
        let AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) = c.method().await else {
            panic!("expected connection.open-ok");
        };
        c.open_channel(1).await;
        c
    }

    /// queue.declare(exclusive) on `chan`, waiting for declare-ok.
    pub async fn declare_exclusive(&mut self, chan: u16, name: &str) {
        self.send(
            chan,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                passive: false,
                durable: false,
                exclusive: true,
                auto_delete: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await;
        let AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)) = self.method().await else {
            panic!("expected queue.declare-ok");
        };
    }

    pub async fn open_channel(&mut self, chan: u16) {
        self.send(
            chan,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        let AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) = self.method().await else {
            panic!("expected channel.open-ok");
        };
    }

    async fn write(&mut self, bytes: &[u8]) {
        within(5, self.sock.write_all(bytes))
            .await
            .expect("raw write");
    }

    async fn send(&mut self, chan: u16, m: AMQPClass) {
        let mut b = BytesMut::new();
        encode_method(&mut b, chan, m);
        self.write(&b).await;
    }

    /// The next frame that is not a heartbeat.
    async fn frame(&mut self) -> RawFrame {
        loop {
            match split_frame(&mut self.buf, 0) {
                Split::Frame(f) if f.kind == 8 => continue,
                Split::Frame(f) => return f,
                Split::Incomplete => {}
                other => panic!("bad frame from broker: {other:?}"),
            }
            let n = within(5, self.sock.read_buf(&mut self.buf))
                .await
                .expect("raw read");
            assert!(n > 0, "broker closed the socket");
        }
    }

    async fn method(&mut self) -> AMQPClass {
        let f = self.frame().await;
        assert_eq!(f.kind, 1, "expected a method frame");
        decode_method(&f.payload).expect("decodable method")
    }

    /// basic.qos(prefetch) then basic.consume(no_ack=false) on `chan`.
    pub async fn qos_and_consume(&mut self, chan: u16, prefetch: u16, queue: &str) {
        self.send(
            chan,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: prefetch,
                global: false,
            })),
        )
        .await;
        let m = self.method().await;
        let AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) = m else {
            panic!("expected basic.qos-ok, got {m:?}");
        };
        self.send(
            chan,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: queue.into(),
                consumer_tag: "raw".into(),
                no_local: false,
                no_ack: false,
                exclusive: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await;
        let AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) = self.method().await else {
            panic!("expected basic.consume-ok");
        };
    }

    /// Read `n` deliveries (single-frame bodies), returning their bodies.
    pub async fn read_deliveries(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < n {
            let AMQPClass::Basic(basic::AMQPMethod::Deliver(_)) = self.method().await else {
                panic!("expected basic.deliver");
            };
            let h = self.frame().await;
            assert_eq!(h.kind, 2, "expected a content header");
            let b = self.frame().await;
            assert_eq!(b.kind, 3, "expected a body frame");
            out.push(b.payload.to_vec());
        }
        out
    }

    /// Publish several messages at once, their body frames (of `chunk` bytes) interleaved
    /// across channels.
    pub async fn interleaved_publish(&mut self, msgs: &[(u16, &str, &[u8])], chunk: usize) {
        let mut wire = BytesMut::new();
        for (chan, queue, body) in msgs {
            encode_method(
                &mut wire,
                *chan,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: "".into(),
                    routing_key: (*queue).into(),
                    mandatory: false,
                    immediate: false,
                })),
            );
            wire.extend_from_slice(&header(*chan, body.len() as u64));
        }
        let chunks: Vec<Vec<&[u8]>> = msgs.iter().map(|m| m.2.chunks(chunk).collect()).collect();
        let longest = chunks.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for (m, parts) in msgs.iter().zip(&chunks) {
                if let Some(p) = parts.get(i) {
                    wire.extend_from_slice(&frame(3, m.0, p));
                }
            }
        }
        self.write(&wire).await;
    }

    /// Publish `n` copies of `body` to `queue` through the default exchange, written at once.
    pub async fn publish_many(&mut self, chan: u16, queue: &str, body: &[u8], n: usize) {
        let mut wire = BytesMut::new();
        for _ in 0..n {
            encode_method(
                &mut wire,
                chan,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: "".into(),
                    routing_key: queue.into(),
                    mandatory: false,
                    immediate: false,
                })),
            );
            wire.extend_from_slice(&header(chan, body.len() as u64));
            wire.extend_from_slice(&frame(3, chan, body));
        }
        self.write(&wire).await;
    }

    /// A round trip on `chan` (basic.qos) so everything sent before it has been handled.
    pub async fn sync(&mut self, chan: u16) {
        self.send(
            chan,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: 0,
                global: false,
            })),
        )
        .await;
        let m = self.method().await;
        let AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) = m else {
            panic!("expected basic.qos-ok on channel {chan}, got {m:?}");
        };
    }

    /// Drop the connection abruptly: RST, no close handshake. (A zero linger never blocks,
    /// which is what tokio's deprecation of `set_linger` warns about.)
    #[allow(deprecated)]
    pub fn abort(self) {
        let _ = self.sock.set_linger(Some(Duration::ZERO));
        drop(self.sock);
    }
}
