//! `/api/overview`, `/api/nodes`, `/api/whoami`, `/api/cluster-name`, the health checks and
//! `/api/aliveness-test/{vhost}`.

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::json::{details, message_stats};
use crate::broker::alarms::{DISK, MEMORY};
use crate::broker::queue::QueueOptions;
use crate::broker::sampler::DEPTHS_AT;
use crate::broker::stats::{CHANNEL_STATS, STATS};
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// The RabbitMQ version warren answers to (tools check it for feature support).
pub const RABBITMQ_VERSION: &str = "3.13.0";

/// `GET /api/overview`.
pub async fn overview(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    let rates = b.rates.rates(STATS + 3);
    let (mut queues, mut exchanges, mut consumers) = (0usize, 0usize, 0u64);
    let (mut messages, mut ready, mut unacked) = (0u64, 0u64, 0u64);
    for v in b.vhosts().iter().filter(|v| auth.can_see(&v.name)) {
        for q in v.queues() {
            let (r, u, _, c) = q.snapshot();
            queues += 1;
            consumers += u64::from(c);
            ready += r;
            unacked += u;
            messages += r + u;
        }
        exchanges += v.exchanges().len();
    }
    let conns: Vec<_> = b
        .registry
        .list()
        .into_iter()
        .filter(|c| auth.can_see_connection(&c.meta.user, &c.meta.vhost))
        .collect();
    let channels: usize = conns.iter().map(|c| c.channels.lock().len()).sum();
    let counts = if auth.sees_all() {
        b.node_counts()
    } else {
        let mut c = [0; STATS];
        for v in b.vhosts().iter().filter(|v| auth.can_see(&v.name)) {
            crate::broker::stats::sum_into(&mut c, &b.vhost_counts(v));
        }
        c
    };
    let node = b.node_name();
    let mut listeners = Vec::new();
    if let Some(a) = b.amqp_addr.get() {
        listeners.push(json!({"node": node, "protocol": "amqp", "ip_address": a.ip().to_string(), "port": a.port()}));
    }
    if let Some(a) = b.http_addr.get() {
        let protocol = if b.config.http.tls_enabled() {
            "https"
        } else {
            "http"
        };
        listeners.push(json!({"node": node, "protocol": protocol, "ip_address": a.ip().to_string(), "port": a.port()}));
    }
    let exchange_types = super::shape::exchange_types();
    let mut v = json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        "product_name": "warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": b.config.cluster_name,
        "erlang_version": "none",
        "node": node,
        "uptime": b.started.elapsed().as_millis() as u64,
        "disable_stats": false,
        "enable_queue_totals": true,
        "statistics_db_event_queue": 0,
        "exchange_types": exchange_types,
        "message_stats": message_stats(&counts, &rates, CHANNEL_STATS),
        "queue_totals": {
            "messages": messages,
            "messages_details": details(rates[DEPTHS_AT]),
            "messages_ready": ready,
            "messages_ready_details": details(rates[DEPTHS_AT + 1]),
            "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": details(rates[DEPTHS_AT + 2]),
        },
        "object_totals": {
            "connections": conns.len(),
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        },
        "listeners": listeners,
        "contexts": super::shape::contexts(&b, true),
    });
    super::shape::overview(&b, &mut v);
    Json(v)
}

/// One node's facts (`/api/nodes` lists this one node).
fn node_json(b: &Broker) -> Value {
    let a = &b.alarms;
    let active = a.active();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let fd_total = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(0);
    let mut v = json!({
        "name": b.node_name(),
        "type": "disc",
        "running": true,
        "being_drained": false,
        "os_pid": std::process::id().to_string(),
        "uptime": b.started.elapsed().as_millis() as u64,
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "mem_used": a.mem_used(),
        "mem_limit": a.mem_limit(),
        "mem_alarm": active & MEMORY != 0,
        "total_ram": a.total_ram(),
        "disk_free": a.disk_free(),
        "disk_free_limit": a.disk_free_limit(),
        "disk_free_alarm": active & DISK != 0,
        "fd_used": fds,
        "fd_total": fd_total,
        "sockets_used": b.registry.len(),
        "sockets_total": fd_total,
        "proc_used": 0,
        "proc_total": 0,
        "run_queue": 0,
        "rates_mode": "basic",
        "partitions": [],
        "applications": [{"name": "warren", "description": "warren AMQP 0-9-1 broker", "version": env!("CARGO_PKG_VERSION")}],
    });
    super::shape::node(b, &mut v);
    v
}

/// `GET /api/nodes`.
pub async fn nodes(State(b): State<Arc<Broker>>, _auth: Auth) -> Json<Value> {
    Json(json!([node_json(&b)]))
}

/// `GET /api/nodes/{name}`.
pub async fn node(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    if name != b.node_name() {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_json(&b)))
}

/// `GET /api/whoami`.
pub async fn whoami(auth: Auth) -> Json<Value> {
    Json(json!({"name": auth.user.name, "tags": auth.user.tags}))
}

