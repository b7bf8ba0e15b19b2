//! `/api/exchanges`: list, show, declare (PUT), delete, publish, and the bindings of an exchange.

use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use super::json::{self, flag, stats_of, table_to_json, text};
use crate::broker::exchange::{Exchange, ExchangeKind, ExchangeOptions};
use crate::broker::message::Message;
use crate::broker::permissions::{Kind, Perm};
use crate::broker::stats::{Stat, EXCHANGE_STATS};
use crate::broker::vhost::VHost;
use crate::broker::Broker;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The default exchange is `amq.default` in URLs.
pub fn url_name(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

pub fn exchange_json(e: &Exchange) -> Value {
    json!({
        "name": &*e.name,
        "vhost": &*e.vhost,
        "type": e.kind().as_str(),
        "durable": e.options.durable,
        "auto_delete": e.options.auto_delete,
        "internal": e.options.internal,
        "arguments": table_to_json(&e.options.arguments),
        "user_who_performed_action": "rmq-internal",
        "policy": e.policy().map(|p| p.def.name.clone()),
        "message_stats": stats_of(&e.stats.counts(), &e.rates, 0, EXCHANGE_STATS),
    })
}

fn sorted(mut v: Vec<Arc<Exchange>>) -> Vec<Arc<Exchange>> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `GET /api/exchanges`.
pub async fn list_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    let mut out = Vec::new();
    for v in b.vhosts().iter().filter(|v| auth.can_see(&v.name)) {
        out.extend(sorted(v.exchanges()).iter().map(|e| exchange_json(e)));
    }
    Json(Value::Array(out))
}

/// `GET /api/exchanges/{vhost}`.
pub async fn list_vhost(auth: Auth, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(
        sorted(v.exchanges())
            .iter()
            .map(|e| exchange_json(e))
            .collect(),
    )))
}

pub fn find(v: &VHost, name: &str) -> ApiResult<Arc<Exchange>> {
    v.exchange(url_name(name)).ok_or_else(ApiError::not_found)
}

/// `GET /api/exchanges/{vhost}/{name}`.
pub async fn show(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    let e = find(&v, &name)?;
    let mut j = exchange_json(&e);
    super::shape::fill(&mut j, serde_json::json!({"incoming": [], "outgoing": []}));
    Ok(Json(j))
}

