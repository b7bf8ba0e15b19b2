//! The broker domain: vhosts, exchanges, bindings, queues and messages. It never sees sockets or
//! frames; connections call into it.

pub mod exchange;
pub mod message;
pub mod queue;
pub mod vhost;

use crate::auth::Users;
use crate::config::Config;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use vhost::VHost;

/// Process-wide broker state, shared by every connection.
#[derive(Debug)]
pub struct Broker {
    pub config: Config,
    pub users: Users,
    vhosts: DashMap<String, Arc<VHost>>,
    next_id: AtomicU64,
}

impl Broker {
    pub fn new(config: Config, users: Users) -> Broker {
        let vhosts = DashMap::new();
        for v in &config.vhosts {
            vhosts.insert(v.clone(), Arc::new(VHost::new(v)));
        }
        Broker {
            config,
            users,
            vhosts,
            next_id: AtomicU64::new(1),
        }
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.value().clone())
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.iter().map(|v| v.value().clone()).collect()
    }

    /// A process-unique id for connections and consumers.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Relaxed)
    }
}
