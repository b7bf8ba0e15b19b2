//! RabbitMQ's topic permissions: for a user, a vhost and one exchange, a `write` pattern that the
//! routing key of a message published to that exchange must match and a `read` pattern that the
//! binding key of a binding from it (queue.bind/unbind, exchange.bind/unbind with it as the
//! source) must match. They are checked only for topic exchanges, and only on top of the
//! resource permissions (`super::permissions`), which are checked first. An exchange without a
//! topic permission is not restricted, so a user without any costs nothing.
//!
//! As in RabbitMQ's internal backend, `{username}` and `{vhost}` in a pattern are replaced by
//! the connection's user and vhost before it is compiled (the values are inserted as they are,
//! not escaped). `{client_id}` is an MQTT variable: over AMQP 0-9-1 RabbitMQ leaves it in place,
//! where PCRE reads it as literal text, and so does warren. The empty pattern is run as `^$`,
//! as RabbitMQ does: it refuses every routing key but the empty one (measured on 3.10).

use super::access::AdminError;
use super::permissions::{Pattern, Perm};
use crate::broker::Broker;
use crate::config::TopicPermissionConfig;
use crate::error::AmqpError;
use crate::store::definitions::{Loaded, TopicPermissionDef};
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};

/// A user's write and read patterns on one exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPermission {
    pub write: String,
    pub read: String,
}

/// (user, vhost, exchange) → patterns.
type Key = (String, String, String);

/// Every topic permission; changes bump `Access`'s generation like resource permissions do.
#[derive(Debug, Default)]
pub struct TopicPermissions {
    map: RwLock<BTreeMap<Key, TopicPermission>>,
}

impl TopicPermissions {
    /// The config file's, then what the store says (stored entries and tombstones win).
    pub fn bootstrap(configured: &[TopicPermissionConfig], loaded: &Loaded) -> TopicPermissions {
        let mut m = BTreeMap::new();
        for c in configured {
            m.insert(
                (c.user.clone(), c.vhost.clone(), c.exchange.clone()),
                TopicPermission {
                    write: c.write.clone(),
                    read: c.read.clone(),
                },
            );
        }
        for d in &loaded.topic_permissions {
            let k = (d.user.clone(), d.vhost.clone(), d.exchange.clone());
            if d.deleted {
                m.remove(&k);
            } else {
                m.insert(
                    k,
                    TopicPermission {
                        write: d.write.clone(),
                        read: d.read.clone(),
                    },
                );
            }
        }
        TopicPermissions {
            map: RwLock::new(m),
        }
    }

    /// A user's topic permissions in a vhost, by exchange.
    pub fn of(&self, user: &str, vhost: &str) -> Vec<(String, TopicPermission)> {
        self.map
            .read()
            .iter()
            .filter(|((u, v, _), _)| u == user && v == vhost)
            .map(|((_, _, x), p)| (x.clone(), p.clone()))
            .collect()
    }

    /// Every topic permission as (user, vhost, exchange, patterns).
    pub fn list(&self) -> Vec<(String, String, String, TopicPermission)> {
        self.map
            .read()
            .iter()
            .map(|((u, v, x), p)| (u.clone(), v.clone(), x.clone(), p.clone()))
            .collect()
    }

    /// Forget a vhost's (it was deleted).
    pub fn remove_vhost(&self, vhost: &str) {
        self.map.write().retain(|(_, v, _), _| v != vhost);
    }
}

/// A pattern as RabbitMQ applies it to this connection: variables expanded, then compiled.
/// RabbitMQ runs `""` as `^$`: unlike a resource name, a routing key may be empty, and the
/// empty key matches it.
fn compile(pattern: &str, user: &str, vhost: &str) -> Pattern {
    let expanded = pattern
        .replace("{username}", user)
        .replace("{vhost}", vhost);
    let p = pcre_braces(&expanded);
    if p.is_empty() || p == "^$" {
        return match regex::Regex::new("^$") {
            Ok(r) => Pattern::Re(r),
            Err(_) => Pattern::Nothing,
        };
    }
    Pattern::compile(&p)
}

/// Can this pattern be enforced? (Checked with placeholder values for the variables.)
pub fn validate(p: &str) -> Result<(), String> {
    super::permissions::validate(&pcre_braces(
        &p.replace("{username}", "u").replace("{vhost}", "v"),
    ))
}

