//! `warren-perf`: a PerfTest-style load generator for AMQP 0-9-1 brokers (warren, RabbitMQ).
//!
//! Producers publish stamped messages (producer id, sequence number, send time in the first 16
//! bytes of each body) through a lean client built on warren's own codec; consumers check every
//! message for loss, duplicates and order and measure latency. One line of results, human or JSON.
//!
//! ```text
//! warren-perf --uri amqp://guest:guest@127.0.0.1:5672/%2f --producers 1 --consumers 1 \
//!     --size 16 --duration 10 --autoack --json
//! warren-perf --sink-test --duration 3            # the client's own ceiling, no broker
//! ```
//! Exit status: 0 ok, 1 an error (connection, protocol, broker close), 2 loss or duplicates.
//!
//! Modules: `client` (connection, handshake, setup methods), `wire` (hot frames, stamps),
//! `methods` (setup methods), `producer`, `consumer`, `scenario` (one run), `stats` (histogram, sequence tracker),
//! `sink` (client-only throughput), `report` (output), `lapin_mode` (cross-check, feature
//! `perf-lapin`).

mod client;
mod consumer;
#[cfg(feature = "perf-lapin")]
mod lapin_mode;
mod methods;
mod producer;
mod report;
mod scenario;
mod sink;
mod stats;
mod wire;

use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use report::Outcome;

static START: OnceLock<Instant> = OnceLock::new();

/// ns since the process's start instant (monotonic; every stamp and receipt uses it).
#[inline]
pub fn now_ns() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
}

impl ExchangeType {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    /// The built-in lean client.
    Native,
    /// lapin (1 producer, 1 consumer, autoack only; needs the `perf-lapin` feature).
    Lapin,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected key=value")?;
    if k.is_empty() || k.len() > 255 {
        return Err("key must be 1..=255 bytes".into());
    }
    Ok((k.to_string(), v.to_string()))
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n < wire::STAMP_LEN {
        return Err(format!("at least {} bytes (the stamp)", wire::STAMP_LEN));
    }
    Ok(n)
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.len() > 200 {
        return Err("names are limited to 200 bytes".into());
    }
    Ok(s.to_string())
}

/// PerfTest-style load generator for AMQP 0-9-1 brokers.
#[derive(Parser, Debug, Clone)]
#[command(name = "warren-perf", version)]
pub struct Args {
    /// Broker URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub uri: String,
    /// Producer connections (one channel each).
    #[arg(long, short = 'x', default_value_t = 1)]
    pub producers: u16,
    /// Consumer connections per queue.
    #[arg(long, short = 'y', default_value_t = 1)]
    pub consumers: u16,
    /// Message body size in bytes (≥ 16: producer id, sequence number, send time).
    #[arg(long, short = 's', default_value_t = 16, value_parser = parse_size)]
    pub size: usize,
    /// Messages per producer (else run for --duration).
    #[arg(long, short = 'C')]
    pub count: Option<u64>,
    /// Seconds to publish for (default 10 when --count is not given).
    #[arg(long, short = 'z')]
    pub duration: Option<f64>,
    /// Consume with no-ack.
    #[arg(long, short = 'a')]
    pub autoack: bool,
    /// basic.qos prefetch count per consumer (0: none sent, unlimited).
    #[arg(long, short = 'q', default_value_t = 0)]
    pub prefetch: u16,
    /// Ack with multiple=true every N messages (1: ack each message).
    #[arg(long, default_value_t = 1)]
    pub multiple_ack_every: u64,
    /// Publisher confirms with at most N unconfirmed messages per producer.
    #[arg(long, short = 'c')]
    pub confirm: Option<u64>,
    /// delivery-mode 2, durable queue and exchange.
    #[arg(long)]
    pub persistent: bool,
    #[arg(long, value_enum, default_value = "direct")]
    pub exchange_type: ExchangeType,
    /// Exchange name (default perf.<type>; "" publishes to the default exchange).
    #[arg(long, value_parser = parse_name)]
    pub exchange: Option<String>,
    /// Queues bound to the exchange, each with its own --consumers.
    #[arg(long, default_value_t = 1)]
    pub queues: u16,
    /// Queue name (with --queues N > 1: NAME-0 … NAME-(N-1)).
    #[arg(long, default_value = "perf", value_parser = parse_name)]
    pub queue_name: String,
    /// Fixed publish rate per producer, messages/s (latency runs).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// queue.declare argument key=value (repeatable; integers are sent as longs).
    #[arg(long = "queue-args", value_parser = parse_kv)]
    pub queue_args: Vec<(String, String)>,
    /// basic.consume argument key=value, e.g. x-stream-offset=first (repeatable).
    #[arg(long = "consumer-args", value_parser = parse_kv)]
    pub consumer_args: Vec<(String, String)>,
    /// Declare stream queues (x-queue-type=stream, durable; manual ack, prefetch 1000 by default).
    #[arg(long)]
    pub stream: bool,
    /// Publish --count per producer with no consumer; the queues are kept.
    #[arg(long, conflicts_with = "consume_only")]
    pub publish_only: bool,
    /// Only consume (drain what a --publish-only run left; --count: messages per producer expected).
    #[arg(long)]
    pub consume_only: bool,
    /// Print one JSON line of results.
    #[arg(long)]
    pub json: bool,
    /// Give up waiting for the last messages after this many idle seconds.
    #[arg(long, default_value_t = 3.0)]
    pub drain_timeout: f64,
    /// Publishes per write at full speed.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub batch: u64,
    /// Keep the queues at the end (they are deleted unless --publish-only).
    #[arg(long)]
    pub keep: bool,
    /// Broker process id: report its CPU time per message and peak RSS (from /proc).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    #[arg(long, value_enum, default_value = "native")]
    pub client: ClientKind,
    /// Measure the client alone: publish into (and consume from) a local TCP sink, no broker.
    #[arg(long)]
    pub sink_test: bool,
}

