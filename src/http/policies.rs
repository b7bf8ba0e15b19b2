//! `/api/policies`: list, show, set and clear policies (RabbitMQ's JSON shape: vhost, name,
//! pattern, apply-to, priority, definition). Setting or clearing one needs the `policymaker` or
//! `administrator` tag and access to the vhost, as in RabbitMQ; the broker validates the
//! definition and re-applies policies to matching queues and exchanges at once.

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use crate::broker::policy::{ApplyTo, PolicyDef};
use crate::broker::vhost::PolicyError;
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> ApiError {
        match e {
            PolicyError::Invalid(r) => ApiError::bad_request(r),
            PolicyError::Store(r) => ApiError::internal(r),
        }
    }
}

fn json(d: &PolicyDef) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// Setting policies: `policymaker` or `administrator`, with access to the vhost.
fn require_policymaker(auth: &Auth, vhost: &str) -> ApiResult<()> {
    if !auth.is_admin() && !auth.user.has_tag("policymaker") {
        return Err(ApiError::forbidden("User not authorised to access object"));
    }
    auth.write_vhost(vhost).map(|_| ())
}

pub async fn list_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    let mut out = Vec::new();
    for v in b.vhosts() {
        if auth.can_see(&v.name) {
            out.extend(v.list_policies().iter().map(json));
        }
    }
    Json(Value::Array(out))
}

pub async fn list_vhost(auth: Auth, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(
        v.list_policies().iter().map(json).collect(),
    )))
}

pub async fn show(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    let p = v.get_policy(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(json(&p)))
}

pub async fn put(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    require_policymaker(&auth, &vhost)?;
    let v = auth.read_vhost(&vhost)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    let def = def_from_json(&vhost, &name, &body)?;
    let existed = v.get_policy(&name).is_some();
    v.set_policy(def)?;
    auth.broker.registry.policies_changed(&vhost);
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

pub async fn delete(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    require_policymaker(&auth, &vhost)?;
    let v = auth.read_vhost(&vhost)?;
    if v.delete_policy(&name)? {
        auth.broker.registry.policies_changed(&vhost);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// A policy from the body of a PUT (or an entry of a definitions file).
pub fn def_from_json(vhost: &str, name: &str, body: &Value) -> ApiResult<PolicyDef> {
    let pattern = match body.get("pattern") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::bad_request("pattern is required (a string)")),
    };
    let definition = match body.get("definition") {
        Some(Value::Object(m)) => m.clone().into_iter().collect(),
        _ => return Err(ApiError::bad_request("definition is required (an object)")),
    };
    let apply_to = match body.get("apply-to").or_else(|| body.get("apply_to")) {
        None | Some(Value::Null) => ApplyTo::All,
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| ApiError::bad_request(format!("invalid apply-to: {v}")))?,
    };
    let priority = match body.get("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("priority must be an integer"))?,
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ApiError::bad_request("priority must be an integer"))?,
        Some(_) => return Err(ApiError::bad_request("priority must be an integer")),
    };
    Ok(PolicyDef {
        vhost: vhost.to_string(),
        name: name.to_string(),
        pattern,
        apply_to,
        priority,
        definition,
    })
}
