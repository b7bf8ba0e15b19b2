//! Reads single fields out of a raw content-header property list without decoding the rest, and
//! builds property lists (for messages the broker creates itself, e.g. management publishes).
//!
//! A property list is what follows class-id, weight and body-size in a content header payload: one
//! 16-bit flags word, then the present properties in flag order (AMQP 0-9-1 §4.2.6.1). The basic
//! class has 14 properties, in bits 15..=2 of the first word.
//!
//! Edge cases (amq-protocol 10.6 is the oracle, see the tests):
//! - Bits 1 and 0 of the flags word are rejected as [`CodecError::Invalid`]. amq-protocol (and
//!   RabbitMQ) read exactly one flags word and ignore both bits; we are stricter on purpose. Bit 1
//!   announces a 15th property whose type nobody knows, and bit 0 (the spec's "another flags word
//!   follows") can only introduce such unknown properties; the basic class has none. Since the
//!   list is re-sent verbatim to consumers, accepting either would forward a header that
//!   amq-protocol-based clients read differently from what the spec says it means.
//! - Short strings (property values and table keys) must be valid UTF-8, as amq-protocol requires.
//!   Long strings and byte arrays are opaque bytes.
//! - Field value type octets are exactly those of amq-protocol-types' `AMQPType::from_id` (the
//!   RabbitMQ set): `t b B s U u I i l L f d D S A T F x V`. 's' and 'U' are i16; 'l' and 'L' are
//!   i64; there is no short-string value type.
//! - Bytes after the last present property, after the last entry of a table or array, or an entry
//!   that runs past its container's declared length: Invalid / Truncated (amq-protocol rejects them
//!   too: `all_consuming` on the frame payload and inside tables and arrays).
//! - Tables and arrays may nest at most [`MAX_NESTING`] levels, the headers table counting as level
//!   1; deeper input is Invalid, so neither [`validate`] nor amq-protocol's recursive parser (run by
//!   [`headers`] only after validation) can be driven into a stack overflow.

use super::CodecError;
use amq_protocol::types::FieldTable;
use std::ops::Range;

/// Deepest accepted nesting of field tables and arrays; the headers table itself is level 1.
pub const MAX_NESTING: usize = 64;

/// Property flag bits of the basic class, in wire order.
pub const FLAG_CONTENT_TYPE: u16 = 1 << 15;
pub const FLAG_CONTENT_ENCODING: u16 = 1 << 14;
pub const FLAG_HEADERS: u16 = 1 << 13;
pub const FLAG_DELIVERY_MODE: u16 = 1 << 12;
pub const FLAG_PRIORITY: u16 = 1 << 11;
pub const FLAG_CORRELATION_ID: u16 = 1 << 10;
pub const FLAG_REPLY_TO: u16 = 1 << 9;
pub const FLAG_EXPIRATION: u16 = 1 << 8;
pub const FLAG_MESSAGE_ID: u16 = 1 << 7;
pub const FLAG_TIMESTAMP: u16 = 1 << 6;
pub const FLAG_TYPE: u16 = 1 << 5;
pub const FLAG_USER_ID: u16 = 1 << 4;
pub const FLAG_APP_ID: u16 = 1 << 3;
pub const FLAG_CLUSTER_ID: u16 = 1 << 2;
/// Bits the basic class does not define: bit 1 (a 15th property) and bit 0 (continuation).
const FLAGS_UNKNOWN: u16 = 0b11;

#[derive(Clone, Copy)]
enum Kind {
    ShortStr,
    Octet,
    Timestamp,
    Table,
}

/// The basic-class properties in wire order.
const FIELDS: [(u16, Kind); 14] = [
    (FLAG_CONTENT_TYPE, Kind::ShortStr),
    (FLAG_CONTENT_ENCODING, Kind::ShortStr),
    (FLAG_HEADERS, Kind::Table),
    (FLAG_DELIVERY_MODE, Kind::Octet),
    (FLAG_PRIORITY, Kind::Octet),
    (FLAG_CORRELATION_ID, Kind::ShortStr),
    (FLAG_REPLY_TO, Kind::ShortStr),
    (FLAG_EXPIRATION, Kind::ShortStr),
    (FLAG_MESSAGE_ID, Kind::ShortStr),
    (FLAG_TIMESTAMP, Kind::Timestamp),
    (FLAG_TYPE, Kind::ShortStr),
    (FLAG_USER_ID, Kind::ShortStr),
    (FLAG_APP_ID, Kind::ShortStr),
    (FLAG_CLUSTER_ID, Kind::ShortStr),
];

