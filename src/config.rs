//! Broker configuration: defaults that run out of the box, `config.toml`, `WARREN_…` environment
//! overrides and CLI flags, in that order of precedence (CLI wins).

use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The file [`Config::load`] reads when no path is given (relative to the working directory).
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// Largest message body a broker may be configured to accept (RabbitMQ's hard limit, 512 MiB).
pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * 1024 * 1024;

/// Smallest `frame_max` AMQP 0-9-1 allows (`frame-min-size`).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// Why a configuration could not be loaded or is not usable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// An explicitly named config file does not exist.
    #[error("config file {} not found", path.display())]
    NotFound { path: PathBuf },
    /// The config file exists but could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys / wrong types.
    #[error("invalid config file {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// A `WARREN_…` environment variable has a value that cannot be used.
    #[error("invalid environment variable {var}={value:?}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
    /// A setting is out of range or inconsistent with another (`key` names it as in config.toml).
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// A `[[users]]` entry is unusable.
    #[error("invalid user {user:?}: {reason}")]
    User { user: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Everything the broker reads at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the AMQP listener binds to.
    pub bind: String,
    /// AMQP port (5672). 0 picks an ephemeral port (tests).
    pub port: u16,
    /// Old spelling of `http.port`, still read from config files (moved into `http.port` by
    /// [`Config::from_toml_str`]).
    pub http_port: Option<u16>,
    /// The HTTP management API, metrics and dashboard.
    pub http: HttpConfig,
    /// Resource alarms: memory high watermark and disk free limit.
    pub alarms: AlarmsConfig,
    /// Where durable state lives.
    pub data_dir: PathBuf,
    /// tracing filter, e.g. "info" or "warren=debug".
    pub log_level: String,
    /// Name reported as `cluster_name` in connection.start.
    pub cluster_name: String,
    pub limits: Limits,
    /// Users; when empty, `guest`/`guest` with tag administrator on vhost `/`.
    pub users: Vec<UserConfig>,
    /// Virtual hosts that exist; `/` by default.
    pub vhosts: Vec<String>,
    /// Resource permissions (`[[permissions]]`): a user's configure / write / read patterns in a
    /// vhost, replacing the full access a `[[users]]` entry's `vhosts` grants there.
    pub permissions: Vec<PermissionConfig>,
    /// When true, `guest` may only log in from a loopback address (RabbitMQ's `loopback_users`).
    pub guest_loopback_only: bool,
    pub store: StoreConfig,
    pub consumer: ConsumerConfig,
    /// Policies applied at start (`[[policies]]`), as with `rabbitmqctl set_policy`; they are
    /// not written to the data dir (the file is read again at every start).
    pub policies: Vec<PolicyConfig>,
    /// AMQP over TLS on a second listener (`[tls]`).
    pub tls: crate::tls::TlsConfig,
}

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
fn parse_size(t: &str) -> Result<u64, String> {
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

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "0.0.0.0".into(),
            port: 5672,
            http_port: None,
            http: HttpConfig::default(),
            alarms: AlarmsConfig::default(),
            data_dir: PathBuf::from("./data"),
            log_level: "info".into(),
            cluster_name: "warren".into(),
            limits: Limits::default(),
            users: Vec::new(),
            vhosts: vec!["/".into()],
            permissions: Vec::new(),
            guest_loopback_only: true,
            store: StoreConfig::default(),
            consumer: ConsumerConfig::default(),
            policies: Vec::new(),
            tls: crate::tls::TlsConfig::default(),
        }
    }
}

/// The environment variables [`Config::apply_env`] reads, with the key each one overrides.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("WARREN_BIND", "bind"),
    ("WARREN_PORT", "port"),
    ("WARREN_HTTP_PORT", "http.port"),
    ("WARREN_DATA_DIR", "data_dir"),
    ("WARREN_LOG_LEVEL", "log_level"),
    ("WARREN_GUEST_LOOPBACK_ONLY", "guest_loopback_only"),
];

