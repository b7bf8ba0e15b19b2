//! The TCP listeners: AMQP (and AMQP over TLS when configured), each accepted socket served by a
//! connection task; the HTTP API (see `http`). On shutdown every connection is told to close
//! (320) and given time to finish its writes.

use crate::auth::Users;
use crate::broker::Broker;
use crate::config::Config;
use crate::connection;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A running broker.
pub struct ServerHandle {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
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

    /// The TLS listener's address, when `[tls]` is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
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
    let tls = if config.tls.enabled() {
        let acceptor = config
            .tls
            .acceptor()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let l = TcpListener::bind((config.bind.as_str(), config.tls.port)).await?;
        Some((l, acceptor))
    } else {
        None
    };
    let tls_addr = match &tls {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    if let Some(a) = tls_addr {
        tracing::info!("listening on {a} (AMQP 0-9-1 over TLS, amqps://)");
    }
    let http_bind = config
        .http
        .bind
        .clone()
        .unwrap_or_else(|| config.bind.clone());
    let https = if config.http.enabled && config.http.tls_enabled() {
        let a = config
            .http
            .acceptor(&config.tls)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Some(a)
    } else {
        None
    };
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
            if let Some(acceptor) = https {
                let timeout = Duration::from_secs(broker.config.limits.handshake_timeout.max(1));
                let l = crate::http::https::TlsListener::new(l, acceptor, timeout)?;
                http_tasks.push(tokio::spawn(crate::http::serve(l, app, rx.clone())));
                tracing::info!("listening on {a} (HTTPS management API, /metrics, dashboard)");
            } else {
                http_tasks.push(tokio::spawn(crate::http::serve(l, app, rx.clone())));
                tracing::info!("listening on {a} (HTTP management API, /metrics, dashboard)");
            }
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
    let task = tokio::spawn(accept_loop(listener, tls, broker.clone(), rx));
    Ok(ServerHandle {
        addr,
        tls_addr,
        http_addr,
        prometheus_addr,
        http_tasks,
        broker,
        shutdown: tx,
        task,
    })
}

/// Accept from a listener that may not exist (no TLS configured: never ready).
async fn accept_opt(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    loop {
        tokio::select! {
            r = accept_opt(tls_listener.as_ref()) => match (r, &acceptor) {
                (Ok((sock, peer)), Some(acceptor)) => {
                    let _ = sock.set_nodelay(true);
                    let local = sock.local_addr().unwrap_or(peer);
                    conns.spawn(serve_tls(sock, peer, local, acceptor.clone(), broker.clone(), shutdown.clone()));
                }
                (Ok(_), None) => {}
                (Err(e), _) => {
                    tracing::error!("accept failed (tls): {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
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
    drop(tls_listener);
    // Connections saw the same signal: give them time to send close and flush.
    let wait = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

/// The TLS handshake (within the AMQP handshake timeout), then the connection as usual.
async fn serve_tls(
    sock: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    acceptor: TlsAcceptor,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    // One handshake place and one deadline for the TLS and the AMQP handshake together.
    let Some(slot) = connection::admit(&broker) else {
        return;
    };
    let deadline = connection::handshake_deadline(&broker);
    let stream = match tokio::time::timeout_at(deadline, acceptor.accept(sock)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let cert_user = crate::tls::peer_common_name(stream.get_ref().1.peer_certificates());
    connection::serve_admitted(
        stream, peer, local, cert_user, broker, shutdown, slot, deadline,
    )
    .await;
}
