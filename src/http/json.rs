//! JSON shapes shared by the resources: message_stats with `_details` rates, field tables and
//! message properties in both directions, names of things as RabbitMQ writes them.

use super::error::{ApiError, ApiResult};
use crate::broker::stats::{deliver_get, Counts, Rates, Stat, STATS};
use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{json, Map, Value};

/// `{"rate": x}`.
pub fn details(rate: f64) -> Value {
    json!({ "rate": rate })
}

/// RabbitMQ's `message_stats` object: each statistic with its `_details` rate, plus
/// `deliver_get`. `rates` are those of [`Rates::rates`] over the counter layout.
pub fn message_stats(counts: &Counts, rates: &[f64], which: &[Stat]) -> Value {
    let mut m = Map::new();
    let rate = |i: usize| rates.get(i).copied().unwrap_or(0.0);
    for s in which {
        let i = *s as usize;
        m.insert(s.name().into(), json!(counts[i]));
        m.insert(format!("{}_details", s.name()), details(rate(i)));
    }
    if which.contains(&Stat::Deliver) {
        let r = rate(Stat::Deliver as usize)
            + rate(Stat::DeliverNoAck as usize)
            + rate(Stat::Get as usize)
            + rate(Stat::GetNoAck as usize);
        m.insert("deliver_get".into(), json!(deliver_get(counts)));
        m.insert(
            "deliver_get_details".into(),
            details((r * 10.0).round() / 10.0),
        );
    }
    Value::Object(m)
}

/// message_stats from live counts and an object's sampled rates.
pub fn stats_of(counts: &Counts, rates: &Rates, extra: usize, which: &[Stat]) -> Value {
    message_stats(counts, &rates.rates(STATS + extra), which)
}

/// A vhost name for a URL path segment (`/` is `%2F`).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A field table as JSON.
pub fn table_to_json(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), value_to_json(v)))
            .collect(),
    )
}

pub fn value_to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => json!(String::from_utf8_lossy(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

/// Nesting deeper than this is refused (a field table is parsed recursively by clients).
const MAX_DEPTH: usize = 32;

/// A JSON object as a field table (`arguments`, `headers`). Integers become long-long ints,
/// as RabbitMQ's management API makes them.
pub fn json_to_table(v: &Value) -> ApiResult<FieldTable> {
    json_to_table_at(v, 0)
}

fn json_to_table_at(v: &Value, depth: usize) -> ApiResult<FieldTable> {
    match v {
        Value::Null => Ok(FieldTable::default()),
        Value::Object(m) => {
            let mut t = FieldTable::default();
            for (k, v) in m {
                let key = ShortString::try_new(k.clone())
                    .map_err(|_| ApiError::bad_request(format!("key too long: {k:.40}…")))?;
                t.insert(key, json_to_value(v, depth + 1)?);
            }
            Ok(t)
        }
        _ => Err(ApiError::bad_request("expected a JSON object of arguments")),
    }
}

fn json_to_value(v: &Value, depth: usize) -> ApiResult<AMQPValue> {
    if depth > MAX_DEPTH {
        return Err(ApiError::bad_request("arguments nested too deeply"));
    }
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Value::Array(a) => {
            let mut arr = FieldArray::default();
            for x in a {
                arr.push(json_to_value(x, depth + 1)?);
            }
            AMQPValue::FieldArray(arr)
        }
        Value::Object(_) => AMQPValue::FieldTable(json_to_table_at(v, depth)?),
    })
}

/// Message properties as the management API shows them (only those present).
pub fn properties_to_json(raw: &[u8]) -> Value {
    let Ok((_, p)) = amq_protocol::protocol::basic::parse_properties(raw) else {
        return json!({});
    };
    let mut m = Map::new();
    let mut s = |k: &str, v: &Option<ShortString>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v.as_str()));
        }
    };
    s("content_type", p.content_type());
    s("content_encoding", p.content_encoding());
    s("correlation_id", p.correlation_id());
    s("reply_to", p.reply_to());
    s("expiration", p.expiration());
    s("message_id", p.message_id());
    s("type", p.kind());
    s("user_id", p.user_id());
    s("app_id", p.app_id());
    s("cluster_id", p.cluster_id());
    if let Some(h) = p.headers() {
        m.insert("headers".into(), table_to_json(h));
    }
    if let Some(d) = p.delivery_mode() {
        m.insert("delivery_mode".into(), json!(d));
    }
    if let Some(x) = p.priority() {
        m.insert("priority".into(), json!(x));
    }
    if let Some(t) = p.timestamp() {
        m.insert("timestamp".into(), json!(t));
    }
    Value::Object(m)
}

