//! `/api/topic-permissions`: RabbitMQ's topic permissions (administrators only), with its JSON
//! shape `{"user", "vhost", "exchange", "write", "read"}`:
//!
//! - `GET /api/topic-permissions`, `/api/users/{user}/topic-permissions`,
//!   `/api/vhosts/{vhost}/topic-permissions`: lists;
//! - `GET /api/topic-permissions/{vhost}/{user}`: the user's in the vhost (404 if none);
//! - `PUT /api/topic-permissions/{vhost}/{user}` with `{"exchange", "write", "read"}`: sets the
//!   one for that exchange; 201 when the user had none in the vhost, else 204 (as RabbitMQ);
//! - `DELETE /api/topic-permissions/{vhost}/{user}`: all of them (404 if none); warren also
//!   takes `?exchange=x` to remove one (what `rabbitmqctl clear_topic_permissions u x` does).

use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use super::json;
use crate::broker::topic_permissions::TopicPermission;
use crate::broker::Broker;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn to_json(user: &str, vhost: &str, exchange: &str, p: &TopicPermission) -> Value {
    json!({"user": user, "vhost": vhost, "exchange": exchange, "write": p.write, "read": p.read})
}

/// Every topic permission for which `f(user, vhost)` holds, as JSON.
pub fn listed(b: &Broker, f: impl Fn(&str, &str) -> bool) -> Vec<Value> {
    b.access
        .topic_permissions()
        .iter()
        .filter(|(u, v, _, _)| f(u, v))
        .map(|(u, v, x, p)| to_json(u, v, x, p))
        .collect()
}

/// `GET /api/topic-permissions`.
pub async fn all(State(b): State<Arc<Broker>>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    Ok(Json(Value::Array(listed(&b, |_, _| true))))
}

/// `GET /api/users/{user}/topic-permissions`.
pub async fn of_user(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    b.users.get(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(listed(&b, |u, _| u == user))))
}

/// `GET /api/vhosts/{vhost}/topic-permissions`.
pub async fn of_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    b.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(listed(&b, |_, v| v == vhost))))
}

/// `GET /api/topic-permissions/{vhost}/{user}`.
pub async fn show(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    let l = listed(&b, |u, v| u == user && v == vhost);
    if l.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(l)))
}

/// The fields of a topic permission in a request body or a definitions document; a missing
/// one is RabbitMQ's `[{key_missing,exchange}]`.
pub fn from_json(body: &Value) -> ApiResult<(String, TopicPermission)> {
    let [exchange, write, read]: [String; 3] =
        json::required_texts(body, &["exchange", "write", "read"])?
            .try_into()
            .map_err(|_| ApiError::internal("field count"))?;
    Ok((exchange, TopicPermission { write, read }))
}

/// `PUT /api/topic-permissions/{vhost}/{user}`.
pub async fn put(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let body: Value = parse_body(&body)?;
    let (exchange, p) = from_json(&body)?;
    // RabbitMQ's resource is the user's topic permissions in the vhost: 201 only for the
    // first exchange.
    let first = b.access.topic_permissions_of(&user, &vhost).is_empty();
    b.set_topic_permission(&user, &vhost, &exchange, p)?;
    Ok(if first {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// `DELETE /api/topic-permissions/{vhost}/{user}[?exchange=x]`.
pub async fn delete(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, user)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    b.clear_topic_permissions(&user, &vhost, q.get("exchange").map(String::as_str))
        .map_err(|e| match e {
            // RabbitMQ answers a plain 404 here.
            crate::broker::access::AdminError::NotFound(_) => ApiError::not_found(),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}