/// `PUT /api/exchanges/{vhost}/{name}`: 201 when created, 204 when it existed the same.
pub async fn declare(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = auth.write_vhost(&vhost)?;
    let body: Value = parse_body(&body)?;
    // RabbitMQ's defaults for a bare body: a transient direct exchange.
    let kind = text(&body, "type")?.unwrap_or("direct");
    if ExchangeKind::parse(kind).is_none() {
        return Err(ApiError::bad_request(format!(
            "unknown exchange type '{kind}'"
        )));
    }
    let durable = flag(&body, "durable", false)?;
    let auto_delete = flag(&body, "auto_delete", false)?;
    let internal = flag(&body, "internal", false)?;
    let arguments = json::json_to_table(body.get("arguments").unwrap_or(&Value::Null))?;
    auth.authorize(&vhost, Perm::Configure, Kind::Exchange, &name)?;
    let existed = v.exchange(&name).is_some();
    v.declare_exchange(&name, kind, false, |kind| ExchangeOptions {
        kind,
        durable,
        auto_delete,
        internal,
        arguments,
    })?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// `DELETE /api/exchanges/{vhost}/{name}[?if-unused=true]`.
pub async fn delete(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let v = auth.write_vhost(&vhost)?;
    auth.authorize(&vhost, Perm::Configure, Kind::Exchange, url_name(&name))?;
    find(&v, &name)?;
    let if_unused = q.get("if-unused").is_some_and(|s| s == "true");
    v.delete_exchange(url_name(&name), if_unused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Route and enqueue a message as a publish through `ex` would; true if any queue took it.
/// Counted in the vhost's totals and the exchange's publish_in/out (not under a connection).
pub fn publish_message(
    b: &Broker,
    v: &VHost,
    ex: &Arc<Exchange>,
    routing_key: &str,
    body: Bytes,
    properties: Bytes,
) -> ApiResult<bool> {
    let msg = Message {
        exchange: Bytes::copy_from_slice(ex.name.as_bytes()),
        routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
        persistent: Message::persistent_in(&properties),
        properties,
        body,
        dead_lettered: false,
        bcc: false,
    };
    if msg.body.len() as u64 > b.config.limits.max_message_size {
        return Err(ApiError::bad_request(format!(
            "message size {} is larger than configured max size {}",
            msg.body.len(),
            b.config.limits.max_message_size
        )));
    }
    ex.stats.inc(Stat::PublishIn);
    v.stats.inc(Stat::Publish);
    let mut targets = Vec::new();
    let mut seen = Vec::new();
    v.route(ex, &msg, &mut targets, &mut seen);
    if targets.is_empty() {
        v.stats.inc(Stat::DropUnroutable);
        return Ok(false);
    }
    ex.stats.inc(Stat::PublishOut);
    for q in targets {
        if let Err(e) = q.publish(msg.clone()) {
            return Err(ApiError::internal(format!(
                "could not store the message: {e}"
            )));
        }
        // The management API does not wait for confirms; a durable log is flushed by the
        // next group commit.
    }
    Ok(true)
}

/// `POST /api/exchanges/{vhost}/{name}/publish`: `{"routing_key", "payload",
/// "payload_encoding": "string"|"base64", "properties"}` → `{"routed": bool}`.
pub async fn publish(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = auth.write_vhost(&vhost)?;
    auth.authorize_publish(&vhost, url_name(&name))?;
    // RabbitMQ publishes over an internal channel and reports its 404 as a bad request.
    let ex = find(&v, &name).map_err(|_| {
        ApiError::bad_request(format!(
            "404 NOT_FOUND - no exchange '{}' in vhost '{vhost}'",
            url_name(&name)
        ))
    })?;
    let req: Value = parse_body(&body)?;
    let key = text(&req, "routing_key")?.unwrap_or("");
    if ex.kind() == crate::broker::exchange::ExchangeKind::Topic {
        auth.authorize_topic_publish(&vhost, url_name(&name), key)?;
    }
    let payload =
        text(&req, "payload")?.ok_or_else(|| ApiError::bad_request("payload is required"))?;
    let body = match text(&req, "payload_encoding")?.unwrap_or("string") {
        "string" => Bytes::copy_from_slice(payload.as_bytes()),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|e| ApiError::bad_request(format!("payload is not base64: {e}")))?,
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "payload_encoding must be string or base64, not {other}"
            )))
        }
    };
    if ex.options.internal {
        return Err(ApiError::forbidden(format!(
            "cannot publish to internal {}",
            ex.describe()
        )));
    }
    let props = json::json_to_properties(req.get("properties").unwrap_or(&Value::Null))?;
    let routed = publish_message(&b, &v, &ex, key, body, props)?;
    Ok(Json(json!({ "routed": routed })))
}

/// `GET /api/exchanges/{vhost}/{name}/bindings/source`.
pub async fn bindings_source(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = auth.read_vhost(&vhost)?;
    let e = find(&v, &name)?;
    let list: Vec<Value> = super::bindings::all(&v)
        .into_iter()
        .filter(|b| b["source"] == *e.name)
        .collect();
    Ok(Json(list).into_response())
}

/// `GET /api/exchanges/{vhost}/{name}/bindings/destination`.
pub async fn bindings_destination(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = auth.read_vhost(&vhost)?;
    let e = find(&v, &name)?;
    let list: Vec<Value> = super::bindings::all(&v)
        .into_iter()
        .filter(|b| b["destination_type"] == "exchange" && b["destination"] == *e.name)
        .collect();
    Ok(Json(list).into_response())
}
