//! A tiny raw AMQP 0-9-1 client for tests that must put exact bytes on the wire: it frames and
//! parses with amq-protocol (the reference codec) and never hides what the broker sent.
#![allow(dead_code)]

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_END: u8 = 0xCE;

/// Encode one frame with amq-protocol.
pub fn encode(frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(Vec::with_capacity(128).into())
        .map(|ctx| ctx.write)
        .expect("amq-protocol encodes the frame")
}

/// A method frame's bytes.
pub fn method(channel: u16, m: AMQPClass) -> Vec<u8> {
    encode(&AMQPFrame::Method(channel, m))
}

/// A frame with arbitrary type, channel and payload (correct size and frame-end).
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(FRAME_END);
    v
}

/// A content header frame for class basic with default properties.
pub fn content_header(channel: u16, body_size: u64) -> Vec<u8> {
    encode(&AMQPFrame::Header(
        channel,
        AMQPContentHeader {
            class_id: 60,
            body_size,
            properties: basic::AMQPProperties::default(),
        },
    ))
}

/// A body frame.
pub fn body(channel: u16, data: &[u8]) -> Vec<u8> {
    frame(3, channel, data)
}

/// basic.publish method frame.
pub fn publish_frame(channel: u16, exchange: &str, routing_key: &str) -> Vec<u8> {
    method(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory: false,
            immediate: false,
        })),
    )
}

/// PLAIN response bytes: `\0user\0password`.
pub fn plain_response(user: &str, password: &str) -> Vec<u8> {
    format!("\0{user}\0{password}").into_bytes()
}

/// AMQPLAIN response bytes, written out by hand: a field table *without* its length prefix,
/// `LOGIN` and `PASSWORD` as long strings (`S`).
pub fn amqplain_response(user: &str, password: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for (k, val) in [("LOGIN", user), ("PASSWORD", password)] {
        v.push(k.len() as u8);
        v.extend_from_slice(k.as_bytes());
        v.push(b'S');
        v.extend_from_slice(&(val.len() as u32).to_be_bytes());
        v.extend_from_slice(val.as_bytes());
    }
    v
}

/// What a raw client puts into connection.start-ok and tune-ok.
#[derive(Clone)]
pub struct Login {
    pub mechanism: String,
    pub response: Vec<u8>,
    /// Announce the `authentication_failure_close` capability.
    pub auth_failure_close: bool,
    pub vhost: String,
    /// tune-ok values; None = echo the server's.
    pub channel_max: Option<u16>,
    pub frame_max: Option<u32>,
    pub heartbeat: Option<u16>,
}

impl Default for Login {
    fn default() -> Self {
        Login {
            mechanism: "PLAIN".into(),
            response: plain_response("guest", "guest"),
            auth_failure_close: true,
            vhost: "/".into(),
            channel_max: None,
            frame_max: None,
            heartbeat: Some(0),
        }
    }
}

/// A raw connection: the socket plus a read buffer.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
    /// What the server offered in connection.tune (after `handshake`).
    pub tune: Option<connection::Tune>,
}

