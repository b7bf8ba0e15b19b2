//! The results of one run, printed as one JSON line (`--json`) or a short human summary, and the
//! exit status they imply (0 ok, 1 errors, 2 loss or duplicates).

use crate::stats::Histogram;
use crate::Args;
use serde_json::{json, Value};

/// Everything a run measured.
#[derive(Default)]
pub struct Outcome {
    pub client: &'static str,
    pub sent: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub blocked: u64,
    pub received: u64,
    pub redelivered: u64,
    pub invalid: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Seconds from the start to the last publish written (or confirmed).
    pub publish_s: f64,
    /// Seconds from the start (consume-only: the first delivery) to the last delivery.
    pub consume_s: f64,
    pub elapsed_s: f64,
    pub latency: Option<Histogram>,
    pub broker_cpu_s: Option<f64>,
    pub broker_peak_rss_kb: Option<u64>,
    pub client_cpu_s: Option<f64>,
    pub errors: Vec<String>,
}

fn rate(n: u64, s: f64) -> u64 {
    if s > 0.0 {
        (n as f64 / s).round() as u64
    } else {
        0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.invalid == 0
    }

    /// Messages the broker handled: publishes, or deliveries for a consume-only run.
    fn messages(&self) -> u64 {
        if self.sent > 0 {
            self.sent
        } else {
            self.received
        }
    }

    pub fn to_json(&self, a: &Args) -> Value {
        let latency = self.latency.as_ref().map(|h| {
            let us = |ns: u64| round2(ns as f64 / 1000.0);
            json!({
                "samples": h.count(),
                "p50": us(h.quantile(0.50)),
                "p95": us(h.quantile(0.95)),
                "p99": us(h.quantile(0.99)),
                "max": us(h.max()),
            })
        });
        let per_msg =
            |cpu: Option<f64>, n: u64| cpu.filter(|_| n > 0).map(|c| round2(c * 1e6 / n as f64));
        let kv = |v: &[(String, String)]| {
            v.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        json!({
            "client": if self.client.is_empty() { "native" } else { self.client },
            "scenario": {
                "producers": a.producers, "consumers": a.consumers, "queues": a.queues,
                "size": a.size, "count": a.count, "duration": a.run_duration().map(|d| d.as_secs_f64()),
                "autoack": a.autoack, "prefetch": a.prefetch, "multiple_ack_every": a.multiple_ack_every,
                "confirm": a.confirm, "persistent": a.persistent,
                "exchange_type": a.exchange_type.name(), "rate": a.rate, "stream": a.stream,
                "publish_only": a.publish_only, "consume_only": a.consume_only,
                "queue_args": kv(&a.queue_args), "consumer_args": kv(&a.consumer_args),
            },
            "sent": self.sent, "confirmed": self.confirmed, "nacked": self.nacked,
            "received": self.received,
            "publish_rate": rate(self.sent, self.publish_s),
            "consume_rate": rate(self.received, self.consume_s),
            "elapsed_s": round2(self.elapsed_s),
            "latency_us": latency,
            "loss": self.lost, "duplicates": self.duplicates, "out_of_order": self.out_of_order,
            "redelivered": self.redelivered, "invalid": self.invalid, "blocked": self.blocked,
            "ok": self.ok() && self.errors.is_empty(),
            "broker_cpu_s": self.broker_cpu_s.map(round2),
            "broker_cpu_us_per_msg": per_msg(self.broker_cpu_s, self.messages()),
            "broker_cpu_us_per_delivery": per_msg(self.broker_cpu_s, self.received),
            "broker_peak_rss_kb": self.broker_peak_rss_kb,
            "client_cpu_s": self.client_cpu_s.map(round2),
            "errors": self.errors,
        })
    }
}

/// Print the outcome; returns the exit status.
pub fn print(a: &Args, o: &Outcome) -> u8 {
    let j = o.to_json(a);
    if a.json {
        println!("{j}");
    } else {
        println!(
            "sent {} ({} msg/s), received {} ({} msg/s), elapsed {:.2} s",
            o.sent, j["publish_rate"], o.received, j["consume_rate"], o.elapsed_s
        );
        if let Some(l) = j.get("latency_us").filter(|l| !l.is_null()) {
            println!(
                "latency µs: p50 {} p95 {} p99 {} max {}",
                l["p50"], l["p95"], l["p99"], l["max"]
            );
        }
        println!(
            "loss {} duplicates {} out-of-order {} redelivered {} invalid {}{}",
            o.lost,
            o.duplicates,
            o.out_of_order,
            o.redelivered,
            o.invalid,
            if o.nacked > 0 {
                format!(" nacked {}", o.nacked)
            } else {
                String::new()
            }
        );
        if let Some(c) = o.broker_cpu_s {
            println!(
                "broker CPU {c:.2} s = {} µs/msg, peak RSS {} KiB; client CPU {} s",
                j["broker_cpu_us_per_msg"], j["broker_peak_rss_kb"], j["client_cpu_s"]
            );
        }
        for e in &o.errors {
            println!("error: {e}");
        }
    }
    if !o.errors.is_empty() {
        1
    } else if !o.ok() {
        2
    } else {
        0
    }
}