/// A bounds-checked big-endian reader. Every read either succeeds or returns `Truncated(what)`;
/// `pos <= buf.len()` always holds.
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, pos: 0, what }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CodecError::Truncated(self.what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(self.what))?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let a = *rest
            .first_chunk::<N>()
            .ok_or(CodecError::Truncated(self.what))?;
        self.pos += N;
        Ok(a)
    }

    pub(super) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(super) fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A short string that must be valid UTF-8; returns its byte range within the buffer.
    pub(super) fn shortstr(&mut self) -> Result<Range<usize>, CodecError> {
        let len = usize::from(self.u8()?);
        let start = self.pos;
        let s = self.take(len)?;
        if std::str::from_utf8(s).is_err() {
            return Err(CodecError::Invalid("short string is not UTF-8"));
        }
        Ok(start..self.pos)
    }

    /// A u32-length-prefixed byte string (long string, byte array, table or array body).
    fn long(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| CodecError::Truncated(self.what))?;
        self.take(len)
    }

    /// Fails unless every byte has been consumed.
    pub(super) fn finish(&self) -> Result<(), CodecError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Invalid("trailing bytes"))
        }
    }
}

/// Validate a field table (length prefix included) at the cursor; `depth` is its nesting level.
fn skip_table(r: &mut Cursor<'_>, depth: usize) -> Result<(), CodecError> {
    if depth > MAX_NESTING {
        return Err(CodecError::Invalid("field tables nested too deep"));
    }
    let mut t = Cursor::new(r.long()?, "field table");
    while !t.is_empty() {
        t.shortstr()?;
        skip_value(&mut t, depth)?;
    }
    Ok(())
}

/// Validate a field array (length prefix included) at the cursor; `depth` is its nesting level.
fn skip_array(r: &mut Cursor<'_>, depth: usize) -> Result<(), CodecError> {
    if depth > MAX_NESTING {
        return Err(CodecError::Invalid("field tables nested too deep"));
    }
    let mut a = Cursor::new(r.long()?, "field array");
    while !a.is_empty() {
        skip_value(&mut a, depth)?;
    }
    Ok(())
}

/// Validate one type octet + value inside a container at nesting level `depth`. Recursion is
/// bounded by [`MAX_NESTING`].
fn skip_value(r: &mut Cursor<'_>, depth: usize) -> Result<(), CodecError> {
    let width = match r.u8()? {
        b't' | b'b' | b'B' => 1,
        b's' | b'U' | b'u' => 2,
        b'I' | b'i' | b'f' => 4,
        b'D' => 5,
        b'l' | b'L' | b'd' | b'T' => 8,
        b'V' => 0,
        b'S' | b'x' => return r.long().map(drop),
        b'F' => return skip_table(r, depth + 1),
        b'A' => return skip_array(r, depth + 1),
        _ => return Err(CodecError::Invalid("field value type")),
    };
    r.take(width).map(drop)
}

/// Check the nesting depth of the field table a method frame carries before amq-protocol's
/// recursive parser sees it: a client could otherwise overflow the stack with a few thousand
/// nested arrays in connection.start-ok or queue.declare. Methods without a table pass.
pub fn check_method_tables(payload: &[u8]) -> Result<(), CodecError> {
    #[derive(Clone, Copy)]
    enum F {
        U16,
        Short,
        Bits,
    }
    use F::*;
    let mut r = Cursor::new(payload, "method");
    let (class, method) = (r.u16()?, r.u16()?);
    // Every 0-9-1 method with a table is listed, server methods too: a client may send any of
    // them, and amq-protocol decodes whatever arrives (connection.start was missing once, and a
    // 100 KB frame of nested arrays in its server-properties overflowed the stack).
    let before: &[F] = match (class, method) {
        (10, 10) => &[Bits, Bits], // connection.start: version, server-properties
        (10, 11) => &[],           // connection.start-ok: client-properties
        (40, 10) => &[U16, Short, Short, Bits], // exchange.declare
        (40, 30) | (40, 40) => &[U16, Short, Short, Short, Bits], // exchange.bind / unbind
        (50, 10) => &[U16, Short, Bits], // queue.declare
        (50, 20) => &[U16, Short, Short, Short, Bits], // queue.bind
        (50, 50) => &[U16, Short, Short, Short], // queue.unbind
        (60, 20) => &[U16, Short, Short, Bits], // basic.consume
        _ => return Ok(()),
    };
    for f in before {
        match f {
            U16 => {
                r.u16()?;
            }
            Short => {
                let len = usize::from(r.u8()?);
                r.take(len)?;
            }
            Bits => {
                r.u8()?;
            }
        }
    }
    skip_table(&mut r, 1)
}

