//! The configuration's sections: `[[policies]]`, `[consumers]`, `[http]`, `[alarms]`, `[store]`,
//! `[limits]`, `[[users]]`, `[[permissions]]` and `[[topic_permissions]]`, each with its
//! defaults.

use serde::Deserialize;
use std::path::PathBuf;

/// One `[[policies]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// Regular expression over queue / exchange names.
    pub pattern: String,
    #[serde(rename = "apply-to", alias = "apply_to", default)]
    pub apply_to: crate::broker::policy::ApplyTo,
    #[serde(default)]
    pub priority: i64,
    /// Settings: `message-ttl`, `max-length`, `dead-letter-exchange`, `consumer-timeout`, …
    pub definition: std::collections::BTreeMap<String, serde_json::Value>,
}

fn default_vhost() -> String {
    "/".into()
}

impl PolicyConfig {
    pub fn to_def(&self) -> crate::broker::policy::PolicyDef {
        crate::broker::policy::PolicyDef {
            vhost: self.vhost.clone(),
            name: self.name.clone(),
            pattern: self.pattern.clone(),
            apply_to: self.apply_to,
            priority: self.priority,
            definition: self.definition.clone(),
        }
    }
}

/// Consumers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Delivery acknowledgement timeout, ms (RabbitMQ's `consumer_timeout`, 30 min): a channel
    /// holding a delivery unacked longer is closed with 406 and its unacked messages requeued.
    /// 0 turns it off. `x-consumer-timeout` (queue or consumer argument) overrides it.
    pub timeout_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            timeout_ms: 30 * 60 * 1000,
        }
    }
}

/// The HTTP listener: management API, Prometheus metrics, dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Port (15672). 0 picks an ephemeral port.
    pub port: u16,
    /// Address to bind; None = the top-level `bind`.
    pub bind: Option<String>,
    /// Also serve `/metrics` on this port (RabbitMQ's Prometheus port is 15692); None = only on
    /// `port`.
    pub prometheus_port: Option<u16>,
    /// How often rates are sampled, milliseconds (RabbitMQ's `collect_statistics_interval`).
    pub collect_statistics_interval: u64,
    /// Serve the API over HTTPS, with `cert_file`/`key_file` below or else `[tls]`'s.
    pub tls: bool,
    /// Certificate chain for HTTPS, PEM (setting it turns HTTPS on).
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
}

impl HttpConfig {
    /// Is the API served over HTTPS?
    pub fn tls_enabled(&self) -> bool {
        self.tls || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// The HTTPS acceptor: `[http]`'s certificate and key, else `[tls]`'s.
    pub fn acceptor(
        &self,
        amqp_tls: &crate::tls::TlsConfig,
    ) -> Result<tokio_rustls::TlsAcceptor, String> {
        let (section, cert, key) = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => ("http", c, k),
            (None, None) => match (&amqp_tls.cert_file, &amqp_tls.key_file) {
                (Some(c), Some(k)) => ("tls", c, k),
                _ => {
                    return Err("http.tls needs http.cert_file and http.key_file, or tls.cert_file and tls.key_file".into())
                }
            },
            _ => return Err("http.cert_file and http.key_file must both be set".into()),
        };
        crate::tls::https_acceptor(section, cert, key)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            port: 15672,
            bind: None,
            prometheus_port: None,
            collect_statistics_interval: 5000,
            tls: false,
            cert_file: None,
            key_file: None,
        }
    }
}

/// A size in the config: bytes (an integer or a string such as "512MiB", "2GB"), or a fraction
/// of the machine's RAM (a float such as 0.4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SizeSetting {
    Bytes(u64),
    Fraction(f64),
    Text(String),
}

impl SizeSetting {
    /// The size in bytes, fractions taken of `total_ram`.
    pub fn resolve(&self, total_ram: u64) -> Result<u64, String> {
        match self {
            SizeSetting::Bytes(b) => Ok(*b),
            SizeSetting::Fraction(f) if f.is_finite() && *f > 0.0 && *f <= 1.0 => {
                Ok((total_ram as f64 * f) as u64)
            }
            SizeSetting::Fraction(f) => Err(format!(
                "{f} is not a fraction of RAM in (0, 1]; give bytes as an integer or a string like \"2GB\""
            )),
            SizeSetting::Text(t) => parse_size(t),
        }
    }
}

