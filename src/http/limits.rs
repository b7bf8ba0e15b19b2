//! `/api/vhost-limits` and `/api/user-limits`: RabbitMQ's per-vhost (`max-connections`,
//! `max-queues`) and per-user (`max-connections`, `max-channels`) limits, listed as
//! `[{"vhost": "/", "value": {"max-connections": 10}}]` and set one at a time with
//! `PUT …/{name}` and `{"value": n}` (a negative value means no limit).

use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

/// The `value` of a PUT body: an integer.
fn value_of(body: &Bytes) -> ApiResult<i64> {
    let body: Value = parse_body(body)?;
    match body.get("value") {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("value must be an integer")),
        // RabbitMQ's reason, word for word.
        None => Err(ApiError::bad_request("[{key_missing,value}]")),
    }
}

fn vhost_list(b: &Broker, only: Option<&str>) -> Value {
    Value::Array(
        b.vhost_limits()
            .into_iter()
            .filter(|(v, _)| only.map_or(true, |o| o == v))
            .map(|(v, l)| json!({"vhost": v, "value": l}))
            .collect(),
    )
}

/// `GET /api/vhost-limits`.
pub async fn vhost_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    let all = vhost_list(&b, None);
    let Value::Array(list) = all else {
        return Json(all);
    };
    Json(Value::Array(
        list.into_iter()
            .filter(|l| l["vhost"].as_str().is_some_and(|v| auth.can_see(v)))
            .collect(),
    ))
}

/// `GET /api/vhost-limits/{vhost}`.
pub async fn vhost_one(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Ok(Json(vhost_list(&b, Some(&vhost))))
}

/// `PUT /api/vhost-limits/{vhost}/{name}`: `{"value": n}`.
pub async fn put_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let v = value_of(&body)?;
    b.set_vhost_limit(&vhost, &name, Some(v))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/vhost-limits/{vhost}/{name}`.
pub async fn delete_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    b.set_vhost_limit(&vhost, &name, None)?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_list(b: &Broker, only: Option<&str>) -> Value {
    Value::Array(
        b.user_limits
            .list()
            .into_iter()
            .filter(|(u, _)| only.map_or(true, |o| o == u) && b.users.get(u).is_some())
            .map(|(u, l)| json!({"user": u, "value": l}))
            .collect(),
    )
}

/// `GET /api/user-limits`.
pub async fn user_all(State(b): State<Arc<Broker>>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    Ok(Json(user_list(&b, None)))
}

/// `GET /api/user-limits/{user}`.
pub async fn user_one(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    b.users.get(&user).ok_or_else(ApiError::not_found)?;
    Ok(Json(user_list(&b, Some(&user))))
}

/// `PUT /api/user-limits/{user}/{name}`: `{"value": n}`.
pub async fn put_user(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((user, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let v = value_of(&body)?;
    b.set_user_limit(&user, &name, Some(v))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/user-limits/{user}/{name}`.
pub async fn delete_user(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    b.set_user_limit(&user, &name, None)?;
    Ok(StatusCode::NO_CONTENT)
}
