//! The fields RabbitMQ reports that describe its Erlang runtime (garbage collection,
//! reductions, Mnesia and file I/O counters, classic-queue internals, TLS peer details of a
//! plain connection...). warren has no such thing, but tools read these keys without checking
//! they exist, so each object carries them with a plausible value of the right type: zeros,
//! nulls, empty lists, this node for cluster membership. Added only where the handler did not
//! already set the key, and only when an object is shown (never on the hot path).

use crate::broker::Broker;
use serde_json::{json, Map, Value};

/// Insert each key of `defaults` that `v` lacks.
pub fn fill(v: &mut Value, defaults: Value) {
    if let (Some(o), Value::Object(d)) = (v.as_object_mut(), defaults) {
        for (k, x) in d {
            o.entry(k).or_insert(x);
        }
    }
}

/// Node-wide churn: channels opened and closed, queues declared, created and deleted.
pub struct Churn {
    pub channels_opened: u64,
    pub channels_closed: u64,
    pub queues_declared: u64,
    pub queues_created: u64,
    pub queues_deleted: u64,
}

pub fn churn(b: &Broker) -> Churn {
    use std::sync::atomic::Ordering::Relaxed;
    let open: u64 = b
        .registry
        .list()
        .iter()
        .map(|c| c.channels.lock().len() as u64)
        .sum();
    let opened = b.registry.channels_opened();
    let mut c = Churn {
        channels_opened: opened,
        channels_closed: opened.saturating_sub(open),
        queues_declared: 0,
        queues_created: 0,
        queues_deleted: 0,
    };
    for v in b.vhosts() {
        c.queues_declared += v.churn.declared.load(Relaxed);
        c.queues_created += v.churn.created.load(Relaxed);
        c.queues_deleted += v.churn.deleted.load(Relaxed);
    }
    c
}

/// The churn counters (with zero rates) under RabbitMQ's names.
fn churn_fields(b: &Broker, into: &mut Map<String, Value>) {
    let c = churn(b);
    for (k, v) in [
        ("connection_created", b.registry.opened()),
        ("connection_closed", b.registry.closed()),
        ("channel_created", c.channels_opened),
        ("channel_closed", c.channels_closed),
        ("queue_declared", c.queues_declared),
        ("queue_created", c.queues_created),
        ("queue_deleted", c.queues_deleted),
    ] {
        into.insert(k.into(), json!(v));
        into.insert(format!("{k}_details"), zero());
    }
}

/// `{"rate": 0.0}`.
fn zero() -> Value {
    json!({"rate": 0.0})
}

/// Counters with their `_details`, all zero.
fn zero_counters(names: &[&str], into: &mut Map<String, Value>) {
    for n in names {
        into.insert((*n).into(), json!(0));
        into.insert(format!("{n}_details"), zero());
    }
}

/// An Erlang process's garbage-collection settings.
fn gc() -> Value {
    json!({"fullsweep_after": 65535, "max_heap_size": 0, "min_bin_vheap_size": 46422,
           "min_heap_size": 233, "minor_gcs": 0})
}

/// Exchange types as RabbitMQ describes them (overview and nodes).
pub fn exchange_types() -> Value {
    let d = |t: &str| format!("AMQP {t} exchange, as per the AMQP specification");
    json!([
        {"name": "direct", "description": d("direct"), "enabled": true},
        {"name": "fanout", "description": d("fanout"), "enabled": true},
        {"name": "headers", "description": d("headers"), "enabled": true},
        {"name": "topic", "description": d("topic"), "enabled": true},
    ])
}

/// The management context (HTTP listener) as `contexts` shows it.
pub fn contexts(b: &Broker, with_node: bool) -> Value {
    let (ip, port) = b
        .http_addr
        .get()
        .map_or((String::new(), String::new()), |a| {
            (a.ip().to_string(), a.port().to_string())
        });
    let mut c = json!({"description": "RabbitMQ Management", "path": "/",
                       "cowboy_opts": "[{sendfile,false}]", "ip": ip, "port": port});
    if with_node {
        fill(&mut c, json!({"node": b.node_name(), "ssl_opts": []}));
    }
    json!([c])
}

/// The overview's extra fields.
pub fn overview(b: &Broker, v: &mut Value) {
    let mut churn = Map::new();
    churn_fields(b, &mut churn);
    fill(
        v,
        json!({
            "sample_retention_policies": {"global": [600, 3600, 28800, 86400],
                                          "basic": [600, 3600], "detailed": [600]},
            "erlang_full_version": "none",
            "release_series_support_status": "supported",
            "churn_rates": churn,
        }),
    );
    if let Some(ms) = v.get_mut("message_stats") {
        let mut m = Map::new();
        zero_counters(&["disk_reads", "disk_writes"], &mut m);
        fill(ms, Value::Object(m));
    }
    if let Some(Value::Array(ls)) = v.get_mut("listeners") {
        for l in ls {
            let opts = if l["protocol"] == "amqp" || l["protocol"] == "amqp/ssl" {
                json!({"backlog": 128, "nodelay": true, "linger": [true, 0], "exit_on_close": false})
            } else {
                json!({"cowboy_opts": {"sendfile": false}, "ip": l["ip_address"], "port": l["port"]})
            };
            fill(l, json!({"socket_opts": opts}));
        }
    }
}

