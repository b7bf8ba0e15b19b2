//! The live connections, their channels and consumers, as the stats endpoint lists them.
//!
//! A connection task registers itself after the handshake and keeps its entry up to date: channel
//! open/close and consume/cancel take the entry's small mutexes (never on the publish or delivery
//! path); message counts are relaxed atomics in [`ChannelInfo::stats`]. Closing a connection
//! from outside (the HTTP API) goes through [`ConnectionInfo::close`], which hands the
//! connection task an event: nothing outside the task touches its socket.

use crate::broker::queue::consumer::ClientEvent;
use crate::broker::stats::{sum_into, Counts, MsgStats, Rates};
use amq_protocol::types::FieldTable;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// Where a connection is, as RabbitMQ's `state` field names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    Running = 0,
    /// A resource alarm is on; the connection has not published since, so it is still read.
    Blocking = 1,
    /// It published during an alarm: its socket is not read until the alarm clears.
    Blocked = 2,
    Closing = 3,
}

impl ConnState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Running => "running",
            ConnState::Blocking => "blocking",
            ConnState::Blocked => "blocked",
            ConnState::Closing => "closing",
        }
    }
}

/// Fixed facts about a connection, known once the handshake is done.
#[derive(Debug, Clone)]
pub struct ConnectionMeta {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: Arc<str>,
    pub auth_mechanism: String,
    pub client_properties: FieldTable,
    /// The client's `connection_name` property, if any.
    pub user_provided_name: String,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    /// What the TLS handshake settled, for a connection over TLS.
    pub tls: Option<TlsDetails>,
}

/// A TLS connection's session, as the management API shows it (RabbitMQ's names and forms:
/// `tlsv1.3`, `aes_256_gcm`, `sha384`).
#[derive(Debug, Clone, Default)]
pub struct TlsDetails {
    pub protocol: String,
    pub cipher: String,
    pub key_exchange: String,
    pub hash: String,
    /// The client certificate's subject, issuer and validity, when one was presented.
    pub peer_cert_subject: Option<String>,
    pub peer_cert_issuer: Option<String>,
    pub peer_cert_validity: Option<String>,
}

/// One live connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub meta: ConnectionMeta,
    /// `"127.0.0.1:54321 -> 127.0.0.1:5672"`, RabbitMQ's connection name.
    pub name: String,
    pub recv_oct: AtomicU64,
    pub recv_cnt: AtomicU64,
    pub send_oct: AtomicU64,
    pub send_cnt: AtomicU64,
    state: AtomicU8,
    pub channels: Mutex<BTreeMap<u16, Arc<ChannelInfo>>>,
    /// Counts of the channels already closed.
    pub closed_channels: MsgStats,
    /// recv_oct, send_oct samples.
    pub rates: Rates,
    /// Channels opened on this connection so far (channel churn).
    pub channels_opened: AtomicU64,
    events: UnboundedSender<ClientEvent>,
}

impl ConnectionInfo {
    pub fn new(meta: ConnectionMeta, events: UnboundedSender<ClientEvent>) -> ConnectionInfo {
        ConnectionInfo {
            name: format!("{} -> {}", meta.peer, meta.local),
            meta,
            recv_oct: AtomicU64::new(0),
            recv_cnt: AtomicU64::new(0),
            send_oct: AtomicU64::new(0),
            send_cnt: AtomicU64::new(0),
            state: AtomicU8::new(ConnState::Running as u8),
            channels: Mutex::new(BTreeMap::new()),
            closed_channels: MsgStats::default(),
            rates: Rates::default(),
            channels_opened: AtomicU64::new(0),
            events,
        }
    }

    pub fn state(&self) -> ConnState {
        match self.state.load(Relaxed) {
            1 => ConnState::Blocking,
            2 => ConnState::Blocked,
            3 => ConnState::Closing,
            _ => ConnState::Running,
        }
    }

    pub fn set_state(&self, s: ConnState) {
        self.state.store(s as u8, Relaxed);
    }

    /// Ask the connection to close with 320 CONNECTION_FORCED and `reason` (RabbitMQ's admin
    /// close). False when the connection is already gone.
    pub fn close(&self, reason: &str) -> bool {
        self.events
            .send(ClientEvent::Close {
                code: crate::error::code::CONNECTION_FORCED,
                text: format!("CONNECTION_FORCED - {reason}"),
            })
            .is_ok()
    }

