//! `/api/queues`: list, show, declare (PUT), delete, purge (`DELETE .../contents`), get
//! messages (`POST .../get`), and the bindings of a queue.

use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use super::json::{self, details, flag, properties_to_json, stats_of, table_to_json};
use crate::broker::permissions::{Kind, Perm};
use crate::broker::queue::{Queue, QueueOptions};
use crate::broker::sampler::DEPTHS_AT;
use crate::broker::stats::{QUEUE_STATS, STATS};
use crate::broker::vhost::{VHost, ADMIN};
use crate::broker::Broker;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub fn queue_json(b: &Broker, q: &Queue) -> Value {
    let (ready, unacked, bytes, consumers) = q.snapshot();
    let rates = q.rates.rates(STATS + 3);
    let kind = q.queue_type();
    let mut v = json!({
        "name": &*q.name,
        "vhost": &*q.vhost,
        "type": kind,
        "durable": q.options.durable,
        "auto_delete": q.options.auto_delete,
        "exclusive": q.options.exclusive,
        "arguments": table_to_json(&q.options.arguments),
        "node": b.node_name(),
        "state": "running",
        "policy": q.policy().map(|p| p.def.name.clone()),
        "effective_policy_definition": q.policy().map(|p| json!(p.def.definition)).unwrap_or(json!({})),
        "consumers": consumers,
        "consumer_capacity": if consumers > 0 { 1.0 } else { 0.0 },
        "consumer_utilisation": if consumers > 0 { 1.0 } else { 0.0 },
        "messages": ready + unacked,
        "messages_details": details(rates[DEPTHS_AT]),
        "messages_ready": ready,
        "messages_ready_details": details(rates[DEPTHS_AT + 1]),
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": details(rates[DEPTHS_AT + 2]),
        "message_bytes": bytes,
        "message_bytes_ready": bytes,
        "message_bytes_unacknowledged": 0,
        // Bodies plus a per-message overhead: what the queue holds in memory at most.
        "memory": bytes + (ready + unacked) * 200,
        "message_stats": stats_of(&q.stats.counts(), &q.rates, 3, QUEUE_STATS),
    });
    if let (Some(s), Some(o)) = (&q.stream, v.as_object_mut()) {
        let st = s.stats();
        o.insert(
            "stream".into(),
            json!({
                "first_offset": st.first_offset,
                "next_offset": st.next_offset,
                "segments": st.segments,
                "bytes": st.bytes,
            }),
        );
    }
    super::shape::queue(b, kind, ready, unacked, bytes, &mut v);
    if let (Some(t), Some(o)) = (super::shape::idle_since(&q.rates), v.as_object_mut()) {
        o.insert("idle_since".into(), json!(t));
    }
    if let (Some(owner), Some(o)) = (q.owner, v.as_object_mut()) {
        if let Some(c) = b.registry.get(owner) {
            o.insert(
                "owner_pid_details".into(),
                json!({"name": c.name, "peer_host": c.meta.peer.ip().to_string(), "peer_port": c.meta.peer.port()}),
            );
        }
    }
    v
}

fn sorted(mut v: Vec<Arc<Queue>>) -> Vec<Arc<Queue>> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// `GET /api/queues`.
pub async fn list_all(State(b): State<Arc<Broker>>, auth: Auth) -> Json<Value> {
    let mut out = Vec::new();
    for v in b.vhosts().iter().filter(|v| auth.can_see(&v.name)) {
        out.extend(sorted(v.queues()).iter().map(|q| queue_json(&b, q)));
    }
    Json(Value::Array(out))
}

/// `GET /api/queues/{vhost}`.
pub async fn list_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    Ok(Json(Value::Array(
        sorted(v.queues())
            .iter()
            .map(|q| queue_json(&b, q))
            .collect(),
    )))
}

pub fn find(v: &VHost, name: &str) -> ApiResult<Arc<Queue>> {
    v.queue(name).ok_or_else(ApiError::not_found)
}

/// `GET /api/queues/{vhost}/{name}`.
pub async fn show(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    let q = find(&v, &name)?;
    let mut j = queue_json(&b, &q);
    let consumers: Vec<Value> = super::connections::consumers(&b, &auth, Some(&vhost))
        .into_iter()
        .filter(|k| k["queue"]["name"] == *name)
        .collect();
    super::shape::fill(
        &mut j,
        json!({"consumer_details": consumers, "deliveries": [], "incoming": []}),
    );
    Ok(Json(j))
}

