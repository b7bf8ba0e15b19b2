//! RabbitMQ's resource permissions: a user's configure / write / read patterns in a vhost,
//! compiled once per connection and checked where RabbitMQ checks them (`rabbit_channel`):
//!
//! | operation | configure | write | read |
//! |---|---|---|---|
//! | exchange.declare (not passive) | exchange | | |
//! | exchange.declare creating one with `alternate-exchange` | exchange | the AE | exchange |
//! | exchange.delete | exchange | | |
//! | queue.declare (not passive; server-named: the generated name) | queue | | |
//! | queue.declare creating one with `x-dead-letter-exchange` | queue | the DLX | queue |
//! | queue.delete | queue | | |
//! | queue.bind / unbind | | queue | exchange |
//! | exchange.bind / unbind | | destination | source |
//! | basic.publish | | exchange | |
//! | basic.get, basic.consume, queue.purge | | | queue |
//!
//! Passive declares need no permission. Patterns are matched as Erlang's `re:run` does: an
//! unanchored search (anchoring with `^`/`$` is the pattern's business), the empty pattern means
//! `^$`, and the default exchange is checked under the name `amq.default`.
//!
//! Checks cost one relaxed load on the steady path: a connection's [`Authz`] keeps the compiled
//! patterns with the generation of [`super::access::Access`] they were compiled at, and
//! recompiles only when an administrator changed some permission since.

use crate::broker::Broker;
use crate::error::{AmqpError, AmqpResult};
use regex::Regex;
use std::sync::Arc;

/// What an operation does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    fn as_str(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

/// The kind of resource a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Queue,
    Exchange,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Exchange => "exchange",
        }
    }
}

/// One compiled pattern. The common patterns never reach the regex engine.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Matches every name (`.*` and friends: any pattern that matches the empty string
    /// unanchored matches everything).
    Any,
    /// Matches no resource name (`""`, i.e. `^$`, since names are never empty).
    Nothing,
    Re(Regex),
}

impl Pattern {
    /// Compile as RabbitMQ would use it; a pattern the regex engine refuses matches nothing
    /// (the API refuses to store such patterns, see [`validate`]).
    pub fn compile(p: &str) -> Pattern {
        match p {
            "" | "^$" => Pattern::Nothing,
            ".*" | "^.*" | ".*$" | "^.*$" => Pattern::Any,
            _ => match Regex::new(p) {
                Ok(r) => Pattern::Re(r),
                Err(e) => {
                    tracing::warn!(pattern = p, "permission pattern does not compile: {e}");
                    Pattern::Nothing
                }
            },
        }
    }

    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Nothing => false,
            Pattern::Re(r) => r.is_match(name),
        }
    }
}

/// Is `p` a pattern warren can enforce? (RabbitMQ refuses patterns `re:compile` rejects.)
pub fn validate(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    Regex::new(p)
        .map(|_| ())
        .map_err(|e| format!("invalid regular expression '{p}': {e}"))
}

/// A string-valued argument (`alternate-exchange`, `x-dead-letter-exchange`).
pub fn string_arg(args: &amq_protocol::types::FieldTable, key: &str) -> Option<String> {
    use amq_protocol::types::AMQPValue;
    match args.inner().get(key) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// A user's three compiled patterns in one vhost.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl Compiled {
    pub fn new(p: &super::access::Permission) -> Compiled {
        Compiled {
            configure: Pattern::compile(&p.configure),
            write: Pattern::compile(&p.write),
            read: Pattern::compile(&p.read),
        }
    }

    pub fn allows(&self, perm: Perm, name: &str) -> bool {
        match perm {
            Perm::Configure => self.configure.matches(name),
            Perm::Write => self.write.matches(name),
            Perm::Read => self.read.matches(name),
        }
    }
}

/// Not yet compiled: the first check compiles.
const UNLOADED: u64 = u64::MAX;

/// One connection's view of its user's permissions in its vhost.
#[derive(Debug)]
pub struct Authz {
    broker: Arc<Broker>,
    user: Arc<str>,
    vhost: Arc<str>,
    /// The access generation `compiled` reflects.
    generation: u64,
    /// None: the user has no permission in the vhost (any more): everything is refused.
    compiled: Option<Compiled>,
    /// The user's topic permissions in the vhost; None (the usual case) when there are none,
    /// which is all a publish to a topic exchange then costs.
    topics: Option<Box<super::topic_permissions::CompiledTopics>>,
}