/// Skip one property of the given kind. For tables only the length prefix is checked; callers of
/// the single-field readers are expected to hold a validated list.
fn skip_field_shallow(r: &mut Cursor<'_>, kind: Kind) -> Result<(), CodecError> {
    match kind {
        Kind::ShortStr => {
            let len = usize::from(r.u8()?);
            r.take(len)?;
        }
        Kind::Octet => {
            r.u8()?;
        }
        Kind::Timestamp => {
            r.u64()?;
        }
        Kind::Table => {
            r.long()?;
        }
    }
    Ok(())
}

/// A cursor positioned at the property selected by `flag`, if the list says it is present.
fn locate(props: &[u8], flag: u16) -> Option<Cursor<'_>> {
    let mut r = Cursor::new(props, "property list");
    let flags = r.u16().ok()?;
    if flags & FLAGS_UNKNOWN != 0 || flags & flag == 0 {
        return None;
    }
    for (bit, kind) in FIELDS {
        if bit == flag {
            return Some(r);
        }
        if flags & bit != 0 {
            skip_field_shallow(&mut r, kind).ok()?;
        }
    }
    None
}

/// `delivery_mode` (1 transient, 2 persistent) if present.
pub fn delivery_mode(props: &[u8]) -> Option<u8> {
    locate(props, FLAG_DELIVERY_MODE)?.u8().ok()
}

/// `priority` if present.
pub fn priority(props: &[u8]) -> Option<u8> {
    locate(props, FLAG_PRIORITY)?.u8().ok()
}

/// `expiration` (a string of milliseconds) if present, as raw bytes.
pub fn expiration(props: &[u8]) -> Option<&[u8]> {
    let mut r = locate(props, FLAG_EXPIRATION)?;
    let len = usize::from(r.u8().ok()?);
    r.take(len).ok()
}

/// `reply_to` if present, as raw bytes (checked on every publish for direct reply-to: a flag
/// test when absent, a shallow walk over the earlier fields when present).
pub fn reply_to(props: &[u8]) -> Option<&[u8]> {
    let mut r = locate(props, FLAG_REPLY_TO)?;
    let len = usize::from(r.u8().ok()?);
    r.take(len).ok()
}

/// Does the property list carry a `headers` table? (A flag test: features keyed on headers
/// cost nothing for messages without any.)
pub fn has_headers(props: &[u8]) -> bool {
    props
        .first()
        .is_some_and(|hi| u16::from_be_bytes([*hi, 0]) & FLAG_HEADERS != 0)
}

/// Does the headers table have a top-level entry named `key`? Walks the table without
/// allocating (false for a malformed table: validation reports that elsewhere).
pub fn has_header(props: &[u8], key: &[u8]) -> bool {
    has_any_header(props, &[key])
}

/// Does the headers table have a top-level entry named one of `keys`? One walk, no allocation.
pub fn has_any_header(props: &[u8], keys: &[&[u8]]) -> bool {
    let Some(mut r) = locate(props, FLAG_HEADERS) else {
        return false;
    };
    let Ok(body) = r.long() else { return false };
    let mut t = Cursor::new(body, "headers table");
    while !t.is_empty() {
        let Ok(k) = t.shortstr() else { return false };
        if body.get(k).is_some_and(|k| keys.contains(&k)) {
            return true;
        }
        if skip_value(&mut t, 1).is_err() {
            return false;
        }
    }
    false
}

