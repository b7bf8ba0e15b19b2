//! Headers-exchange matching.
//!
//! A headers exchange ignores the routing key and routes on the message's
//! `headers` table instead. Each binding's arguments are the match criteria,
//! and the `x-match` argument says how they combine:
//!
//! * `all` (the default when `x-match` is absent): every criterion must match;
//!   with no criteria at all, everything matches.
//! * `any`: at least one criterion must match; with no criteria, nothing does.
//! * `all-with-x` / `any-with-x`: as above, but binding arguments whose name
//!   starts with `x-` count as criteria too. In plain `all`/`any` they are
//!   ignored (they are broker arguments, not criteria). `x-match` itself is
//!   never a criterion.
//!
//! A criterion matches when the message has a header with the same name and
//! an equal value; a criterion whose value is `Void` matches on presence of the
//! header alone. This follows `rabbit_exchange_type_headers`.
//!
//! Value equality mirrors RabbitMQ, which compares the decoded Erlang terms with
//! `==` and so ignores the wire type: all integer types (including timestamps)
//! compare by numeric value, integers and floats compare numerically (`1 ==
//! 1.0`), and short strings, long strings and byte arrays compare by their
//! bytes. Booleans, decimals and void only equal their own kind. Arrays and
//! nested tables compare element-wise with the same rules (RabbitMQ is stricter
//! about types inside nested values; being lenient there is harmless).

use crate::broker::queue::consumer_opts::type_name;
use crate::broker::vhost::equivalence::raw;
use amq_protocol::types::{AMQPValue, FieldTable};

/// How a headers binding's criteria combine (the binding's `x-match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

/// Reads `x-match` from binding arguments, for validation at bind time.
pub fn parse_x_match(args: &FieldTable) -> Result<XMatch, String> {
    let value = match args.inner().get("x-match") {
        None => return Ok(XMatch::All),
        // Short strings never come off the wire in tables (RabbitMQ's `s` is a
        // short int), but accept them for tables built in code.
        Some(AMQPValue::LongString(s)) => s.as_bytes(),
        Some(AMQPValue::ShortString(s)) => s.as_str().as_bytes(),
        Some(other) => {
            return Err(format!(
                "Invalid x-match field type {} (value {}); expected longstr",
                type_name(other),
                raw(other)
            ))
        }
    };
    match value {
        b"all" => Ok(XMatch::All),
        b"any" => Ok(XMatch::Any),
        b"all-with-x" => Ok(XMatch::AllWithX),
        b"any-with-x" => Ok(XMatch::AnyWithX),
        // RabbitMQ prints the value as an Erlang binary.
        other => Err(format!(
            "Invalid x-match field value <<\"{}\">>; expected all, any, all-with-x, or any-with-x",
            String::from_utf8_lossy(other)
        )),
    }
}

/// Whether a message with `headers` matches a binding with `binding_args`.
pub fn matches(mode: XMatch, binding_args: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let with_x = matches!(mode, XMatch::AllWithX | XMatch::AnyWithX);
    let mut criteria = binding_args.inner().iter().filter(|(name, _)| {
        let name = name.as_str();
        name != "x-match" && (with_x || !name.starts_with("x-"))
    });
    let hit = |(name, want): (&_, &AMQPValue)| {
        let Some(got) = headers.and_then(|h| h.inner().get(name)) else {
            return false;
        };
        matches!(want, AMQPValue::Void) || values_equal(want, got)
    };
    match mode {
        // `all` over no criteria is vacuously true, `any` is false: as RabbitMQ.
        XMatch::All | XMatch::AllWithX => criteria.all(hit),
        XMatch::Any | XMatch::AnyWithX => criteria.any(hit),
    }
}

