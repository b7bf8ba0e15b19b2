//! The TCP listeners (AMQP, and AMQP over TLS when configured): accept sockets, spawns a connection task for each, and on shutdown tells
//! every connection to close (320) and waits for them to finish their writes.

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

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Close every connection with 320 CONNECTION_FORCED, let writers finish, stop listening.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
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
    let broker = Arc::new(Broker::open(config, users)?);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, tls, broker.clone(), rx));
    Ok(ServerHandle {
        addr,
        tls_addr,
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
                    conns.spawn(serve_tls(sock, peer, acceptor.clone(), broker.clone(), shutdown.clone()));
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
                    conns.spawn(connection::serve(sock, peer, broker.clone(), shutdown.clone()));
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
    acceptor: TlsAcceptor,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    let limit = Duration::from_secs(broker.config.limits.handshake_timeout.max(1));
    let stream = match tokio::time::timeout(limit, acceptor.accept(sock)).await {
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
    connection::serve_as(stream, peer, cert_user, broker, shutdown).await;
}