/// `user_id` if present, as raw bytes.
pub fn user_id(props: &[u8]) -> Option<&[u8]> {
    let mut r = locate(props, FLAG_USER_ID)?;
    let len = usize::from(r.u8().ok()?);
    r.take(len).ok()
}

/// The `headers` table, decoded with amq-protocol (allocates; used by the headers exchange and CC/BCC).
///
/// The whole list is validated first (cheap, no allocation): that bounds the nesting depth before
/// amq-protocol's recursive parser sees the table.
pub fn headers(props: &[u8]) -> Result<Option<FieldTable>, CodecError> {
    validate(props)?;
    let Some(r) = locate(props, FLAG_HEADERS) else {
        return Ok(None);
    };
    let table = props.get(r.pos()..).unwrap_or_default();
    match amq_protocol::types::parsing::parse_field_table(table) {
        Ok((_, t)) => Ok(Some(t)),
        Err(_) => Err(CodecError::Invalid("headers table")),
    }
}

/// Check that a property list (flags word(s) + fields) is well formed, including nested tables and
/// arrays, without allocating. Unknown flag bits (bit 0 set means another flags word follows) must
/// be handled as the spec says.
///
/// Bits 1 and 0 are rejected as `Invalid` (see the module docs: amq-protocol ignores them, we
/// refuse to forward a header that announces properties the basic class does not have).
pub fn validate(props: &[u8]) -> Result<(), CodecError> {
    let mut r = Cursor::new(props, "property list");
    let flags = r.u16()?;
    if flags & 1 != 0 {
        return Err(CodecError::Invalid("property flags continuation"));
    }
    if flags & FLAGS_UNKNOWN != 0 {
        return Err(CodecError::Invalid("unknown property flag"));
    }
    for (bit, kind) in FIELDS {
        if flags & bit == 0 {
            continue;
        }
        match kind {
            Kind::ShortStr => {
                r.shortstr()?;
            }
            Kind::Table => skip_table(&mut r, 1)?,
            Kind::Octet | Kind::Timestamp => skip_field_shallow(&mut r, kind)?,
        }
    }
    r.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use amq_protocol::protocol::basic::{gen_properties, parse_properties};
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::{AMQPValue, DecimalValue, ShortString};
    use proptest::collection::{btree_map, vec};
    use proptest::option::of;
    use proptest::prelude::*;
    use proptest::sample::Index;

    // ---- strategies shared with hot.rs's tests ----

    /// Short strings: mostly short unicode, sometimes exactly 255 bytes (one- or two-byte chars).
    pub(crate) fn arb_shortstr() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "\\PC{0,24}",
            1 => "[a-z0-9.]{255}",
            1 => "[a-z][é]{127}",
        ]
    }

    fn arb_leaf() -> impl Strategy<Value = AMQPValue> {
        prop_oneof![
            any::<bool>().prop_map(AMQPValue::Boolean),
            any::<i8>().prop_map(AMQPValue::ShortShortInt),
            any::<u8>().prop_map(AMQPValue::ShortShortUInt),
            any::<i16>().prop_map(AMQPValue::ShortInt),
            any::<u16>().prop_map(AMQPValue::ShortUInt),
            any::<i32>().prop_map(AMQPValue::LongInt),
            any::<u32>().prop_map(AMQPValue::LongUInt),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            // NaN != NaN would break the equality checks; the bits are opaque to us anyway.
            any::<f32>().prop_map(|f| AMQPValue::Float(if f.is_nan() { 0.0 } else { f })),
            any::<f64>().prop_map(|f| AMQPValue::Double(if f.is_nan() { 0.0 } else { f })),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
            vec(any::<u8>(), 0..40).prop_map(|v| AMQPValue::LongString(v.into())),
            any::<u64>().prop_map(AMQPValue::Timestamp),
            vec(any::<u8>(), 0..40).prop_map(|v| AMQPValue::ByteArray(v.into())),
            Just(AMQPValue::Void),
        ]
    }

    fn to_table(m: std::collections::BTreeMap<String, AMQPValue>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in m {
            t.insert(ShortString::from(k), v);
        }
        t
    }

    fn arb_value() -> impl Strategy<Value = AMQPValue> {
        arb_leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(|v| AMQPValue::FieldArray(v.into())),
                btree_map("\\PC{0,12}", inner, 0..6)
                    .prop_map(|m| AMQPValue::FieldTable(to_table(m))),
            ]
        })
    }

    /// Headers tables with nested tables and arrays.
    pub(crate) fn arb_table() -> impl Strategy<Value = FieldTable> {
        btree_map("\\PC{0,12}", arb_value(), 0..8).prop_map(to_table)
    }

    pub(crate) fn arb_properties() -> impl Strategy<Value = BasicProperties> {
        let s = || proptest::option::of(arb_shortstr().prop_map(ShortString::from));
        (
            (
                s(),
                s(),
                of(arb_table()),
                of(any::<u8>()),
                of(any::<u8>()),
                s(),
                s(),
            ),
            (s(), s(), of(any::<u64>()), s(), s(), s(), s()),
        )
            .prop_map(
                |((ct, ce, h, dm, pr, cid, rt), (exp, mid, ts, ty, uid, aid, clid))| {
                    let mut p = BasicProperties::default();
                    if let Some(v) = ct {
                        p = p.with_content_type(v);
                    }
                    if let Some(v) = ce {
                        p = p.with_content_encoding(v);
                    }
                    if let Some(v) = h {
                        p = p.with_headers(v);
                    }
                    if let Some(v) = dm {
                        p = p.with_delivery_mode(v);
                    }
                    if let Some(v) = pr {
                        p = p.with_priority(v);
                    }
                    if let Some(v) = cid {
                        p = p.with_correlation_id(v);
                    }
                    if let Some(v) = rt {
                        p = p.with_reply_to(v);
                    }
                    if let Some(v) = exp {
                        p = p.with_expiration(v);
                    }
                    if let Some(v) = mid {
                        p = p.with_message_id(v);
                    }
                    if let Some(v) = ts {
                        p = p.with_timestamp(v);
                    }
                    if let Some(v) = ty {
                        p = p.with_type(v);
                    }
                    if let Some(v) = uid {
                        p = p.with_user_id(v);
                    }
                    if let Some(v) = aid {
                        p = p.with_app_id(v);
                    }
                    if let Some(v) = clid {
                        p = p.with_cluster_id(v);
                    }
                    p
                },
            )
    }

    /// Small edits of a valid encoding, to probe the boundaries the oracle and we must agree on.
    #[derive(Debug, Clone)]
    pub(crate) enum Mutation {
        Truncate(Index),
        Set(Index, u8),
        Insert(Index, u8),
        Remove(Index),
    }

    pub(crate) fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
        vec(
            prop_oneof![
                any::<Index>().prop_map(Mutation::Truncate),
                (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
                (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
                any::<Index>().prop_map(Mutation::Remove),
            ],
            1..4,
        )
    }

    pub(crate) fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
        for m in mutations {
            let len = bytes.len();
            match m {
                Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
                _ if len == 0 => {}
                Mutation::Truncate(i) => bytes.truncate(i.index(len)),
                Mutation::Set(i, b) => bytes[i.index(len)] = *b,
                Mutation::Remove(i) => {
                    bytes.remove(i.index(len));
                }
            }
        }
    }

    // ---- helpers ----

    fn oracle_encode(p: &BasicProperties) -> Vec<u8> {
        let ctx = gen_properties(p)(Vec::new().into()).expect("amq-protocol encodes properties");
        ctx.into_inner().0
    }

    /// amq-protocol's reading of a whole property list (as `parse_frame` does it: all consumed).
    fn oracle_parse(bytes: &[u8]) -> Option<BasicProperties> {
        match parse_properties(bytes) {
            Ok(([], p)) => Some(p),
            _ => None,
        }
    }

    fn check_readers(bytes: &[u8], p: &BasicProperties) {
        assert_eq!(delivery_mode(bytes), *p.delivery_mode());
        assert_eq!(priority(bytes), *p.priority());
        assert_eq!(
            expiration(bytes),
            p.expiration().as_ref().map(|s| s.as_str().as_bytes())
        );
        assert_eq!(headers(bytes), Ok(p.headers().clone()));
    }

    /// Properties with only a headers table, nested `levels` containers deep (the headers table is
    /// level 1, its innermost container is empty). Inner containers are tables or arrays (`kind`).
    pub(crate) fn nested_props(levels: usize, kind: u8) -> Vec<u8> {
        // Element prefix inside a container: table entries carry key "a" before the type octet.
        let prefix = |parent_is_table: bool| if parent_is_table { 3 } else { 1 };
        let is_table = |level: usize| level == 1 || kind == b'F';
        let mut body_len = vec![0u32; levels + 1];
        for l in (1..levels).rev() {
            body_len[l] = prefix(is_table(l)) + 4 + body_len[l + 1];
        }
        let mut out = Vec::with_capacity(2 + 4 + body_len[1] as usize);
        out.extend_from_slice(&FLAG_HEADERS.to_be_bytes());
        out.extend_from_slice(&body_len[1].to_be_bytes());
        for (l, len) in body_len.iter().enumerate().skip(2) {
            if is_table(l - 1) {
                out.extend_from_slice(&[1, b'a']);
            }
            out.push(kind);
            out.extend_from_slice(&len.to_be_bytes());
        }
        out
    }

    // ---- properties ----

    proptest! {
        /// amq-protocol encodes → we validate and read the same values.
        #[test]
        fn oracle_encoded_properties_are_read_back(p in arb_properties()) {
            let bytes = oracle_encode(&p);
            prop_assert_eq!(validate(&bytes), Ok(()));
            check_readers(&bytes, &p);
        }

        /// Around valid encodings, we accept exactly what amq-protocol accepts (except the flag
        /// bits 1 and 0 it ignores and we reject), and read the same values.
        #[test]
        fn agrees_with_oracle_on_mutated_lists(p in arb_properties(), muts in arb_mutations()) {
            let mut bytes = oracle_encode(&p);
            mutate(&mut bytes, &muts);
            let ours = validate(&bytes);
            let theirs = oracle_parse(&bytes);
            let flags_ok = bytes.len() >= 2 && bytes[1] & 0b11 == 0;
            prop_assert_eq!(ours.is_ok(), theirs.is_some() && flags_ok, "{:?} {:?}", ours, bytes);
            if let Some(q) = theirs.filter(|_| ours.is_ok()) {
                check_readers(&bytes, &q);
            }
        }

        /// No input makes any reader panic.
        #[test]
        fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), flags in any::<u16>()) {
            for input in [bytes.clone(), [&flags.to_be_bytes()[..], &bytes].concat()] {
                let ok = validate(&input).is_ok();
                let _ = (delivery_mode(&input), priority(&input), expiration(&input));
                prop_assert_eq!(headers(&input).is_ok(), ok);
            }
        }
    }

    #[test]
    fn empty_properties() {
        assert_eq!(validate(&[0, 0]), Ok(()));
        assert_eq!(headers(&[0, 0]), Ok(None));
        assert_eq!(delivery_mode(&[0, 0]), None);
        assert_eq!(validate(&[]), Err(CodecError::Truncated("property list")));
        assert_eq!(validate(&[0]), Err(CodecError::Truncated("property list")));
        assert_eq!(
            validate(&[0, 0, 0]),
            Err(CodecError::Invalid("trailing bytes"))
        );
    }

    #[test]
    fn unknown_flag_bits_are_rejected() {
        // amq-protocol ignores bits 1 and 0 (documented divergence); we reject both.
        assert!(oracle_parse(&[0, 0b10]).is_some());
        assert_eq!(
            validate(&[0, 0b10]),
            Err(CodecError::Invalid("unknown property flag"))
        );
        assert_eq!(
            validate(&[0, 1]),
            Err(CodecError::Invalid("property flags continuation"))
        );
        assert_eq!(
            validate(&[0, 1, 0, 0]),
            Err(CodecError::Invalid("property flags continuation"))
        );
        assert!(oracle_parse(&[0, 1, 0, 0]).is_none());
        assert_eq!(delivery_mode(&[0x10, 0b10, 2]), None);
    }

    #[test]
    fn single_fields() {
        // delivery_mode 2, priority 9, expiration "60000", timestamp 7.
        let flags = FLAG_DELIVERY_MODE | FLAG_PRIORITY | FLAG_EXPIRATION | FLAG_TIMESTAMP;
        let mut b = flags.to_be_bytes().to_vec();
        b.extend_from_slice(&[2, 9, 5, b'6', b'0', b'0', b'0', b'0']);
        b.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(validate(&b), Ok(()));
        assert_eq!(delivery_mode(&b), Some(2));
        assert_eq!(priority(&b), Some(9));
        assert_eq!(expiration(&b), Some(&b"60000"[..]));
        let p = oracle_parse(&b).unwrap();
        assert_eq!(p.expiration().as_ref().unwrap().as_str(), "60000");
        assert_eq!(*p.timestamp(), Some(7));
    }

    #[test]
    fn garbage_is_rejected() {
        let h = FLAG_HEADERS.to_be_bytes();
        // Table length runs past the end.
        assert_eq!(
            validate(&[h[0], h[1], 0, 0, 0, 9, 0]),
            Err(CodecError::Truncated("property list"))
        );
        // Entry runs past its table.
        assert_eq!(
            validate(&[h[0], h[1], 0, 0, 0, 3, 1, b'k', b'I', 0, 0, 0, 0]),
            Err(CodecError::Truncated("field table"))
        );
        // Unknown type octet ('s' short string of the spec is i16 here; 'Z' does not exist).
        assert_eq!(
            validate(&[h[0], h[1], 0, 0, 0, 3, 1, b'k', b'Z']),
            Err(CodecError::Invalid("field value type"))
        );
        // Non-UTF-8 key and content type.
        assert_eq!(
            validate(&[h[0], h[1], 0, 0, 0, 3, 1, 0xFF, b'V']),
            Err(CodecError::Invalid("short string is not UTF-8"))
        );
        assert_eq!(
            validate(&[0x80, 0, 1, 0xC3]),
            Err(CodecError::Invalid("short string is not UTF-8"))
        );
        assert!(oracle_parse(&[0x80, 0, 1, 0xC3]).is_none());
        // Every accepted type octet of AMQPType::from_id, with a value of the right width.
        for (t, w) in [
            (b't', 1),
            (b'b', 1),
            (b'B', 1),
            (b's', 2),
            (b'U', 2),
            (b'u', 2),
            (b'I', 4),
            (b'i', 4),
            (b'f', 4),
            (b'D', 5),
            (b'l', 8),
            (b'L', 8),
            (b'd', 8),
            (b'T', 8),
            (b'V', 0),
            (b'S', 4),
            (b'x', 4),
            (b'A', 4),
            (b'F', 4),
        ] {
            let mut b = vec![h[0], h[1], 0, 0, 0, 3 + w, 1, b'k', t];
            b.resize(b.len() + usize::from(w), 0);
            assert_eq!(validate(&b), Ok(()), "type {}", t as char);
            assert!(oracle_parse(&b).is_some(), "type {}", t as char);
            assert!(headers(&b).unwrap().unwrap().inner().contains_key("k"));
        }
        for t in 0..=255u8 {
            if amq_protocol::types::AMQPType::from_id(t as char).is_none() {
                let b = [h[0], h[1], 0, 0, 0, 3, 1, b'k', t];
                assert_eq!(validate(&b), Err(CodecError::Invalid("field value type")));
            }
        }
    }

    #[test]
    fn nesting_depth_is_bounded() {
        for kind in [b'F', b'A'] {
            let ok = nested_props(MAX_NESTING, kind);
            assert_eq!(validate(&ok), Ok(()));
            assert_eq!(headers(&ok).map(|h| h.is_some()), Ok(true));
            assert!(oracle_parse(&ok).is_some());
            let deep = nested_props(MAX_NESTING + 1, kind);
            assert_eq!(
                validate(&deep),
                Err(CodecError::Invalid("field tables nested too deep"))
            );
            assert_eq!(
                headers(&deep),
                Err(CodecError::Invalid("field tables nested too deep"))
            );
            // Far deeper than any stack could take recursively: rejected early, no overflow.
            let hostile = nested_props(200_000, kind);
            assert!(validate(&hostile).is_err());
            assert!(headers(&hostile).is_err());
            assert_eq!(delivery_mode(&hostile), None);
        }
    }
}
