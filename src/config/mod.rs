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
    /// Topic permissions (`[[topic_permissions]]`): write / read patterns for routing and
    /// binding keys on one topic exchange.
    pub topic_permissions: Vec<TopicPermissionConfig>,
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

mod sections;
pub use sections::*;

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
            topic_permissions: Vec::new(),
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
        for p in &self.topic_permissions {
            let key = "topic_permissions";
            if users.get(&p.user).is_none() {
                return Err(ConfigError::invalid(
                    key,
                    format!("user {:?} is not a configured user", p.user),
                ));
            }
            if !self.vhosts.contains(&p.vhost) {
                return Err(ConfigError::invalid(
                    key,
                    format!("vhost {:?} is not listed in vhosts", p.vhost),
                ));
            }
            for pattern in [&p.write, &p.read] {
                crate::broker::topic_permissions::validate(pattern)
                    .map_err(|r| ConfigError::invalid(key, r))?;
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
mod tests;
