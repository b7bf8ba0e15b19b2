//! `GET`/`POST /api/definitions[/{vhost}]`: export and import in RabbitMQ's definitions format,
//! so definitions move between RabbitMQ and warren. Policies and parameters are exported empty
//! and ignored on import (warren has none yet).

use super::admin::{user_hash, user_json};
use super::auth::Auth;
use super::error::{parse_body, ApiError, ApiResult};
use super::json::{self, flag, table_to_json, text};
use super::overview::RABBITMQ_VERSION;
use crate::broker::access::Permission;
use crate::broker::exchange::{Dest, ExchangeKind, ExchangeOptions};
use crate::broker::queue::QueueOptions;
use crate::broker::vhost::{VHost, ADMIN};
use crate::broker::Broker;
use crate::store::definitions::VhostDef;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

fn exported(name: &str) -> bool {
    !name.is_empty() && !name.starts_with("amq.")
}

/// Exchanges, queues and bindings of one vhost; `with_vhost` adds the `vhost` field (the full
/// export has it, a vhost export does not).
fn topology(v: &VHost, with_vhost: bool) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let tag = |mut o: Value| {
        if with_vhost {
            if let Some(m) = o.as_object_mut() {
                m.insert("vhost".into(), json!(&*v.name));
            }
        }
        o
    };
    let mut exchanges: Vec<_> = v
        .exchanges()
        .into_iter()
        .filter(|e| exported(&e.name))
        .collect();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    let mut queues: Vec<_> = v
        .queues()
        .into_iter()
        .filter(|q| q.owner.is_none())
        .collect();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    let ex = exchanges
        .iter()
        .map(|e| {
            tag(json!({
                "name": &*e.name, "type": e.kind().as_str(), "durable": e.options.durable,
                "auto_delete": e.options.auto_delete, "internal": e.options.internal,
                "arguments": table_to_json(&e.options.arguments),
            }))
        })
        .collect();
    let qs = queues
        .iter()
        .map(|q| {
            tag(json!({
                "name": &*q.name, "durable": q.options.durable,
                "auto_delete": q.options.auto_delete,
                "arguments": table_to_json(&q.options.arguments),
            }))
        })
        .collect();
    let mut bs = Vec::new();
    let mut sources = v.exchanges();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    for e in sources.iter().filter(|e| !e.is_default()) {
        for r in e.bindings() {
            let (t, d) = match &r.dest {
                Dest::Queue(q) if q.owner.is_none() => ("queue", q.name.clone()),
                Dest::Exchange(x) => ("exchange", x.name.clone()),
                Dest::Queue(_) => continue,
            };
            bs.push(tag(json!({
                "source": &*e.name, "destination": &*d, "destination_type": t,
                "routing_key": r.routing_key, "arguments": table_to_json(&r.arguments),
            })));
        }
    }
    (ex, qs, bs)
}

