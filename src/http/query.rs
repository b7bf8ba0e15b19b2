//! The query parameters RabbitMQ's management API applies to any GET reply, which tools and
//! scripts rely on: `columns=a,b.c` (keep only those keys, dotted for nested ones), `sort` and
//! `sort_reverse`, pagination (`page`, `page_size`, `name`, `use_regex`: the reply becomes a
//! `{"items": [...], "page": .., "page_count": .., ...}` object) on the lists RabbitMQ paginates,
//! and `disable_stats` / `enable_queue_totals` (the reply without statistics).
//!
//! It is one middleware over the JSON the handlers produce, so the handlers stay simple and a
//! request without these parameters costs nothing but a look at its query string.

use super::error::ApiError;
use axum::body::Body;
use axum::extract::{Query, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::HashMap;

/// Default and largest page size (RabbitMQ's).
const PAGE_SIZE: i64 = 100;
const MAX_PAGE_SIZE: i64 = 500;

/// A reply bigger than this is passed through untouched (definitions of a huge broker).
const MAX_BODY: usize = 256 * 1024 * 1024;

/// What a request asked for.
#[derive(Default)]
struct Params {
    columns: Option<Vec<Vec<String>>>,
    sort: Option<Vec<String>>,
    sort_reverse: bool,
    page: Option<String>,
    page_size: Option<String>,
    name: Option<String>,
    use_regex: bool,
    disable_stats: bool,
    queue_totals: bool,
    /// `lengths_age`, `msg_rates_age` or `data_rates_age`: history asked for.
    history: bool,
}

impl Params {
    fn parse(q: &HashMap<String, String>) -> Option<Params> {
        let truthy = |k: &str| q.get(k).is_some_and(|v| v == "true");
        let p = Params {
            columns: q.get("columns").filter(|c| !c.is_empty()).map(|c| {
                c.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.split('.').map(str::to_string).collect())
                    .collect()
            }),
            sort: q
                .get("sort")
                .filter(|s| !s.is_empty())
                .map(|s| s.split('.').map(str::to_string).collect()),
            sort_reverse: truthy("sort_reverse"),
            page: q.get("page").cloned(),
            page_size: q.get("page_size").cloned(),
            name: q.get("name").cloned(),
            use_regex: truthy("use_regex"),
            disable_stats: truthy("disable_stats"),
            queue_totals: truthy("enable_queue_totals"),
            history: ["lengths_age", "msg_rates_age", "data_rates_age"]
                .iter()
                .any(|k| q.contains_key(*k)),
        };
        let any = p.columns.is_some()
            || p.sort.is_some()
            || p.sort_reverse
            || p.page.is_some()
            || p.disable_stats
            || p.history;
        any.then_some(p)
    }
}

/// The resource a path names, for what depends on it (pagination, statistics).
#[derive(PartialEq, Clone, Copy)]
enum Resource {
    Queues,
    Exchanges,
    Connections,
    Channels,
    Vhosts,
    Overview,
    Other,
}

/// The resource of `path` and whether it is a list RabbitMQ paginates.
fn classify(path: &str) -> (Resource, bool) {
    let segs: Vec<&str> = path
        .trim_start_matches("/api/")
        .trim_end_matches('/')
        .split('/')
        .collect();
    match segs.as_slice() {
        ["queues"] | ["queues", _] => (Resource::Queues, true),
        ["queues", _, _] => (Resource::Queues, false),
        ["exchanges"] | ["exchanges", _] => (Resource::Exchanges, true),
        ["exchanges", _, _] => (Resource::Exchanges, false),
        ["connections"] => (Resource::Connections, true),
        ["vhosts", _, "connections"] | ["connections", _] => (Resource::Connections, false),
        ["channels"] => (Resource::Channels, true),
        ["channels", ..] | ["vhosts", _, "channels"] | ["connections", _, "channels"] => {
            (Resource::Channels, false)
        }
        ["vhosts"] => (Resource::Vhosts, true),
        ["vhosts", _] => (Resource::Vhosts, false),
        ["overview"] => (Resource::Overview, false),
        _ => (Resource::Other, false),
    }
}

