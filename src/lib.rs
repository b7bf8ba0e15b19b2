//! warren: an AMQP 0-9-1 message broker. Layers, from the socket inward: `server` (accept),
//! `connection` (handshake, channels, dispatch, writer), `broker` (vhosts, exchanges, queues),
//! `protocol` (sans-IO framing and codec). See docs/ARCHITECTURE.md.

pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod ctl;
pub mod error;
pub mod http;
pub mod protocol;
pub mod server;
pub mod store;
pub mod tls;

pub use config::Config;
pub use server::{start, ServerHandle};