    /// Tell the connection that its vhost's policies changed (false when it is gone).
    pub fn policies_changed(&self) -> bool {
        self.events.send(ClientEvent::PoliciesChanged).is_ok()
    }

    /// A new channel's entry.
    pub fn open_channel(&self, number: u16) -> Arc<ChannelInfo> {
        let ch = Arc::new(ChannelInfo {
            number,
            name: format!("{} ({number})", self.name),
            stats: MsgStats::default(),
            rates: Rates::default(),
            prefetch: AtomicU16::new(0),
            confirm: AtomicBool::new(false),
            unacked: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
            consumers: Mutex::new(Vec::new()),
        });
        self.channels.lock().insert(number, ch.clone());
        self.channels_opened.fetch_add(1, Relaxed);
        ch
    }

    /// A channel ended: its counts stay with the connection.
    pub fn close_channel(&self, number: u16) {
        if let Some(ch) = self.channels.lock().remove(&number) {
            self.closed_channels.add_counts(&ch.stats.counts());
        }
    }

    pub fn channel_list(&self) -> Vec<Arc<ChannelInfo>> {
        self.channels.lock().values().cloned().collect()
    }

    /// Message counts of every channel this connection had.
    pub fn counts(&self) -> Counts {
        let mut c = self.closed_channels.counts();
        for ch in self.channels.lock().values() {
            sum_into(&mut c, &ch.stats.counts());
        }
        c
    }
}

/// One open channel (the default is a detached entry no registry lists).
#[derive(Debug, Default)]
pub struct ChannelInfo {
    pub number: u16,
    /// `"<connection name> (<number>)"`.
    pub name: String,
    pub stats: MsgStats,
    pub rates: Rates,
    pub prefetch: AtomicU16,
    pub confirm: AtomicBool,
    pub unacked: AtomicU64,
    pub unconfirmed: AtomicU64,
    pub consumers: Mutex<Vec<ConsumerInfo>>,
}

impl ChannelInfo {
    pub fn add_consumer(&self, c: ConsumerInfo) {
        self.consumers.lock().push(c);
    }

    pub fn remove_consumer(&self, id: u64) {
        self.consumers.lock().retain(|c| c.id != id);
    }
}

/// A consumer as `/api/consumers` shows it.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub id: u64,
    pub tag: Arc<str>,
    pub queue: Arc<str>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub prefetch: u16,
    pub arguments: FieldTable,
}

/// Every live connection, by id.
#[derive(Debug, Default)]
pub struct Registry {
    conns: DashMap<u64, Arc<ConnectionInfo>>,
    opened: AtomicU64,
    closed: AtomicU64,
    /// Channels opened on connections that have closed.
    retired_channels: AtomicU64,
}

impl Registry {
    pub fn add(&self, c: Arc<ConnectionInfo>) {
        self.opened.fetch_add(1, Relaxed);
        self.conns.insert(c.meta.id, c);
    }

    pub fn remove(&self, id: u64) -> Option<Arc<ConnectionInfo>> {
        let c = self.conns.remove(&id).map(|(_, c)| c);
        if let Some(c) = &c {
            self.closed.fetch_add(1, Relaxed);
            self.retired_channels
                .fetch_add(c.channels_opened.load(Relaxed), Relaxed);
        }
        c
    }

    /// Connections opened since start.
    pub fn opened(&self) -> u64 {
        self.opened.load(Relaxed)
    }

    /// Channels opened since start.
    pub fn channels_opened(&self) -> u64 {
        let live: u64 = self
            .conns
            .iter()
            .map(|c| c.channels_opened.load(Relaxed))
            .sum();
        self.retired_channels.load(Relaxed) + live
    }

    /// Connections closed since start.
    pub fn closed(&self) -> u64 {
        self.closed.load(Relaxed)
    }

    /// Every connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut v: Vec<_> = self.conns.iter().map(|c| c.value().clone()).collect();
        v.sort_by_key(|c| c.meta.id);
        v
    }

    /// A vhost's policies changed: tell each of its connections (policy changes are rare).
    pub fn policies_changed(&self, vhost: &str) {
        for c in self.conns.iter().filter(|c| &*c.meta.vhost == vhost) {
            c.value().policies_changed();
        }
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<ConnectionInfo>> {
        self.conns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value().clone())
    }

    pub fn get(&self, id: u64) -> Option<Arc<ConnectionInfo>> {
        self.conns.get(&id).map(|c| c.value().clone())
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
