//! Sans-IO AMQP 0-9-1 framing: the frame splitter, the hand-written hot-path codec, and thin wrappers
//! over amq-protocol for the rare methods. Nothing here knows about sockets or tokio.

pub mod frame;
pub mod header_insert;
pub mod hot;
pub mod properties;
pub mod props_edit;
pub mod props_rewrite;

/// Frame type octets (AMQP 0-9-1 §4.2.3).
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Bytes of framing around a payload: type(1) + channel(2) + size(4) + frame-end(1).
pub const FRAME_OVERHEAD: usize = 8;
/// The protocol header a 0-9-1 client sends first, and the one we answer a wrong header with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Class ids.
pub const CLASS_CONNECTION: u16 = 10;
pub const CLASS_CHANNEL: u16 = 20;
pub const CLASS_BASIC: u16 = 60;

/// Method ids of the `basic` class that the hot path handles by hand.
pub const BASIC_PUBLISH: u16 = 40;
pub const BASIC_RETURN: u16 = 50;
pub const BASIC_DELIVER: u16 = 60;
pub const BASIC_GET_OK: u16 = 71;
pub const BASIC_ACK: u16 = 80;
pub const BASIC_REJECT: u16 = 90;
pub const BASIC_NACK: u16 = 120;

/// Why a byte sequence could not be decoded. The connection layer maps this to 501/502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
}
