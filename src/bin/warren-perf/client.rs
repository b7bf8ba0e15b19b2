//! A lean AMQP 0-9-1 client on tokio: URI parsing, the handshake (SASL PLAIN, heartbeats off),
//! framed reads into one large reusable buffer, and request/reply for the rare methods (through
//! warren's amq-protocol wrappers; the setup methods are in `methods`, the hot frames in `wire`).
//! Anything unexpected from the broker becomes an `Error`, never a panic.

use amq_protocol::protocol::{channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use warren::protocol::frame::{decode_method, encode_method, split_frame, RawFrame, Split};
use warren::protocol::{FRAME_METHOD, PROTOCOL_HEADER};

/// Read buffer growth step: one read can bring in this many bytes.
pub const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("broker closed the {scope}: {code} {text}")]
    Closed {
        scope: &'static str,
        code: u16,
        text: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn proto<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Protocol(msg.into()))
}

/// A shortstr from our own input, refusing (not panicking on) names over 255 bytes.
pub fn short(s: &str) -> Result<ShortString> {
    ShortString::try_new(s).map_err(|e| Error::Protocol(format!("'{s}': {e}")))
}

/// `amqp://user:pass@host:port/vhost`, percent-decoded.
#[derive(Debug, Clone)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

fn pct_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("bad %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".into())
}

impl std::str::FromStr for Uri {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Uri, String> {
        let rest = s
            .strip_prefix("amqp://")
            .ok_or("only amqp:// URIs are supported")?;
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
        let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, vhost) = match rest.split_once('/') {
            Some((h, v)) => (h, pct_decode(v)?),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("bad port '{p}'"))?),
            None => (hostport, 5672),
        };
        Ok(Uri {
            host: if host.is_empty() {
                "127.0.0.1".into()
            } else {
                host.into()
            },
            port,
            user: pct_decode(user)?,
            pass: pct_decode(pass)?,
            vhost,
        })
    }
}

/// Read side of a connection: the socket half and a large reusable buffer.
pub struct Reader {
    pub rd: OwnedReadHalf,
    pub buf: BytesMut,
    pub frame_max: u32,
}

