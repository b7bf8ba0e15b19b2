//! RabbitMQ's per-vhost limits (`max-connections`, `max-queues`) and per-user limits
//! (`max-connections`, `max-channels`, the latter across all of the user's connections): the
//! values, the usage they are checked against, and their run-time administration (HTTP API),
//! written to the definitions store before they take effect.
//!
//! Usage is counted with atomics that connections take and give back through guards
//! ([`ConnectionSlot`], [`ChannelSlot`]), so a limit set later applies to what is already open.
//! A negative value is no limit (as in RabbitMQ); 0 refuses everything. None of this is on the
//! publish or delivery path: connection.open, channel.open and creating a queue only.

use crate::auth::User;
use crate::broker::access::AdminError;
use crate::broker::vhost::VHost;
use crate::broker::Broker;
use crate::error::{AmqpError, AmqpResult};
use crate::store::definitions::LimitsDef;
use dashmap::DashMap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;

/// The limits a vhost may have.
pub const VHOST_LIMITS: &[&str] = &["max-connections", "max-queues"];
/// The limits a user may have.
pub const USER_LIMITS: &[&str] = &["max-connections", "max-channels"];

/// Take one unit of `used` unless that would pass `max` (negative: no limit).
fn take(used: &AtomicI64, max: &AtomicI64) -> Result<(), i64> {
    let m = max.load(Relaxed);
    used.fetch_update(Relaxed, Relaxed, |c| (m < 0 || c < m).then_some(c + 1))
        .map(|_| ())
        .map_err(|_| m)
}

/// Two limits with their values (negative = not set).
#[derive(Debug)]
struct Pair {
    names: &'static [&'static str],
    values: [AtomicI64; 2],
}

impl Pair {
    fn new(names: &'static [&'static str]) -> Pair {
        Pair {
            names,
            values: [AtomicI64::new(-1), AtomicI64::new(-1)],
        }
    }

    /// Set values as a map (missing = not set), as the store and the API see them.
    fn map(&self, set: &[bool; 2]) -> BTreeMap<String, i64> {
        self.names
            .iter()
            .zip(&self.values)
            .zip(set)
            .filter(|(_, s)| **s)
            .map(|((n, v), _)| (n.to_string(), v.load(Relaxed)))
            .collect()
    }
}

/// A vhost's limits and the connections open in it.
#[derive(Debug)]
pub struct VhostLimits {
    limits: Pair,
    /// Which limits are set (a set negative value is listed, as RabbitMQ lists it).
    set: parking_lot::Mutex<[bool; 2]>,
    connections: AtomicI64,
}

impl Default for VhostLimits {
    fn default() -> Self {
        VhostLimits {
            limits: Pair::new(VHOST_LIMITS),
            set: parking_lot::Mutex::new([false; 2]),
            connections: AtomicI64::new(0),
        }
    }
}

impl VhostLimits {
    /// `max-queues` (negative: none).
    pub fn max_queues(&self) -> i64 {
        self.limits.values[1].load(Relaxed)
    }

    /// The limits that are set, by name.
    pub fn values(&self) -> BTreeMap<String, i64> {
        self.limits.map(&self.set.lock())
    }

    fn apply(&self, values: &BTreeMap<String, i64>) {
        let mut set = self.set.lock();
        for (i, n) in VHOST_LIMITS.iter().enumerate() {
            let v = values.get(*n).copied();
            set[i] = v.is_some();
            self.limits.values[i].store(v.unwrap_or(-1), Relaxed);
        }
    }

    /// Connections open in this vhost.
    pub fn connections(&self) -> i64 {
        self.connections.load(Relaxed)
    }
}

/// A user's limits and what the user's connections use, shared by them.
#[derive(Debug)]
pub struct UserUsage {
    limits: Pair,
    set: parking_lot::Mutex<[bool; 2]>,
    connections: AtomicI64,
    channels: AtomicI64,
}

impl Default for UserUsage {
    fn default() -> Self {
        UserUsage {
            limits: Pair::new(USER_LIMITS),
            set: parking_lot::Mutex::new([false; 2]),
            connections: AtomicI64::new(0),
            channels: AtomicI64::new(0),
        }
    }
}

impl UserUsage {
    pub fn values(&self) -> BTreeMap<String, i64> {
        self.limits.map(&self.set.lock())
    }

    fn apply(&self, values: &BTreeMap<String, i64>) {
        let mut set = self.set.lock();
        for (i, n) in USER_LIMITS.iter().enumerate() {
            let v = values.get(*n).copied();
            set[i] = v.is_some();
            self.limits.values[i].store(v.unwrap_or(-1), Relaxed);
        }
    }
}

/// Every user's limits and usage.
#[derive(Debug, Default)]
pub struct UserLimits {
    users: DashMap<String, Arc<UserUsage>>,
}

impl UserLimits {
    /// The entry of `user` (created on first use).
    pub fn usage(&self, user: &str) -> Arc<UserUsage> {
        if let Some(u) = self.users.get(user) {
            return u.value().clone();
        }
        self.users
            .entry(user.to_string())
            .or_default()
            .value()
            .clone()
    }

    /// The limits set for `user` (none: empty), without creating an entry.
    pub fn values_of(&self, user: &str) -> BTreeMap<String, i64> {
        self.users
            .get(user)
            .map(|u| u.value().values())
            .unwrap_or_default()
    }