/// A node's extra fields.
pub fn node(b: &Broker, v: &mut Value) {
    let mut m = Map::new();
    zero_counters(
        &[
            "gc_num",
            "gc_bytes_reclaimed",
            "context_switches",
            "io_read_count",
            "io_read_bytes",
            "io_read_avg_time",
            "io_write_count",
            "io_write_bytes",
            "io_write_avg_time",
            "io_sync_count",
            "io_sync_avg_time",
            "io_seek_count",
            "io_seek_avg_time",
            "io_reopen_count",
            "mnesia_ram_tx_count",
            "mnesia_disk_tx_count",
            "msg_store_read_count",
            "msg_store_write_count",
            "queue_index_write_count",
            "queue_index_read_count",
        ],
        &mut m,
    );
    for k in [
        "mem_used",
        "fd_used",
        "sockets_used",
        "proc_used",
        "disk_free",
    ] {
        m.insert(format!("{k}_details"), zero());
    }
    churn_fields(b, &mut m);
    let extra = json!({
        "exchange_types": exchange_types(),
        "auth_mechanisms": [
            {"name": "AMQPLAIN", "description": "QPid AMQPLAIN mechanism", "enabled": true},
            {"name": "PLAIN", "description": "SASL PLAIN authentication mechanism", "enabled": true},
        ],
        "contexts": contexts(b, false),
        "log_files": ["<stdout>"],
        "db_dir": b.config.data_dir.display().to_string(),
        "config_files": [],
        "net_ticktime": 60,
        "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
        "mem_calculation_strategy": "rss",
        "ra_open_file_metrics": {"ra_log_wal": 0, "ra_log_segment_writer": 0},
        "cluster_links": [],
        "metrics_gc_queue_length": {"connection_closed": 0, "channel_closed": 0,
            "consumer_deleted": 0, "exchange_deleted": 0, "queue_deleted": 0,
            "vhost_deleted": 0, "node_node_deleted": 0, "channel_consumer_deleted": 0},
    });
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    fill(v, Value::Object(m));
}

/// A connection's extra fields.
pub fn connection(v: &mut Value) {
    fill(
        v,
        json!({
            "garbage_collection": gc(), "reductions": 0, "reductions_details": zero(),
            "peer_cert_issuer": null, "peer_cert_subject": null, "peer_cert_validity": null,
            "ssl_cipher": null, "ssl_hash": null, "ssl_key_exchange": null, "ssl_protocol": null,
        }),
    );
}

/// A channel's extra fields.
pub fn channel(v: &mut Value) {
    fill(
        v,
        json!({"garbage_collection": gc(), "reductions": 0, "reductions_details": zero()}),
    );
}

/// A queue's extra fields, by queue type.
pub fn queue(b: &Broker, kind: &str, ready: u64, unacked: u64, bytes: u64, v: &mut Value) {
    let node = b.node_name();
    let common = json!({"garbage_collection": gc(), "reductions": 0, "reductions_details": zero(),
                        "operator_policy": null});
    fill(v, common);
    let extra = match kind {
        "quorum" => json!({
            "leader": node, "members": [node], "online": [node],
            "open_files": {node.clone(): 0},
            "message_bytes_dlx": 0, "messages_dlx": 0,
            "message_bytes_persistent": bytes, "message_bytes_ram": bytes,
            "messages_persistent": ready + unacked, "messages_ram": ready + unacked,
            "single_active_consumer_ctag": null,
        }),
        "stream" => json!({
            "leader": node, "members": [node], "online": [node],
            "readers": {node.clone(): v["consumers"].clone()},
        }),
        _ => json!({
            "backing_queue_status": {
                "avg_ack_egress_rate": 0.0, "avg_ack_ingress_rate": 0.0,
                "avg_egress_rate": 0.0, "avg_ingress_rate": 0.0,
                "delta": ["delta", "undefined", 0, 0, "undefined"],
                "len": ready, "mode": "default", "next_deliver_seq_id": 0, "next_seq_id": 0,
                "q1": 0, "q2": 0, "q3": 0, "q4": 0, "target_ram_count": "infinity",
                "version": 2,
            },
            "exclusive_consumer_tag": null,
            "head_message_timestamp": null,
            "message_bytes_paged_out": 0, "messages_paged_out": 0,
            "message_bytes_persistent": 0, "messages_persistent": 0,
            "message_bytes_ram": bytes, "messages_ram": ready + unacked,
            "messages_ready_ram": ready, "messages_unacknowledged_ram": unacked,
            "recoverable_slaves": null,
            "single_active_consumer_tag": null,
        }),
    };
    fill(v, extra);
}
