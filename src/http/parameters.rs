//! `/api/parameters` and `/api/global-parameters`: RabbitMQ's runtime parameters. The only
//! component warren has is `vhost-limits` (the vhost limits, listed as RabbitMQ lists them);
//! others are empty and refused on PUT as RabbitMQ refuses a component whose plugin is off.

use super::auth::Auth;
use super::definitions::limit_parameters;
use super::error::{parse_body, ApiError, ApiResult};
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

/// The only runtime-parameter component warren has.
const VHOST_LIMITS: &str = "vhost-limits";

/// Runtime parameters the user may see, optionally of one component and vhost.
fn parameters(b: &Broker, auth: &Auth, component: Option<&str>, vhost: Option<&str>) -> Vec<Value> {
    if component.is_some_and(|c| c != VHOST_LIMITS) {
        return Vec::new();
    }
    limit_parameters(b)
        .into_iter()
        .filter(|p| {
            let v = p["vhost"].as_str().unwrap_or("");
            auth.can_see(v) && vhost.map_or(true, |o| o == v)
        })
        .collect()
}

/// `GET /api/parameters`.
pub async fn parameters_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    Json(Value::Array(parameters(&b, &auth, None, None)))
}

/// `GET /api/parameters/{component}`.
pub async fn parameters_component(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(component): Path<String>,
) -> Json<Value> {
    Json(Value::Array(parameters(&b, &auth, Some(&component), None)))
}

/// `GET /api/parameters/{component}/{vhost}`.
pub async fn parameters_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((component, vhost)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(parameters(
        &b,
        &auth,
        Some(&component),
        Some(&vhost),
    ))))
}

/// `GET /api/parameters/{component}/{vhost}/{name}`.
pub async fn parameter(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    parameters(&b, &auth, Some(&component), Some(&vhost))
        .into_iter()
        .find(|p| p["name"] == *name)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

fn no_component(component: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Validation failed\n\ncomponent {component} not found\n"
    ))
}

/// `PUT /api/parameters/{component}/{vhost}/{name}`: `{"value": ...}`. Only `vhost-limits`
/// (name `limits`) exists; any other component is refused as RabbitMQ refuses one whose plugin
/// is not enabled.
pub async fn put_parameter(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((component, vhost, _name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    auth.read_vhost(&vhost)?;
    if component != VHOST_LIMITS {
        return Err(no_component(&component));
    }
    let body: Value = parse_body(&body)?;
    let Some(Value::Object(limits)) = body.get("value") else {
        return Err(ApiError::bad_request(
            "Validation failed\n\nvalue must be an object of limits\n",
        ));
    };
    // RabbitMQ replaces the whole set: every value is checked first, then the limits not
    // named go and the named ones are set.
    let mut want = Vec::with_capacity(limits.len());
    for (k, v) in limits {
        let n = v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request(format!("limit {k} must be an integer")))?;
        crate::broker::limits::check_name(crate::broker::limits::VHOST_LIMITS, k)?;
        want.push((k.as_str(), n));
    }
    for name in crate::broker::limits::VHOST_LIMITS {
        if !want.iter().any(|(k, _)| k == name) {
            b.set_vhost_limit(&vhost, name, None)?;
        }
    }
    for (k, n) in want {
        b.set_vhost_limit(&vhost, k, Some(n))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/parameters/{component}/{vhost}/{name}`.
pub async fn delete_parameter(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    auth.read_vhost(&vhost)?;
    let Some(p) = parameters(&b, &auth, Some(&component), Some(&vhost))
        .into_iter()
        .find(|p| p["name"] == *name)
    else {
        return Err(ApiError::not_found());
    };
    if let Some(Value::Object(limits)) = p.get("value") {
        for k in limits.keys() {
            b.set_vhost_limit(&vhost, k, None)?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

fn global_parameters(b: &Broker) -> Vec<Value> {
    vec![
        json!({"name": "cluster_name", "value": b.config.cluster_name}),
        json!({"name": "internal_cluster_id",
               "value": format!("rabbitmq-cluster-id-{}", b.config.cluster_name)}),
    ]
}

/// `GET /api/global-parameters`.
pub async fn global_parameters_all(
    State(b): State<Arc<Broker>>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    Ok(Json(Value::Array(global_parameters(&b))))
}

/// `GET /api/global-parameters/{name}`.
pub async fn global_parameter(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    global_parameters(&b)
        .into_iter()
        .find(|p| p["name"] == *name)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}