/// `GET /api/cluster-name`.
pub async fn cluster_name(State(b): State<Arc<Broker>>, _auth: Auth) -> Json<Value> {
    Json(json!({"name": b.config.cluster_name}))
}

fn failed(reason: String, extra: Value) -> Response {
    let mut body = json!({"status": "failed", "reason": reason});
    if let (Some(o), Value::Object(e)) = (body.as_object_mut(), extra) {
        o.extend(e);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The legacy node health check: ok, or failed while a resource alarm is on.
pub fn failed_or_ok(b: &Broker) -> Response {
    match b.alarms.active() {
        0 => ok(),
        a => failed(
            format!(
                "resource alarm in effect: {}",
                crate::broker::alarms::reason(a)
            ),
            json!({}),
        ),
    }
}

fn ok() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /api/health/checks/alarms` (and `local-alarms`): 503 while a resource alarm is on.
pub async fn alarms(State(b): State<Arc<Broker>>, _auth: Auth) -> Response {
    let active = b.alarms.active();
    if active == 0 {
        return ok();
    }
    let node = b.node_name();
    let mut list = Vec::new();
    if active & MEMORY != 0 {
        list.push(json!({"node": node, "resource": "memory"}));
    }
    if active & DISK != 0 {
        list.push(json!({"node": node, "resource": "disk"}));
    }
    failed(
        "There are alarms in effect in the cluster".into(),
        json!({"alarms": list}),
    )
}

/// `GET /api/health/checks/ready-to-serve-clients`: listening and not blocking publishers.
pub async fn ready(State(b): State<Arc<Broker>>, _auth: Auth) -> Response {
    if b.amqp_addr.get().is_none() {
        return failed("the AMQP listener is not up".into(), json!({}));
    }
    if b.alarms.active() != 0 {
        return failed(
            format!(
                "resource alarm in effect: {}",
                crate::broker::alarms::reason(b.alarms.active())
            ),
            json!({}),
        );
    }
    ok()
}

/// `GET /api/health/checks/virtual-hosts`: always fine (a vhost has no separate process to
/// fail).
pub async fn always_ok(_auth: Auth) -> Response {
    ok()
}

/// `GET /api/health/checks/node-is-quorum-critical` and `node-is-mirror-sync-critical`:
/// never critical on a single node, with RabbitMQ's reason.
pub async fn single_node(_auth: Auth) -> Response {
    Json(json!({"status": "ok", "reason": "single node cluster"})).into_response()
}

/// The ports and protocols warren listens on, for a failed listener check.
fn listening(b: &Broker) -> (Vec<u16>, Vec<&'static str>) {
    let (mut ports, mut protocols) = (Vec::new(), Vec::new());
    if let Some(a) = b.http_addr.get() {
        ports.push(a.port());
        protocols.push(if b.config.http.tls_enabled() {
            "https"
        } else {
            "http"
        });
    }
    if let Some(a) = b.amqp_addr.get() {
        ports.push(a.port());
        protocols.push("amqp");
    }
    ports.sort_unstable();
    (ports, protocols)
}

/// `GET /api/health/checks/port-listener/{port}`.
pub async fn port_listener(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request("Invalid port"))?;
    let up = [b.amqp_addr.get(), b.http_addr.get()]
        .iter()
        .any(|a| a.is_some_and(|a| a.port() == port));
    Ok(if up {
        Json(json!({"status": "ok", "port": port})).into_response()
    } else {
        failed(
            "No active listener".into(),
            json!({"missing": port, "ports": listening(&b).0}),
        )
    })
}

/// `GET /api/health/checks/protocol-listener/{protocol}`.
pub async fn protocol_listener(
    State(b): State<Arc<Broker>>,
    _auth: Auth,
    Path(proto): Path<String>,
) -> Response {
    let up = match proto.as_str() {
        "amqp" | "amqp091" | "amqp0-9-1" => b.amqp_addr.get().is_some(),
        "http" | "https" | "management" => b.http_addr.get().is_some(),
        _ => false,
    };
    if up {
        Json(json!({"status": "ok", "protocol": proto})).into_response()
    } else {
        failed(
            "No active listener".into(),
            json!({"missing": proto, "protocols": listening(&b).1}),
        )
    }
}

/// `GET /api/aliveness-test/{vhost}`: declare `aliveness-test`, publish to it and get the
/// message back, as RabbitMQ does.
pub async fn aliveness(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let v = auth.write_vhost(&vhost)?;
    let opts = QueueOptions {
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: Default::default(),
    };
    v.declare_queue("aliveness-test", false, opts, crate::broker::vhost::ADMIN)?;
    let ex = v.exchange("").ok_or_else(ApiError::not_found)?;
    let routed = super::exchanges::publish_message(
        &b,
        &v,
        &ex,
        "aliveness-test",
        bytes::Bytes::from_static(b"test"),
        super::json::json_to_properties(&Value::Null)?,
    )?;
    let q = v.queue("aliveness-test").ok_or_else(ApiError::not_found)?;
    let got = q.get(true);
    if !routed || got.is_none() {
        return Ok(failed(
            "aliveness test message not received".into(),
            json!({}),
        ));
    }
    Ok(ok())
}
