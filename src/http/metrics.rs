//! Prometheus text exposition: `/metrics` with node-wide totals and `/metrics/per-object` with
//! a series per queue, under the names RabbitMQ's Prometheus plugin uses (`rabbitmq_…`), so
//! existing dashboards and alerts mostly work. No authentication, as RabbitMQ's.

use crate::broker::alarms::{DISK, MEMORY};
use crate::broker::stats::{Counts, Stat};
use crate::broker::Broker;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::Arc;

/// One metric family being written.
pub struct Out(String);

impl Out {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {v}");
    }

    pub fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn text(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Counts for the `rabbitmq_global_messages_*` counters.
fn global(o: &mut Out, c: &Counts) {
    let g = |s: Stat| c[s as usize];
    let routed = g(Stat::Publish)
        - g(Stat::ReturnUnroutable).min(g(Stat::Publish))
        - g(Stat::DropUnroutable).min(g(Stat::Publish));
    let delivered = g(Stat::Deliver) + g(Stat::DeliverNoAck) + g(Stat::Get) + g(Stat::GetNoAck);
    for (name, help, v) in [
        ("received", "Total number of messages received from publishers", g(Stat::Publish)),
        ("routed", "Total number of messages routed to queues", routed),
        ("unroutable_dropped", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", g(Stat::DropUnroutable)),
        ("unroutable_returned", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", g(Stat::ReturnUnroutable)),
        ("confirmed", "Total number of messages confirmed to publishers", g(Stat::Confirm)),
        ("delivered", "Total number of messages delivered to consumers", delivered),
        ("delivered_consume_manual_ack", "Total number of messages delivered to consumers using manual acknowledgement mode", g(Stat::Deliver)),
        ("delivered_consume_auto_ack", "Total number of messages delivered to consumers using automatic acknowledgement mode", g(Stat::DeliverNoAck)),
        ("delivered_get_manual_ack", "Total number of messages fetched with basic.get in manual acknowledgement mode", g(Stat::Get)),
        ("delivered_get_auto_ack", "Total number of messages fetched with basic.get in automatic acknowledgement mode", g(Stat::GetNoAck)),
        ("get_empty", "Total number of times basic.get operations fetched no message", g(Stat::GetEmpty)),
        ("redelivered", "Total number of messages redelivered to consumers", g(Stat::Redeliver)),
        ("acknowledged", "Total number of messages acknowledged by consumers", g(Stat::Ack)),
    ] {
        let name = format!("rabbitmq_global_messages_{name}_total");
        o.family(&name, "counter", help);
        o.sample(&name, &[("protocol", "amqp091")], v);
    }
}

/// The node-wide metrics.
pub fn render(b: &Broker) -> String {
    let mut o = Out(String::with_capacity(8 * 1024));
    let node = b.node_name();
    o.family(
        "rabbitmq_identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    o.sample(
        "rabbitmq_identity_info",
        &[
            ("rabbitmq_node", &node),
            ("rabbitmq_cluster", &b.config.cluster_name),
            (
                "rabbitmq_cluster_permanent_id",
                &format!("rabbitmq-cluster-id-{}", b.config.cluster_name),
            ),
        ],
        1,
    );
    o.family(
        "rabbitmq_build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    o.sample(
        "rabbitmq_build_info",
        &[
            ("rabbitmq_version", super::overview::RABBITMQ_VERSION),
            (
                "prometheus_plugin_version",
                super::overview::RABBITMQ_VERSION,
            ),
            ("prometheus_client_version", "4.9.1"),
            ("erlang_version", "none"),
            ("product", "warren"),
            ("product_version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    let conns = b.registry.list();
    let channels: usize = conns.iter().map(|c| c.channels.lock().len()).sum();
    let (mut queues, mut ready, mut unacked, mut consumers, mut exchanges) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for v in b.vhosts() {
        exchanges += v.exchanges().len() as u64;
        for q in v.queues() {
            let (r, u, _, c) = q.snapshot();
            queues += 1;
            ready += r;
            unacked += u;
            consumers += u64::from(c);
        }
    }
    o.one(
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        conns.len(),
    );
    o.one(
        "rabbitmq_connections_opened_total",
        "counter",
        "Total number of connections opened",
        b.registry.opened(),
    );
    o.one(
        "rabbitmq_connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        b.registry.closed(),
    );
    o.one(
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        channels,
    );
    o.one(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        consumers,
    );
    o.one("rabbitmq_queues", "gauge", "Queues available", queues);
    o.one(
        "rabbitmq_exchanges",
        "gauge",
        "Exchanges available",
        exchanges,
    );
    o.one(
        "rabbitmq_queue_messages_ready",
        "gauge",
        "Messages ready to be delivered to consumers",
        ready,
    );
    o.one(
        "rabbitmq_queue_messages_unacked",
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
        unacked,
    );
    o.one(
        "rabbitmq_queue_messages",
        "gauge",
        "Sum of ready and unacknowledged messages - total queue depth",
        ready + unacked,
    );
    let counts = b.node_counts();
    global(&mut o, &counts);
    let a = &b.alarms;
    let active = a.active();
    o.one(
        "rabbitmq_process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        a.mem_used(),
    );
    o.one(
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        a.mem_limit(),
    );
    o.one(
        "rabbitmq_disk_space_available_bytes",
        "gauge",
        "Disk space available in bytes",
        a.disk_free(),
    );
    o.one(
        "rabbitmq_disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        a.disk_free_limit(),
    );
    o.one(
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "is set to 1 when the memory high watermark is reached",
        u8::from(active & MEMORY != 0),
    );
    o.one(
        "rabbitmq_alarms_free_disk_space_watermark",
        "gauge",
        "is set to 1 when the free disk space low watermark is reached",
        u8::from(active & DISK != 0),
    );
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    o.one(
        "rabbitmq_process_open_fds",
        "gauge",
        "Open file descriptors",
        fds,
    );
    let fd_max = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(0);
    o.one(
        "rabbitmq_process_max_fds",
        "gauge",
        "Open file descriptors limit",
        fd_max,
    );
    super::metrics_rabbit::render(&mut o, b, &counts, fd_max);
    o.one(
        "rabbitmq_erlang_uptime_seconds",
        "gauge",
        "Node uptime",
        b.started.elapsed().as_secs_f64(),
    );
    o.one(
        "rabbitmq_process_start_time_seconds",
        "gauge",
        "Process start time, seconds since the Unix epoch",
        b.started_at_ms / 1000,
    );
    o.0
}

/// One series per queue, labelled `vhost` and `queue`.
pub fn render_per_object(b: &Broker) -> String {
    let queues: Vec<_> = b.vhosts().iter().flat_map(|v| v.queues()).collect();
    type Get = fn(&crate::broker::queue::Queue, (u64, u64, u64, u32)) -> u64;
    let families: [(&str, &str, &str, Get); 7] = [
        (
            "rabbitmq_queue_messages_ready",
            "gauge",
            "Messages ready to be delivered to consumers",
            |_, s| s.0,
        ),
        (
            "rabbitmq_queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            |_, s| s.1,
        ),
        (
            "rabbitmq_queue_messages",
            "gauge",
            "Sum of ready and unacknowledged messages - total queue depth",
            |_, s| s.0 + s.1,
        ),
        (
            "rabbitmq_queue_messages_bytes",
            "gauge",
            "Size in bytes of ready messages",
            |_, s| s.2,
        ),
        (
            "rabbitmq_queue_consumers",
            "gauge",
            "Consumers on a queue",
            |_, s| u64::from(s.3),
        ),
        (
            "rabbitmq_queue_messages_published_total",
            "counter",
            "Total number of messages published to queues",
            |q, _| q.stats.get(Stat::Publish),
        ),
        (
            "rabbitmq_queue_messages_acked_total",
            "counter",
            "Total number of messages acknowledged by consumers on a queue",
            |q, _| q.stats.get(Stat::Ack),
        ),
    ];
    // The per-queue families replace the node totals of the same name (one family per name).
    let base = render(b);
    let mut o = Out(String::with_capacity(base.len()));
    for line in base.lines() {
        let name = line
            .trim_start_matches("# HELP ")
            .trim_start_matches("# TYPE ")
            .split(['{', ' '])
            .next()
            .unwrap_or("");
        if !families.iter().any(|f| f.0 == name) {
            o.0.push_str(line);
            o.0.push('\n');
        }
    }
    let snaps: Vec<_> = queues.iter().map(|q| q.snapshot()).collect();
    for (name, kind, help, get) in families {
        o.family(name, kind, help);
        for (q, s) in queues.iter().zip(&snaps) {
            o.sample(name, &[("vhost", &q.vhost), ("queue", &q.name)], get(q, *s));
        }
    }
    o.0
}

/// `GET /metrics`.
pub async fn metrics(State(b): State<Arc<Broker>>) -> Response {
    text(render(&b))
}

/// `GET /metrics/per-object`.
pub async fn per_object(State(b): State<Arc<Broker>>) -> Response {
    text(render_per_object(&b))
}
