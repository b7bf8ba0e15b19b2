//! Stream arguments as RabbitMQ spells them: retention (`x-max-length-bytes`, `x-max-age`,
//! `x-stream-max-segment-size-bytes`) on the queue, and `x-stream-offset`, `x-stream-filter`,
//! `x-stream-match-unfiltered` and warren's `x-stream-offset-tracking` on consumers.

use crate::store::stream::StreamConfig;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::Bytes;
use std::time::Duration;

/// Where a consumer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    First,
    /// The last chunk (RabbitMQ starts "last" at the newest chunk, not the newest message).
    Last,
    Next,
    /// An absolute offset (clamped to the log), or with a negative value the last N messages.
    Offset(i64),
    /// The first chunk at or after this time, ms since the epoch.
    Timestamp(i64),
    /// Messages from this long ago.
    Ago(Duration),
}

fn int(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// RabbitMQ's interval syntax: a number and one of `Y M D h m s` (`7D`, `12h`, `30m`, `10s`).
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid interval '{s}' (expected a number and one of Y, M, D, h, m, s)");
    let unit = s.chars().last().ok_or_else(bad)?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let secs = match unit {
        'Y' => 365 * 24 * 3600,
        'M' => 30 * 24 * 3600,
        'D' => 24 * 3600,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(bad)
}

/// `x-stream-offset`; absent means `next`.
pub fn start(args: &FieldTable) -> Result<Start, String> {
    let Some(v) = args.inner().get("x-stream-offset") else {
        return Ok(Start::Next);
    };
    if let AMQPValue::Timestamp(t) = v {
        let ms = i64::try_from(*t)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        return Ok(Start::Timestamp(ms));
    }
    if let Some(n) = int(v) {
        return Ok(Start::Offset(n));
    }
    match text(v).as_deref() {
        Some("first") => Ok(Start::First),
        Some("last") => Ok(Start::Last),
        Some("next") => Ok(Start::Next),
        Some(s) => parse_interval(s)
            .map(Start::Ago)
            .map_err(|e| format!("invalid x-stream-offset: {e}")),
        None => Err(format!("invalid x-stream-offset {v:?}")),
    }
}

/// The queue's retention settings.
pub fn config(args: &FieldTable) -> Result<StreamConfig, String> {
    let mut c = StreamConfig::default();
    let t = args.inner();
    if let Some(v) = t.get("x-max-length-bytes") {
        let n = int(v)
            .filter(|n| *n >= 0)
            .ok_or("invalid x-max-length-bytes")?;
        c.max_bytes = Some(n as u64);
    }
    if let Some(v) = t.get("x-stream-max-segment-size-bytes") {
        let n = int(v)
            .filter(|n| *n > 0)
            .ok_or("invalid x-stream-max-segment-size-bytes")?;
        c.max_segment_size = n as u64;
    }
    if let Some(v) = t.get("x-max-age") {
        let s = text(v).ok_or("invalid x-max-age")?;
        c.max_age = Some(parse_interval(&s).map_err(|e| format!("invalid x-max-age: {e}"))?);
    }
    Ok(c)
}

/// `x-stream-filter`: one value or a list; None = no filtering.
pub fn filters(args: &FieldTable) -> Result<Option<Vec<Bytes>>, String> {
    match args.inner().get("x-stream-filter") {
        None => Ok(None),
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| {
                text(v)
                    .map(Bytes::from)
                    .ok_or_else(|| "invalid x-stream-filter".to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => text(v)
            .map(|s| Some(vec![Bytes::from(s)]))
            .ok_or_else(|| "invalid x-stream-filter".to_string()),
    }
}

/// `x-stream-match-unfiltered`: also deliver messages that carry no filter value.
pub fn match_unfiltered(args: &FieldTable) -> bool {
    matches!(
        args.inner().get("x-stream-match-unfiltered"),
        Some(AMQPValue::Boolean(true))
    )
}

/// `x-stream-offset-tracking`: `true` tracks under the consumer tag, a string under that name.
pub fn tracking_name(args: &FieldTable, tag: &str) -> Result<Option<String>, String> {
    match args.inner().get("x-stream-offset-tracking") {
        None | Some(AMQPValue::Boolean(false)) => Ok(None),
        Some(AMQPValue::Boolean(true)) => Ok(Some(tag.to_string())),
        Some(v) => text(v)
            .filter(|s| !s.is_empty())
            .map(Some)
            .ok_or_else(|| "invalid x-stream-offset-tracking".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    fn t(k: &str, v: AMQPValue) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(k.into(), v);
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("7D"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_interval("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_interval("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval("1Y"), Ok(Duration::from_secs(365 * 86400)));
        assert_eq!(parse_interval("1M"), Ok(Duration::from_secs(30 * 86400)));
        for bad in ["", "h", "10", "10x", "-1h", "1.5h", "99999999999999999999Y"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(start(&FieldTable::default()), Ok(Start::Next));
        assert_eq!(start(&t("x-stream-offset", s("first"))), Ok(Start::First));
        assert_eq!(start(&t("x-stream-offset", s("last"))), Ok(Start::Last));
        assert_eq!(start(&t("x-stream-offset", s("next"))), Ok(Start::Next));
        assert_eq!(
            start(&t("x-stream-offset", AMQPValue::LongLongInt(5))),
            Ok(Start::Offset(5))
        );
        assert_eq!(
            start(&t("x-stream-offset", AMQPValue::LongInt(-3))),
            Ok(Start::Offset(-3))
        );
        assert_eq!(
            start(&t("x-stream-offset", AMQPValue::Timestamp(10))),
            Ok(Start::Timestamp(10_000))
        );
        assert_eq!(
            start(&t("x-stream-offset", s("1h"))),
            Ok(Start::Ago(Duration::from_secs(3600)))
        );
        assert!(start(&t("x-stream-offset", s("yesterday"))).is_err());
        assert!(start(&t("x-stream-offset", AMQPValue::Boolean(true))).is_err());
    }

    #[test]
    fn retention_and_filters() {
        let mut a = t("x-max-length-bytes", AMQPValue::LongLongInt(1000));
        a.insert("x-max-age".into(), s("10s"));
        a.insert(
            "x-stream-max-segment-size-bytes".into(),
            AMQPValue::LongInt(4096),
        );
        let c = config(&a).expect("config");
        assert_eq!(c.max_bytes, Some(1000));
        assert_eq!(c.max_age, Some(Duration::from_secs(10)));
        assert_eq!(c.max_segment_size, 4096);
        assert!(config(&t("x-max-age", s("soon"))).is_err());
        assert_eq!(
            filters(&t("x-stream-filter", s("eu"))),
            Ok(Some(vec![Bytes::from("eu")]))
        );
        assert_eq!(filters(&FieldTable::default()), Ok(None));
        assert_eq!(
            tracking_name(
                &t("x-stream-offset-tracking", AMQPValue::Boolean(true)),
                "tag"
            ),
            Ok(Some("tag".into()))
        );
        assert_eq!(
            tracking_name(&t("x-stream-offset-tracking", s("ledger")), "tag"),
            Ok(Some("ledger".into()))
        );
    }
}