/// The middleware: rewrites the JSON reply of a GET that carries any of these parameters.
pub async fn apply(req: Request, next: Next) -> Response {
    if req.method() != Method::GET || !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let Ok(Query(q)) = Query::<HashMap<String, String>>::try_from_uri(req.uri()) else {
        return next.run(req).await;
    };
    let Some(p) = Params::parse(&q) else {
        return next.run(req).await;
    };
    let (res, paged) = classify(req.uri().path());
    if p.disable_stats && res == Resource::Channels {
        return ApiError::bad_request("Stats in management UI are disabled on this node")
            .into_response();
    }
    let r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if r.status() != StatusCode::OK || !is_json {
        return r;
    }
    let (parts, body) = r.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "reply too large").into_response();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    match rewrite(v, &p, res, paged) {
        Ok(v) => (parts.status, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn rewrite(v: Value, p: &Params, res: Resource, paged: bool) -> Result<Value, ApiError> {
    let v = if p.disable_stats {
        map_items(v, |o| strip_stats(o, res, p.queue_totals))
    } else {
        v
    };
    let v = if p.history {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut v = v;
        add_history(&mut v, now);
        v
    } else {
        v
    };
    let Value::Array(mut items) = v else {
        return Ok(match &p.columns {
            Some(c) => pick(v, c),
            None => v,
        });
    };
    if let Some(key) = &p.sort {
        items.sort_by(|a, b| compare(lookup(a, key), lookup(b, key)));
    }
    if p.sort_reverse {
        items.reverse();
    }
    let pick_all = |items: Vec<Value>| -> Vec<Value> {
        match &p.columns {
            Some(c) => items.into_iter().map(|i| pick(i, c)).collect(),
            None => items,
        }
    };
    if !(paged && p.page.is_some()) {
        return Ok(Value::Array(pick_all(items)));
    }
    let (page, size) = page_params(p)?;
    let total = items.len();
    let items = filter_name(items, p)?;
    let filtered = items.len();
    let page_count = filtered.div_ceil(size);
    if page > 1 && page > page_count {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "page_out_of_range",
            format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
        ));
    }
    let items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * size)
        .take(size)
        .collect();
    let items = pick_all(items);
    let mut m = Map::new();
    m.insert("filtered_count".into(), filtered.into());
    m.insert("item_count".into(), items.len().into());
    m.insert("items".into(), Value::Array(items));
    m.insert("page".into(), page.into());
    m.insert("page_count".into(), page_count.into());
    m.insert("page_size".into(), size.into());
    m.insert("total_count".into(), total.into());
    Ok(Value::Object(m))
}

/// With `lengths_age` and the like, RabbitMQ gives each `X_details` the history of `X`:
/// `samples`, `avg` and `avg_rate`. warren keeps rates, not a history, so the history is the
/// current value (one sample, now), which charts and scripts reading these keys handle.
fn add_history(v: &mut Value, now: u64) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|i| add_history(i, now)),
        Value::Object(o) => {
            let keys: Vec<String> = o
                .keys()
                .filter(|k| k.ends_with("_details"))
                .cloned()
                .collect();
            for k in keys {
                let base = k.trim_end_matches("_details");
                let Some(x) = o.get(base).filter(|x| x.is_number()).cloned() else {
                    continue;
                };
                if let Some(Value::Object(d)) = o.get_mut(&k) {
                    let rate = d.get("rate").cloned().unwrap_or(Value::from(0.0));
                    d.entry("avg").or_insert_with(|| x.clone());
                    d.entry("avg_rate").or_insert(rate);
                    d.entry("samples")
                        .or_insert_with(|| serde_json::json!([{"sample": x, "timestamp": now}]));
                }
            }
            o.values_mut().for_each(|i| add_history(i, now));
        }
        _ => {}
    }
}

/// `page` and `page_size` as RabbitMQ checks them.
fn page_params(p: &Params) -> Result<(usize, usize), ApiError> {
    let num = |s: &Option<String>| -> Result<Option<i64>, ApiError> {
        s.as_deref()
            .map(|s| s.parse::<i64>())
            .transpose()
            .map_err(|_| ApiError::bad_request("Pagination parameters are invalid"))
    };
    let page = num(&p.page)?.unwrap_or(1);
    let size = num(&p.page_size)?;
    let s = size.unwrap_or(PAGE_SIZE);
    if page < 1 || !(1..=MAX_PAGE_SIZE).contains(&s) {
        let shown = size.map_or("undefined".to_string(), |n| n.to_string());
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {shown}"),
        ));
    }
    Ok((page as usize, s as usize))
}

