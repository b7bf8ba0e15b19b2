//! `/api/bindings`: list bindings (the default exchange's implicit ones included, as RabbitMQ
//! shows them), create one (`POST .../e/{source}/q/{queue}` or `.../e/{source}/e/{dest}`) and
//! delete one by its `properties_key`.

use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use super::json::{self, table_to_json};
use crate::broker::exchange::Dest;
use crate::broker::permissions::{self, Perm};
use crate::broker::vhost::{VHost, ADMIN};
use crate::broker::Broker;
use amq_protocol::types::FieldTable;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::Digest;
use std::sync::Arc;

/// RabbitMQ's `quote_binding`: URL-quote, with `~` escaped too (it separates key and args).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `properties_key` that names a binding in URLs: the quoted routing key (`~` when empty),
/// followed by `~` and a hash of the arguments when there are any.
pub fn props_key(key: &str, args: &FieldTable) -> String {
    if args.inner().is_empty() {
        return if key.is_empty() {
            "~".into()
        } else {
            quote(key)
        };
    }
    let digest = sha2::Sha256::digest(table_to_json(args).to_string().as_bytes());
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
    format!("{}~{}", quote(key), quote(&hash))
}

fn binding_json(
    vhost: &str,
    source: &str,
    dest_type: &str,
    dest: &str,
    key: &str,
    args: &FieldTable,
) -> Value {
    json!({
        "source": source,
        "vhost": vhost,
        "destination": dest,
        "destination_type": dest_type,
        "routing_key": key,
        "arguments": table_to_json(args),
        "properties_key": props_key(key, args),
    })
}

/// Every binding of a vhost: first each queue's binding from the default exchange, then the
/// declared ones by source exchange.
pub fn all(v: &VHost) -> Vec<Value> {
    let mut out = Vec::new();
    let mut queues = v.queues();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    for q in &queues {
        out.push(binding_json(
            &v.name,
            "",
            "queue",
            &q.name,
            &q.name,
            &FieldTable::default(),
        ));
    }
    let mut exchanges = v.exchanges();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    for e in exchanges {
        for r in e.bindings() {
            let (t, d) = match &r.dest {
                Dest::Queue(q) => ("queue", q.name.clone()),
                Dest::Exchange(x) => ("exchange", x.name.clone()),
            };
            out.push(binding_json(
                &v.name,
                &e.name,
                t,
                &d,
                &r.routing_key,
                &r.arguments,
            ));
        }
    }
    out
}

/// `GET /api/bindings`.
pub async fn list_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    let mut out = Vec::new();
    for v in b.vhosts().iter().filter(|v| auth.can_see(&v.name)) {
        out.extend(all(v));
    }
    Json(Value::Array(out))
}

/// `GET /api/bindings/{vhost}`.
pub async fn list_vhost(auth: Auth, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(all(&v))))
}

/// Which kind of destination a bindings URL names.
#[derive(Clone, Copy)]
pub enum Kind {
    Queue,
    Exchange,
}

fn dest_type(k: Kind) -> &'static str {
    match k {
        Kind::Queue => "queue",
        Kind::Exchange => "exchange",
    }
}

/// Check both ends exist; the source in URL form (`amq.default` is the default exchange).
fn ends(v: &VHost, source: &str, kind: Kind, dest: &str) -> ApiResult<String> {
    let src = super::exchanges::url_name(source).to_string();
    v.exchange(&src).ok_or_else(ApiError::not_found)?;
    let found = match kind {
        Kind::Queue => v.queue(dest).is_some(),
        Kind::Exchange => v.exchange(dest).is_some(),
    };
    if !found {
        return Err(ApiError::not_found());
    }
    Ok(src)
}

fn between(v: &VHost, src: &str, kind: Kind, dest: &str) -> Vec<Value> {
    all(v)
        .into_iter()
        .filter(|b| {
            b["source"] == src
                && b["destination"] == dest
                && b["destination_type"] == dest_type(kind)
        })
        .collect()
}

/// `GET /api/bindings/{vhost}/e/{source}/{q|e}/{dest}`.
pub async fn list_between(
    auth: Auth,
    kind: Kind,
    (vhost, source, dest): (String, String, String),
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    let src = ends(&v, &source, kind, &dest)?;
    Ok(Json(Value::Array(between(&v, &src, kind, &dest))))
}

