//! The TCP listener: accepts sockets, spawns a connection task for each, and on shutdown tells
//! every connection to close (320) and waits for them to finish their writes.

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
    broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The AMQP listener's address (with the real port when 0 was asked for).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.addr
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
    let broker = Arc::new(Broker::open(config, users)?);
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, broker.clone(), rx));
    Ok(ServerHandle {
        addr,
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
    // Connections saw the same signal: give them time to send close and flush.
    let wait = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}
