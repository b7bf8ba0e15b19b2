//! Rewrites a raw property list for the rare messages the broker changes: dead-lettering (death
//! headers in, `expiration` out) and quorum redeliveries (`x-delivery-count`). Decodes the whole
//! list with amq-protocol, edits it, and encodes it again; never on the plain publish/deliver path.

use super::properties;
use super::CodecError;
use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, ShortString};
use bytes::Bytes;
use std::collections::BTreeMap;

/// The headers as an editable map.
pub type Headers = BTreeMap<ShortString, AMQPValue>;

/// `props` with its headers edited by `f` (an empty result drops the table) and, with
/// `drop_expiration`, without the `expiration` property. Every other property is kept.
pub fn edit(
    props: &[u8],
    drop_expiration: bool,
    f: impl FnOnce(&mut Headers),
) -> Result<Bytes, CodecError> {
    // Validation bounds the nesting depth before amq-protocol's recursive parser runs.
    properties::validate(props)?;
    let p = match parse_properties(props) {
        Ok(([], p)) => p,
        _ => return Err(CodecError::Invalid("property list")),
    };
    let mut headers: Headers = p
        .headers()
        .as_ref()
        .map(|t| t.inner().clone())
        .unwrap_or_default();
    f(&mut headers);
    let out = rebuild(&p, headers, drop_expiration);
    let encoded = gen_properties(&out)(Vec::new().into());
    let bytes = match encoded {
        Ok(ctx) => ctx.into_inner().0,
        Err(_) => return Err(CodecError::Invalid("property list")),
    };
    Ok(Bytes::from(bytes))
}

/// A copy of `p` with `headers` (absent when empty) and maybe without `expiration`
/// (amq-protocol has setters but no way to clear a property).
fn rebuild(p: &BasicProperties, headers: Headers, drop_expiration: bool) -> BasicProperties {
    let mut o = BasicProperties::default();
    if let Some(v) = p.content_type() {
        o = o.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        o = o.with_content_encoding(v.clone());
    }
    if !headers.is_empty() {
        o = o.with_headers(FieldTable::from(headers));
    }
    if let Some(v) = p.delivery_mode() {
        o = o.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        o = o.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        o = o.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        o = o.with_reply_to(v.clone());
    }
    if let (Some(v), false) = (p.expiration(), drop_expiration) {
        o = o.with_expiration(v.clone());
    }
    if let Some(v) = p.message_id() {
        o = o.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        o = o.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        o = o.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        o = o.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        o = o.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        o = o.with_cluster_id(v.clone());
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(p: &BasicProperties) -> Vec<u8> {
        gen_properties(p)(Vec::new().into())
            .expect("encode")
            .into_inner()
            .0
    }

    #[test]
    fn edits_headers_and_drops_expiration_only() {
        let mut h = FieldTable::default();
        h.insert("keep".into(), AMQPValue::LongInt(1));
        h.insert("drop".into(), AMQPValue::Boolean(true));
        let p = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_headers(h)
            .with_delivery_mode(2)
            .with_priority(3)
            .with_expiration("500".into())
            .with_app_id("app".into());
        let out = edit(&encode(&p), true, |h| {
            h.remove(&ShortString::from("drop"));
            h.insert("x-added".into(), AMQPValue::LongLongInt(7));
        })
        .expect("edit");
        let (_, q) = parse_properties(out.as_ref()).expect("parse");
        assert_eq!(q.expiration(), &None);
        assert_eq!(q.delivery_mode(), &Some(2));
        assert_eq!(q.priority(), &Some(3));
        assert_eq!(q.app_id().as_ref().map(|s| s.as_str()), Some("app"));
        let h = q.headers().as_ref().expect("headers").inner();
        assert_eq!(h.get("keep"), Some(&AMQPValue::LongInt(1)));
        assert_eq!(h.get("x-added"), Some(&AMQPValue::LongLongInt(7)));
        assert!(!h.contains_key("drop"));
        let kept = edit(&encode(&p), false, |_| {}).expect("edit");
        let (_, k) = parse_properties(kept.as_ref()).expect("parse");
        assert_eq!(k, p);
    }
}