/// `PUT /api/queues/{vhost}/{name}`: 201 when created, 204 when it existed the same, 400 when
/// it exists with other properties.
pub async fn declare(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = auth.write_vhost(&vhost)?;
    let body: Value = parse_body(&body)?;
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::bad_request(
            "queue name must be 1 to 255 bytes long",
        ));
    }
    if flag(&body, "exclusive", false)? {
        return Err(ApiError::bad_request(
            "exclusive queues belong to a connection: declare them over AMQP",
        ));
    }
    let mut arguments = json::json_to_table(body.get("arguments").unwrap_or(&Value::Null))?;
    // RabbitMQ 3.12+: `"type": "stream"` in the body means x-queue-type.
    if let Some(t) = json::text(&body, "type")? {
        arguments.insert(
            "x-queue-type".into(),
            amq_protocol::types::AMQPValue::LongString(t.as_bytes().to_vec().into()),
        );
    }
    let opts = QueueOptions {
        // Not durable unless asked, as RabbitMQ's API has it (rabbitmqadmin sends it).
        durable: flag(&body, "durable", false)?,
        exclusive: false,
        auto_delete: flag(&body, "auto_delete", false)?,
        arguments,
    };
    auth.authorize(&vhost, Perm::Configure, Kind::Queue, &name)?;
    let existed = v.queue(&name).is_some();
    v.declare_queue(&name, false, opts, ADMIN)?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// `DELETE /api/queues/{vhost}/{name}[?if-empty=true&if-unused=true]`.
pub async fn delete(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let v = auth.write_vhost(&vhost)?;
    auth.authorize(&vhost, Perm::Configure, Kind::Queue, &name)?;
    find(&v, &name)?;
    let yes = |k: &str| q.get(k).is_some_and(|s| s == "true");
    v.delete_queue(&name, yes("if-unused"), yes("if-empty"), ADMIN)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/queues/{vhost}/{name}/contents`: purge.
pub async fn purge(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let v = auth.write_vhost(&vhost)?;
    auth.authorize(&vhost, Perm::Read, Kind::Queue, &name)?;
    find(&v, &name)?;
    v.purge_queue(&name, ADMIN)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/queues/{vhost}/{name}/get`: `{"count", "ackmode": "ack_requeue_true" |
/// "ack_requeue_false" | "reject_requeue_true" | "reject_requeue_false", "encoding": "auto" |
/// "base64", "truncate"}`. Messages taken with requeue go back to the queue, redelivered.
pub async fn get(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = auth.write_vhost(&vhost)?;
    auth.authorize_get(&vhost, &name)?;
    let q = find(&v, &name)?;
    let req: Value = parse_body(&body)?;
    let count = match req.get("count") {
        None | Some(Value::Null) => 1,
        Some(c) => c
            .as_u64()
            .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| ApiError::bad_request("count must be a number"))?,
    };
    let requeue = match json::text(&req, "ackmode")?.unwrap_or("ack_requeue_true") {
        "ack_requeue_true" | "reject_requeue_true" => true,
        "ack_requeue_false" | "reject_requeue_false" => false,
        other => return Err(ApiError::bad_request(format!("unknown ackmode {other}"))),
    };
    let base64_only = match json::text(&req, "encoding")?.unwrap_or("auto") {
        "auto" => false,
        "base64" => true,
        other => return Err(ApiError::bad_request(format!("unknown encoding {other}"))),
    };
    let truncate = match req.get("truncate") {
        None | Some(Value::Null) => None,
        Some(t) => Some(
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| ApiError::bad_request("truncate must be a number"))?
                as usize,
        ),
    };
    if q.stream.is_some() {
        return Err(ApiError::bad_request(format!(
            "basic.get not supported by stream queues {}",
            q.describe()
        )));
    }
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for _ in 0..count.min(10_000) {
        let Some((m, left)) = q.get(false) else { break };
        let body = &m.msg.body;
        let shown = &body[..truncate.unwrap_or(body.len()).min(body.len())];
        let (payload, enc) = match std::str::from_utf8(shown) {
            Ok(s) if !base64_only => (s.to_string(), "string"),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(shown),
                "base64",
            ),
        };
        out.push(json!({
            "payload_bytes": body.len(),
            "redelivered": m.redelivered,
            "exchange": String::from_utf8_lossy(&m.msg.exchange),
            "routing_key": String::from_utf8_lossy(&m.msg.routing_key),
            "message_count": left,
            // RabbitMQ writes no properties as an empty list, not an empty object; a BCC kept
            // for dead-lettering is not shown.
            "properties": match properties_to_json(
                crate::broker::sender_selected::shown(&m.msg)
                    .as_ref()
                    .unwrap_or(&m.msg.properties),
            ) {
                Value::Object(o) if o.is_empty() => json!([]),
                p => p,
            },
            "payload": payload,
            "payload_encoding": enc,
        }));
        taken.push(m);
    }
    let n = u32::try_from(taken.len()).unwrap_or(u32::MAX);
    if requeue {
        q.requeue(None, taken);
    } else {
        let mut seqs = Vec::new();
        let mut locs = Vec::new();
        for m in &taken {
            if let Some(l) = m.loc {
                seqs.push(m.seq);
                locs.push(l);
            }
        }
        q.settle(None, n, true, &seqs, &locs, None);
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /api/queues/{vhost}/{name}/bindings`.
pub async fn bindings(
    auth: Auth,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = auth.read_vhost(&vhost)?;
    let q = find(&v, &name)?;
    let list: Vec<Value> = super::bindings::all(&v)
        .into_iter()
        .filter(|b| b["destination_type"] == "queue" && b["destination"] == *q.name)
        .collect();
    Ok(Json(Value::Array(list)))
}
