//! Rewrites of a raw property list for the rare messages the broker changes on their way: the
//! `reply_to` of a direct reply-to request, a `BCC` header removed, a delayed message's `x-delay`
//! negated. The list is decoded and re-encoded with amq-protocol (allocating), so these paths are
//! taken only when the cheap checks in `properties` say a message needs it.

use super::properties;
use super::CodecError;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use bytes::Bytes;

/// Decode a whole (validated-by-the-caller or not) property list.
pub fn decode(props: &[u8]) -> Result<BasicProperties, CodecError> {
    properties::validate(props)?;
    amq_protocol::protocol::basic::parse_properties(props)
        .map(|(_, p)| p)
        .map_err(|_| CodecError::Invalid("property list"))
}

/// Encode a property list.
pub fn encode(p: &BasicProperties) -> Result<Bytes, CodecError> {
    amq_protocol::protocol::basic::gen_properties(p)(Vec::new().into())
        .map(|c| Bytes::from(c.write))
        .map_err(|_| CodecError::Invalid("property list"))
}

/// `props` with `reply_to` replaced.
pub fn set_reply_to(props: &[u8], reply_to: &str) -> Result<Bytes, CodecError> {
    let name = ShortString::try_new(reply_to).map_err(|_| CodecError::Invalid("reply_to"))?;
    encode(&decode(props)?.with_reply_to(name))
}

/// `props` with its headers table replaced by `headers`.
pub fn set_headers(props: &[u8], headers: FieldTable) -> Result<Bytes, CodecError> {
    encode(&decode(props)?.with_headers(headers))
}

/// `props` with header `key` set to `value`.
pub fn set_header(props: &[u8], key: &str, value: AMQPValue) -> Result<Bytes, CodecError> {
    let key = ShortString::try_new(key).map_err(|_| CodecError::Invalid("header name"))?;
    let p = decode(props)?;
    let mut h = p.headers().clone().unwrap_or_default();
    h.insert(key, value);
    encode(&p.with_headers(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> Bytes {
        let mut h = FieldTable::default();
        h.insert("a".into(), AMQPValue::LongInt(1));
        encode(
            &BasicProperties::default()
                .with_content_type("text/plain".into())
                .with_headers(h)
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("c1".into()),
        )
        .expect("encode")
    }

    #[test]
    fn reply_to_is_replaced_and_the_rest_kept() {
        let out = set_reply_to(&props(), "amq.rabbitmq.reply-to.abc").expect("rewrite");
        let p = decode(&out).expect("decode");
        assert_eq!(
            p.reply_to().as_ref().map(|s| s.as_str()),
            Some("amq.rabbitmq.reply-to.abc")
        );
        assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c1"));
        assert_eq!(
            properties::reply_to(&out),
            Some(&b"amq.rabbitmq.reply-to.abc"[..])
        );
    }

    #[test]
    fn a_header_is_set() {
        let out = set_header(&props(), "x-delay", AMQPValue::LongInt(-5)).expect("rewrite");
        let h = decode(&out)
            .expect("decode")
            .headers()
            .clone()
            .expect("headers");
        assert_eq!(h.inner().get("x-delay"), Some(&AMQPValue::LongInt(-5)));
        assert_eq!(h.inner().get("a"), Some(&AMQPValue::LongInt(1)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(set_reply_to(&[0xff], "x").is_err());
        assert!(set_header(&[], "x", AMQPValue::Void).is_err());
    }
}
