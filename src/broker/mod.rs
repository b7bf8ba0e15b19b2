//! The broker domain: vhosts, exchanges, bindings, queues and messages, plus what operators see
//! of them (the registry of live connections, message statistics, resource alarms, run-time
//! administration of vhosts, users and permissions). It never sees sockets or frames;
//! connections and the HTTP layer call into it.

pub mod access;
pub mod admission;
pub mod alarms;
pub mod deadletter;
pub mod direct_reply;
pub mod exchange;
pub mod limits;
pub mod message;
pub mod permissions;
pub mod persist;
pub mod policy;
pub mod queue;
pub mod registry;
pub mod sampler;
pub mod sender_selected;
pub mod stats;
pub mod stream;
pub mod topic_permissions;
pub mod vhost;

use crate::auth::{User, Users};
use crate::config::Config;
use access::Access;
use alarms::Alarms;
use dashmap::DashMap;
use persist::Persistence;
use registry::Registry;
use stats::{MsgStats, Rates};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use vhost::VHost;

/// Process-wide broker state, shared by every connection.
#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub users: Users,
    pub access: Access,
    /// Per-user limits and usage (vhost limits live in each `VHost`).
    pub user_limits: limits::UserLimits,
    vhosts: DashMap<String, Arc<VHost>>,
    persist: Arc<Persistence>,
    next_id: AtomicU64,
    /// Connections in the handshake and open, against `[limits]`.
    pub admission: Arc<admission::Admission>,
    /// Live connections, channels and consumers.
    pub registry: Registry,
    pub alarms: Arc<Alarms>,
    /// Counts of vhosts deleted at run time (the node's totals keep them).
    pub retired: MsgStats,
    /// Node-wide samples for the overview's rates.
    pub rates: Rates,
    pub started: Instant,
    /// Milliseconds since the Unix epoch at start.
    pub started_at_ms: u64,
    /// The listeners' addresses, set once they are bound (for the overview and health checks).
    pub amqp_addr: std::sync::OnceLock<std::net::SocketAddr>,
    pub http_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Direct reply-to consumers, by token.
    pub direct_reply: direct_reply::DirectReply,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Broker {
    /// Open the data dir, recover durable definitions and messages, and build the broker. Users,
    /// vhosts and permissions are the config file's, changed by what the store recorded.
    pub fn open(config: Config, users: Users) -> std::io::Result<Broker> {
        let mut persist = Persistence::open(
            &config.data_dir,
            config.store.segment_size,
            config.store.queue_memory_limit,
        )?;
        persist.stream_fsync = config.store.stream_fsync;
        let persist = Arc::new(persist);
        let loaded = persist.defs.load().map_err(std::io::Error::other)?;

        let mut names: Vec<String> = config.vhosts.clone();
        for d in &loaded.vhost_defs {
            names.retain(|n| n != &d.name);
            if !d.deleted {
                names.push(d.name.clone());
            }
        }
        for d in &loaded.users {
            if d.deleted {
                users.remove(&d.name);
                continue;
            }
            let like = users.get(&d.name);
            match User::from_hash(&d.name, &d.password_hash, d.tags.clone(), like.as_deref()) {
                Some(u) => {
                    users.put(u);
                }
                None => tracing::warn!(user = %d.name, "skipping a stored user with a bad hash"),
            }
        }
        let access = Access::bootstrap(
            &users.list(),
            &names,
            &config.permissions,
            &config.topic_permissions,
            &loaded,
        );

        let vhosts = DashMap::new();
        let list: Vec<Arc<VHost>> = names
            .iter()
            .map(|v| Arc::new(VHost::new(v, Some(persist.clone()))))
            .collect();
        for v in &list {
            v.bind_self();
        }
        let config_policies: Vec<_> = config.policies.iter().map(|p| p.to_def()).collect();
        persist.restore(&list, &config_policies)?;
        for v in list {
            vhosts.insert(v.name.to_string(), v);
        }
        let alarms = Arc::new(Alarms::new(&config.alarms, &config.data_dir));
        let broker = Broker {
            config,
            users,
            access,
            user_limits: limits::UserLimits::default(),
            vhosts,
            persist,
            next_id: AtomicU64::new(1),
            admission: Arc::default(),
            direct_reply: direct_reply::DirectReply::default(),
            registry: Registry::default(),
            alarms,
            retired: MsgStats::default(),
            rates: Rates::default(),
            started: Instant::now(),
            started_at_ms: now_ms(),
            amqp_addr: std::sync::OnceLock::new(),
            http_addr: std::sync::OnceLock::new(),
        };
        broker.restore_limits(&loaded.limits);
        Ok(broker)
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.value().clone())
    }

    /// Every vhost, by name.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut v: Vec<_> = self.vhosts.iter().map(|v| v.value().clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// A new, empty vhost (run-time creation).
    fn add_vhost(&self, name: &str) -> Arc<VHost> {
        let v = Arc::new(VHost::new(name, Some(self.persist.clone())));
        v.bind_self();
        self.vhosts.insert(name.to_string(), v.clone());
        v
    }

    /// Take a vhost out of the map; its counts stay in the node's totals.
    fn remove_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        let (_, v) = self.vhosts.remove(name)?;
        self.retired.add_counts(&v.stats.counts());
        Some(v)
    }

    /// This node's name, RabbitMQ style: `warren@<hostname>`.
    pub fn node_name(&self) -> String {
        let u = rustix::system::uname();
        format!("warren@{}", u.nodename().to_string_lossy())
    }

    /// A process-unique id for connections and consumers.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }

    /// A connection ended: drop it from the registry and keep its counts in its vhost's.
    pub fn unregister(&self, id: u64) {
        if let Some(c) = self.registry.remove(id) {
            if let Some(v) = self.vhost(&c.meta.vhost) {
                v.stats.add_counts(&c.counts());
            }
        }
    }
}