/// `POST /api/bindings/{vhost}/e/{source}/{q|e}/{dest}`: `{"routing_key", "arguments"}`; 201
/// with a `Location` naming the new binding.
pub async fn create(
    auth: Auth,
    kind: Kind,
    (vhost, source, dest): (String, String, String),
    body: Bytes,
) -> ApiResult<Response> {
    let v = auth.write_vhost(&vhost)?;
    let src = ends(&v, &source, kind, &dest)?;
    authorize(&auth, &vhost, kind, &dest, &src)?;
    let body: Value = parse_body(&body)?;
    let key = json::text(&body, "routing_key")?.unwrap_or("");
    let args = json::json_to_table(body.get("arguments").unwrap_or(&Value::Null))?;
    match kind {
        Kind::Queue => v.bind_queue(&dest, &src, key, &args, ADMIN)?,
        Kind::Exchange => v.bind_exchange(&dest, &src, key, &args)?,
    }
    let loc = format!("./{}", props_key(key, &args));
    Ok((StatusCode::CREATED, [(header::LOCATION, loc)]).into_response())
}

/// Binding and unbinding: write on the destination, read on the source (as over AMQP).
fn authorize(auth: &Auth, vhost: &str, kind: Kind, dest: &str, source: &str) -> ApiResult<()> {
    let dest_kind = match kind {
        Kind::Queue => permissions::Kind::Queue,
        Kind::Exchange => permissions::Kind::Exchange,
    };
    auth.authorize(vhost, Perm::Write, dest_kind, dest)?;
    auth.authorize(vhost, Perm::Read, permissions::Kind::Exchange, source)
}

/// Does the path segment `props` name the binding whose key is `key`? Clients send the key
/// quoted once more (rabbitmqadmin: `a.%2523`, decoded by the router to `a.%23`) or as is
/// (`a.%23`, decoded to `a.#`); RabbitMQ accepts both.
fn names(key: &str, props: &str) -> bool {
    key == props || unquote(key).as_deref() == Some(props)
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn unquote(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The binding named by a `properties_key`.
fn by_props(
    v: &VHost,
    src: &str,
    kind: Kind,
    dest: &str,
    props: &str,
) -> ApiResult<(String, FieldTable)> {
    let e = v.exchange(src).ok_or_else(ApiError::not_found)?;
    if e.is_default() {
        // The default exchange's bindings are implicit: one per queue, keyed by its name.
        if matches!(kind, Kind::Queue) && names(&props_key(dest, &FieldTable::default()), props) {
            return Ok((dest.to_string(), FieldTable::default()));
        }
        return Err(ApiError::not_found());
    }
    for r in e.bindings() {
        let same = match (&r.dest, kind) {
            (Dest::Queue(q), Kind::Queue) => &*q.name == dest,
            (Dest::Exchange(x), Kind::Exchange) => &*x.name == dest,
            _ => false,
        };
        if same && names(&props_key(&r.routing_key, &r.arguments), props) {
            return Ok((r.routing_key, r.arguments));
        }
    }
    Err(ApiError::not_found())
}

/// `GET /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`.
pub async fn show(
    auth: Auth,
    kind: Kind,
    (vhost, source, dest, props): (String, String, String, String),
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    let src = ends(&v, &source, kind, &dest)?;
    let (key, args) = by_props(&v, &src, kind, &dest, &props)?;
    Ok(Json(binding_json(
        &v.name,
        &src,
        dest_type(kind),
        &dest,
        &key,
        &args,
    )))
}

/// `DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}`.
pub async fn delete(
    auth: Auth,
    kind: Kind,
    (vhost, source, dest, props): (String, String, String, String),
) -> ApiResult<StatusCode> {
    let v = auth.write_vhost(&vhost)?;
    let src = ends(&v, &source, kind, &dest)?;
    authorize(&auth, &vhost, kind, &dest, &src)?;
    let (key, args) = by_props(&v, &src, kind, &dest, &props)?;
    match kind {
        Kind::Queue => v.unbind_queue(&dest, &src, &key, &args, ADMIN)?,
        Kind::Exchange => v.unbind_exchange(&dest, &src, &key, &args)?,
    }
    Ok(StatusCode::NO_CONTENT)
}