/// PCRE reads a `{` that does not start a `{n}`, `{n,}` or `{n,m}` quantifier (such as an
/// unexpanded `{client_id}`) as a literal brace; the regex crate refuses it. Escape those.
fn pcre_braces(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len() + 4);
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                // Copy the escape and the character it escapes (UTF-8 safe: take a char).
                out.push('\\');
                i += 1;
                if let Some(ch) = p[i..].chars().next() {
                    out.push(ch);
                    i += ch.len_utf8();
                }
                continue;
            }
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'{' if !in_class => {
                if let Some(len) = quantifier_len(&b[i..]) {
                    out.push_str(&p[i..i + len]);
                    i += len;
                    continue;
                }
                out.push_str("\\{");
                i += 1;
                continue;
            }
            b'}' if !in_class => {
                out.push_str("\\}");
                i += 1;
                continue;
            }
            _ => {}
        }
        let ch = p[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// Length of a `{n}`, `{n,}` or `{n,m}` quantifier at the start of `b`.
fn quantifier_len(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    if !digits(&mut i) {
        return None;
    }
    if b.get(i) == Some(&b',') {
        i += 1;
        digits(&mut i);
    }
    (b.get(i) == Some(&b'}')).then_some(i + 1)
}

/// One connection's topic permissions, compiled: only exists when the user has some in the
/// connection's vhost.
#[derive(Debug)]
pub struct CompiledTopics {
    by_exchange: HashMap<String, (Pattern, Pattern)>,
}

impl CompiledTopics {
    pub fn new(perms: Vec<(String, TopicPermission)>, user: &str, vhost: &str) -> Option<Self> {
        if perms.is_empty() {
            return None;
        }
        let by_exchange = perms
            .into_iter()
            .map(|(x, p)| {
                let w = compile(&p.write, user, vhost);
                let r = compile(&p.read, user, vhost);
                (x, (w, r))
            })
            .collect();
        Some(CompiledTopics { by_exchange })
    }

    /// Does this exchange have a topic permission (so its keys are checked)?
    pub fn covers(&self, exchange: &str) -> bool {
        self.by_exchange.contains_key(exchange)
    }

    /// May `key` be used with `perm` on `exchange`? Exchanges without a topic permission
    /// allow everything.
    pub fn allows(&self, perm: Perm, exchange: &str, key: &str) -> bool {
        match self.by_exchange.get(exchange) {
            None => true,
            Some((w, r)) => match perm {
                Perm::Write => w.matches(key),
                Perm::Read => r.matches(key),
                Perm::Configure => true,
            },
        }
    }
}

/// RabbitMQ's refusal: "write access to topic 'k' in exchange 'x' in vhost 'v' refused for
/// user 'u'".
pub fn refusal(perm: Perm, exchange: &str, key: &str, vhost: &str, user: &str) -> AmqpError {
    let p = match perm {
        Perm::Write => "write",
        Perm::Read => "read",
        Perm::Configure => "configure",
    };
    AmqpError::access_refused(format!(
        "{p} access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'"
    ))
}

fn store_err(e: impl std::fmt::Display) -> AdminError {
    AdminError::Store(format!("storage failure: {e}"))
}

impl Broker {
    /// Set a user's topic permission on an exchange of a vhost (both must exist; the exchange
    /// need not); true if there was none.
    pub fn set_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        p: TopicPermission,
    ) -> Result<bool, AdminError> {
        if self.users.get(user).is_none() || self.vhost(vhost).is_none() {
            // RabbitMQ's reason, word for word.
            return Err(AdminError::BadRequest("vhost_or_user_not_found".into()));
        }
        for pattern in [&p.write, &p.read] {
            validate(pattern).map_err(AdminError::BadRequest)?;
        }
        self.persist
            .defs
            .put_topic_permission(&TopicPermissionDef {
                user: user.to_string(),
                vhost: vhost.to_string(),
                exchange: exchange.to_string(),
                write: p.write.clone(),
                read: p.read.clone(),
                deleted: false,
            })
            .map_err(store_err)?;
        let created = self
            .access
            .topics
            .map
            .write()
            .insert(
                (user.to_string(), vhost.to_string(), exchange.to_string()),
                p,
            )
            .is_none();
        self.access.bump();
        Ok(created)
    }

    /// Remove a user's topic permissions in a vhost: on one exchange, or all of them.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), AdminError> {
        let gone: Vec<String> = self
            .access
            .topics
            .of(user, vhost)
            .into_iter()
            .map(|(x, _)| x)
            .filter(|x| exchange.map_or(true, |e| e == x))
            .collect();
        if gone.is_empty() {
            return Err(AdminError::NotFound(format!(
                "no topic permissions for user '{user}' in vhost '{vhost}'"
            )));
        }
        for x in gone {
            self.persist
                .defs
                .put_topic_permission(&TopicPermissionDef {
                    user: user.to_string(),
                    vhost: vhost.to_string(),
                    exchange: x.clone(),
                    deleted: true,
                    ..TopicPermissionDef::default()
                })
                .map_err(store_err)?;
            self.access
                .topics
                .map
                .write()
                .remove(&(user.to_string(), vhost.to_string(), x));
        }
        self.access.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_that_are_not_quantifiers_are_literal() {
        assert_eq!(pcre_braces("^{client_id}\\."), "^\\{client_id\\}\\.");
        assert_eq!(pcre_braces("a{2}b{1,}c{1,3}"), "a{2}b{1,}c{1,3}");
        assert_eq!(pcre_braces("[{}]x"), "[{}]x");
        assert_eq!(pcre_braces("\\{x"), "\\{x");
        assert!(compile("^{client_id}\\.", "u", "v").matches("{client_id}.x"));
        assert!(!compile("^{client_id}\\.", "u", "v").matches("cid.x"));
    }

    #[test]
    fn variables_expand_to_the_connection_s_user_and_vhost() {
        let p = compile("^{username}\\.{vhost}\\.", "bob", "prod");
        assert!(p.matches("bob.prod.x"));
        assert!(!p.matches("eve.prod.x"));
        assert!(validate("^{username}-{client_id}").is_ok());
        assert!(validate("(").is_err());
    }
}
