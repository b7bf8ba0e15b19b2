//! The broker domain: vhosts, exchanges, bindings, queues and messages. It never sees sockets or
//! frames; connections call into it.

pub mod deadletter;
pub mod exchange;
pub mod message;
pub mod persist;
pub mod queue;
pub mod stream;
pub mod vhost;

use crate::auth::Users;
use crate::config::Config;
use dashmap::DashMap;
use persist::Persistence;
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
    /// Open the data dir, recover durable definitions and messages, and build the broker.
    pub fn open(config: Config, users: Users) -> std::io::Result<Broker> {
        let mut persist = Persistence::open(
            &config.data_dir,
            config.store.segment_size,
            config.store.queue_memory_limit,
        )?;
        persist.stream_fsync = config.store.stream_fsync;
        let persist = Arc::new(persist);
        let vhosts = DashMap::new();
        let list: Vec<Arc<VHost>> = config
            .vhosts
            .iter()
            .map(|v| VHost::new(v, Some(persist.clone())))
            .collect();
        persist.restore(&list)?;
        for v in list {
            vhosts.insert(v.name.to_string(), v);
        }
        Ok(Broker {
            config,
            users,
            vhosts,
            next_id: AtomicU64::new(1),
        })
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
