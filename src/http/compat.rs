//! Endpoints of RabbitMQ's management API that describe features warren has no separate
//! notion of, answered the way RabbitMQ answers them when the feature is unused, so tools that
//! walk the whole API (rabbitmqadmin, monitoring agents, the Terraform and Kubernetes operators)
//! get the shapes they expect: runtime `parameters` (only `vhost-limits` exist in warren),
//! `global-parameters`, `operator-policies` (none),
//! `feature-flags`, `auth`, the legacy `healthchecks/node`, the certificate-expiration check and
//! `rebalance/queues` (nothing to rebalance on one node).

use super::auth::Auth;
use super::definitions::limit_parameters;
use super::error::{parse_body, ApiError, ApiResult};
use super::overview::failed_or_ok;
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
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
    for (k, v) in limits {
        let n = v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request(format!("limit {k} must be an integer")))?;
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

/// `GET /api/operator-policies`: warren has no operator policies.
pub async fn operator_policies_all(_auth: Auth) -> Json<Value> {
    Json(json!([]))
}

/// `GET /api/operator-policies/{vhost}`.
pub async fn operator_policies_vhost(
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Ok(Json(json!([])))
}

/// `GET` and `DELETE /api/operator-policies/{vhost}/{name}`: none exists.
pub async fn operator_policy(
    auth: Auth,
    Path((vhost, _name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Err(ApiError::not_found())
}

/// `PUT /api/operator-policies/{vhost}/{name}`: refused with the reason (warren enforces only
/// user policies; an operator policy silently not applied would be worse than an error).
pub async fn put_operator_policy(
    auth: Auth,
    Path((vhost, _name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    auth.read_vhost(&vhost)?;
    Err(ApiError::bad_request(
        "operator policies are not supported by warren: use a policy",
    ))
}

/// RabbitMQ's feature flags; every one describes something warren always does.
const FEATURE_FLAGS: &[(&str, &str)] = &[
    (
        "classic_mirrored_queue_version",
        "Support setting version for classic mirrored queues",
    ),
    (
        "classic_queue_type_delivery_support",
        "Bug fix for classic queue deliveries using mixed versions",
    ),
    (
        "direct_exchange_routing_v2",
        "v2 direct exchange routing implementation",
    ),
    (
        "drop_unroutable_metric",
        "Count unroutable publishes to be dropped in stats",
    ),
    (
        "empty_basic_get_metric",
        "Count AMQP `basic.get` on empty queues in stats",
    ),
    ("feature_flags_v2", "Feature flags subsystem V2"),
    (
        "implicit_default_bindings",
        "Default bindings are now implicit, instead of being stored in the database",
    ),
    (
        "listener_records_in_ets",
        "Store listener records in ETS instead of Mnesia",
    ),
    ("maintenance_mode_status", "Maintenance mode status"),
    ("quorum_queue", "Support queues of type `quorum`"),
    ("stream_queue", "Support queues of type `stream`"),
    (
        "stream_single_active_consumer",
        "Single active consumer for streams",
    ),
    (
        "tracking_records_in_ets",
        "Store tracking records in ETS instead of Mnesia",
    ),
    (
        "user_limits",
        "Configure connection and channel limits for a user",
    ),
    (
        "virtual_host_metadata",
        "Virtual host metadata (description, tags, etc)",
    ),
];

/// `GET /api/feature-flags`.
pub async fn feature_flags(_auth: Auth) -> Json<Value> {
    Json(Value::Array(
        FEATURE_FLAGS
            .iter()
            .map(|(name, desc)| {
                json!({"name": name, "desc": desc, "doc_url": "", "state": "enabled",
                       "stability": "stable", "provided_by": "rabbit"})
            })
            .collect(),
    ))
}

/// `GET /api/auth` (unauthenticated, as the login page reads it): no OAuth 2 / UAA.
pub async fn auth_settings() -> Json<Value> {
    Json(json!({"enable_uaa": false, "uaa_client_id": "", "uaa_location": ""}))
}

/// `GET /api/healthchecks/node[/{node}]`: the legacy node check, failed while an alarm is on.
pub async fn healthcheck_node(State(b): State<Arc<Broker>>, _auth: Auth) -> Response {
    failed_or_ok(&b)
}

/// `GET /api/healthchecks/node/{node}`.
pub async fn healthcheck_named(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    if node != b.node_name() {
        return Err(ApiError::not_found());
    }
    Ok(failed_or_ok(&b))
}

/// `GET /api/health/checks/certificate-expiration/{within}/{unit}`: the unit is checked as
/// RabbitMQ checks it; warren's certificates are read at start, and a listener whose
/// certificate could not be used does not start, so the check passes.
pub async fn certificate_expiration(
    _auth: Auth,
    Path((within, unit)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    if !["days", "weeks", "months", "years"].contains(&unit.as_str()) {
        return Err(ApiError::bad_request(
            "Time unit not recognised. Supported units: days, weeks, months, years.",
        ));
    }
    if within.parse::<u64>().is_err() {
        return Err(ApiError::bad_request(
            "Time period not recognised. Use an integer.",
        ));
    }
    Ok(Json(json!({"status": "ok"})))
}

/// `POST /api/rebalance/queues`: one node, nothing to move.
pub async fn rebalance(auth: Auth) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    Ok(StatusCode::NO_CONTENT)
}
