//! Adds one entry to the `headers` table of a raw property list without decoding the rest: the
//! broker stamps headers on messages it forwards (a stream's `x-stream-offset`, later dead-letter
//! headers) while every other byte goes out as the publisher sent it.

use super::properties::{FLAG_CONTENT_ENCODING, FLAG_CONTENT_TYPE, FLAG_HEADERS};
use super::CodecError;
use bytes::BufMut;

/// Where the headers field starts (present or not): after content-type and content-encoding.
fn headers_pos(props: &[u8], flags: u16) -> Result<usize, CodecError> {
    let mut pos = 2;
    for flag in [FLAG_CONTENT_TYPE, FLAG_CONTENT_ENCODING] {
        if flags & flag != 0 {
            let len = *props
                .get(pos)
                .ok_or(CodecError::Truncated("property list"))?;
            pos += 1 + usize::from(len);
        }
    }
    if pos > props.len() {
        return Err(CodecError::Truncated("property list"));
    }
    Ok(pos)
}

/// Append to `out` (a buffer the caller reuses) `props` with `key` = `value` added to its
/// headers table (created if absent). `value` is an encoded field value: type octet then
/// payload. A key already in the table is shadowed: tables are read in order and the last entry
/// wins.
pub fn insert_header_into<B: BufMut>(
    props: &[u8],
    key: &str,
    value: &[u8],
    out: &mut B,
) -> Result<(), CodecError> {
    if key.len() > 255 {
        return Err(CodecError::Invalid("header name"));
    }
    let flags = u16::from_be_bytes([
        *props
            .first()
            .ok_or(CodecError::Truncated("property list"))?,
        *props.get(1).ok_or(CodecError::Truncated("property list"))?,
    ]);
    let pos = headers_pos(props, flags)?;
    let entry_len = 1 + key.len() + value.len();
    let put_entry = |out: &mut B| {
        out.put_u8(key.len() as u8);
        out.put_slice(key.as_bytes());
        out.put_slice(value);
    };
    if flags & FLAG_HEADERS != 0 {
        let len_bytes = props
            .get(pos..pos + 4)
            .ok_or(CodecError::Truncated("headers table"))?;
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        let end = pos + 4 + len;
        let table = props
            .get(pos + 4..end)
            .ok_or(CodecError::Truncated("headers table"))?;
        let new_len =
            u32::try_from(len + entry_len).map_err(|_| CodecError::Invalid("headers table"))?;
        out.put_slice(&props[..pos]);
        out.put_u32(new_len);
        out.put_slice(table);
        put_entry(out);
        out.put_slice(&props[end..]);
    } else {
        out.put_u16(flags | FLAG_HEADERS);
        out.put_slice(&props[2..pos]);
        out.put_u32(entry_len as u32);
        put_entry(out);
        out.put_slice(&props[pos..]);
    }
    Ok(())
}

/// Encoded field value of a signed 64-bit integer (`l`).
pub fn long_value(v: i64) -> [u8; 9] {
    let mut b = [0u8; 9];
    b[0] = b'l';
    b[1..].copy_from_slice(&v.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    /// The property list with the header added, in a buffer of its own.
    fn insert_header(props: &[u8], key: &str, value: &[u8]) -> Result<Bytes, CodecError> {
        let mut out = BytesMut::new();
        insert_header_into(props, key, value, &mut out)?;
        Ok(out.freeze())
    }

    use super::*;
    use amq_protocol::protocol::basic::AMQPProperties;
    use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    /// Encode properties with amq-protocol (the oracle) as a raw property list.
    fn encode(p: &AMQPProperties) -> Vec<u8> {
        let res =
            amq_protocol::protocol::basic::gen_properties(p)(Vec::new().into()).map(|c| c.write);
        res.expect("encode")
    }

    fn decode(raw: &[u8]) -> AMQPProperties {
        amq_protocol::protocol::basic::parse_properties(raw)
            .expect("decode")
            .1
    }

    #[test]
    fn adds_a_table_when_there_is_none() {
        let p = AMQPProperties::default()
            .with_content_type(ShortString::from("text/plain"))
            .with_delivery_mode(2)
            .with_message_id(ShortString::from("m1"));
        let out = insert_header(&encode(&p), "x-stream-offset", &long_value(42)).expect("insert");
        let d = decode(&out);
        assert_eq!(
            d.content_type().as_ref().map(|s| s.as_str()),
            Some("text/plain")
        );
        assert_eq!(*d.delivery_mode(), Some(2));
        assert_eq!(d.message_id().as_ref().map(|s| s.as_str()), Some("m1"));
        let h = d.headers().clone().expect("headers");
        assert_eq!(
            h.inner().get("x-stream-offset"),
            Some(&AMQPValue::LongLongInt(42))
        );
    }

    #[test]
    fn extends_an_existing_table_and_the_new_entry_wins() {
        let mut t = FieldTable::default();
        t.insert(
            "a".into(),
            AMQPValue::LongString(LongString::from(b"b".to_vec())),
        );
        t.insert("x-stream-offset".into(), AMQPValue::LongLongInt(1));
        let p = AMQPProperties::default().with_headers(t).with_priority(3);
        let out = insert_header(&encode(&p), "x-stream-offset", &long_value(7)).expect("insert");
        let d = decode(&out);
        let h = d.headers().clone().expect("headers");
        assert_eq!(
            h.inner().get("x-stream-offset"),
            Some(&AMQPValue::LongLongInt(7))
        );
        assert!(h.inner().contains_key("a"));
        assert_eq!(*d.priority(), Some(3));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        for raw in [
            &[][..],
            &[0x20][..],
            &[0x20, 0][..],
            &[0x80, 0, 5, b'a'][..],
        ] {
            assert!(insert_header(raw, "k", &long_value(1)).is_err());
        }
    }

    proptest! {
        #[test]
        fn any_property_list_keeps_its_fields(ct in proptest::option::of("[a-z/]{0,20}"), ce in proptest::option::of("[a-z]{0,8}"),
            hdr in proptest::option::of(proptest::collection::btree_map("[a-z]{1,8}", any::<i32>(), 0..5)),
            dm in proptest::option::of(1u8..3), app in proptest::option::of("[a-z]{0,10}"), v in any::<i64>()) {
            let mut p = AMQPProperties::default();
            if let Some(s) = ct { p = p.with_content_type(ShortString::from(s)); }
            if let Some(s) = ce { p = p.with_content_encoding(ShortString::from(s)); }
            if let Some(m) = hdr {
                let mut t = FieldTable::default();
                for (k, x) in m { t.insert(k.into(), AMQPValue::LongInt(x)); }
                p = p.with_headers(t);
            }
            if let Some(d) = dm { p = p.with_delivery_mode(d); }
            if let Some(s) = app { p = p.with_app_id(ShortString::from(s)); }
            let out = insert_header(&encode(&p), "x-k", &long_value(v)).expect("insert");
            let d = decode(&out);
            let mut expect = p.headers().clone().unwrap_or_default();
            expect.insert("x-k".into(), AMQPValue::LongLongInt(v));
            prop_assert_eq!(d.headers().clone(), Some(expect));
            prop_assert_eq!(d.content_type(), p.content_type());
            prop_assert_eq!(d.content_encoding(), p.content_encoding());
            prop_assert_eq!(d.delivery_mode(), p.delivery_mode());
            prop_assert_eq!(d.app_id(), p.app_id());
        }
    }
}
