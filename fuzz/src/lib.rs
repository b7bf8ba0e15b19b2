//! Shared by the fuzz targets and the corpus generator: the record format the `connection`
//! target reads its input as, and the handshake it sends first.
//!
//! A `connection` input is a sequence of records `[tag][channel][len: u16 BE][len bytes]`
//! (a record cut short takes what is left). Tag 0 writes the bytes verbatim (broken framing,
//! partial frames); any other tag becomes one well-framed frame of type `tag` (1 method,
//! 2 header, 3 body, 8 heartbeat, others unknown types) on `channel`. So mutations mostly keep
//! frames intact and reach the methods, while raw records still cover the splitter.

use amq_protocol::frame::{gen_frame, AMQPFrame};
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{FieldTable, LongString};

/// One record of a `connection` input.
pub fn record(tag: u8, channel: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).expect("record payload fits u16");
    let mut v = vec![tag, channel];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A frame's wire bytes.
pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    v.extend_from_slice(payload);
    v.push(0xCE);
    v
}

/// Turn a `connection` input into the bytes written to the broker after the handshake.
pub fn wire(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    while data.len() >= 4 {
        let (tag, channel) = (data[0], u16::from(data[1]));
        let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
        let rest = &data[4..];
        let payload = &rest[..len.min(rest.len())];
        data = &rest[payload.len()..];
        if tag == 0 {
            out.extend_from_slice(payload);
        } else {
            out.extend_from_slice(&frame(tag, channel, payload));
        }
    }
    out
}

/// The payload of a method frame, encoded by amq-protocol.
pub fn method_payload(m: AMQPClass) -> Vec<u8> {
    let bytes = gen_frame(&AMQPFrame::Method(0, m))(Vec::new().into())
        .map(|ctx| ctx.write)
        .unwrap_or_default();
    // Strip type, channel, size and the frame-end octet.
    bytes
        .get(7..bytes.len().saturating_sub(1))
        .unwrap_or_default()
        .to_vec()
}

/// What a client sends to get from nothing to an open connection as guest/guest on `/`:
/// protocol header, start-ok, tune-ok (heartbeats off), open. The broker's replies are read
/// and discarded by the harness.
pub fn handshake() -> Vec<u8> {
    let mut v = b"AMQP\x00\x00\x09\x01".to_vec();
    let start_ok = AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
        client_properties: FieldTable::default(),
        mechanism: "PLAIN".into(),
        response: LongString::from(&b"\0guest\0guest"[..]),
        locale: "en_US".into(),
    }));
    let tune_ok = AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
        channel_max: 2047,
        frame_max: 131_072,
        heartbeat: 0,
    }));
    let open = AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
        virtual_host: "/".into(),
    }));
    for m in [start_ok, tune_ok, open] {
        v.extend_from_slice(&frame(1, 0, &method_payload(m)));
    }
    v
}