impl Args {
    /// How long to publish: --duration, else 10 s unless --count is given.
    pub fn run_duration(&self) -> Option<Duration> {
        match (self.duration, self.count) {
            (Some(d), _) => Some(Duration::from_secs_f64(d.max(0.0))),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }

    fn check(&mut self) -> Result<(), String> {
        if self.stream {
            if self.autoack {
                return Err("stream queues need manual ack (drop --autoack)".into());
            }
            if self.prefetch == 0 {
                self.prefetch = 1000;
            }
        }
        if self.exchange.as_deref() == Some("") && self.queues > 1 {
            return Err("the default exchange routes to one queue: use --queues 1".into());
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err("--rate must be positive".into());
        }
        let secs = 0.0..1e9;
        if self.duration.is_some_and(|d| !secs.contains(&d)) || !secs.contains(&self.drain_timeout)
        {
            return Err("durations must be non-negative seconds".into());
        }
        if self.confirm == Some(0) {
            return Err("--confirm needs a window of at least 1".into());
        }
        if self.producers == 0 && !self.consume_only {
            return Err("--producers must be at least 1".into());
        }
        Ok(())
    }
}

/// CPU time and memory of a process from /proc (Linux; USER_HZ = 100).
pub mod proc_stat {
    fn ticks(path: &str) -> Option<f64> {
        let s = std::fs::read_to_string(path).ok()?;
        let rest = &s[s.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After "(comm)": state is field 3, utime 14, stime 15.
        let (u, st): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        Some((u + st) as f64 / 100.0)
    }
    pub fn cpu_seconds(pid: u32) -> Option<f64> {
        ticks(&format!("/proc/{pid}/stat"))
    }
    pub fn self_cpu_seconds() -> Option<f64> {
        ticks("/proc/self/stat")
    }
    /// VmHWM: the process's peak resident set, in KiB.
    pub fn peak_rss_kb(pid: u32) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

fn main() -> ExitCode {
    now_ns();
    let mut args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("warren-perf: {e}");
        return ExitCode::from(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren-perf: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res: client::Result<u8> = rt.block_on(async {
        if args.sink_test {
            println!("{}", sink::run(&args).await?);
            return Ok(0);
        }
        let o = match args.client {
            ClientKind::Native => scenario::run(&args).await?,
            ClientKind::Lapin => lapin(&args).await?,
        };
        Ok(report::print(&args, &o))
    });
    match res {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("warren-perf: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "perf-lapin")]
async fn lapin(args: &Args) -> client::Result<Outcome> {
    lapin_mode::run(args).await
}

#[cfg(not(feature = "perf-lapin"))]
async fn lapin(_: &Args) -> client::Result<Outcome> {
    client::proto("--client lapin needs a build with `--features perf-lapin`")
}
