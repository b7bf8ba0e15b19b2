//! The TCP listeners: accepts AMQP sockets and spawns a connection task for each, serves the HTTP
//! API (see `http`), and on shutdown tells every connection to close (320) and waits for them to
//! finish their writes.

use crate::auth::Users;
use crate::broker::Broker;
use crate::config::Config;
use crate::connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running broker.
pub struct ServerHandle {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    prometheus_addr: Option<SocketAddr>,
    http_tasks: Vec<tokio::task::JoinHandle<()>>,
    broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The AMQP listener's address (with the real port when 0 was asked for).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTP listener's address (management API, metrics, dashboard); None when disabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The separate Prometheus listener's address, when `http.prometheus_port` is set.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_addr
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Close every connection with 320 CONNECTION_FORCED, let writers finish, stop listening.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        for t in self.http_tasks {
            let _ = t.await;
        }
    }
}

/// Bind the listener and start serving in the background.
pub async fn start(config: Config) -> std::io::Result<ServerHandle> {
    let users = Users::from_config(&config)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let listener = TcpListener::bind((config.bind.as_str(), config.port)).await?;
    let addr = listener.local_addr()?;
    let http_bind = config
        .http
        .bind
        .clone()
        .unwrap_or_else(|| config.bind.clone());
    let http = if config.http.enabled {
        Some(TcpListener::bind((http_bind.as_str(), config.http.port)).await?)
    } else {
        None
    };
    let prometheus = match config.http.prometheus_port {
        Some(p) if config.http.enabled => Some(TcpListener::bind((http_bind.as_str(), p)).await?),
        _ => None,
    };
    let alarm_every = Duration::from_millis(config.alarms.check_interval.max(10));
    let broker = Arc::new(Broker::open(config, users)?);
    let _ = broker.amqp_addr.set(addr);
    broker.alarms.spawn_monitor(alarm_every);
    broker.spawn_sampler();
    let (tx, rx) = watch::channel(false);
    let mut http_tasks = Vec::new();
    let http_addr = match http {
        Some(l) => {
            let a = l.local_addr()?;
            let _ = broker.http_addr.set(a);
            let app = crate::http::router(broker.clone());
            http_tasks.push(tokio::spawn(crate::http::serve(l, app, rx.clone())));
            tracing::info!("listening on {a} (HTTP management API, /metrics, dashboard)");
            Some(a)
        }
        None => None,
    };
    let prometheus_addr = match prometheus {
        Some(l) => {
            let a = l.local_addr()?;
            let app = crate::http::metrics_router(broker.clone());
            http_tasks.push(tokio::spawn(crate::http::serve(l, app, rx.clone())));
            tracing::info!("listening on {a} (Prometheus /metrics)");
            Some(a)
        }
        None => None,
    };
    let task = tokio::spawn(accept_loop(listener, broker.clone(), rx));
    Ok(ServerHandle {
        addr,
        http_addr,
        prometheus_addr,
        http_tasks,
        broker,
        shutdown: tx,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let _ = sock.set_nodelay(true);
                    let local = sock.local_addr().unwrap_or(peer);
                    conns.spawn(connection::serve(sock, peer, local, broker.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Connections saw the same signal: give them time to send close and flush.
    let wait = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}