/// The whole broker's definitions (administrators only).
pub fn export(b: &Broker) -> Value {
    let (mut exchanges, mut queues, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    let mut vhosts = Vec::new();
    for v in b.vhosts() {
        let meta = b.access.vhost_meta(&v.name);
        vhosts.push(json!({
            "name": &*v.name, "description": meta.description, "tags": meta.tags,
            "metadata": {"description": meta.description, "tags": meta.tags},
            "limits": [],
        }));
        let (e, q, bs) = topology(&v, true);
        exchanges.extend(e);
        queues.extend(q);
        bindings.extend(bs);
    }
    let permissions: Vec<Value> = b
        .access
        .permissions()
        .iter()
        .map(|(u, v, p)| json!({"user": u, "vhost": v, "configure": p.configure, "write": p.write, "read": p.read}))
        .collect();
    json!({
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": b.users.list().iter().map(|u| user_json(b, u)).collect::<Vec<_>>(),
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": super::topic_permissions::listed(b, |_, _| true),
        "parameters": limit_parameters(b),
        "global_parameters": [{"name": "cluster_name", "value": b.config.cluster_name}],
        "policies": b.vhosts().iter().flat_map(|v| v.list_policies()).collect::<Vec<_>>(),
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })
}

/// Vhost limits as RabbitMQ exports them: runtime parameters of component `vhost-limits`.
pub fn limit_parameters(b: &Broker) -> Vec<Value> {
    b.vhost_limits()
        .into_iter()
        .map(
            |(v, l)| json!({"vhost": v, "component": "vhost-limits", "name": "limits", "value": l}),
        )
        .collect()
}

/// Limits from a definitions document: `users[].limits` and `vhost-limits` parameters.
fn import_limits(b: &Broker, doc: &Value) -> ApiResult<()> {
    let int = |k: &str, v: &Value| -> ApiResult<i64> {
        v.as_i64()
            .ok_or_else(|| ApiError::bad_request(format!("limit {k} must be an integer")))
    };
    for u in list(doc, "users")? {
        let name = req_text(u, "name", "user")?;
        if let Some(Value::Object(l)) = u.get("limits") {
            for (k, v) in l {
                b.set_user_limit(name, k, Some(int(k, v)?))?;
            }
        }
    }
    for p in list(doc, "parameters")? {
        if text(p, "component")? != Some("vhost-limits") {
            continue;
        }
        let vhost = req_text(p, "vhost", "parameter")?;
        if let Some(Value::Object(l)) = p.get("value") {
            for (k, v) in l {
                b.set_vhost_limit(vhost, k, Some(int(k, v)?))?;
            }
        }
    }
    Ok(())
}

/// `GET /api/definitions`.
pub async fn get_all(State(b): State<Arc<Broker>>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    Ok(Json(export(&b)))
}

/// `GET /api/definitions/{vhost}`.
pub async fn get_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    let v = auth.read_vhost(&vhost)?;
    let (exchanges, queues, bindings) = topology(&v, false);
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "parameters": limit_parameters(&b).into_iter().filter(|p| p["vhost"] == *vhost).collect::<Vec<_>>(),
        "policies": v.list_policies(),
        "queues": queues, "exchanges": exchanges, "bindings": bindings,
    })))
}

fn list<'a>(doc: &'a Value, key: &str) -> ApiResult<&'a [Value]> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a list"))),
    }
}

fn req_text<'a>(o: &'a Value, key: &str, what: &str) -> ApiResult<&'a str> {
    text(o, key)?.ok_or_else(|| ApiError::bad_request(format!("{what}: {key} is required")))
}

/// The vhost an object goes to: the one in the URL, else its own `vhost` field.
fn target(b: &Broker, o: &Value, fixed: Option<&Arc<VHost>>) -> ApiResult<Arc<VHost>> {
    if let Some(v) = fixed {
        return Ok(v.clone());
    }
    let name = req_text(o, "vhost", "definition")?;
    b.vhost(name)
        .ok_or_else(|| ApiError::bad_request(format!("vhost '{name}' does not exist")))
}

/// Exchanges, queues and bindings (and policies) from `doc` into their vhosts.
fn import_topology(b: &Broker, doc: &Value, fixed: Option<&Arc<VHost>>) -> ApiResult<()> {
    // Policies first, so that the queues and exchanges below are declared under them.
    for p in list(doc, "policies")? {
        let v = target(b, p, fixed)?;
        let name = req_text(p, "name", "policy")?;
        let def = super::policies::def_from_json(&v.name, name, p)?;
        v.set_policy(def)?;
        b.registry.policies_changed(&v.name);
    }
    for e in list(doc, "exchanges")? {
        let v = target(b, e, fixed)?;
        let name = req_text(e, "name", "exchange")?;
        if !exported(name) {
            continue;
        }
        let kind = req_text(e, "type", "exchange")?;
        if ExchangeKind::parse(kind).is_none() {
            return Err(ApiError::bad_request(format!(
                "exchange '{name}': type '{kind}' is not supported"
            )));
        }
        let opts = ExchangeOptions {
            kind: ExchangeKind::Direct,
            durable: flag(e, "durable", true)?,
            auto_delete: flag(e, "auto_delete", false)?,
            internal: flag(e, "internal", false)?,
            arguments: json::json_to_table(e.get("arguments").unwrap_or(&Value::Null))?,
        };
        v.declare_exchange(name, kind, false, |kind| ExchangeOptions { kind, ..opts })?;
    }
    for q in list(doc, "queues")? {
        let v = target(b, q, fixed)?;
        let name = req_text(q, "name", "queue")?;
        let opts = QueueOptions {
            durable: flag(q, "durable", true)?,
            exclusive: false,
            auto_delete: flag(q, "auto_delete", false)?,
            arguments: json::json_to_table(q.get("arguments").unwrap_or(&Value::Null))?,
        };
        v.declare_queue(name, false, opts, ADMIN)?;
    }
    for bd in list(doc, "bindings")? {
        let v = target(b, bd, fixed)?;
        let source = req_text(bd, "source", "binding")?;
        let dest = req_text(bd, "destination", "binding")?;
        let key = text(bd, "routing_key")?.unwrap_or("");
        let args = json::json_to_table(bd.get("arguments").unwrap_or(&Value::Null))?;
        if source.is_empty() {
            continue; // the default exchange's bindings are implicit
        }
        match text(bd, "destination_type")?.unwrap_or("queue") {
            "queue" => v.bind_queue(dest, source, key, &args, ADMIN)?,
            "exchange" => v.bind_exchange(dest, source, key, &args)?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "binding: destination_type '{other}' is not queue or exchange"
                )))
            }
        }
    }
    Ok(())
}