/// Items whose `name` contains the `name` parameter (case-insensitively), or matches it as a
/// regular expression with `use_regex=true`.
fn filter_name(items: Vec<Value>, p: &Params) -> Result<Vec<Value>, ApiError> {
    let Some(f) = p.name.as_deref().filter(|f| !f.is_empty()) else {
        return Ok(items);
    };
    let name_of = |i: &Value| {
        i.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if p.use_regex {
        let re = regex::RegexBuilder::new(f)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|_| ApiError::bad_request("Pagination parameters are invalid"))?;
        Ok(items
            .into_iter()
            .filter(|i| re.is_match(&name_of(i)))
            .collect())
    } else {
        let f = f.to_lowercase();
        Ok(items
            .into_iter()
            .filter(|i| name_of(i).to_lowercase().contains(&f))
            .collect())
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// RabbitMQ sorts with Erlang's term order: missing values first, then numbers, atoms
/// (`false` < `null` < `true`, alphabetically), strings, and compound values last. A total
/// order, as `sort_by` requires.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    fn rank(v: Option<&Value>) -> (u8, u8) {
        match v {
            None => (0, 0),
            Some(Value::Number(_)) => (1, 0),
            Some(Value::Bool(false)) => (2, 0),
            Some(Value::Null) => (2, 1),
            Some(Value::Bool(true)) => (2, 2),
            Some(Value::String(_)) => (3, 0),
            Some(_) => (4, 0),
        }
    }
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.total_cmp(&y)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Only the listed keys of `v` (an object; dotted paths keep part of a nested object).
fn pick(v: Value, columns: &[Vec<String>]) -> Value {
    let Value::Object(src) = v else {
        return v;
    };
    let mut out = Map::new();
    for path in columns {
        copy_path(&src, path, &mut out);
    }
    Value::Object(out)
}

fn copy_path(src: &Map<String, Value>, path: &[String], out: &mut Map<String, Value>) {
    let Some((k, rest)) = path.split_first() else {
        return;
    };
    let Some(v) = src.get(k) else {
        return;
    };
    match (rest.is_empty(), v) {
        (true, _) => {
            out.insert(k.clone(), v.clone());
        }
        (false, Value::Object(inner)) => {
            let slot = out
                .entry(k.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(slot) = slot {
                copy_path(inner, rest, slot);
            }
        }
        // A path deeper than the value (`rabbitmq_version.x`) keeps the value, as in RabbitMQ.
        (false, _) => {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn map_items(v: Value, f: impl Fn(&mut Map<String, Value>)) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|mut i| {
                    if let Value::Object(o) = &mut i {
                        f(o);
                    }
                    i
                })
                .collect(),
        ),
        Value::Object(mut o) => {
            f(&mut o);
            Value::Object(o)
        }
        v => v,
    }
}

/// What `disable_stats=true` leaves of an object: its definition, no statistics (and for
/// queues with `enable_queue_totals=true`, the message counts).
fn strip_stats(o: &mut Map<String, Value>, res: Resource, totals: bool) {
    const QUEUE: &[&str] = &[
        "arguments",
        "auto_delete",
        "durable",
        "exclusive",
        "name",
        "node",
        "state",
        "type",
        "vhost",
    ];
    const TOTALS: &[&str] = &["messages", "messages_ready", "messages_unacknowledged"];
    const CONNECTION: &[&str] = &["name", "vhost", "user", "node"];
    const OVERVIEW_STATS: &[&str] = &[
        "churn_rates",
        "contexts",
        "listeners",
        "message_stats",
        "queue_totals",
        "statistics_db_event_queue",
    ];
    match res {
        Resource::Queues => {
            // Streams have no message totals without statistics.
            let totals = totals && o.get("type").and_then(Value::as_str) != Some("stream");
            o.retain(|k, _| QUEUE.contains(&&**k) || (totals && TOTALS.contains(&&**k)))
        }
        Resource::Connections => o.retain(|k, _| CONNECTION.contains(&&**k)),
        Resource::Exchanges => {
            o.remove("message_stats");
        }
        Resource::Vhosts => o.retain(|k, _| {
            !(k == "message_stats"
                || k.starts_with("messages")
                || k.starts_with("recv_oct")
                || k.starts_with("send_oct"))
        }),
        Resource::Overview => o.retain(|k, _| !OVERVIEW_STATS.contains(&&**k)),
        Resource::Channels | Resource::Other => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sort_order_is_total_across_value_kinds() {
        let values = [
            None,
            Some(json!(1)),
            Some(json!(2.5)),
            Some(json!(false)),
            Some(json!(null)),
            Some(json!(true)),
            Some(json!("a")),
            Some(json!("b")),
            Some(json!([1])),
        ];
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                // Listed in ascending order: the comparison agrees with the positions.
                assert_eq!(compare(a.as_ref(), b.as_ref()), i.cmp(&j), "{a:?} vs {b:?}");
            }
        }
    }
}
