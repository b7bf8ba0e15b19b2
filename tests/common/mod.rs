//! Test harness: starts the real broker on 127.0.0.1:0 with a temp data dir and connects real
//! clients (lapin) or raw sockets to it. The submodules hold the helpers of the durability_*,
//! queue_* (and channel_multiplexing) and routing_* tests, and a minimal raw AMQP client.
#![allow(dead_code)]

pub mod consumers;
pub mod durability;
pub mod features;
pub mod http;
pub mod queues;
pub mod raw;
pub mod routing;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warren::{Config, ServerHandle};

pub struct Broker {
    pub handle: Option<ServerHandle>,
    /// The temp data dir this broker owns and deletes on drop; None for [`Broker::start_in`],
    /// whose directory belongs to the caller.
    pub dir: Option<tempfile::TempDir>,
    /// The data dir the broker runs on.
    pub data_dir: PathBuf,
}

impl Broker {
    pub async fn start() -> Broker {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::for_tests(dir.path());
        f(&mut cfg);
        let handle = warren::start(cfg).await.expect("start broker");
        Broker {
            handle: Some(handle),
            data_dir: dir.path().to_path_buf(),
            dir: Some(dir),
        }
    }

    /// Start on an existing data dir owned by the caller (kept as is, never deleted), so a test
    /// can `stop()` the broker and start it again on the same state.
    pub async fn start_in(dir: &Path, f: impl FnOnce(&mut Config)) -> Broker {
        let mut cfg = Config::for_tests(dir);
        f(&mut cfg);
        let handle = warren::start(cfg).await.expect("start broker");
        Broker {
            handle: Some(handle),
            dir: None,
            data_dir: dir.to_path_buf(),
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.handle.as_ref().expect("running").amqp_addr()
    }

    /// The HTTP API's address (management API, /metrics, dashboard).
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.handle
            .as_ref()
            .expect("running")
            .http_addr()
            .expect("HTTP enabled")
    }

    /// An HTTP API client as guest/guest.
    pub fn http(&self) -> http::Http {
        http::Http::new(self.http_addr(), "guest", "guest")
    }

    /// The broker itself (for the alarm test hooks).
    pub fn broker(&self) -> &std::sync::Arc<warren::broker::Broker> {
        self.handle.as_ref().expect("running").broker()
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr())
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url(), ConnectionProperties::default())
            .await
            .expect("connect")
    }

    pub async fn channel(&self) -> (Connection, Channel) {
        let c = self.connect().await;
        let ch = c.create_channel().await.expect("channel");
        (c, ch)
    }

    pub async fn raw(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.addr())
            .await
            .expect("tcp connect")
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

/// Declare a plain non-durable queue.
pub async fn declare(ch: &Channel, name: &str) -> lapin::Queue {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare")
}

/// Publish to the default exchange.
pub async fn publish(ch: &Channel, queue: &str, body: &[u8]) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("basic.publish");
}

/// basic.get with no-ack, returning the body.
pub async fn get_body(ch: &Channel, queue: &str) -> Option<Vec<u8>> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .map(|m| m.delivery.data.clone())
}

/// Run a future with a deadline so a hang fails the test instead of blocking CI.
pub async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}
