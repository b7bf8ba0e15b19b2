//! `/api/vhosts`, `/api/users`, `/api/permissions`: listing and run-time administration. The
//! broker writes every change to its definitions store before it takes effect.

use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use super::json::{self, details, stats_of};
use crate::auth::User;
use crate::broker::access::Permission;
use crate::broker::sampler::DEPTHS_AT;
use crate::broker::stats::{CHANNEL_STATS, STATS};
use crate::broker::vhost::VHost;
use crate::broker::Broker;
use crate::store::definitions::VhostDef;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

fn vhost_json(b: &Broker, v: &VHost) -> Value {
    let meta = b.access.vhost_meta(&v.name);
    let d = b.vhost_depths(v);
    let rates = v.rates.rates(STATS + 3);
    let (mut recv, mut send) = (0u64, 0u64);
    for c in b.registry.list() {
        if c.meta.vhost == v.name {
            recv += c.recv_oct.load(Relaxed);
            send += c.send_oct.load(Relaxed);
        }
    }
    json!({
        "name": &*v.name,
        "description": meta.description,
        "tags": meta.tags,
        "default_queue_type": meta.default_queue_type.clone().unwrap_or_else(|| "classic".into()),
        "metadata": {
            "description": meta.description,
            "tags": meta.tags,
            "default_queue_type": meta.default_queue_type.unwrap_or_else(|| "classic".into()),
        },
        "tracing": false,
        "cluster_state": { b.node_name(): "running" },
        "messages": d.messages,
        "messages_details": details(rates[DEPTHS_AT]),
        "messages_ready": d.ready,
        "messages_ready_details": details(rates[DEPTHS_AT + 1]),
        "messages_unacknowledged": d.unacked,
        "messages_unacknowledged_details": details(rates[DEPTHS_AT + 2]),
        "recv_oct": recv,
        "recv_oct_details": {"rate": 0.0},
        "send_oct": send,
        "send_oct_details": {"rate": 0.0},
        "message_stats": stats_of(&b.vhost_counts(v), &v.rates, 3, CHANNEL_STATS),
    })
}

/// `GET /api/vhosts`.
pub async fn vhosts(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    Json(Value::Array(
        b.vhosts()
            .iter()
            .filter(|v| auth.can_see(&v.name))
            .map(|v| vhost_json(&b, v))
            .collect(),
    ))
}

/// `GET /api/vhosts/{name}`.
pub async fn vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&name)?;
    Ok(Json(vhost_json(&b, &v)))
}

/// `PUT /api/vhosts/{name}`: `{"description", "tags", "default_queue_type"}`, all optional.
pub async fn put_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let body: Value = parse_body(&body)?;
    let meta = body.get("metadata").cloned().unwrap_or(Value::Null);
    let pick = |k: &str| body.get(k).filter(|v| !v.is_null()).or_else(|| meta.get(k));
    let def = VhostDef {
        name: name.clone(),
        description: match pick("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ApiError::bad_request("description must be a string")),
        },
        tags: json::tags(pick("tags"))?,
        default_queue_type: pick("default_queue_type")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        deleted: false,
    };
    let created = b.put_vhost(def, Some(&auth.user.name))?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// `DELETE /api/vhosts/{name}`.
pub async fn delete_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    b.delete_vhost(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn user_json(b: &Broker, u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password_hash(),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": u.tags,
        "limits": b.user_limits.values_of(&u.name),
    })
}

/// `GET /api/users`.
pub async fn users(State(b): State<Arc<Broker>>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    Ok(Json(Value::Array(
        b.users.list().iter().map(|u| user_json(&b, u)).collect(),
    )))
}

/// `GET /api/users/without-permissions`.
pub async fn users_without_permissions(
    State(b): State<Arc<Broker>>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    let perms = b.access.permissions();
    Ok(Json(Value::Array(
        b.users
            .list()
            .iter()
            .filter(|u| !perms.iter().any(|(n, _, _)| *n == u.name))
            .map(|u| user_json(&b, u))
            .collect(),
    )))
}

/// `GET /api/users/{name}`.
pub async fn user(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    let u = b.users.get(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&b, &u)))
}

