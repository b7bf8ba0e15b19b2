//! The opening of a connection: protocol header, start/start-ok (SASL PLAIN or AMQPLAIN), tune,
//! open. Runs under the handshake timeout; on success returns what was negotiated.

use super::{send_method, Io};
use crate::auth::{self, User};
use crate::broker::admission::OpenSlot;
use crate::broker::limits::ConnectionSlot;
use crate::broker::vhost::VHost;
use crate::broker::Broker;
use crate::error::AmqpError;
use crate::protocol::frame::{decode_method, RawFrame};
use crate::protocol::{FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER};
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the client announced it understands (from client-properties.capabilities).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCaps {
    pub consumer_cancel_notify: bool,
    pub authentication_failure_close: bool,
    pub connection_blocked: bool,
}

/// The outcome of a successful handshake.
pub struct Negotiated {
    pub user: Arc<User>,
    pub vhost: Arc<VHost>,
    /// This connection's place in its vhost's and user's connection counts.
    pub slot: ConnectionSlot,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub caps: ClientCaps,
    pub client_name: String,
    pub mechanism: String,
    pub client_properties: FieldTable,
    /// This connection's place under limits.max_connections.
    pub open_slot: OpenSlot,
}

/// Why the handshake ended without a connection.
pub enum HandshakeEnd {
    /// Peer went away, timed out, or sent a bad protocol header (already answered).
    Dropped,
    /// Send this connection.close, then drop.
    Close(AmqpError),
}

impl From<AmqpError> for HandshakeEnd {
    fn from(e: AmqpError) -> Self {
        HandshakeEnd::Close(e)
    }
}

fn server_properties(broker: &Broker) -> FieldTable {
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(c.into(), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    let s = |v: &str| AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()));
    p.insert("product".into(), s("warren"));
    p.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
    p.insert("platform".into(), s("Rust"));
    p.insert("cluster_name".into(), s(&broker.config.cluster_name));
    p.insert("copyright".into(), s("The warren authors"));
    p.insert(
        "information".into(),
        s("Licensed under the Apache License 2.0"),
    );
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

fn client_caps(props: &FieldTable) -> (ClientCaps, String) {
    let mut caps = ClientCaps::default();
    if let Some(AMQPValue::FieldTable(t)) = props.inner().get("capabilities") {
        let on = |k: &str| matches!(t.inner().get(k), Some(AMQPValue::Boolean(true)));
        caps.consumer_cancel_notify = on("consumer_cancel_notify");
        caps.authentication_failure_close = on("authentication_failure_close");
        caps.connection_blocked = on("connection.blocked");
    }
    let name = match props.inner().get("connection_name") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    };
    (caps, name)
}

/// Next method frame on channel 0 (heartbeats skipped).
async fn next_method(io: &mut Io, frame_max: u32) -> Result<AMQPClass, HandshakeEnd> {
    loop {
        let f: RawFrame = match io.read_frame(frame_max).await {
            Ok(Some(f)) => f,
            Ok(None) => return Err(HandshakeEnd::Dropped),
            Err(e) => return Err(HandshakeEnd::Close(e)),
        };
        match f.kind {
            FRAME_HEARTBEAT => continue,
            FRAME_METHOD if f.channel == 0 => {
                return decode_method(&f.payload)
                    .map_err(|_| AmqpError::syntax_error("could not decode method").into())
            }
            _ => {
                return Err(AmqpError::command_invalid(
                    "expected a connection method during the handshake",
                )
                .into())
            }
        }
    }
}

