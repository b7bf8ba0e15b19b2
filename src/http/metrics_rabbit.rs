//! The rest of rabbitmq_prometheus's aggregated series (its default `/metrics`) that the
//! official Grafana dashboards (RabbitMQ-Overview and friends) query: channel and connection
//! totals, churn, queue totals and the runtime gauges. Counters warren keeps are reported as
//! such; what describes the Erlang runtime (GC, schedulers, Mnesia, file I/O) is reported as 0,
//! or as its nearest equivalent, so that panels and alerts evaluate instead of showing no data.

use super::metrics::Out;
use super::shape::churn;
use crate::broker::stats::{Counts, Stat};
use crate::broker::Broker;
use std::sync::atomic::Ordering::Relaxed;

/// Append the series; `counts` are the node's message counts, `fd_max` the descriptor limit.
pub fn render(o: &mut Out, b: &Broker, counts: &Counts, fd_max: u64) {
    let g = |s: Stat| counts[s as usize];
    let conns = b.registry.list();
    let (mut channels, mut consumers, mut unacked, mut unconfirmed, mut prefetch) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut publishers, mut recv_oct, mut send_oct, mut recv_cnt, mut send_cnt) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for c in &conns {
        recv_oct += c.recv_oct.load(Relaxed);
        send_oct += c.send_oct.load(Relaxed);
        recv_cnt += c.recv_cnt.load(Relaxed);
        send_cnt += c.send_cnt.load(Relaxed);
        for ch in c.channel_list() {
            channels += 1;
            consumers += ch.consumers.lock().len() as u64;
            unacked += ch.unacked.load(Relaxed);
            unconfirmed += ch.unconfirmed.load(Relaxed);
            prefetch += u64::from(ch.prefetch.load(Relaxed));
            publishers += u64::from(ch.stats.get(Stat::Publish) > 0);
        }
    }
    let counters: [(&str, &str, u64); 12] = [
        ("rabbitmq_channel_messages_published_total", "Total number of messages published into an exchange on a channel", g(Stat::Publish)),
        ("rabbitmq_channel_messages_confirmed_total", "Total number of messages published into an exchange and confirmed on the channel", g(Stat::Confirm)),
        ("rabbitmq_channel_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", g(Stat::ReturnUnroutable)),
        ("rabbitmq_channel_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", g(Stat::DropUnroutable)),
        ("rabbitmq_channel_get_ack_total", "Total number of messages fetched with basic.get in manual acknowledgement mode", g(Stat::Get)),
        ("rabbitmq_channel_get_total", "Total number of messages fetched with basic.get in automatic acknowledgement mode", g(Stat::GetNoAck)),
        ("rabbitmq_channel_messages_delivered_ack_total", "Total number of messages delivered to consumers in manual acknowledgement mode", g(Stat::Deliver)),
        ("rabbitmq_channel_messages_delivered_total", "Total number of messages delivered to consumers in automatic acknowledgement mode", g(Stat::DeliverNoAck)),
        ("rabbitmq_channel_messages_redelivered_total", "Total number of messages redelivered to consumers", g(Stat::Redeliver)),
        ("rabbitmq_channel_messages_acked_total", "Total number of messages acknowledged by consumers", g(Stat::Ack)),
        ("rabbitmq_channel_get_empty_total", "Total number of times basic.get operations fetched no message", g(Stat::GetEmpty)),
        ("rabbitmq_global_messages_received_confirm_total", "Total number of messages received from publishers expecting confirmations", g(Stat::Confirm)),
    ];
    for (name, help, v) in counters {
        o.one(name, "counter", help, v);
    }
    let ch = churn(b);
    let (mut q_published, mut q_bytes, mut q_ready_bytes, mut q_consumers) =
        (0u64, 0u64, 0u64, 0u64);
    let (mut q_ready, mut q_unacked) = (0u64, 0u64);
    for v in b.vhosts() {
        for q in v.queues() {
            let (r, u, bytes, c) = q.snapshot();
            q_published += q.stats.get(Stat::Publish);
            q_bytes += bytes;
            q_ready_bytes += bytes;
            q_consumers += u64::from(c);
            q_ready += r;
            q_unacked += u;
        }
    }
    let more: [(&str, &str, &str, u64); 41] = [
        (
            "rabbitmq_channel_consumers",
            "gauge",
            "Consumers on a channel",
            consumers,
        ),
        (
            "rabbitmq_channel_messages_unacked",
            "gauge",
            "Delivered but not yet acknowledged messages",
            unacked,
        ),
        (
            "rabbitmq_channel_messages_unconfirmed",
            "gauge",
            "Published but not yet confirmed messages",
            unconfirmed,
        ),
        (
            "rabbitmq_channel_messages_uncommitted",
            "gauge",
            "Messages received in a transaction but not yet committed",
            0,
        ),
        (
            "rabbitmq_channel_acks_uncommitted",
            "gauge",
            "Message acknowledgements in a transaction not yet committed",
            0,
        ),
        (
            "rabbitmq_channel_prefetch",
            "gauge",
            "Total limit of unacknowledged messages for all consumers on a channel",
            prefetch,
        ),
        (
            "rabbitmq_consumer_prefetch",
            "gauge",
            "Limit of unacknowledged messages for each consumer",
            prefetch,
        ),
        (
            "rabbitmq_channel_process_reductions_total",
            "counter",
            "Total number of channel process reductions",
            0,
        ),
        (
            "rabbitmq_channels_opened_total",
            "counter",
            "Total number of channels opened",
            ch.channels_opened,
        ),
        (
            "rabbitmq_channels_closed_total",
            "counter",
            "Total number of channels closed",
            ch.channels_closed,
        ),
        (
            "rabbitmq_queues_declared_total",
            "counter",
            "Total number of queues declared",
            ch.queues_declared,
        ),
        (
            "rabbitmq_queues_created_total",
            "counter",
            "Total number of queues created",
            ch.queues_created,
        ),
        (
            "rabbitmq_queues_deleted_total",
            "counter",
            "Total number of queues deleted",
            ch.queues_deleted,
        ),
        (
            "rabbitmq_connection_channels",
            "gauge",
            "Channels on a connection",
            channels,
        ),
        (
            "rabbitmq_connection_incoming_bytes_total",
            "counter",
            "Total number of bytes received on a connection",
            recv_oct,
        ),
        (
            "rabbitmq_connection_outgoing_bytes_total",
            "counter",
            "Total number of bytes sent on a connection",
            send_oct,
        ),
        (
            "rabbitmq_connection_incoming_packets_total",
            "counter",
            "Total number of packets received on a connection",
            recv_cnt,
        ),
        (
            "rabbitmq_connection_outgoing_packets_total",
            "counter",
            "Total number of packets sent on a connection",
            send_cnt,
        ),
        (
            "rabbitmq_connection_pending_packets",
            "gauge",
            "Number of packets waiting to be sent on a connection",
            0,
        ),
        (
            "rabbitmq_connection_process_reductions_total",
            "counter",
            "Total number of connection process reductions",
            0,
        ),
        (
            "rabbitmq_queue_messages_published_total",
            "counter",
            "Total number of messages published to queues",
            q_published,
        ),
        (
            "rabbitmq_queue_consumers",
            "gauge",
            "Consumers on a queue",
            q_consumers,
        ),
        (
            "rabbitmq_queue_messages_bytes",
            "gauge",
            "Size in bytes of ready and unacknowledged messages",
            q_bytes,
        ),
        (
            "rabbitmq_queue_messages_ready_bytes",
            "gauge",
            "Size in bytes of ready messages",
            q_ready_bytes,
        ),
        (
            "rabbitmq_queue_messages_unacked_bytes",
            "gauge",
            "Size in bytes of all unacknowledged messages",
            0,
        ),
        (
            "rabbitmq_queue_messages_ram",
            "gauge",
            "Ready and unacknowledged messages stored in memory",
            q_ready + q_unacked,
        ),
        (
            "rabbitmq_queue_messages_ready_ram",
            "gauge",
            "Ready messages stored in memory",
            q_ready,
        ),
        (
            "rabbitmq_queue_messages_unacked_ram",
            "gauge",
            "Unacknowledged messages stored in memory",
            q_unacked,
        ),
        (
            "rabbitmq_queue_messages_ram_bytes",
            "gauge",
            "Size of ready and unacknowledged messages stored in memory",
            q_bytes,
        ),
        (
            "rabbitmq_queue_messages_persistent",
            "gauge",
            "Persistent messages",
            0,
        ),
        (
            "rabbitmq_queue_messages_paged_out",
            "gauge",
            "Messages paged out to disk",
            0,
        ),
        (
            "rabbitmq_queue_messages_paged_out_bytes",
            "gauge",
            "Size in bytes of messages paged out to disk",
            0,
        ),
        (
            "rabbitmq_queue_process_memory_bytes",
            "gauge",
            "Memory in bytes used by the Erlang queue process",
            q_bytes + (q_ready + q_unacked) * 200,
        ),
        (
            "rabbitmq_queue_disk_reads_total",
            "counter",
            "Total number of times queue read messages from disk",
            0,
        ),
        (
            "rabbitmq_queue_disk_writes_total",
            "counter",
            "Total number of times queue wrote messages to disk",
            0,
        ),
        (
            "rabbitmq_process_open_tcp_sockets",
            "gauge",
            "Open TCP sockets",
            conns.len() as u64,
        ),
        (
            "rabbitmq_process_max_tcp_sockets",
            "gauge",
            "Open TCP sockets limit",
            fd_max,
        ),
        (
            "rabbitmq_alarms_file_descriptor_limit",
            "gauge",
            "is set to 1 when 90% of file descriptors are used",
            0,
        ),
        (
            "rabbitmq_erlang_processes_used",
            "gauge",
            "Erlang processes used",
            0,
        ),
        (
            "rabbitmq_erlang_processes_limit",
            "gauge",
            "Erlang processes limit",
            1_048_576,
        ),
        (
            "rabbitmq_erlang_net_ticktime_seconds",
            "gauge",
            "Inter-node heartbeat interval",
            60,
        ),
    ];
    for (name, kind, help, v) in more {
        o.one(name, kind, help, v);
    }
    for (name, help) in [
        (
            "rabbitmq_erlang_gc_runs_total",
            "Total number of Erlang garbage collector runs",
        ),
        (
            "rabbitmq_erlang_gc_reclaimed_bytes_total",
            "Total number of bytes of memory reclaimed by Erlang garbage collector",
        ),
        (
            "rabbitmq_erlang_scheduler_context_switches_total",
            "Total number of Erlang scheduler context switches",
        ),
        (
            "rabbitmq_io_read_ops_total",
            "Total number of I/O read operations",
        ),
        (
            "rabbitmq_io_read_bytes_total",
            "Total number of I/O bytes read",
        ),
        (
            "rabbitmq_io_write_ops_total",
            "Total number of I/O write operations",
        ),
        (
            "rabbitmq_io_write_bytes_total",
            "Total number of I/O bytes written",
        ),
        (
            "rabbitmq_io_sync_ops_total",
            "Total number of I/O sync operations",
        ),
        (
            "rabbitmq_io_seek_ops_total",
            "Total number of I/O seek operations",
        ),
        (
            "rabbitmq_io_reopen_ops_total",
            "Total number of times files have been reopened",
        ),
        (
            "rabbitmq_msg_store_read_total",
            "Total number of Message Store read operations",
        ),
        (
            "rabbitmq_msg_store_write_total",
            "Total number of Message Store write operations",
        ),
        (
            "rabbitmq_queue_index_read_ops_total",
            "Total number of Queue Index read operations",
        ),
        (
            "rabbitmq_queue_index_write_ops_total",
            "Total number of Queue Index write operations",
        ),
        (
            "rabbitmq_schema_db_ram_tx_total",
            "Total number of Schema DB memory transactions",
        ),
        (
            "rabbitmq_schema_db_disk_tx_total",
            "Total number of Schema DB disk transactions",
        ),
    ] {
        o.one(name, "counter", help, 0);
    }
    o.one(
        "rabbitmq_erlang_scheduler_run_queue",
        "gauge",
        "Erlang scheduler run queue",
        0,
    );
    let amqp = [("protocol", "amqp091")];
    o.family(
        "rabbitmq_global_consumers",
        "gauge",
        "Current number of consumers",
    );
    o.sample("rabbitmq_global_consumers", &amqp, consumers);
    o.family(
        "rabbitmq_global_publishers",
        "gauge",
        "Current number of publishers",
    );
    o.sample("rabbitmq_global_publishers", &amqp, publishers);
}