impl Reader {
    /// Read once (whatever is available, up to the buffer's free room). Errors on EOF.
    pub async fn fill(&mut self) -> Result<()> {
        self.buf.reserve(READ_CHUNK);
        if self.rd.read_buf(&mut self.buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    /// The next whole frame already buffered, if any.
    #[inline]
    pub fn try_frame(&mut self) -> Result<Option<RawFrame>> {
        match split_frame(&mut self.buf, self.frame_max) {
            Split::Frame(f) => Ok(Some(f)),
            Split::Incomplete => Ok(None),
            Split::TooLarge { size } => proto(format!("frame of {size} bytes exceeds frame_max")),
            Split::BadFrameEnd => proto("bad frame-end octet"),
        }
    }

    pub async fn next_frame(&mut self) -> Result<RawFrame> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }
}

/// A connection whose handshake is done.
pub struct Conn {
    pub reader: Reader,
    pub wr: OwnedWriteHalf,
    pub out: BytesMut,
}

/// channel.close / connection.close from the broker as an error; other methods pass through.
pub fn check_close(m: AMQPClass) -> Result<AMQPClass> {
    match m {
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Err(Error::Closed {
            scope: "channel",
            code: c.reply_code,
            text: c.reply_text.to_string(),
        }),
        AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Err(Error::Closed {
            scope: "connection",
            code: c.reply_code,
            text: c.reply_text.to_string(),
        }),
        m => Ok(m),
    }
}

/// A normal connection.close (200).
pub fn close_method() -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

/// Is this method payload connection.close-ok?
pub fn is_close_ok(payload: &[u8]) -> bool {
    payload.get(..4) == Some(&[0, 10, 0, 51])
}

fn lstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

impl Conn {
    /// Connect, authenticate with PLAIN, open the vhost. Heartbeats are turned off.
    pub async fn connect(uri: &Uri, name: &str) -> Result<Conn> {
        let sock = TcpStream::connect((uri.host.as_str(), uri.port)).await?;
        sock.set_nodelay(true)?;
        let (rd, wr) = sock.into_split();
        let reader = Reader {
            rd,
            buf: BytesMut::with_capacity(READ_CHUNK),
            frame_max: 0,
        };
        let mut c = Conn {
            reader,
            wr,
            out: BytesMut::with_capacity(64 * 1024),
        };
        c.wr.write_all(PROTOCOL_HEADER).await?;
        let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = c.recv_method(0).await?
        else {
            return proto("expected connection.start");
        };
        if !String::from_utf8_lossy(start.mechanisms.as_bytes())
            .split(' ')
            .any(|m| m == "PLAIN")
        {
            return proto("broker does not offer SASL PLAIN");
        }
        let mut caps = FieldTable::default();
        for cap in [
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "authentication_failure_close",
        ] {
            caps.insert(cap.into(), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert("product".into(), lstr("warren-perf"));
        props.insert("connection_name".into(), lstr(name));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let response = format!("\0{}\0{}", uri.user, uri.pass);
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongString::from(response.into_bytes()),
                locale: "en_US".into(),
            })),
        )
        .await?;
        let AMQPClass::Connection(connection::AMQPMethod::Tune(tune)) = c.recv_method(0).await?
        else {
            return proto("expected connection.tune (authentication refused?)");
        };
        let frame_max = if tune.frame_max == 0 {
            131_072
        } else {
            tune.frame_max
        };
        c.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat: 0,
            })),
        )
        .await?;
        c.reader.frame_max = frame_max;
        let open = connection::Open {
            virtual_host: short(&uri.vhost)?,
        };
        match c
            .rpc(0, AMQPClass::Connection(connection::AMQPMethod::Open(open)))
            .await?
        {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => Ok(c),
            other => proto(format!("expected connection.open-ok, got {other:?}")),
        }
    }

    pub fn frame_max(&self) -> u32 {
        self.reader.frame_max
    }

    /// Encode and write one method now.
    pub async fn send(&mut self, ch: u16, m: AMQPClass) -> Result<()> {
        self.out.clear();
        encode_method(&mut self.out, ch, m);
        self.wr.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// The next method frame on `ch` (or a close on channel 0); heartbeats and other frames are
    /// skipped. A close from the broker is acknowledged and returned as an error.
    pub async fn recv_method(&mut self, ch: u16) -> Result<AMQPClass> {
        loop {
            let f = self.reader.next_frame().await?;
            if f.kind != FRAME_METHOD || (f.channel != ch && f.channel != 0) {
                continue;
            }
            let m = decode_method(&f.payload).map_err(|e| Error::Protocol(e.to_string()))?;
            match check_close(m) {
                Err(e) => {
                    let ok = match &e {
                        Error::Closed {
                            scope: "channel", ..
                        } => AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                        _ => AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    };
                    let _ = self.send(f.channel, ok).await;
                    return Err(e);
                }
                Ok(m) => return Ok(m),
            }
        }
    }

    /// Send a method and wait for the reply on the same channel.
    pub async fn rpc(&mut self, ch: u16, m: AMQPClass) -> Result<AMQPClass> {
        self.send(ch, m).await?;
        self.recv_method(ch).await
    }

    /// Send connection.close and wait (briefly) for close-ok, discarding anything else.
    pub async fn close(mut self) {
        if self.send(0, close_method()).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(f) = self.reader.next_frame().await {
                if f.kind == FRAME_METHOD && f.channel == 0 && is_close_ok(&f.payload) {
                    break;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let u: Uri = "amqp://guest:guest@127.0.0.1:5680/%2f".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_str(), u.vhost.as_str()),
            ("127.0.0.1", 5680, "guest", "/")
        );
        let u: Uri = "amqp://a%40b:p@h/v".parse().unwrap();
        assert_eq!(
            (u.user.as_str(), u.port, u.vhost.as_str()),
            ("a@b", 5672, "v")
        );
        assert!("http://x".parse::<Uri>().is_err());
        assert!("amqp://h:99999/".parse::<Uri>().is_err());
        assert!("amqp://h/%zz".parse::<Uri>().is_err());
    }
}