/// A frame as read off the wire, undecoded.
#[derive(Debug, Clone)]
pub struct RawFrame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.expect("tcp connect");
        s.set_nodelay(true).expect("nodelay");
        Raw {
            s,
            buf: Vec::new(),
            tune: None,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
        self.s.flush().await.expect("flush");
    }

    /// Write, ignoring errors (the broker may already have closed the socket).
    pub async fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
        let _ = self.s.flush().await;
    }

    pub async fn send_method(&mut self, channel: u16, m: AMQPClass) {
        self.send(&method(channel, m)).await;
    }

    /// Read more bytes; false on EOF or a socket error (reset counts as closed).
    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 16 * 1024];
        match self.s.read(&mut tmp).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// Exactly `n` bytes, or None when the socket closed first.
    pub async fn read_bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// The next frame, undecoded; None when the socket closed. Cancel-safe: nothing is taken
    /// from the buffer until a whole frame is there.
    pub async fn read_raw_frame(&mut self) -> Option<RawFrame> {
        loop {
            if self.buf.len() >= 7 {
                let b = &self.buf;
                let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]) as usize;
                if b.len() >= size + 8 {
                    assert_eq!(b[size + 7], FRAME_END, "broker sent a bad frame-end octet");
                    let f = RawFrame {
                        kind: b[0],
                        channel: u16::from_be_bytes([b[1], b[2]]),
                        payload: b[7..7 + size].to_vec(),
                    };
                    self.buf.drain(..size + 8);
                    return Some(f);
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next frame decoded by amq-protocol; None when the socket closed.
    pub async fn read_frame(&mut self) -> Option<AMQPFrame> {
        let f = self.read_raw_frame().await?;
        let bytes = frame(f.kind, f.channel, &f.payload);
        match parse_frame(&bytes[..]) {
            Ok((_, frame)) => Some(frame),
            Err(e) => panic!("broker sent a frame amq-protocol cannot parse: {e:?} {f:?}"),
        }
    }

    /// The next method frame, skipping heartbeats; None when the socket closed.
    pub async fn read_method(&mut self) -> Option<(u16, AMQPClass)> {
        loop {
            match self.read_frame().await? {
                AMQPFrame::Heartbeat => continue,
                AMQPFrame::Method(ch, m) => return Some((ch, m)),
                other => panic!("expected a method frame, got {other:?}"),
            }
        }
    }

    /// Send the protocol header and read connection.start.
    pub async fn start(&mut self) -> connection::Start {
        self.send(HEADER).await;
        match self.read_method().await {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Start(s)))) => s,
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    /// Header, start/start-ok, and read whatever comes next (tune on success).
    pub async fn login(&mut self, login: &Login) -> Option<(u16, AMQPClass)> {
        self.start().await;
        let mut caps = FieldTable::default();
        if login.auth_failure_close {
            caps.insert(
                "authentication_failure_close".into(),
                AMQPValue::Boolean(true),
            );
        }
        let mut props = FieldTable::default();
        props.insert("product".into(), long("warren-tests"));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let ok = connection::StartOk {
            client_properties: props,
            mechanism: ShortString::from(login.mechanism.clone()),
            response: LongString::from(login.response.clone()),
            locale: "en_US".into(),
        };
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)),
        )
        .await;
        self.read_method().await
    }

    /// The full handshake; returns the reply to connection.open (open-ok on success, close on
    /// failure) or None when the socket closed.
    pub async fn try_handshake(&mut self, login: &Login) -> Option<(u16, AMQPClass)> {
        let tune = match self.login(login).await? {
            (0, AMQPClass::Connection(connection::AMQPMethod::Tune(t))) => t,
            other => return Some(other),
        };
        let ok = connection::TuneOk {
            channel_max: login.channel_max.unwrap_or(tune.channel_max),
            frame_max: login.frame_max.unwrap_or(tune.frame_max),
            heartbeat: login.heartbeat.unwrap_or(tune.heartbeat),
        };
        self.tune = Some(tune);
        self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(ok)))
            .await;
        let open = connection::Open {
            virtual_host: ShortString::from(login.vhost.clone()),
        };
        self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::Open(open)))
            .await;
        self.read_method().await
    }

    /// Connect and complete the handshake as guest (PLAIN), heartbeats off.
    pub async fn open(addr: SocketAddr) -> Raw {
        Self::open_with(addr, &Login::default()).await
    }

    pub async fn open_with(addr: SocketAddr, login: &Login) -> Raw {
        let mut r = Raw::connect(addr).await;
        match r.try_handshake(login).await {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))) => r,
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
    }

    /// channel.open and wait for open-ok.
    pub async fn open_channel(&mut self, ch: u16) {
        self.send_method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        match self.read_method().await {
            Some((c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))) if c == ch => {}
            other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
        }
    }

    /// Read until the broker sends connection.close; answer close-ok and return the close.
    /// None when the socket closed without a connection.close.
    pub async fn connection_close(&mut self) -> Option<connection::Close> {
        loop {
            match self.read_frame().await? {
                AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                    let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                        connection::CloseOk {},
                    ));
                    self.send_lossy(&method(0, ok)).await;
                    return Some(c);
                }
                _ => continue,
            }
        }
    }

    /// The reply code of the connection.close the broker sends next (panics if none comes).
    pub async fn close_code(&mut self) -> u16 {
        self.connection_close()
            .await
            .expect("broker closed the socket without connection.close")
            .reply_code
    }

    /// Read until channel.close on `ch`; answer close-ok and return it.
    pub async fn channel_close(&mut self, ch: u16) -> channel::Close {
        loop {
            match self.read_frame().await {
                Some(AMQPFrame::Method(
                    c,
                    AMQPClass::Channel(channel::AMQPMethod::Close(close)),
                )) if c == ch => {
                    self.send_method(
                        ch,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                    return close;
                }
                Some(AMQPFrame::Method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Close(close)),
                )) => panic!("expected channel.close on {ch}, got connection.close {close:?}"),
                Some(_) => continue,
                None => panic!("socket closed while waiting for channel.close on {ch}"),
            }
        }
    }

    /// True once the socket is closed by the broker (reads until EOF, discarding frames).
    pub async fn closed_within(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, async { while self.fill().await {} })
            .await
            .is_ok()
    }
}

pub fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// The AMQP reply code inside a lapin error (channel or connection close), if it is one.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

/// The reply text inside a lapin error, if it is a protocol error.
pub fn reply_text(e: &lapin::Error) -> Option<String> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(p) => Some(p.get_message().to_string()),
        _ => None,
    }
}