    /// Users with limits set, by name.
    pub fn list(&self) -> Vec<(String, BTreeMap<String, i64>)> {
        let mut out: Vec<_> = self
            .users
            .iter()
            .map(|e| (e.key().clone(), e.value().values()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// One open connection in the usage counts of its vhost and user; dropping it gives them back.
#[derive(Debug)]
pub struct ConnectionSlot {
    vhost: Arc<VHost>,
    pub user: Arc<UserUsage>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.vhost.limits.connections.fetch_sub(1, Relaxed);
        self.user.connections.fetch_sub(1, Relaxed);
    }
}

/// One open channel in its user's count.
#[derive(Debug)]
pub struct ChannelSlot(Arc<UserUsage>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.channels.fetch_sub(1, Relaxed);
    }
}

/// A channel may open unless its user is at `max-channels`: then the connection error RabbitMQ
/// sends (530).
pub fn open_channel(user: &Arc<UserUsage>, name: &str) -> AmqpResult<ChannelSlot> {
    match take(&user.channels, &user.limits.values[1]) {
        Ok(()) => Ok(ChannelSlot(user.clone())),
        Err(max) => Err(AmqpError::not_allowed(format!(
            "number of channels opened for user '{name}' has reached the maximum allowed user limit of ({max})"
        ))),
    }
}

pub(crate) fn check_name(names: &[&str], name: &str) -> Result<(), AdminError> {
    if names.contains(&name) {
        return Ok(());
    }
    Err(AdminError::BadRequest(format!(
        "unknown limit '{name}' (expected one of: {})",
        names.join(", ")
    )))
}

fn store_err(e: impl std::fmt::Display) -> AdminError {
    AdminError::Store(format!("storage failure: {e}"))
}

impl Broker {
    /// connection.open: take a place in the vhost's and the user's connection counts, in
    /// RabbitMQ's order (vhost limit, then user limit; 530 when reached).
    pub fn admit_connection(&self, user: &User, vhost: &Arc<VHost>) -> AmqpResult<ConnectionSlot> {
        let l = &vhost.limits;
        if let Err(max) = take(&l.connections, &l.limits.values[0]) {
            return Err(AmqpError::not_allowed(format!(
                "access to vhost '{}' refused for user '{}': connection limit ({max}) is reached",
                vhost.name, user.name
            )));
        }
        let usage = self.user_limits.usage(&user.name);
        if let Err(max) = take(&usage.connections, &usage.limits.values[0]) {
            l.connections.fetch_sub(1, Relaxed);
            return Err(AmqpError::not_allowed(format!(
                "connection refused for user '{}': user connection limit ({max}) is reached",
                user.name
            )));
        }
        Ok(ConnectionSlot {
            vhost: vhost.clone(),
            user: usage,
        })
    }

    /// Limits stored in the definitions store, applied at start.
    pub(super) fn restore_limits(&self, defs: &[LimitsDef]) {
        for d in defs {
            match d.scope.as_str() {
                "vhost" => {
                    if let Some(v) = self.vhost(&d.name) {
                        v.limits.apply(&d.limits);
                    }
                }
                "user" => self.user_limits.usage(&d.name).apply(&d.limits),
                other => tracing::warn!(scope = other, "skipping stored limits of unknown scope"),
            }
        }
    }

    /// Set (`Some`) or clear (`None`) one limit of a vhost.
    pub fn set_vhost_limit(
        &self,
        vhost: &str,
        name: &str,
        value: Option<i64>,
    ) -> Result<(), AdminError> {
        check_name(VHOST_LIMITS, name)?;
        let Some(v) = self.vhost(vhost) else {
            // RabbitMQ's reason, word for word.
            return Err(AdminError::NotFound("vhost_not_found".into()));
        };
        let mut values = v.limits.values();
        match value {
            Some(n) => values.insert(name.to_string(), n),
            None => values.remove(name),
        };
        self.persist
            .defs
            .put_limits(&LimitsDef {
                scope: "vhost".into(),
                name: vhost.to_string(),
                limits: values.clone(),
            })
            .map_err(store_err)?;
        v.limits.apply(&values);
        Ok(())
    }

    /// Set (`Some`) or clear (`None`) one limit of a user.
    pub fn set_user_limit(
        &self,
        user: &str,
        name: &str,
        value: Option<i64>,
    ) -> Result<(), AdminError> {
        check_name(USER_LIMITS, name)?;
        if self.users.get(user).is_none() {
            // RabbitMQ: 400 (its reason is the Erlang term `[no_such_user, <name>]`).
            return Err(AdminError::BadRequest(format!("no_such_user: {user}")));
        }
        let usage = self.user_limits.usage(user);
        let mut values = usage.values();
        match value {
            Some(n) => values.insert(name.to_string(), n),
            None => values.remove(name),
        };
        self.persist
            .defs
            .put_limits(&LimitsDef {
                scope: "user".into(),
                name: user.to_string(),
                limits: values.clone(),
            })
            .map_err(store_err)?;
        usage.apply(&values);
        Ok(())
    }

    /// Forget the stored limits of a deleted vhost or user.
    pub(super) fn forget_limits(&self, scope: &str, name: &str) -> Result<(), AdminError> {
        if scope == "user" {
            if let Some(u) = self.user_limits.users.get(name) {
                u.apply(&BTreeMap::new());
            }
        }
        self.persist
            .defs
            .put_limits(&LimitsDef {
                scope: scope.to_string(),
                name: name.to_string(),
                limits: BTreeMap::new(),
            })
            .map_err(store_err)
    }

    /// Vhosts with limits set: (vhost, limits).
    pub fn vhost_limits(&self) -> Vec<(String, BTreeMap<String, i64>)> {
        self.vhosts()
            .iter()
            .map(|v| (v.name.to_string(), v.limits.values()))
            .filter(|(_, l)| !l.is_empty())
            .collect()
    }
}