impl Config {
    /// Reads a TOML config file over the defaults (keys left out keep their default).
    ///
    /// With `Some(path)` the file must exist. With `None`, [`DEFAULT_CONFIG_FILE`] in the working
    /// directory is read if it exists, and the defaults are used if it does not.
    ///
    /// This does not apply the environment nor validate: see [`Config::apply_env`] and
    /// [`Config::validate`].
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml_str(&text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if explicit {
                    Err(ConfigError::NotFound { path })
                } else {
                    Ok(Config::default())
                }
            }
            Err(source) => Err(ConfigError::Io { path, source }),
        }
    }

    /// Parses a TOML document over the defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, toml::de::Error> {
        let mut c: Config = toml::from_str(text)?;
        // The old top-level key wins only when `[http] port` was left at its default.
        if let Some(p) = c.http_port.take() {
            if c.http.port == HttpConfig::default().port {
                c.http.port = p;
            }
        }
        Ok(c)
    }

    /// Overrides settings from the process environment (see [`ENV_VARS`]). Unset variables are
    /// left alone; a set variable with an unusable value is an error naming it.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_env_from(|var| std::env::var_os(var))
    }

    /// [`Config::apply_env`] with the variables looked up through `lookup` (for tests and
    /// embedders that keep their own environment).
    pub fn apply_env_from<F>(&mut self, lookup: F) -> Result<(), ConfigError>
    where
        F: Fn(&str) -> Option<std::ffi::OsString>,
    {
        let get = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(var) {
                None => Ok(None),
                Some(os) => match os.into_string() {
                    Ok(s) => Ok(Some(s)),
                    Err(os) => Err(ConfigError::Env {
                        var,
                        value: os.to_string_lossy().into_owned(),
                        reason: "not valid UTF-8".into(),
                    }),
                },
            }
        };
        let env_err = |var: &'static str, value: &str, reason: String| ConfigError::Env {
            var,
            value: value.to_string(),
            reason,
        };

        if let Some(v) = get("WARREN_BIND")? {
            check_bind(&v).map_err(|r| env_err("WARREN_BIND", &v, r))?;
            self.bind = v;
        }
        if let Some(v) = get("WARREN_PORT")? {
            self.port = parse_port(&v).map_err(|r| env_err("WARREN_PORT", &v, r))?;
        }
        if let Some(v) = get("WARREN_HTTP_PORT")? {
            self.http.port = parse_port(&v).map_err(|r| env_err("WARREN_HTTP_PORT", &v, r))?;
        }
        if let Some(v) = get("WARREN_DATA_DIR")? {
            if v.trim().is_empty() {
                return Err(env_err("WARREN_DATA_DIR", &v, "must not be empty".into()));
            }
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("WARREN_LOG_LEVEL")? {
            check_log_level(&v).map_err(|r| env_err("WARREN_LOG_LEVEL", &v, r))?;
            self.log_level = v;
        }
        if let Some(v) = get("WARREN_GUEST_LOOPBACK_ONLY")? {
            self.guest_loopback_only =
                parse_bool(&v).map_err(|r| env_err("WARREN_GUEST_LOOPBACK_ONLY", &v, r))?;
        }
        Ok(())
    }

    /// Checks every setting: ranges (`frame_max` ≥ 4096, …), the log filter, vhosts and users
    /// (exactly one of `password` / `password_hash`, well-formed hashes, known vhosts, unique
    /// names).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bind(&self.bind).map_err(|r| ConfigError::invalid("bind", r))?;
        if self.http.enabled && self.port != 0 && self.port == self.http.port {
            return Err(ConfigError::invalid(
                "http.port",
                format!("must differ from port ({})", self.port),
            ));
        }
        if let Some(b) = &self.http.bind {
            check_bind(b).map_err(|r| ConfigError::invalid("http.bind", r))?;
        }
        if self.http.collect_statistics_interval < 100 {
            return Err(ConfigError::invalid(
                "http.collect_statistics_interval",
                "must be at least 100 (milliseconds)",
            ));
        }
        if self.alarms.check_interval < 10 {
            return Err(ConfigError::invalid(
                "alarms.check_interval",
                "must be at least 10 (milliseconds)",
            ));
        }
        self.alarms
            .memory_high_watermark
            .resolve(1 << 30)
            .map_err(|r| ConfigError::invalid("alarms.memory_high_watermark", r))?;
        self.alarms
            .disk_free_limit
            .resolve(1 << 30)
            .map_err(|r| ConfigError::invalid("alarms.disk_free_limit", r))?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        check_log_level(&self.log_level).map_err(|r| ConfigError::invalid("log_level", r))?;
        if self.cluster_name.trim().is_empty() {
            return Err(ConfigError::invalid("cluster_name", "must not be empty"));
        }

        let l = &self.limits;
        if l.frame_max < FRAME_MIN_SIZE {
            return Err(ConfigError::invalid(
                "limits.frame_max",
                format!(
                    "{} is below the AMQP minimum of {FRAME_MIN_SIZE}",
                    l.frame_max
                ),
            ));
        }
        if l.channel_max == 0 {
            return Err(ConfigError::invalid(
                "limits.channel_max",
                "must be at least 1",
            ));
        }
        if l.max_message_size == 0 || l.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::invalid(
                "limits.max_message_size",
                format!(
                    "{} is outside 1..={MAX_MESSAGE_SIZE_LIMIT} bytes",
                    l.max_message_size
                ),
            ));
        }
        if l.handshake_timeout == 0 {
            return Err(ConfigError::invalid(
                "limits.handshake_timeout",
                "must be at least 1 second",
            ));
        }
        if l.max_handshakes == 0 {
            return Err(ConfigError::invalid(
                "limits.max_handshakes",
                "must be at least 1",
            ));
        }

        if self.vhosts.is_empty() {
            return Err(ConfigError::invalid(
                "vhosts",
                "at least one vhost is needed",
            ));
        }
        for (i, v) in self.vhosts.iter().enumerate() {
            if v.is_empty() {
                return Err(ConfigError::invalid(
                    "vhosts",
                    "a vhost name must not be empty",
                ));
            }
            if v.len() > 255 {
                return Err(ConfigError::invalid(
                    "vhosts",
                    format!("vhost name {v:?} is longer than 255 bytes"),
                ));
            }
            if self.vhosts[..i].contains(v) {
                return Err(ConfigError::invalid(
                    "vhosts",
                    format!("vhost {v:?} is listed twice"),
                ));
            }
        }

        for (i, p) in self.policies.iter().enumerate() {
            if !self.vhosts.contains(&p.vhost) {
                return Err(ConfigError::invalid(
                    "policies",
                    format!(
                        "policy '{}' names vhost {:?}, which is not in `vhosts`",
                        p.name, p.vhost
                    ),
                ));
            }
            if self.policies[..i]
                .iter()
                .any(|o| o.vhost == p.vhost && o.name == p.name)
            {
                return Err(ConfigError::invalid(
                    "policies",
                    format!("policy '{}' in vhost {:?} is listed twice", p.name, p.vhost),
                ));
            }
            crate::broker::policy::Policy::new(p.to_def())
                .map_err(|e| ConfigError::invalid("policies", e))?;
        }

        // Users are checked by building them, so the broker and this check can never disagree.
        let users = crate::auth::Users::from_config(self)?;
        for p in &self.permissions {
            if users.get(&p.user).is_none() {
                return Err(ConfigError::invalid(
                    "permissions",
                    format!("user {:?} is not a configured user", p.user),
                ));
            }
            if !self.vhosts.contains(&p.vhost) {
                return Err(ConfigError::invalid(
                    "permissions",
                    format!("vhost {:?} is not listed in vhosts", p.vhost),
                ));
            }
            for pattern in [&p.configure, &p.write, &p.read] {
                crate::broker::permissions::validate(pattern)
                    .map_err(|r| ConfigError::invalid("permissions", r))?;
            }
        }
        Ok(())
    }

    /// A config for tests: loopback, ephemeral ports, the given data dir.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            bind: "127.0.0.1".into(),
            port: 0,
            http: HttpConfig {
                port: 0,
                collect_statistics_interval: 1000,
                ..HttpConfig::default()
            },
            // Tests must not be blocked by the machine they run on.
            alarms: AlarmsConfig {
                memory_high_watermark: SizeSetting::Bytes(u64::MAX),
                disk_free_limit: SizeSetting::Bytes(0),
                ..AlarmsConfig::default()
            },
            data_dir: data_dir.into(),
            log_level: "warn".into(),
            ..Config::default()
        }
    }
}

