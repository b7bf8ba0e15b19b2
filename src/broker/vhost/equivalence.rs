//! Redeclare equivalence: a second declare of an existing queue or exchange must match it, judged
//! the way RabbitMQ's `rabbit_misc:assert_args_equivalence` judges it, with its texts. Only the
//! arguments the object's type defines are compared (a queue's `x-message-ttl`, an exchange's
//! `alternate-exchange`): any other argument is the client's business and never makes a redeclare
//! fail. An argument present on one side and absent on the other is a difference.

use crate::broker::queue::consumer_opts::type_name;
use crate::error::{AmqpError, AmqpResult};
use amq_protocol::types::{AMQPValue as V, FieldTable};

/// The 406 for a flag or argument that differs. `obj` is "q' in vhost '/" (quoted by the text).
pub(super) fn inequivalent(
    what: &str,
    arg: &str,
    obj: &str,
    received: impl std::fmt::Display,
    current: impl std::fmt::Display,
) -> AmqpError {
    AmqpError::precondition_failed(format!(
        "inequivalent arg '{arg}' for {what} '{obj}': received '{received}' but current is '{current}'"
    ))
}

/// Compare `keys` of an existing object's arguments with a redeclare's. `rs` names the object as
/// RabbitMQ does ("queue 'q' in vhost '/'").
pub(super) fn assert_args(
    existing: &FieldTable,
    new: &FieldTable,
    keys: &[&str],
    rs: &str,
) -> AmqpResult<()> {
    for key in keys {
        let (cur, got) = (existing.inner().get(*key), new.inner().get(*key));
        let detail = match (cur, got) {
            (None, None) => continue,
            (Some(c), Some(g)) if same_arg(c, g) => continue,
            (Some(c), Some(g)) => format!("received '{}' but current is '{}'", raw(g), raw(c)),
            (c, g) => format!("received {} but current is {}", typed(g), typed(c)),
        };
        return Err(AmqpError::precondition_failed(format!(
            "inequivalent arg '{key}' for {rs}: {detail}"
        )));
    }
    Ok(())
}

/// Argument equivalence as RabbitMQ judges it: integers by value whatever their wire type
/// (clients disagree on int vs long), strings by their bytes, anything else exactly.
pub(super) fn same_arg(a: &V, b: &V) -> bool {
    match (int(a), int(b), text(a), text(b)) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn int(v: &V) -> Option<i128> {
    Some(match v {
        V::ShortShortInt(n) => i128::from(*n),
        V::ShortShortUInt(n) => i128::from(*n),
        V::ShortInt(n) => i128::from(*n),
        V::ShortUInt(n) => i128::from(*n),
        V::LongInt(n) => i128::from(*n),
        V::LongUInt(n) => i128::from(*n),
        V::LongLongInt(n) => i128::from(*n),
        V::Timestamp(n) => i128::from(*n),
        _ => return None,
    })
}

fn text(v: &V) -> Option<&[u8]> {
    match v {
        V::LongString(s) => Some(s.as_bytes()),
        V::ShortString(s) => Some(s.as_str().as_bytes()),
        V::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

/// A value as RabbitMQ prints it in these texts: strings as their text, numbers and booleans
/// plainly.
pub(crate) fn raw(v: &V) -> String {
    if let Some(n) = int(v) {
        return n.to_string();
    }
    if let Some(t) = text(v) {
        return String::from_utf8_lossy(t).into_owned();
    }
    match v {
        V::Boolean(b) => b.to_string(),
        V::Float(f) => f.to_string(),
        V::Double(d) => d.to_string(),
        V::Void => "undefined".to_owned(),
        other => format!("{other:?}"),
    }
}

/// "none", or "the value '1000' of type 'signedint'" (RabbitMQ's names of the wire types).
fn typed(v: Option<&V>) -> String {
    match v {
        None => "none".to_owned(),
        Some(v) => format!("the value '{}' of type '{}'", raw(v), type_name(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, V)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn text_of(r: AmqpResult<()>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(()) => "ok".to_owned(),
        }
    }

    const RS: &str = "queue 'q' in vhost '/'";

    #[test]
    fn rabbitmq_texts_for_a_different_a_missing_and_an_added_argument() {
        let ttl = |n| table(&[("x-message-ttl", V::LongInt(n))]);
        let keys = &["x-message-ttl"];
        let diff = text_of(assert_args(&ttl(1000), &ttl(2000), keys, RS));
        assert!(
            diff.contains("inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '2000' but current is '1000'"),
            "{diff}"
        );
        let missing = text_of(assert_args(&ttl(1000), &table(&[]), keys, RS));
        assert!(
            missing.contains("received none but current is the value '1000' of type 'signedint'"),
            "{missing}"
        );
        let added = text_of(assert_args(&table(&[]), &ttl(1000), keys, RS));
        assert!(
            added.contains("received the value '1000' of type 'signedint' but current is none"),
            "{added}"
        );
    }

    #[test]
    fn integers_compare_by_value_and_unlisted_arguments_are_ignored() {
        let a = table(&[
            ("x-max-length", V::LongInt(10)),
            ("x-custom", V::LongInt(1)),
        ]);
        let b = table(&[
            ("x-max-length", V::LongLongInt(10)),
            ("x-custom", V::LongInt(2)),
        ]);
        assert!(assert_args(&a, &b, &["x-max-length"], RS).is_ok());
    }

    #[test]
    fn strings_print_as_text() {
        let a = table(&[("x-overflow", V::LongString("drop-head".into()))]);
        let b = table(&[("x-overflow", V::LongString("reject-publish".into()))]);
        let t = text_of(assert_args(&a, &b, &["x-overflow"], RS));
        assert!(
            t.contains("received 'reject-publish' but current is 'drop-head'"),
            "{t}"
        );
    }
}