/// `PUT /api/users/{name}`: `{"password"}` or `{"password_hash", "hashing_algorithm"}`, and
/// `"tags"` (a list or a comma-separated string). Updating a user may leave the password out.
pub async fn put_user(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let body: Value = parse_body(&body)?;
    let tags = json::tags(body.get("tags"))?;
    let hash = user_hash(&body)?;
    let hash = match (hash, b.users.get(&name)) {
        (Some(h), _) => h,
        (None, Some(old)) => old.password_hash(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "password or password_hash must be set for a new user",
            ))
        }
    };
    let created = b.put_user(&name, &hash, tags)?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// The password hash a user definition asks for (hashing a plain `password`).
pub fn user_hash(body: &Value) -> ApiResult<Option<String>> {
    let password = json::text(body, "password")?;
    let hash = json::text(body, "password_hash")?;
    match json::text(body, "hashing_algorithm")? {
        None | Some("rabbit_password_hashing_sha256") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "hashing_algorithm {other} is not supported (only rabbit_password_hashing_sha256)"
            )))
        }
    }
    match (password, hash) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "set either password or password_hash, not both",
        )),
        (Some(p), None) => Ok(Some(crate::auth::hash_password(p.as_bytes()))),
        (None, Some(h)) if crate::auth::is_valid_hash(h) => Ok(Some(h.to_string())),
        (None, Some(_)) => Err(ApiError::bad_request(
            "password_hash is not a rabbit_password_hashing_sha256 hash",
        )),
        (None, None) => Ok(None),
    }
}

/// `DELETE /api/users/{name}`.
pub async fn delete_user(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    b.delete_user(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/users/bulk-delete`: `{"users": [...]}`.
pub async fn bulk_delete_users(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<Response> {
    auth.require_admin()?;
    let body: Value = parse_body(&body)?;
    let Some(list) = body.get("users").and_then(|v| v.as_array()) else {
        return Err(ApiError::bad_request("users must be a list of names"));
    };
    for n in list {
        let n = n
            .as_str()
            .ok_or_else(|| ApiError::bad_request("users must be names"))?;
        if b.users.get(n).is_none() {
            // RabbitMQ stops at the first unknown user, with this exact body.
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "bad_request", "reason": ["no_such_user", n]})),
            )
                .into_response());
        }
        b.delete_user(n)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

fn permissions_where(b: &Broker, f: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        b.access
            .permissions()
            .iter()
            .filter(|(u, v, _)| f(u, v))
            .map(|(u, v, p)| permission_json(u, v, p))
            .collect(),
    )
}

/// `GET /api/permissions`.
pub async fn permissions(State(b): State<Arc<Broker>>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    Ok(Json(permissions_where(&b, |_, _| true)))
}

/// `GET /api/users/{name}/permissions`.
pub async fn user_permissions(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    b.users.get(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(permissions_where(&b, |u, _| u == name)))
}

/// `GET /api/vhosts/{name}/permissions`.
pub async fn vhost_permissions(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    b.vhost(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(permissions_where(&b, |_, v| v == name)))
}

/// `GET /api/permissions/{vhost}/{user}`.
pub async fn permission(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    let p = b
        .access
        .permission(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&user, &vhost, &p)))
}

/// `PUT /api/permissions/{vhost}/{user}`: `{"configure", "write", "read"}` (regular
/// expressions, matched as RabbitMQ matches them; a pattern that does not compile is 400).
pub async fn put_permission(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let body: Value = parse_body(&body)?;
    let [configure, write, read]: [String; 3] =
        json::required_texts(&body, &["configure", "write", "read"])?
            .try_into()
            .map_err(|_| ApiError::internal("field count"))?;
    let p = Permission {
        configure,
        write,
        read,
    };
    let existed = b.access.permission(&user, &vhost).is_some();
    b.set_permission(&user, &vhost, p)?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// `DELETE /api/permissions/{vhost}/{user}`.
pub async fn delete_permission(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    b.clear_permission(&user, &vhost)?;
    Ok(StatusCode::NO_CONTENT)
}