/// `bind` must be an IP address or a host name.
fn check_bind(v: &str) -> Result<(), String> {
    if v.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let host_ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if host_ok {
        Ok(())
    } else {
        Err("expected an IP address (e.g. 0.0.0.0, 127.0.0.1, ::) or a host name".into())
    }
}

fn parse_port(v: &str) -> Result<u16, String> {
    v.trim()
        .parse::<u16>()
        .map_err(|_| "expected a port number 0-65535 (0 picks a free port)".into())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// A log level is a `tracing` filter: a level (`info`), or comma-separated directives such as
/// `info,warren::connection=debug`. A bare word must be a level name, so that a typo like
/// `verbose` is an error rather than a filter for a module called `verbose`.
pub fn check_log_level(v: &str) -> Result<(), String> {
    let v = v.trim();
    if v.is_empty() {
        return Err("must not be empty (try info)".into());
    }
    for directive in v.split(',') {
        let d = directive.trim();
        if d.is_empty() {
            return Err("empty directive between commas".into());
        }
        let bare = !d.contains(['=', '[', ':']);
        if bare && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unknown level {d:?}; expected one of {} or target=level directives",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(v)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)] // tests tweak one field of a default at a time
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.port, 5672);
        assert_eq!(c.http.port, 15672);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.limits.frame_max, 131_072);
        assert_eq!(c.limits.channel_max, 2047);
        assert_eq!(c.limits.heartbeat, 60);
        assert_eq!(c.limits.max_message_size, 16 * 1024 * 1024);
        assert_eq!(c.vhosts, vec!["/".to_string()]);
        assert!(c.guest_loopback_only);
        assert_eq!(c.consumer.timeout_ms, 1_800_000);
        Config::for_tests("/tmp/x").validate().unwrap();
    }

    #[test]
    fn repo_config_toml_parses_validates_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let c = Config::load(Some(&path)).unwrap();
        c.validate().unwrap();
        let d = Config::default();
        assert_eq!(c.bind, d.bind);
        assert_eq!(c.port, d.port);
        assert_eq!(c.http.port, d.http.port);
        assert_eq!(c.http.bind, d.http.bind);
        assert_eq!(
            c.http.collect_statistics_interval,
            d.http.collect_statistics_interval
        );
        assert_eq!(
            c.alarms.memory_high_watermark,
            d.alarms.memory_high_watermark
        );
        assert_eq!(c.alarms.disk_free_limit, d.alarms.disk_free_limit);
        assert_eq!(c.alarms.check_interval, d.alarms.check_interval);
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.log_level, d.log_level);
        assert_eq!(c.cluster_name, d.cluster_name);
        assert_eq!(c.limits.frame_max, d.limits.frame_max);
        assert_eq!(c.limits.channel_max, d.limits.channel_max);
        assert_eq!(c.limits.heartbeat, d.limits.heartbeat);
        assert_eq!(c.limits.max_message_size, d.limits.max_message_size);
        assert_eq!(c.limits.handshake_timeout, d.limits.handshake_timeout);
        assert_eq!(c.limits.max_handshakes, d.limits.max_handshakes);
        assert_eq!(c.limits.max_connections, d.limits.max_connections);
        assert_eq!(c.limits.write_stall_timeout, d.limits.write_stall_timeout);
        assert_eq!(
            c.limits.default_consumer_prefetch,
            d.limits.default_consumer_prefetch
        );
        assert_eq!(c.vhosts, d.vhosts);
        assert_eq!(c.guest_loopback_only, d.guest_loopback_only);
        assert_eq!(c.consumer.timeout_ms, d.consumer.timeout_ms);
        let users = crate::auth::Users::from_config(&c).unwrap();
        let guest = users
            .authenticate("guest", b"guest")
            .expect("guest/guest logs in");
        assert!(guest.tags.iter().any(|t| t == "administrator"));
        assert!(guest.can_access_vhost("/"));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_toml_str("port = 5673\n[limits]\nframe_max = 8192\n").unwrap();
        assert_eq!(c.port, 5673);
        assert_eq!(c.limits.frame_max, 8192);
        assert_eq!(c.limits.channel_max, 2047);
        assert_eq!(c.http.port, 15672);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_rejected() {
        assert!(Config::from_toml_str("prot = 1").is_err());
        assert!(Config::from_toml_str("port = \"x\"").is_err());
        assert!(Config::from_toml_str("port = 70000").is_err());
        assert!(Config::from_toml_str("[limits]\nframemax = 1").is_err());
        assert!(Config::from_toml_str("[[users]]\nname = \"a\"\npasswd = \"b\"").is_err());
    }

    #[test]
    fn load_missing_default_is_defaults_but_missing_explicit_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        match Config::load(Some(&missing)) {
            Err(ConfigError::NotFound { path }) => assert_eq!(path, missing),
            other => panic!("expected NotFound, got {other:?}"),
        }
        // `None` reads ./config.toml; whether or not it exists, it must load.
        Config::load(None).unwrap();
    }

    #[test]
    fn load_reports_parse_errors_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "port = [").unwrap();
        let e = Config::load(Some(&p)).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
        assert!(e.to_string().contains("bad.toml"), "{e}");

        std::fs::write(&p, "bind = \"127.0.0.1\"\nport = 0\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.bind, "127.0.0.1");
        assert_eq!(c.port, 0);
    }

    #[test]
    fn env_overrides_file_values() {
        let mut c = Config::default();
        c.apply_env_from(env(&[
            ("WARREN_BIND", "127.0.0.1"),
            ("WARREN_PORT", "5999"),
            ("WARREN_HTTP_PORT", "0"),
            ("WARREN_DATA_DIR", "/var/lib/warren"),
            ("WARREN_LOG_LEVEL", "debug,warren::connection=trace"),
            ("WARREN_GUEST_LOOPBACK_ONLY", "false"),
        ]))
        .unwrap();
        assert_eq!(c.bind, "127.0.0.1");
        assert_eq!(c.port, 5999);
        assert_eq!(c.http.port, 0);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/warren"));
        assert_eq!(c.log_level, "debug,warren::connection=trace");
        assert!(!c.guest_loopback_only);
        c.validate().unwrap();
    }

    #[test]
    fn unset_env_changes_nothing() {
        let mut c = Config::default();
        c.apply_env_from(env(&[])).unwrap();
        assert_eq!(c.port, 5672);
        assert_eq!(c.bind, "0.0.0.0");
    }

    #[test]
    fn bad_env_values_are_errors_naming_the_variable() {
        for (var, val) in [
            ("WARREN_PORT", "abc"),
            ("WARREN_PORT", "65536"),
            ("WARREN_PORT", ""),
            ("WARREN_HTTP_PORT", "-1"),
            ("WARREN_BIND", "not a host"),
            ("WARREN_BIND", ""),
            ("WARREN_DATA_DIR", ""),
            ("WARREN_LOG_LEVEL", "verbose"),
            ("WARREN_LOG_LEVEL", "warren=loud"),
            ("WARREN_LOG_LEVEL", ""),
            ("WARREN_GUEST_LOOPBACK_ONLY", "maybe"),
        ] {
            let mut c = Config::default();
            let e = c.apply_env_from(env(&[(var, val)])).unwrap_err();
            match &e {
                ConfigError::Env { var: v, value, .. } => {
                    assert_eq!(*v, var);
                    assert_eq!(value, val);
                }
                other => panic!("{var}={val:?}: expected Env error, got {other:?}"),
            }
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn log_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "trace",
            "warren=debug",
            "info,warren::broker=trace",
            " debug ",
        ] {
            check_log_level(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "loud", "info,,debug", "info,verbose", "warren=shout"] {
            assert!(check_log_level(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bind_values() {
        for ok in [
            "0.0.0.0",
            "127.0.0.1",
            "::",
            "::1",
            "localhost",
            "broker-1.example",
        ] {
            check_bind(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "a b", "-x", "x..y", "1.2.3.4:5672"] {
            assert!(check_bind(bad).is_err(), "{bad} accepted");
        }
    }

    fn invalid_key(c: &Config) -> String {
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn validate_rejects_out_of_range_limits() {
        let mut c = Config::default();
        c.limits.frame_max = 4095;
        assert_eq!(invalid_key(&c), "limits.frame_max");
        c.limits.frame_max = 4096;
        c.validate().unwrap();

        let mut c = Config::default();
        c.limits.channel_max = 0;
        assert_eq!(invalid_key(&c), "limits.channel_max");

        let mut c = Config::default();
        c.limits.max_message_size = 0;
        assert_eq!(invalid_key(&c), "limits.max_message_size");
        c.limits.max_message_size = MAX_MESSAGE_SIZE_LIMIT + 1;
        assert_eq!(invalid_key(&c), "limits.max_message_size");
        c.limits.max_message_size = MAX_MESSAGE_SIZE_LIMIT;
        c.validate().unwrap();

        let mut c = Config::default();
        c.limits.handshake_timeout = 0;
        assert_eq!(invalid_key(&c), "limits.handshake_timeout");

        let mut c = Config::default();
        c.limits.max_handshakes = 0;
        assert_eq!(invalid_key(&c), "limits.max_handshakes");

        // 0 = unlimited / never / no implicit prefetch: allowed.
        let mut c = Config::default();
        c.limits.max_connections = 0;
        c.limits.write_stall_timeout = 0;
        c.limits.default_consumer_prefetch = 0;
        c.validate().unwrap();

        // heartbeat 0 disables heartbeats: allowed.
        let mut c = Config::default();
        c.limits.heartbeat = 0;
        c.validate().unwrap();
    }

    #[test]
    fn validate_rejects_bad_general_settings() {
        let mut c = Config::default();
        c.http.port = c.port;
        assert_eq!(invalid_key(&c), "http.port");
        c.port = 0;
        c.http.port = 0;
        c.validate().unwrap();

        let mut c = Config::default();
        c.bind = "no way".into();
        assert_eq!(invalid_key(&c), "bind");

        let mut c = Config::default();
        c.log_level = "chatty".into();
        assert_eq!(invalid_key(&c), "log_level");

        let mut c = Config::default();
        c.data_dir = PathBuf::new();
        assert_eq!(invalid_key(&c), "data_dir");

        let mut c = Config::default();
        c.cluster_name = " ".into();
        assert_eq!(invalid_key(&c), "cluster_name");
    }

    #[test]
    fn http_section_and_old_http_port_key() {
        let c = Config::from_toml_str("[http]\nport = 8080\nbind = \"127.0.0.1\"\n").unwrap();
        assert_eq!(c.http.port, 8080);
        assert_eq!(c.http.bind.as_deref(), Some("127.0.0.1"));
        let c = Config::from_toml_str("http_port = 9090\n").unwrap();
        assert_eq!(c.http.port, 9090);
        assert!(Config::from_toml_str("[http]\nprot = 1\n").is_err());
        let mut c = Config::default();
        c.http.bind = Some("no way".into());
        assert_eq!(invalid_key(&c), "http.bind");
    }

    #[test]
    fn alarm_sizes() {
        let c = Config::from_toml_str(
            "[alarms]\nmemory_high_watermark = 0.5\ndisk_free_limit = \"2GB\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.alarms.memory_high_watermark.resolve(1000), Ok(500));
        assert_eq!(c.alarms.disk_free_limit.resolve(0), Ok(2_000_000_000));
        let c = Config::from_toml_str("[alarms]\nmemory_high_watermark = 1\n").unwrap();
        assert_eq!(c.alarms.memory_high_watermark.resolve(1000), Ok(1));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        for bad in [
            "memory_high_watermark = 1.5",
            "memory_high_watermark = \"lots\"",
            "disk_free_limit = -1.0",
        ] {
            let c = Config::from_toml_str(&format!("[alarms]\n{bad}\n")).unwrap();
            assert!(c.validate().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn validate_rejects_bad_vhosts() {
        let mut c = Config::default();
        c.vhosts.clear();
        assert_eq!(invalid_key(&c), "vhosts");
        c.vhosts = vec!["/".into(), "".into()];
        assert_eq!(invalid_key(&c), "vhosts");
        c.vhosts = vec!["/".into(), "/".into()];
        assert_eq!(invalid_key(&c), "vhosts");
        c.vhosts = vec!["/".into(), "x".repeat(256)];
        assert_eq!(invalid_key(&c), "vhosts");
        c.vhosts = vec!["/".into(), "staging".into()];
        c.validate().unwrap();
    }

    #[test]
    fn policies_are_read_and_checked() {
        let c = Config::from_toml_str(
            "[[policies]]\nname = \"ttl\"\npattern = \"^jobs\\\\.\"\napply-to = \"queues\"\npriority = 3\n\
             [policies.definition]\nmessage-ttl = 60000\ndead-letter-exchange = \"dlx\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.policies.len(), 1);
        let d = c.policies[0].to_def();
        assert_eq!(d.vhost, "/");
        assert_eq!(d.pattern, "^jobs\\.");
        assert_eq!(d.priority, 3);
        assert_eq!(d.definition["message-ttl"], serde_json::json!(60000));

        let bad = Config::from_toml_str(
            "[[policies]]\nname = \"p\"\npattern = \".*\"\n[policies.definition]\nmax-priority = 5\n",
        )
        .unwrap();
        assert_eq!(invalid_key(&bad), "policies");
        let bad = Config::from_toml_str(
            "[[policies]]\nname = \"p\"\nvhost = \"nope\"\npattern = \".*\"\n[policies.definition]\nexpires = 5\n",
        )
        .unwrap();
        assert_eq!(invalid_key(&bad), "policies");
        assert!(Config::from_toml_str(
            "[[policies]]\nname = \"p\"\npattern = \".*\"\ncolour = 1\n[policies.definition]\nexpires = 5\n"
        )
        .is_err());
    }

    #[test]
    fn validate_checks_users() {
        let c = Config::from_toml_str(
            "[[users]]\nname = \"app\"\npassword = \"s3cret\"\nvhosts = [\"nope\"]\n",
        )
        .unwrap();
        assert!(matches!(c.validate(), Err(ConfigError::User { .. })));

        let c = Config::from_toml_str("[[users]]\nname = \"app\"\n").unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("app"), "{e}");
    }

    #[test]
    fn validate_checks_permissions() {
        let perm = |user: &str, vhost: &str, configure: &str| {
            format!(
                "[[permissions]]\nuser = \"{user}\"\nvhost = \"{vhost}\"\nconfigure = \"{configure}\"\nwrite = \"\"\nread = \".*\"\n"
            )
        };
        let ok = Config::from_toml_str(&perm("guest", "/", "^a")).unwrap();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.permissions[0].configure, "^a");
        for bad in [
            perm("nobody", "/", ".*"),
            perm("guest", "nowhere", ".*"),
            perm("guest", "/", "("),
        ] {
            let c = Config::from_toml_str(&bad).unwrap();
            assert_eq!(invalid_key(&c), "permissions", "{bad}");
        }
    }
}