/// Properties from the management API's JSON (`{"delivery_mode": 2, "headers": {...}}`),
/// encoded as a content header's property list.
pub fn json_to_properties(v: &Value) -> ApiResult<bytes::Bytes> {
    let obj = match v {
        Value::Null => return encode_properties(&BasicProperties::default()),
        Value::Object(o) => o,
        _ => return Err(ApiError::bad_request("properties must be a JSON object")),
    };
    let mut p = BasicProperties::default();
    for (k, v) in obj {
        let short = || -> ApiResult<ShortString> {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "property {k} must be a string"
                    )))
                }
            };
            ShortString::try_new(s).map_err(|_| {
                ApiError::bad_request(format!("property {k} is longer than 255 bytes"))
            })
        };
        let octet = || -> ApiResult<u8> {
            v.as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| ApiError::bad_request(format!("property {k} must be 0-255")))
        };
        p = match k.as_str() {
            "content_type" => p.with_content_type(short()?),
            "content_encoding" => p.with_content_encoding(short()?),
            "correlation_id" => p.with_correlation_id(short()?),
            "reply_to" => p.with_reply_to(short()?),
            "expiration" => p.with_expiration(short()?),
            "message_id" => p.with_message_id(short()?),
            "type" => p.with_type(short()?),
            "user_id" => p.with_user_id(short()?),
            "app_id" => p.with_app_id(short()?),
            "cluster_id" => p.with_cluster_id(short()?),
            "delivery_mode" => p.with_delivery_mode(octet()?),
            "priority" => p.with_priority(octet()?),
            "timestamp" => p.with_timestamp(
                v.as_u64()
                    .ok_or_else(|| ApiError::bad_request("timestamp must be a number"))?,
            ),
            "headers" => p.with_headers(json_to_table(v)?),
            other => return Err(ApiError::bad_request(format!("unknown property {other}"))),
        };
    }
    encode_properties(&p)
}

fn encode_properties(p: &BasicProperties) -> ApiResult<bytes::Bytes> {
    let out = amq_protocol::protocol::basic::gen_properties(p)(Vec::new().into())
        .map_err(|e| ApiError::bad_request(format!("cannot encode properties: {e}")))?;
    Ok(bytes::Bytes::from(out.into_inner().0))
}

/// A `bool` from a JSON field that may be missing.
pub fn flag(v: &Value, key: &str, default: bool) -> ApiResult<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be true or false"
        ))),
    }
}

/// A string from a JSON field that may be missing.
pub fn text<'a>(v: &'a Value, key: &str) -> ApiResult<Option<&'a str>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// Tags given as a list or a comma-separated string (both appear in RabbitMQ exports).
pub fn tags(v: Option<&Value>) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        let t = t.trim();
        if !t.is_empty() && !out.iter().any(|x| x == t) {
            out.push(t.to_string());
        }
    };
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => s.split(',').for_each(&mut add),
        Some(Value::Array(a)) => {
            for t in a {
                match t {
                    Value::String(s) => add(s),
                    _ => return Err(ApiError::bad_request("tags must be strings")),
                }
            }
        }
        Some(_) => return Err(ApiError::bad_request("tags must be a list or a string")),
    }
    Ok(out)
}

/// The string fields `keys` of a request body, or RabbitMQ's 400 naming every missing one
/// (`[{key_missing,write},{key_missing,read}]`).
pub fn required_texts(v: &Value, keys: &[&str]) -> ApiResult<Vec<String>> {
    let mut out = Vec::with_capacity(keys.len());
    let mut missing = Vec::new();
    for k in keys {
        match text(v, k)? {
            Some(t) => out.push(t.to_string()),
            None => missing.push(format!("{{key_missing,{k}}}")),
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(ApiError::bad_request(format!("[{}]", missing.join(","))))
    }
}
