//! Sender-selected distribution: the `CC` and `BCC` headers (arrays of long strings) add routing
//! keys on the same exchange; a message still reaches each queue once, and `BCC` is removed
//! before delivery. As RabbitMQ (`rabbit_basic:header_routes`), elements that are not long
//! strings are ignored and a value that is not an array makes the publish a 406
//! `invalid message: {unacceptable_type_in_header,"CC",longstr}`.
//!
//! Cost for messages without these headers: a flag test (no headers table), else one walk over
//! the table's keys without allocating.

use crate::broker::queue::consumer_opts::type_name;
use crate::protocol::{properties, props_rewrite};
use amq_protocol::types::AMQPValue;
use bytes::Bytes;

/// The extra routing keys of a message (CC then BCC), and whether it has a BCC header to remove
/// before delivery. Err: RabbitMQ's text for a bad header.
pub fn extra_keys(props: &[u8]) -> Result<(Vec<Bytes>, bool), String> {
    if !properties::has_headers(props) || !properties::has_any_header(props, &[b"CC", b"BCC"]) {
        return Ok((Vec::new(), false));
    }
    let Ok(Some(h)) = properties::headers(props) else {
        return Ok((Vec::new(), false));
    };
    let bcc = h.inner().contains_key("BCC");
    let mut keys = Vec::new();
    for name in ["CC", "BCC"] {
        match h.inner().get(name) {
            None => {}
            Some(AMQPValue::FieldArray(a)) => {
                for v in a.as_slice() {
                    if let AMQPValue::LongString(s) = v {
                        keys.push(Bytes::copy_from_slice(s.as_bytes()));
                    }
                }
            }
            Some(other) => {
                return Err(format!(
                    "invalid message: {{unacceptable_type_in_header,\"{name}\",{}}}",
                    type_name(other)
                ))
            }
        }
    }
    Ok((keys, bcc))
}

/// The property list without its `BCC` header, if it has one.
pub fn without_bcc(props: &[u8]) -> Option<Bytes> {
    if !properties::has_header(props, b"BCC") {
        return None;
    }
    let h = properties::headers(props).ok()??;
    let mut map = h.inner().clone();
    map.remove("BCC");
    props_rewrite::set_headers(props, map.into()).ok()
}

/// What a consumer is sent of a message's properties when they differ from the stored ones:
/// the `BCC` header of a message kept for dead-lettering is removed (one flag test otherwise).
pub fn shown(m: &crate::broker::message::Message) -> Option<Bytes> {
    if m.bcc {
        without_bcc(&m.properties)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::{FieldArray, FieldTable};

    fn with_headers(pairs: &[(&str, AMQPValue)]) -> Bytes {
        let mut h = FieldTable::default();
        for (k, v) in pairs {
            h.insert((*k).into(), v.clone());
        }
        props_rewrite::encode(&BasicProperties::default().with_headers(h)).expect("encode")
    }

    fn arr(items: &[&str]) -> AMQPValue {
        let v: Vec<AMQPValue> = items
            .iter()
            .map(|s| AMQPValue::LongString((*s).into()))
            .collect();
        AMQPValue::FieldArray(FieldArray::from(v))
    }

    #[test]
    fn cc_and_bcc_keys_are_collected() {
        let p = with_headers(&[
            ("x", AMQPValue::LongInt(1)),
            ("CC", arr(&["a", "b"])),
            ("BCC", arr(&["c"])),
        ]);
        let (keys, bcc) = extra_keys(&p).expect("keys");
        assert!(bcc);
        assert_eq!(
            keys,
            vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
        );
        let stripped = without_bcc(&p).expect("has bcc");
        assert!(!properties::has_header(&stripped, b"BCC"));
        assert!(properties::has_header(&stripped, b"CC"));
        assert!(properties::has_header(&stripped, b"x"));
    }

    #[test]
    fn no_headers_no_keys() {
        assert!(extra_keys(&[0, 0]).expect("keys").0.is_empty());
        assert!(without_bcc(&[0, 0]).is_none());
        let p = with_headers(&[("other", AMQPValue::LongInt(1))]);
        assert_eq!(extra_keys(&p).expect("keys"), (Vec::new(), false));
    }

    #[test]
    fn a_string_cc_is_refused_as_rabbitmq_does() {
        let p = with_headers(&[("CC", AMQPValue::LongString("a".into()))]);
        assert_eq!(
            extra_keys(&p).unwrap_err(),
            "invalid message: {unacceptable_type_in_header,\"CC\",longstr}"
        );
    }
}