fn ignored(doc: &Value) {
    for k in ["parameters", "global_parameters"] {
        let unsupported = |p: &Value| k != "parameters" || p["component"] != "vhost-limits";
        if doc
            .get(k)
            .and_then(|v| v.as_array())
            .is_some_and(|a| a.iter().any(unsupported))
        {
            tracing::warn!("definitions import: {k} are not supported by warren and were ignored");
        }
    }
}

/// `POST /api/definitions`: vhosts, users, permissions, then exchanges, queues and bindings.
pub async fn post_all(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let doc: Value = parse_body(&body)?;
    if !doc.is_object() {
        return Err(ApiError::bad_request("definitions must be a JSON object"));
    }
    for v in list(&doc, "vhosts")? {
        let name = req_text(v, "name", "vhost")?;
        let meta = v.get("metadata").cloned().unwrap_or(Value::Null);
        let description = text(v, "description")?
            .filter(|d| !d.is_empty())
            .or(meta.get("description").and_then(|d| d.as_str()))
            .unwrap_or("")
            .to_string();
        let mut tags = json::tags(v.get("tags"))?;
        if tags.is_empty() {
            tags = json::tags(meta.get("tags"))?;
        }
        let def = VhostDef {
            name: name.to_string(),
            description,
            tags,
            default_queue_type: None,
            deleted: false,
        };
        b.put_vhost(def, None)?;
    }
    for u in list(&doc, "users")? {
        let name = req_text(u, "name", "user")?;
        let hash = match user_hash(u)? {
            Some(h) => h,
            None => match b.users.get(name) {
                Some(old) => old.password_hash(),
                None => {
                    return Err(ApiError::bad_request(format!(
                        "user '{name}': password or password_hash is required"
                    )))
                }
            },
        };
        b.put_user(name, &hash, json::tags(u.get("tags"))?)?;
    }
    for p in list(&doc, "permissions")? {
        let field = |k: &str| -> ApiResult<String> { Ok(text(p, k)?.unwrap_or("").to_string()) };
        let perm = Permission {
            configure: field("configure")?,
            write: field("write")?,
            read: field("read")?,
        };
        b.set_permission(
            req_text(p, "user", "permission")?,
            req_text(p, "vhost", "permission")?,
            perm,
        )?;
    }
    for p in list(&doc, "topic_permissions")? {
        let (exchange, perm) = super::topic_permissions::from_json(p)?;
        b.set_topic_permission(
            req_text(p, "user", "topic permission")?,
            req_text(p, "vhost", "topic permission")?,
            &exchange,
            perm,
        )?;
    }
    import_limits(&b, &doc)?;
    import_topology(&b, &doc, None)?;
    ignored(&doc);
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/definitions/{vhost}`: exchanges, queues and bindings into one vhost.
pub async fn post_vhost(
    State(b): State<Arc<Broker>>,
    auth: Auth,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let v = auth.write_vhost(&vhost)?;
    let doc: Value = parse_body(&body)?;
    if !doc.is_object() {
        return Err(ApiError::bad_request("definitions must be a JSON object"));
    }
    import_topology(&b, &doc, Some(&v))?;
    ignored(&doc);
    Ok(StatusCode::NO_CONTENT)
}
