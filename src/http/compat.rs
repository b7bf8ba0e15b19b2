//! Endpoints of RabbitMQ's management API that describe features warren has no separate
//! notion of, answered the way RabbitMQ answers them when the feature is unused, so tools that
//! walk the whole API (rabbitmqadmin, monitoring agents, the Terraform and Kubernetes operators)
//! get the shapes they expect: `operator-policies` (none), `feature-flags`, `auth`, the legacy
//! `healthchecks/node`, the certificate-expiration check, the node memory breakdown and
//! `rebalance/queues` (nothing to rebalance on one node).
//! Runtime and global parameters are in `parameters`.

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::overview::failed_or_ok;
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

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

/// `GET /api/health/checks/certificate-expiration/{within}/{unit}`: 503 naming each listener
/// certificate (the AMQPS one, `tls.cert_file`, and the HTTPS one) that expires within the
/// period, as RabbitMQ's check does; the files are read at each call.
pub async fn certificate_expiration(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path((within, unit)): Path<(String, String)>,
) -> ApiResult<Response> {
    let day = 86_400u64;
    let unit_secs = match unit.as_str() {
        "days" => day,
        "weeks" => 7 * day,
        "months" => 30 * day,
        "years" => 365 * day,
        _ => {
            return Err(ApiError::bad_request(
                "Time unit not recognised. Supported units: days, weeks, months, years.",
            ))
        }
    };
    let within: u64 = within
        .parse()
        .map_err(|_| ApiError::bad_request("Time period not recognised. Use an integer."))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let limit = now.saturating_add(within.saturating_mul(unit_secs));
    let mut files = Vec::new();
    if let Some(f) = &b.config.tls.cert_file {
        files.push(("amqp/ssl", b.config.tls.port, f.clone()));
    }
    if let Some(f) = b
        .config
        .http
        .cert_file
        .as_ref()
        .or(if b.config.http.tls_enabled() {
            b.config.tls.cert_file.as_ref()
        } else {
            None
        })
    {
        let port = b.http_addr.get().map_or(0, |a| a.port());
        files.push(("https", port, f.clone()));
    }
    let mut expiring = Vec::new();
    for (protocol, port, file) in files {
        for not_after in not_after_times(&file) {
            if not_after <= i64::try_from(limit).unwrap_or(i64::MAX) {
                expiring.push(
                    json!({"node": b.node_name(), "protocol": protocol, "port": port,
                    "interface": b.config.bind, "certfile": file.display().to_string(),
                    "expiry_date": not_after}),
                );
            }
        }
    }
    if expiring.is_empty() {
        return Ok(Json(json!({"status": "ok"})).into_response());
    }
    Ok((
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "failed", "reason": "Certificates expiring", "expired": expiring})),
    )
        .into_response())
}

/// The `notAfter` of each certificate in a PEM file (Unix seconds); none if it cannot be read.
fn not_after_times(file: &std::path::Path) -> Vec<i64> {
    use rustls_pki_types::pem::PemObject;
    let Ok(iter) = rustls_pki_types::CertificateDer::pem_file_iter(file) else {
        return Vec::new();
    };
    iter.filter_map(Result::ok)
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
            Some(cert.validity().not_after.timestamp())
        })
        .collect()
}

/// `POST /api/rebalance/queues`: one node, nothing to move.
pub async fn rebalance(auth: Auth) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    Ok(StatusCode::NO_CONTENT)
}

/// RabbitMQ's memory breakdown categories. warren attributes message bodies held by queues
/// to the queue categories by type and the rest of the resident memory to `other_proc`.
const MEMORY_KEYS: &[&str] = &[
    "connection_readers",
    "connection_writers",
    "connection_channels",
    "connection_other",
    "queue_procs",
    "queue_slave_procs",
    "quorum_queue_procs",
    "quorum_queue_dlx_procs",
    "stream_queue_procs",
    "stream_queue_replica_reader_procs",
    "stream_queue_coordinator_procs",
    "plugins",
    "other_proc",
    "metrics",
    "mgmt_db",
    "mnesia",
    "quorum_ets",
    "other_ets",
    "binary",
    "msg_index",
    "code",
    "atom",
    "other_system",
    "allocated_unused",
    "reserved_unallocated",
];

fn memory_breakdown(b: &Broker) -> (serde_json::Map<String, Value>, u64) {
    let total = b.alarms.mem_used();
    let mut m: serde_json::Map<String, Value> = MEMORY_KEYS
        .iter()
        .map(|k| ((*k).to_string(), json!(0u64)))
        .collect();
    let mut queued = 0u64;
    for v in b.vhosts() {
        for q in v.queues() {
            let (r, u, bytes, _) = q.snapshot();
            let n = bytes + (r + u) * 200;
            queued += n;
            let k = match q.queue_type() {
                "quorum" => "quorum_queue_procs",
                "stream" => "stream_queue_procs",
                _ => "queue_procs",
            };
            let cur = m[k].as_u64().unwrap_or(0);
            m.insert(k.into(), json!(cur + n));
        }
    }
    m.insert("other_proc".into(), json!(total.saturating_sub(queued)));
    (m, total)
}

/// `GET /api/nodes/{node}/memory`: bytes by category.
pub async fn node_memory(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path(node): Path<String>,
) -> ApiResult<Json<Value>> {
    if node != b.node_name() {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({ "memory": memory(&b) })))
}

/// The memory breakdown in bytes, with RabbitMQ's `strategy` and `total`.
pub fn memory(b: &Broker) -> Value {
    let (mut m, total) = memory_breakdown(b);
    m.insert("strategy".into(), json!("rss"));
    m.insert(
        "total".into(),
        json!({"erlang": total, "rss": total, "allocated": total}),
    );
    Value::Object(m)
}

/// `POST /api/vhosts/{vhost}/start/{node}`: RabbitMQ restarts a failed vhost; warren's vhosts
/// do not fail apart from the node, so this only checks both exist.
pub async fn start_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, node)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    auth.read_vhost(&vhost)?;
    if node != b.node_name() {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/nodes/{node}/memory/relative`: percentages of the total.
pub async fn node_memory_relative(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path(node): Path<String>,
) -> ApiResult<Json<Value>> {
    if node != b.node_name() {
        return Err(ApiError::not_found());
    }
    let (m, total) = memory_breakdown(&b);
    let mut rel: serde_json::Map<String, Value> = m
        .into_iter()
        .map(|(k, v)| {
            let n = v.as_u64().unwrap_or(0);
            let pct = if total == 0 {
                0
            } else {
                (n * 100).div_ceil(total).min(100)
            };
            (k, json!(pct))
        })
        .collect();
    rel.insert("total".into(), json!(100));
    Ok(Json(json!({ "memory": rel })))
}