/// A value reduced to what RabbitMQ's `==` distinguishes.
enum Term<'a> {
    Int(i128),
    Float(f64),
    Bytes(&'a [u8]),
    Other(&'a AMQPValue),
}

fn term(v: &AMQPValue) -> Term<'_> {
    use AMQPValue as V;
    match v {
        V::ShortShortInt(n) => Term::Int((*n).into()),
        V::ShortShortUInt(n) => Term::Int((*n).into()),
        V::ShortInt(n) => Term::Int((*n).into()),
        V::ShortUInt(n) => Term::Int((*n).into()),
        V::LongInt(n) => Term::Int((*n).into()),
        V::LongUInt(n) => Term::Int((*n).into()),
        V::LongLongInt(n) => Term::Int((*n).into()),
        V::Timestamp(n) => Term::Int((*n).into()),
        V::Float(f) => Term::Float((*f).into()),
        V::Double(f) => Term::Float(*f),
        V::ShortString(s) => Term::Bytes(s.as_str().as_bytes()),
        V::LongString(s) => Term::Bytes(s.as_bytes()),
        V::ByteArray(b) => Term::Bytes(b.as_slice()),
        other => Term::Other(other),
    }
}

fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    use AMQPValue as V;
    match (term(a), term(b)) {
        (Term::Int(x), Term::Int(y)) => x == y,
        (Term::Float(x), Term::Float(y)) => x == y,
        // Exact comparison: an f64 with no fraction inside i128 range converts
        // losslessly, and any other float cannot equal an integer.
        (Term::Int(i), Term::Float(f)) | (Term::Float(f), Term::Int(i)) => {
            f.fract() == 0.0 && f.abs() < 1e38 && f as i128 == i
        }
        (Term::Bytes(x), Term::Bytes(y)) => x == y,
        (Term::Other(x), Term::Other(y)) => match (x, y) {
            (V::FieldArray(x), V::FieldArray(y)) => {
                let (x, y) = (x.as_slice(), y.as_slice());
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
            }
            (V::FieldTable(x), V::FieldTable(y)) => {
                let (x, y) = (x.inner(), y.inner());
                // Both maps iterate in key order, so a zip pairs equal keys.
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((kx, vx), (ky, vy))| kx == ky && values_equal(vx, vy))
            }
            // Boolean, decimal and void: plain same-kind equality.
            _ => x == y,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::{DecimalValue, FieldArray, LongString};

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v))
    }

    /// Parses `x-match` from `args` and matches, like a route would.
    fn check(args: &FieldTable, headers: &FieldTable) -> bool {
        matches(parse_x_match(args).unwrap(), args, Some(headers))
    }

    #[test]
    fn parse_modes_and_errors() {
        let mode = |v: AMQPValue| parse_x_match(&table(&[("x-match", v)]));
        assert_eq!(parse_x_match(&FieldTable::default()), Ok(XMatch::All));
        assert_eq!(mode(s("all")), Ok(XMatch::All));
        assert_eq!(mode(s("any")), Ok(XMatch::Any));
        assert_eq!(mode(s("all-with-x")), Ok(XMatch::AllWithX));
        assert_eq!(
            mode(AMQPValue::ShortString("any-with-x".into())),
            Ok(XMatch::AnyWithX)
        );
        let err = mode(s("most")).unwrap_err();
        assert!(
            err.starts_with("Invalid x-match field value <<\"most\">>"),
            "{err}"
        );
        let err = mode(AMQPValue::LongInt(1)).unwrap_err();
        assert!(
            err.starts_with("Invalid x-match field type signedint (value 1)"),
            "{err}"
        );
    }

    #[test]
    fn all_and_any() {
        let all = table(&[
            ("x-match", s("all")),
            ("format", s("pdf")),
            ("type", s("report")),
        ]);
        let any = table(&[
            ("x-match", s("any")),
            ("format", s("pdf")),
            ("type", s("report")),
        ]);
        let both = table(&[
            ("format", s("pdf")),
            ("type", s("report")),
            ("extra", s("y")),
        ]);
        let one = table(&[("format", s("pdf")), ("type", s("log"))]);
        let none = table(&[("format", s("zip"))]);
        assert!(check(&all, &both) && !check(&all, &one) && !check(&all, &none));
        assert!(check(&any, &both) && check(&any, &one) && !check(&any, &none));
        // No headers property at all behaves like an empty table.
        assert!(!matches(XMatch::All, &all, None) && !matches(XMatch::Any, &any, None));
    }

    #[test]
    fn empty_criteria() {
        let headers = table(&[("a", s("1"))]);
        let no_args = FieldTable::default();
        assert!(matches(XMatch::All, &no_args, Some(&headers)));
        assert!(matches(XMatch::All, &no_args, None));
        assert!(!matches(XMatch::Any, &no_args, Some(&headers)));
        // x-match alone, or x- args outside the with-x modes, are no criteria.
        let only_x = table(&[("x-match", s("any")), ("x-foo", s("1"))]);
        assert!(!check(&only_x, &table(&[("x-foo", s("1"))])));
        assert!(matches(XMatch::All, &only_x, None));
    }

    #[test]
    fn x_arguments_count_only_with_x() {
        let args = |mode| table(&[("x-match", s(mode)), ("x-tenant", s("t1")), ("k", s("v"))]);
        let good = table(&[("x-tenant", s("t1")), ("k", s("v"))]);
        let bad_x = table(&[("x-tenant", s("t2")), ("k", s("v"))]);
        let only_x = table(&[("x-tenant", s("t1"))]);
        assert!(check(&args("all"), &bad_x));
        assert!(check(&args("all-with-x"), &good) && !check(&args("all-with-x"), &bad_x));
        assert!(!check(&args("any"), &only_x));
        assert!(check(&args("any-with-x"), &only_x));
        // x-match is never a criterion, even in with-x mode.
        let just_mode = table(&[("x-match", s("all-with-x"))]);
        assert!(check(&just_mode, &FieldTable::default()));
    }

    #[test]
    fn void_matches_presence() {
        let args = table(&[("x-match", s("all")), ("flag", AMQPValue::Void)]);
        assert!(check(&args, &table(&[("flag", s("anything"))])));
        assert!(check(&args, &table(&[("flag", AMQPValue::Void)])));
        assert!(!check(&args, &table(&[("other", s("x"))])));
        // A void header does not satisfy a non-void criterion.
        let args = table(&[("flag", s("x"))]);
        assert!(!check(&args, &table(&[("flag", AMQPValue::Void)])));
    }

    #[test]
    fn value_equality() {
        use AMQPValue as V;
        let eq = |a: V, b: V| values_equal(&a, &b) && values_equal(&b, &a);
        assert!(eq(V::ShortShortUInt(7), V::LongLongInt(7)));
        assert!(eq(V::ShortInt(-3), V::LongInt(-3)));
        assert!(eq(V::Timestamp(5), V::LongUInt(5)));
        assert!(!eq(V::LongInt(-1), V::LongUInt(u32::MAX)));
        assert!(eq(V::LongInt(2), V::Double(2.0)) && !eq(V::LongInt(2), V::Double(2.5)));
        assert!(eq(V::Float(1.5), V::Double(1.5)));
        assert!(eq(V::ShortString("pdf".into()), s("pdf")));
        assert!(eq(V::ByteArray(b"pdf".to_vec().into()), s("pdf")));
        assert!(!eq(s("1"), V::LongInt(1)) && !eq(V::Boolean(true), V::LongInt(1)));
        assert!(eq(V::Boolean(false), V::Boolean(false)));
        let dec = |value| V::DecimalValue(DecimalValue { scale: 2, value });
        assert!(eq(dec(150), dec(150)) && !eq(dec(150), dec(151)));
        let arr = |v: Vec<V>| V::FieldArray(FieldArray::from(v));
        assert!(eq(
            arr(vec![V::LongInt(1), s("a")]),
            arr(vec![V::ShortInt(1), s("a")])
        ));
        assert!(!eq(
            arr(vec![V::LongInt(1)]),
            arr(vec![V::LongInt(1), V::LongInt(1)])
        ));
        let nested = |v| V::FieldTable(table(&[("n", v)]));
        assert!(eq(nested(V::LongInt(1)), nested(V::LongLongInt(1))));
        assert!(!eq(nested(V::LongInt(1)), nested(V::LongInt(2))));
        // And through `matches`, an integer criterion meets a wider header.
        let args = table(&[("n", V::ShortShortInt(42))]);
        assert!(check(&args, &table(&[("n", V::LongLongInt(42))])));
    }
}