/// "1024", "512KB", "512KiB", "2MB", "2MiB", "1GB", "1GiB", "1TB" (RabbitMQ's units: kB/MB/GB
/// are powers of 1000, KiB/MiB/GiB of 1024).
pub(super) fn parse_size(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{t:?} is not a size (e.g. 1073741824, \"512MiB\", \"2GB\")"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{t:?}: unknown unit {unit:?} (use kB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{t:?} is too large"))
}

/// Resource alarms (RabbitMQ's memory high watermark and disk free limit).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Memory (RSS) above which publishers are blocked: a fraction of RAM or bytes.
    pub memory_high_watermark: SizeSetting,
    /// Free disk space on the data dir's file system below which publishers are blocked.
    pub disk_free_limit: SizeSetting,
    /// How often memory and disk are checked, milliseconds.
    pub check_interval: u64,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            memory_high_watermark: SizeSetting::Fraction(0.4),
            disk_free_limit: SizeSetting::Bytes(50_000_000),
            check_interval: 1000,
        }
    }
}

/// The message store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Size at which a queue's log starts a new segment file, bytes. Whole segments are deleted
    /// once every message in them is acked, so smaller segments give space back sooner.
    pub segment_size: u64,
    /// Memory one queue's ready messages may use (bytes plus ~200 bytes each) before newer
    /// messages are kept only on disk and read back in order as consumers catch up.
    pub queue_memory_limit: u64,
    /// Stream queues: send a publisher confirm only once an fsync covers the message (true), or
    /// as soon as it is appended (false: faster, but a power loss can take confirmed messages).
    pub stream_fsync: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_size: 64 * 1024 * 1024,
            queue_memory_limit: 64 * 1024 * 1024,
            stream_fsync: true,
        }
    }
}

/// Negotiation limits and sizes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frame we accept and offer in connection.tune (min 4096).
    pub frame_max: u32,
    /// Highest channel number offered in connection.tune.
    pub channel_max: u16,
    /// Heartbeat interval offered in connection.tune, seconds (0 disables).
    pub heartbeat: u16,
    /// Largest message body accepted, bytes.
    pub max_message_size: u64,
    /// Seconds a client has to finish the handshake.
    pub handshake_timeout: u64,
    /// Connections at most in the handshake at once; more are closed on accept.
    pub max_handshakes: u32,
    /// Open connections at most (0 = unlimited); connection.open past it is 530.
    pub max_connections: u32,
    /// Seconds a connection may have output waiting with no write progress before it is closed
    /// (a client that stopped reading its socket); 0 = never.
    pub write_stall_timeout: u64,
    /// Unacked deliveries a manual-ack consumer without basic.qos may hold (an implicit
    /// prefetch, RabbitMQ's `default_consumer_prefetch`); 0 = unlimited.
    pub default_consumer_prefetch: u16,
}

/// One configured user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// Plain password (hashed at load, never kept) …
    #[serde(default)]
    pub password: Option<String>,
    /// … or a RabbitMQ `rabbit_password_hashing_sha256` hash (base64 of salt(4) + sha256(salt+pw)).
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Vhosts this user may open; empty means all.
    #[serde(default)]
    pub vhosts: Vec<String>,
}

/// One configured permission (RabbitMQ's `set_permissions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionConfig {
    pub user: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// One configured topic permission (RabbitMQ's `set_topic_permissions`): the routing and binding
/// keys this user may use on one topic exchange of a vhost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicPermissionConfig {
    pub user: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 16 * 1024 * 1024,
            handshake_timeout: 10,
            max_handshakes: 1000,
            max_connections: 0,
            write_stall_timeout: 60,
            default_consumer_prefetch: 2000,
        }
    }
}