/// Run the handshake to connection.open-ok.
pub async fn run(
    io: &mut Io,
    broker: &Broker,
    peer: SocketAddr,
    cert_user: Option<&str>,
) -> Result<Negotiated, HandshakeEnd> {
    let mut header = [0u8; 8];
    if io.read_exact(&mut header).await.is_err() {
        return Err(HandshakeEnd::Dropped);
    }
    if &header != PROTOCOL_HEADER {
        io.write_now(PROTOCOL_HEADER).await;
        return Err(HandshakeEnd::Dropped);
    }
    let limits = &broker.config.limits;
    let start = connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(broker),
        // EXTERNAL only where a verified client certificate names a user (as RabbitMQ with
        // rabbitmq_auth_mechanism_ssl).
        mechanisms: LongString::from(if cert_user.is_some() {
            b"PLAIN AMQPLAIN EXTERNAL".to_vec()
        } else {
            b"PLAIN AMQPLAIN".to_vec()
        }),
        locales: LongString::from(b"en_US".to_vec()),
    };
    send_method(
        io,
        AMQPClass::Connection(connection::AMQPMethod::Start(start)),
    )
    .await;
    let AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) =
        next_method(io, limits.frame_max).await?
    else {
        return Err(AmqpError::command_invalid("expected connection.start-ok").into());
    };
    let (caps, client_name) = client_caps(&ok.client_properties);
    let creds = match ok.mechanism.as_str() {
        "PLAIN" => auth::parse_plain(ok.response.as_bytes()),
        "AMQPLAIN" => auth::parse_amqplain(ok.response.as_bytes()),
        "EXTERNAL" if cert_user.is_some() => None,
        m => {
            return Err(AmqpError::command_invalid(format!(
                "unknown authentication mechanism '{m}'"
            ))
            .on(10, 11)
            .into())
        }
    };
    // The reason goes to the log; the client (if it announced authentication_failure_close)
    // gets `told`.
    let refused_as = |why: &str, told: String| -> HandshakeEnd {
        tracing::warn!(%peer, "authentication refused: {why}");
        if caps.authentication_failure_close {
            HandshakeEnd::Close(AmqpError::access_refused_connection(told).on(10, 11))
        } else {
            HandshakeEnd::Dropped
        }
    };
    let refused = |why: String| -> HandshakeEnd { refused_as(&why, why.clone()) };
    let user = if ok.mechanism.as_str() == "EXTERNAL" {
        // The certificate was verified by the TLS layer: its common name is the user.
        let name = cert_user.unwrap_or_default();
        broker.users.get(name)
    } else {
        let Some((username, password)) = creds else {
            return Err(refused(format!("malformed {} response", ok.mechanism)));
        };
        broker.users.authenticate(&username, &password)
    };
    // RabbitMQ tells the client only this (`auth_fail`).
    let safe = |why: &str| -> HandshakeEnd {
        refused_as(
            why,
            format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                ok.mechanism
            ),
        )
    };
    let Some(user) = user else {
        return Err(safe("unknown user or wrong password"));
    };
    if user.name == "guest" && broker.config.guest_loopback_only && !peer.ip().is_loopback() {
        return Err(safe("user 'guest' can only connect via localhost"));
    }
    let tune = connection::Tune {
        channel_max: limits.channel_max,
        frame_max: limits.frame_max,
        heartbeat: limits.heartbeat,
    };
    send_method(
        io,
        AMQPClass::Connection(connection::AMQPMethod::Tune(tune)),
    )
    .await;
    let AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)) =
        next_method(io, limits.frame_max).await?
    else {
        return Err(AmqpError::command_invalid("expected connection.tune-ok").into());
    };
    let frame_max = negotiate("frame_max", 4096, limits.frame_max, t.frame_max)?;
    let channel_max = negotiate(
        "channel_max",
        1,
        u32::from(limits.channel_max),
        u32::from(t.channel_max),
    )?;
    let channel_max = u16::try_from(channel_max).unwrap_or(limits.channel_max);
    let AMQPClass::Connection(connection::AMQPMethod::Open(open)) =
        next_method(io, frame_max).await?
    else {
        return Err(AmqpError::command_invalid("expected connection.open").into());
    };
    // RabbitMQ checks the node-wide connection_max first, at connection.open.
    let max = limits.max_connections;
    let Some(open_slot) = broker.admission.open(max) else {
        return Err(AmqpError::not_allowed(format!(
            "connection refused: node connection limit ({max}) is reached"
        ))
        .on(10, 40)
        .into());
    };
    let vname = open.virtual_host.as_str();
    let Some(vhost) = broker.vhost(vname) else {
        return Err(AmqpError::not_allowed(format!("vhost {vname} not found"))
            .on(10, 40)
            .into());
    };
    // RabbitMQ's order: the vhost's and the user's connection limits, then access.
    let slot = broker
        .admit_connection(&user, &vhost)
        .map_err(|e| e.on(10, 40))?;
    if !broker.can_access(&user, vname) {
        return Err(AmqpError::not_allowed(format!(
            "access to vhost '{vname}' refused for user '{}'",
            user.name
        ))
        .on(10, 40)
        .into());
    }
    send_method(
        io,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
    )
    .await;
    Ok(Negotiated {
        user,
        vhost,
        slot,
        frame_max,
        channel_max,
        heartbeat: t.heartbeat,
        caps,
        client_name,
        mechanism: ok.mechanism.to_string(),
        client_properties: ok.client_properties,
        open_slot,
    })
}

/// A tune-ok value checked as RabbitMQ does (rabbit_reader:validate_negotiated_integer_value):
/// below the minimum, above the server's value, or 0 ("no limit") while the server has a limit
/// is 530 NOT_ALLOWED.
fn negotiate(field: &str, min: u32, server: u32, client: u32) -> Result<u32, AmqpError> {
    let fail = |text: String| Err(AmqpError::not_allowed(text).on(10, 31));
    if client != 0 && client < min {
        return fail(format!(
            "negotiated {field} = {client} is lower than the minimum allowed value ({min})"
        ));
    }
    if server != 0 && (client == 0 || client > server) {
        let detail = if client == 0 { " (no limit)" } else { "" };
        return fail(format!(
            "negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
        ));
    }
    Ok(client)
}

/// connection.close for a handshake failure.
pub fn close_method(e: &AmqpError) -> AMQPClass {
    AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: e.code,
        reply_text: ShortString::from(truncate(&e.text)),
        class_id: e.class_id,
        method_id: e.method_id,
    }))
}

/// Reply texts are shortstrings: cut at 255 bytes on a char boundary.
pub fn truncate(s: &str) -> String {
    if s.len() <= 255 {
        return s.to_string();
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
