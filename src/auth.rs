//! Users and SASL: the users from the config (passwords kept only as salted hashes), RabbitMQ's
//! `rabbit_password_hashing_sha256` scheme, and the PLAIN and AMQPLAIN response formats.
//!
//! The hash format is the one RabbitMQ puts in a definitions export (`password_hash`, with
//! `hashing_algorithm: rabbit_password_hashing_sha256`): base64 of a 4-byte random salt followed by
//! `sha256(salt ++ password)`, so users can be moved between RabbitMQ and warren unchanged.

use crate::config::{Config, ConfigError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Salt length of `rabbit_password_hashing_sha256`.
const SALT_LEN: usize = 4;
/// Decoded length of a hash: salt + SHA-256 digest.
const HASH_LEN: usize = SALT_LEN + 32;

/// The user created when the config lists none.
pub const DEFAULT_USER: &str = "guest";
/// Tag that marks an administrator (as in RabbitMQ).
pub const ADMINISTRATOR_TAG: &str = "administrator";

/// An authenticated (or configured) user. The password hash never leaves this module.
pub struct User {
    pub name: String,
    pub tags: Vec<String>,
    /// Decoded hash: salt (4 bytes) ++ sha256(salt ++ password). None: a user without a
    /// password (RabbitMQ's empty `password_hash`), whom no password authenticates.
    hash: Option<[u8; HASH_LEN]>,
    /// Vhosts the config file lets this user open; empty means every vhost.
    vhosts: Vec<String>,
    /// From the config file (its `vhosts` grant applies); users made through the HTTP API have
    /// only the permissions set for them.
    configured: bool,
}

impl User {
    /// A user from a `rabbit_password_hashing_sha256` hash (empty: no password); None if the
    /// hash is malformed.
    /// `like` is the user this one replaces: its config-file vhost grant is kept.
    pub fn from_hash(
        name: &str,
        hash_b64: &str,
        tags: Vec<String>,
        like: Option<&User>,
    ) -> Option<User> {
        Some(User {
            name: name.to_string(),
            tags,
            hash: if hash_b64.trim().is_empty() {
                None
            } else {
                Some(decode_hash(hash_b64)?)
            },
            vhosts: like.map(|u| u.vhosts.clone()).unwrap_or_default(),
            configured: like.is_some_and(|u| u.configured),
        })
    }

    /// Whether the config file lets this user open `vhost` (the vhost's existence is checked
    /// elsewhere; permissions set at run time are the broker's business).
    pub fn can_access_vhost(&self, vhost: &str) -> bool {
        self.configured && (self.vhosts.is_empty() || self.vhosts.iter().any(|v| v == vhost))
    }

    /// Whether the config file grants this user every vhost.
    pub fn grants_all_vhosts(&self) -> bool {
        self.configured && self.vhosts.is_empty()
    }

    /// Whether `password` is this user's password.
    pub fn check_password(&self, password: &[u8]) -> bool {
        self.verify(password)
    }

    /// Whether the user carries `tag` (e.g. `administrator`).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The vhosts this user is limited to; empty means all.
    pub fn vhosts(&self) -> &[String] {
        &self.vhosts
    }

    /// The stored hash in RabbitMQ's definitions format (for a definitions export); empty for
    /// a user without a password.
    pub fn password_hash(&self) -> String {
        self.hash.map(|h| B64.encode(h)).unwrap_or_default()
    }

    fn verify(&self, password: &[u8]) -> bool {
        match &self.hash {
            Some(h) => verify_decoded(h, password),
            // The same work as a wrong password, then no.
            None => {
                std::hint::black_box(verify_decoded(&[0; HASH_LEN], password));
                false
            }
        }
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .field("vhosts", &self.vhosts)
            .finish_non_exhaustive()
    }
}

/// The users, by name: those of the config file, then changed at run time through the HTTP API.
#[derive(Debug)]
pub struct Users {
    by_name: parking_lot::RwLock<HashMap<String, Arc<User>>>,
    /// Checked against when the user does not exist, so that a wrong name costs as much as a
    /// wrong password.
    decoy: [u8; HASH_LEN],
}

impl Users {
    /// Builds the users from the config, hashing plain passwords (which are not kept).
    ///
    /// With no users configured there is one: `guest`/`guest`, tag `administrator`, all vhosts.
    /// Whether `guest` may log in only from loopback is the connection's business
    /// (`Config::guest_loopback_only`).
    pub fn from_config(cfg: &Config) -> Result<Users, ConfigError> {
        let mut by_name = HashMap::new();
        if cfg.users.is_empty() {
            let guest = User {
                name: DEFAULT_USER.to_string(),
                tags: vec![ADMINISTRATOR_TAG.to_string()],
                hash: Some(new_hash(b"guest")),
                vhosts: Vec::new(),
                configured: true,
            };
            by_name.insert(guest.name.clone(), Arc::new(guest));
        }
        for u in &cfg.users {
            let err = |reason: String| ConfigError::User {
                user: u.name.clone(),
                reason,
            };
            if u.name.is_empty() {
                return Err(err("user name must not be empty".into()));
            }
            if u.name.len() > 255 {
                return Err(err("user name is longer than 255 bytes".into()));
            }
            if by_name.contains_key(&u.name) {
                return Err(err("user is listed twice".into()));
            }
            let hash = match (&u.password, &u.password_hash) {
                (Some(p), None) => new_hash(p.as_bytes()),
                (None, Some(h)) => decode_hash(h).ok_or_else(|| {
                    err(format!(
                        "password_hash is not a rabbit_password_hashing_sha256 hash \
                         (base64 of {HASH_LEN} bytes)"
                    ))
                })?,
                (Some(_), Some(_)) => {
                    return Err(err("set either password or password_hash, not both".into()))
                }
                (None, None) => return Err(err("needs a password or a password_hash".into())),
            };
            for v in &u.vhosts {
                if !cfg.vhosts.contains(v) {
                    return Err(err(format!(
                        "vhost {v:?} is not in the configured vhosts {:?}",
                        cfg.vhosts
                    )));
                }
            }
            let mut tags: Vec<String> = Vec::with_capacity(u.tags.len());
            for t in &u.tags {
                if t.is_empty() {
                    return Err(err("a tag must not be empty".into()));
                }
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            let user = User {
                name: u.name.clone(),
                tags,
                hash: Some(hash),
                vhosts: u.vhosts.clone(),
                configured: true,
            };
            by_name.insert(user.name.clone(), Arc::new(user));
        }
        Ok(Users {
            by_name: parking_lot::RwLock::new(by_name),
            decoy: new_hash(b"warren-decoy"),
        })
    }

    /// The user if `password` is right. The hash comparison is constant-time, and an unknown
    /// name does the same work as a known one.
    pub fn authenticate(&self, username: &str, password: &[u8]) -> Option<Arc<User>> {
        let user = self.get(username);
        match user {
            Some(user) => user.verify(password).then_some(user),
            None => {
                let _ = verify_decoded(&self.decoy, password);
                None
            }
        }
    }

    /// A user by name (no password check).
    pub fn get(&self, username: &str) -> Option<Arc<User>> {
        self.by_name.read().get(username).cloned()
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<Arc<User>> {
        let mut v: Vec<_> = self.by_name.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Add or replace a user.
    pub fn put(&self, user: User) -> Arc<User> {
        let u = Arc::new(user);
        self.by_name.write().insert(u.name.clone(), u.clone());
        u
    }

    /// Remove a user; the removed user if there was one.
    pub fn remove(&self, name: &str) -> Option<Arc<User>> {
        self.by_name.write().remove(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.read().is_empty()
    }
}

/// Hashes `password` with a fresh random salt, as RabbitMQ's `rabbit_password_hashing_sha256`:
/// `base64(salt ++ sha256(salt ++ password))` with a 4-byte salt.
pub fn hash_password(password: &[u8]) -> String {
    B64.encode(new_hash(password))
}

/// Whether `password` matches a `rabbit_password_hashing_sha256` hash. A malformed hash never
/// matches. The digest comparison is constant-time.
pub fn verify_password(hash_b64: &str, password: &[u8]) -> bool {
    match decode_hash(hash_b64) {
        Some(h) => verify_decoded(&h, password),
        None => false,
    }
}

fn new_hash(password: &[u8]) -> [u8; HASH_LEN] {
    let mut salt = [0u8; SALT_LEN];
    rand::thread_rng().fill_bytes(&mut salt);
    salted_hash(salt, password)
}

fn salted_hash(salt: [u8; SALT_LEN], password: &[u8]) -> [u8; HASH_LEN] {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut out = [0u8; HASH_LEN];
    out[..SALT_LEN].copy_from_slice(&salt);
    out[SALT_LEN..].copy_from_slice(&digest);
    out
}

/// Whether `hash_b64` is a well-formed `rabbit_password_hashing_sha256` hash.
pub fn is_valid_hash(hash_b64: &str) -> bool {
    decode_hash(hash_b64).is_some()
}

fn decode_hash(hash_b64: &str) -> Option<[u8; HASH_LEN]> {
    let bytes = B64.decode(hash_b64.trim()).ok()?;
    bytes.try_into().ok()
}

fn verify_decoded(stored: &[u8; HASH_LEN], password: &[u8]) -> bool {
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&stored[..SALT_LEN]);
    let candidate = salted_hash(salt, password);
    constant_time_eq(&stored[SALT_LEN..], &candidate[SALT_LEN..])
}

/// Compares two equal-length byte strings without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Parses a SASL PLAIN response, `[authzid] NUL authcid NUL passwd` (RFC 4616). The authzid is
/// ignored, as RabbitMQ does. Returns `None` when the response does not have exactly two NULs or
/// the user name is not UTF-8.
pub fn parse_plain(response: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut parts = response.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    let pass = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let user = std::str::from_utf8(user).ok()?;
    Some((user.to_string(), pass.to_vec()))
}

/// Parses an AMQPLAIN response: the body of a field table (without its 4-byte length prefix)
/// holding `LOGIN` and `PASSWORD` as long strings (`S`). Other entries are skipped. Returns
/// `None` when the table is malformed or either key is missing.
///
/// Parsed by hand rather than with amq-protocol's recursive parser: every nested value is
/// length-prefixed and skipped without recursion, so an unauthenticated peer cannot exhaust the
/// stack with a deeply nested table.
pub fn parse_amqplain(response: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut r = Reader(response);
    let mut login: Option<&[u8]> = None;
    let mut password: Option<&[u8]> = None;
    while !r.0.is_empty() {
        let key_len = r.u8()? as usize;
        let key = r.take(key_len)?;
        let kind = r.u8()?;
        if kind == b'S' {
            let len = r.u32()? as usize;
            let value = r.take(len)?;
            match key {
                b"LOGIN" => login = Some(value),
                b"PASSWORD" => password = Some(value),
                _ => {}
            }
        } else {
            if key == b"LOGIN" || key == b"PASSWORD" {
                return None;
            }
            r.skip_value(kind)?;
        }
    }
    let user = std::str::from_utf8(login?).ok()?;
    Some((user.to_string(), password?.to_vec()))
}

/// A cursor over a field-table body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Skips one value of the given type (RabbitMQ's field type letters).
    fn skip_value(&mut self, kind: u8) -> Option<()> {
        let fixed = match kind {
            b'V' => 0,
            b't' | b'b' | b'B' => 1,
            b's' | b'u' | b'U' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'l' | b'L' | b'd' | b'T' => 8,
            b'S' | b'x' | b'A' | b'F' => {
                let len = self.u32()? as usize;
                self.take(len)?;
                return Some(());
            }
            _ => return None,
        };
        self.take(fixed).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UserConfig;
    use amq_protocol::auth::{Credentials, SASLMechanism};

    fn user_cfg(name: &str, password: Option<&str>, hash: Option<&str>) -> UserConfig {
        UserConfig {
            name: name.into(),
            password: password.map(Into::into),
            password_hash: hash.map(Into::into),
            tags: vec![],
            vhosts: vec![],
        }
    }

    #[test]
    fn known_rabbitmq_hash_verifies() {
        // Salt 90 8D C6 0A, password "test12": the worked example circulated with RabbitMQ's
        // password-hashing docs; recomputed independently with Python's hashlib.
        let h = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
        assert!(verify_password(h, b"test12"));
        assert!(!verify_password(h, b"test13"));
        assert!(!verify_password(h, b""));
        assert_eq!(
            B64.encode(salted_hash([0x90, 0x8D, 0xC6, 0x0A], b"test12")),
            h
        );
        // Salt CA D5 08 9B, password "simon" (the salt of RabbitMQ's original example).
        let h2 = "ytUIm1ruBv8dbuXf8jo3yKhGfE9Xu5vXpi7ti/E17ovdt2wK";
        assert!(verify_password(h2, b"simon"));
        assert_eq!(
            B64.encode(salted_hash([0xCA, 0xD5, 0x08, 0x9B], b"simon")),
            h2
        );
    }

    #[test]
    fn hash_round_trip_and_salting() {
        let a = hash_password(b"guest");
        let b = hash_password(b"guest");
        assert!(verify_password(&a, b"guest"));
        assert!(verify_password(&b, b"guest"));
        assert!(!verify_password(&a, b"Guest"));
        // 36 bytes → 48 base64 characters, the length of RabbitMQ's exported hashes.
        assert_eq!(a.len(), 48);
        assert_eq!(B64.decode(&a).unwrap().len(), HASH_LEN);
        // Two hashes of one password differ (random salt) — with 2^-32 chance of a clash.
        assert_ne!(a, b);
        // Binary passwords work too.
        let bin = hash_password(&[0, 255, 1, 254]);
        assert!(verify_password(&bin, &[0, 255, 1, 254]));
    }

    #[test]
    fn malformed_hashes_never_match() {
        assert!(!verify_password("", b""));
        assert!(!verify_password("not base64!", b"x"));
        // Right encoding, wrong length (e.g. an MD5-era hash: 4 + 16 bytes).
        assert!(!verify_password("ytUIm8s3AnKsXQjptplKFytfVxI=", b"simon"));
    }

    #[test]
    fn default_guest_when_no_users() {
        let users = Users::from_config(&Config::default()).unwrap();
        assert_eq!(users.len(), 1);
        let g = users.authenticate("guest", b"guest").unwrap();
        assert_eq!(g.name, "guest");
        assert!(g.has_tag(ADMINISTRATOR_TAG));
        assert!(g.can_access_vhost("/"));
        assert!(g.can_access_vhost("anything"));
        assert!(users.authenticate("guest", b"wrong").is_none());
        assert!(users.authenticate("nobody", b"guest").is_none());
    }

    #[test]
    fn configured_users_replace_guest() {
        let mut cfg = Config {
            vhosts: vec!["/".into(), "prod".into()],
            ..Config::default()
        };
        let mut app = user_cfg("app", Some("s3cret"), None);
        app.vhosts = vec!["prod".into()];
        app.tags = vec!["monitoring".into(), "monitoring".into()];
        let admin = user_cfg("admin", None, Some(&hash_password(b"hunter2")));
        cfg.users = vec![app, admin];
        let users = Users::from_config(&cfg).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.authenticate("guest", b"guest").is_none());

        let app = users.authenticate("app", b"s3cret").unwrap();
        assert!(app.can_access_vhost("prod"));
        assert!(!app.can_access_vhost("/"));
        assert_eq!(app.tags, vec!["monitoring".to_string()]);
        assert!(!app.has_tag(ADMINISTRATOR_TAG));
        // The plain password was hashed, not kept.
        assert!(verify_password(&app.password_hash(), b"s3cret"));
        assert!(!format!("{app:?}").contains("s3cret"));

        let admin = users.authenticate("admin", b"hunter2").unwrap();
        assert!(admin.can_access_vhost("/"));
        assert!(users.authenticate("admin", b"hunter3").is_none());
        assert!(users.get("admin").is_some());
    }

    #[test]
    fn bad_user_configs_are_errors() {
        let cases: Vec<(UserConfig, &str)> = vec![
            (user_cfg("a", None, None), "needs a password"),
            (
                user_cfg("a", Some("x"), Some(&hash_password(b"x"))),
                "not both",
            ),
            (user_cfg("a", None, Some("bad")), "password_hash"),
            (user_cfg("", Some("x"), None), "empty"),
            (
                UserConfig {
                    vhosts: vec!["missing".into()],
                    ..user_cfg("a", Some("x"), None)
                },
                "missing",
            ),
            (
                UserConfig {
                    tags: vec!["".into()],
                    ..user_cfg("a", Some("x"), None)
                },
                "tag",
            ),
        ];
        for (u, needle) in cases {
            let cfg = Config {
                users: vec![u],
                ..Config::default()
            };
            let e = Users::from_config(&cfg).unwrap_err();
            assert!(matches!(e, ConfigError::User { .. }), "{e:?}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
        let cfg = Config {
            users: vec![
                user_cfg("a", Some("x"), None),
                user_cfg("a", Some("y"), None),
            ],
            ..Config::default()
        };
        assert!(Users::from_config(&cfg)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn plain_responses() {
        assert_eq!(
            parse_plain(b"\0guest\0guest"),
            Some(("guest".into(), b"guest".to_vec()))
        );
        assert_eq!(
            parse_plain(b"admin\0bob\0pw"),
            Some(("bob".into(), b"pw".to_vec()))
        );
        assert_eq!(parse_plain(b"\0u\0"), Some(("u".into(), vec![])));
        assert_eq!(parse_plain(b"\0guest"), None);
        assert_eq!(parse_plain(b"guest"), None);
        assert_eq!(parse_plain(b""), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
        assert_eq!(parse_plain(b"\0\xff\0pw"), None);
        // What lapin/amq-protocol sends.
        let c = Credentials::new("guest".into(), "p\u{e4}ss".into());
        let resp = c.sasl_auth_string(SASLMechanism::Plain);
        assert_eq!(
            parse_plain(resp.as_bytes()),
            Some(("guest".into(), "p\u{e4}ss".as_bytes().to_vec()))
        );
    }

    fn long_str_entry(out: &mut Vec<u8>, key: &str, kind: u8, value: &[u8]) {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(kind);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }

    #[test]
    fn amqplain_from_amq_protocol() {
        let c = Credentials::new("guest".into(), "guest".into());
        let resp = c.sasl_auth_string(SASLMechanism::AMQPlain);
        assert_eq!(
            parse_amqplain(resp.as_bytes()),
            Some(("guest".into(), b"guest".to_vec()))
        );
    }

    #[test]
    fn amqplain_by_hand() {
        // PASSWORD before LOGIN, with other entries of several types around them.
        let mut r = Vec::new();
        long_str_entry(&mut r, "PASSWORD", b'S', b"pw\0x");
        r.extend_from_slice(&[1, b'n', b'I', 0, 0, 0, 7]);
        r.extend_from_slice(&[1, b'v', b'V']);
        r.extend_from_slice(&[1, b'd', b'D', 2, 0, 0, 1, 0]);
        long_str_entry(&mut r, "nested", b'F', &[1, b'k', b't', 1]);
        long_str_entry(&mut r, "LOGIN", b'S', b"bob");
        assert_eq!(parse_amqplain(&r), Some(("bob".into(), b"pw\0x".to_vec())));

        // Missing password.
        let mut r = Vec::new();
        long_str_entry(&mut r, "LOGIN", b'S', b"bob");
        assert_eq!(parse_amqplain(&r), None);
        // Empty.
        assert_eq!(parse_amqplain(b""), None);
        // LOGIN not a long string.
        let mut r = Vec::new();
        r.extend_from_slice(&[5]);
        r.extend_from_slice(b"LOGIN");
        r.extend_from_slice(&[b'I', 0, 0, 0, 1]);
        long_str_entry(&mut r, "PASSWORD", b'S', b"pw");
        assert_eq!(parse_amqplain(&r), None);
        // Truncated value.
        let mut r = Vec::new();
        long_str_entry(&mut r, "LOGIN", b'S', b"bob");
        long_str_entry(&mut r, "PASSWORD", b'S', b"pw");
        r.pop();
        assert_eq!(parse_amqplain(&r), None);
        // Length prefix claiming more than there is.
        assert_eq!(
            parse_amqplain(&[5, b'L', b'O', b'G', b'I', b'N', b'S', 0xff, 0xff, 0xff, 0xff]),
            None
        );
        // Unknown type letter.
        assert_eq!(parse_amqplain(&[1, b'k', b'?', 0]), None);
    }

    #[test]
    fn amqplain_deeply_nested_does_not_recurse() {
        // 100k nested tables: skipped by length, no recursion.
        let depth = 100_000usize;
        let mut inner: Vec<u8> = Vec::with_capacity(depth * 7 + 32);
        for level in 0..depth {
            // Each level is one entry `n` of type F whose body holds all deeper levels (7 bytes
            // each).
            let body_len = ((depth - 1 - level) * 7) as u32;
            inner.extend_from_slice(&[1, b'n', b'F']);
            inner.extend_from_slice(&body_len.to_be_bytes());
        }
        long_str_entry(&mut inner, "LOGIN", b'S', b"a");
        long_str_entry(&mut inner, "PASSWORD", b'S', b"b");
        assert_eq!(parse_amqplain(&inner), Some(("a".into(), b"b".to_vec())));
    }
}
