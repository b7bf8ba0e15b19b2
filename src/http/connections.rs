//! `/api/connections`, `/api/channels`, `/api/consumers`: what the broker's registry of live
//! connections holds. Closing a connection goes through its registry handle (an event to the
//! connection's task), never to its socket.

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::json::{details, stats_of, table_to_json};
use crate::broker::registry::{ChannelInfo, ConnectionInfo};
use crate::broker::stats::CHANNEL_STATS;
use crate::broker::Broker;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub fn connection_json(b: &Broker, c: &ConnectionInfo) -> Value {
    let m = &c.meta;
    let rates = c.rates.rates(2);
    let mut v = json!({
        "name": c.name,
        "node": b.node_name(),
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "state": c.state().as_str(),
        "user": m.user,
        "user_who_performed_action": m.user,
        "vhost": &*m.vhost,
        "host": m.local.ip().to_string(),
        "port": m.local.port(),
        "peer_host": m.peer.ip().to_string(),
        "peer_port": m.peer.port(),
        "ssl": false,
        "auth_mechanism": m.auth_mechanism,
        "client_properties": table_to_json(&m.client_properties),
        "user_provided_name": if m.user_provided_name.is_empty() { Value::Null } else { json!(m.user_provided_name) },
        "connected_at": m.connected_at,
        "frame_max": m.frame_max,
        "channel_max": m.channel_max,
        "timeout": m.heartbeat,
        "channels": c.channels.lock().len(),
        "recv_oct": c.recv_oct.load(Relaxed),
        "recv_oct_details": details(rates[0]),
        "recv_cnt": c.recv_cnt.load(Relaxed),
        "send_oct": c.send_oct.load(Relaxed),
        "send_oct_details": details(rates[1]),
        "send_cnt": c.send_cnt.load(Relaxed),
        "send_pend": 0,
    });
    super::shape::connection(&mut v);
    v
}

fn connection_details(c: &ConnectionInfo) -> Value {
    json!({
        "name": c.name,
        "peer_host": c.meta.peer.ip().to_string(),
        "peer_port": c.meta.peer.port(),
    })
}

pub fn channel_json(b: &Broker, c: &ConnectionInfo, ch: &ChannelInfo) -> Value {
    let prefetch = ch.prefetch.load(Relaxed);
    let mut v = json!({
        "name": ch.name,
        "number": ch.number,
        "node": b.node_name(),
        "user": c.meta.user,
        "user_who_performed_action": c.meta.user,
        "vhost": &*c.meta.vhost,
        "connection_details": connection_details(c),
        "state": c.state().as_str(),
        "confirm": ch.confirm.load(Relaxed),
        "transactional": false,
        "consumer_count": ch.consumers.lock().len(),
        "prefetch_count": prefetch,
        "global_prefetch_count": 0,
        "messages_unacknowledged": ch.unacked.load(Relaxed),
        "messages_unconfirmed": ch.unconfirmed.load(Relaxed),
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "pending_raft_commands": 0,
        "message_stats": stats_of(&ch.stats.counts(), &ch.rates, 0, CHANNEL_STATS),
    });
    super::shape::channel(&mut v);
    v
}

fn visible(b: &Broker, auth: &Auth) -> Vec<Arc<ConnectionInfo>> {
    b.registry
        .list()
        .into_iter()
        .filter(|c| auth.can_see_connection(&c.meta.user, &c.meta.vhost))
        .collect()
}

/// `GET /api/connections`.
pub async fn list(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    Json(Value::Array(
        visible(&b, &auth)
            .iter()
            .map(|c| connection_json(&b, c))
            .collect(),
    ))
}

/// `GET /api/vhosts/{vhost}/connections`.
pub async fn list_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(
        visible(&b, &auth)
            .iter()
            .filter(|c| *c.meta.vhost == vhost)
            .map(|c| connection_json(&b, c))
            .collect(),
    )))
}

fn find(b: &Broker, auth: &Auth, name: &str) -> ApiResult<Arc<ConnectionInfo>> {
    let c = b.registry.by_name(name).ok_or_else(ApiError::not_found)?;
    if !auth.can_see_connection(&c.meta.user, &c.meta.vhost) {
        return Err(ApiError::not_found());
    }
    Ok(c)
}

/// `GET /api/connections/{name}`.
pub async fn show(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find(&b, &auth, &name)?;
    Ok(Json(connection_json(&b, &c)))
}

/// `DELETE /api/connections/{name}`: close it with 320 CONNECTION_FORCED and the `X-Reason`
/// header's text (default "Closed via management plugin", as RabbitMQ).
pub async fn close(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let c = find(&b, &auth, &name)?;
    if !auth.may_close_connection(&c.meta.user) {
        return Err(ApiError::forbidden("not allowed to close this connection"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or("Closed via management plugin");
    c.close(reason);
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/connections/{name}/channels`.
pub async fn channels_of(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find(&b, &auth, &name)?;
    Ok(Json(Value::Array(
        c.channel_list()
            .iter()
            .map(|ch| channel_json(&b, &c, ch))
            .collect(),
    )))
}

fn all_channels(b: &Broker, auth: &Auth, vhost: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for c in visible(b, auth) {
        if vhost.is_some_and(|v| v != &*c.meta.vhost) {
            continue;
        }
        for ch in c.channel_list() {
            out.push(channel_json(b, &c, &ch));
        }
    }
    out
}

/// `GET /api/channels`.
pub async fn channels(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    Json(Value::Array(all_channels(&b, &auth, None)))
}

/// `GET /api/vhosts/{vhost}/channels`.
pub async fn channels_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(all_channels(&b, &auth, Some(&vhost)))))
}

/// `GET /api/channels/{name}`.
pub async fn channel(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    for c in visible(&b, &auth) {
        for ch in c.channel_list() {
            if ch.name == name {
                let mut v = channel_json(&b, &c, &ch);
                let mine: Vec<Value> = consumers(&b, &auth, Some(&c.meta.vhost))
                    .into_iter()
                    .filter(|k| k["channel_details"]["name"] == *name)
                    .collect();
                super::shape::fill(
                    &mut v,
                    json!({"consumer_details": mine, "deliveries": [], "publishes": []}),
                );
                return Ok(Json(v));
            }
        }
    }
    Err(ApiError::not_found())
}

pub fn consumers(b: &Broker, auth: &Auth, vhost: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    for c in b.registry.list() {
        let v = &*c.meta.vhost;
        if vhost.is_some_and(|x| x != v) || !auth.can_see(v) {
            continue;
        }
        for ch in c.channel_list() {
            for k in ch.consumers.lock().iter() {
                out.push(json!({
                    "consumer_tag": &*k.tag,
                    "queue": {"name": &*k.queue, "vhost": v},
                    "channel_details": {
                        "name": ch.name,
                        "number": ch.number,
                        "node": b.node_name(),
                        "connection_name": c.name,
                        "peer_host": c.meta.peer.ip().to_string(),
                        "peer_port": c.meta.peer.port(),
                        "user": c.meta.user,
                    },
                    "ack_required": !k.no_ack,
                    "exclusive": k.exclusive,
                    "prefetch_count": k.prefetch,
                    "arguments": table_to_json(&k.arguments),
                    "active": true,
                    "activity_status": "up",
                }));
            }
        }
    }
    out
}

/// `GET /api/consumers`.
pub async fn consumers_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    Json(Value::Array(consumers(&b, &auth, None)))
}

/// `GET /api/consumers/{vhost}`.
pub async fn consumers_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(consumers(&b, &auth, Some(&vhost)))))
}
