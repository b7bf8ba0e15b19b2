//! Tests of the configuration: defaults, the file, environment overrides and validation.
#![allow(clippy::field_reassign_with_default)] // tests tweak one field of a default at a time

use super::*;
use sections::parse_size;
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
    let c =
        Config::from_toml_str("[alarms]\nmemory_high_watermark = 0.5\ndisk_free_limit = \"2GB\"\n")
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