impl Authz {
    pub fn new(broker: Arc<Broker>, user: &str, vhost: &str) -> Authz {
        Authz {
            broker,
            user: Arc::from(user),
            vhost: Arc::from(vhost),
            generation: UNLOADED,
            compiled: None,
            topics: None,
        }
    }

    /// The current access generation (one relaxed load): a cached decision taken at this
    /// generation still holds.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.broker.access.generation()
    }

    fn refresh(&mut self) {
        let g = self.broker.access.generation();
        if g == self.generation {
            return;
        }
        self.compiled = self
            .broker
            .access
            .permission(&self.user, &self.vhost)
            .map(|p| Compiled::new(&p));
        self.topics = super::topic_permissions::CompiledTopics::new(
            self.broker
                .access
                .topic_permissions_of(&self.user, &self.vhost),
            &self.user,
            &self.vhost,
        )
        .map(Box::new);
        self.generation = g;
    }

    /// May this connection's user do `perm` on the resource? Otherwise the 403 RabbitMQ sends
    /// ("write access to exchange 'x' in vhost '/' refused for user 'bob'").
    pub fn check(&mut self, perm: Perm, kind: Kind, name: &str) -> AmqpResult<()> {
        self.refresh();
        let name = resource_name(kind, name);
        if self.compiled.as_ref().is_some_and(|c| c.allows(perm, name)) {
            return Ok(());
        }
        Err(refusal(perm, kind, name, &self.vhost, &self.user))
    }
}

impl Authz {
    /// Are keys used with this (topic) exchange checked, i.e. does the user have a topic
    /// permission on it?
    pub fn topic_checked(&mut self, exchange: &str) -> bool {
        self.refresh();
        self.topics.as_ref().is_some_and(|t| t.covers(exchange))
    }

    /// RabbitMQ's topic authorisation: may the routing key (`Write`, publishing) or binding
    /// key (`Read`, binding from the exchange) be used on this topic exchange? Call only for
    /// topic exchanges, after the resource permission check.
    pub fn check_topic(&mut self, perm: Perm, exchange: &str, key: &str) -> AmqpResult<()> {
        self.refresh();
        match &self.topics {
            Some(t) if !t.allows(perm, exchange, key) => Err(super::topic_permissions::refusal(
                perm,
                exchange,
                key,
                &self.vhost,
                &self.user,
            )),
            _ => Ok(()),
        }
    }
}

/// The name a resource is checked under: RabbitMQ checks the default exchange as amq.default.
fn resource_name(kind: Kind, name: &str) -> &str {
    if kind == Kind::Exchange && name.is_empty() {
        "amq.default"
    } else {
        name
    }
}

fn refusal(perm: Perm, kind: Kind, name: &str, vhost: &str, user: &str) -> AmqpError {
    AmqpError::access_refused(format!(
        "{} access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
        perm.as_str(),
        kind.as_str(),
    ))
}

/// One check outside a connection (the HTTP API): compiles just the pattern it needs.
pub fn check_once(
    broker: &Broker,
    user: &str,
    vhost: &str,
    perm: Perm,
    kind: Kind,
    name: &str,
) -> AmqpResult<()> {
    let name = resource_name(kind, name);
    let allowed = broker.access.permission(user, vhost).is_some_and(|p| {
        let pattern = match perm {
            Perm::Configure => &p.configure,
            Perm::Write => &p.write,
            Perm::Read => &p.read,
        };
        Pattern::compile(pattern).matches(name)
    });
    if allowed {
        Ok(())
    } else {
        Err(refusal(perm, kind, name, vhost, user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_re_run() {
        assert!(Pattern::compile(".*").matches("anything"));
        assert!(!Pattern::compile("").matches("q"));
        assert!(!Pattern::compile("^$").matches("q"));
        // Unanchored: a pattern matches anywhere in the name.
        assert!(Pattern::compile("foo").matches("xfooy"));
        assert!(!Pattern::compile("^foo$").matches("xfooy"));
        assert!(Pattern::compile("^amq\\.gen-").matches("amq.gen-abc"));
        assert!(Pattern::compile("^(q1|q2)$").matches("q2"));
        assert!(!Pattern::compile("^(q1|q2)$").matches("q3"));
        // A pattern that can match the empty string matches every name.
        assert!(Pattern::compile("x*").matches("abc"));
        // Not compilable: nothing.
        assert!(!Pattern::compile("(").matches("("));
        assert!(validate("(").is_err());
        assert!(validate("").is_ok());
        assert!(validate("^a.*").is_ok());
    }
}
