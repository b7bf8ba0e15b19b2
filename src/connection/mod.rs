//! One client connection: the handshake, then a single task that owns every channel's state, reads
//! and splits frames, dispatches them, turns queue events into deliveries, and hands encoded bytes
//! to the writer task. Teardown gives every unacked and in-flight message back to its queue.

mod channel;
mod delivery;
mod direct_reply;
mod dispatch;
mod handshake;
mod publish;
mod timeout;
mod tx;
pub mod writer;

use crate::auth::User;
use crate::broker::admission::HandshakeSlot;
use crate::broker::limits::ConnectionSlot;
use crate::broker::permissions::Authz;
use crate::broker::queue::consumer::ClientEvent;
use crate::broker::queue::Queue;
use crate::broker::registry::{ConnState, ConnectionInfo, ConnectionMeta};
use crate::broker::vhost::VHost;
use crate::broker::Broker;
use crate::error::{AmqpError, AmqpResult};
use crate::protocol::frame::{encode_method, split_frame, RawFrame, Split};
use amq_protocol::protocol::AMQPClass;
use bytes::BytesMut;
use channel::Channel;
use handshake::{ClientCaps, HandshakeEnd};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use writer::OutBuf;

type Reader = Box<dyn AsyncRead + Unpin + Send>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// The socket halves and the read buffer. Before the writer task starts (handshake), writes go
/// straight to the socket.
pub struct Io {
    rd: Reader,
    wr: Option<Writer>,
    rbuf: BytesMut,
    /// How much the read buffer grows by. It starts small, so that the many sockets that sit
    /// idle (in the handshake or after it) cost little, doubles, up to `max_chunk`, each time a
    /// read fills all the room it had (a busy socket reaches 64 KiB reads in a few reads), and
    /// halves, down to [`MIN_CHUNK`], after reads that used little of it.
    chunk: usize,
    max_chunk: usize,
}

/// Read-buffer growth step to begin with, and the most it grows to during the handshake.
const HANDSHAKE_CHUNK: usize = 4 * 1024;

/// The most the read buffer grows by once the connection is open.
const MAX_CHUNK: usize = 64 * 1024;

/// The least it shrinks to.
const MIN_CHUNK: usize = 1024;

impl Io {
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 2 * self.chunk {
            // Quiet again: let go of a buffer sized for a burst (frames still in use keep
            // their part of it alive) rather than hold it while the socket idles.
            self.rbuf = BytesMut::new();
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.chunk / 4 {
            self.rbuf.reserve(self.chunk);
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let n = self.rd.read_buf(&mut self.rbuf).await?;
        if n == room && self.chunk < self.max_chunk {
            // The socket had more than there was room for: read in bigger steps.
            self.chunk *= 2;
        } else if n < self.chunk / 8 && self.chunk > MIN_CHUNK {
            self.chunk /= 2;
        }
        Ok(n)
    }

    async fn read_exact(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        while self.rbuf.len() < out.len() {
            if self.fill().await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        out.copy_from_slice(&self.rbuf.split_to(out.len()));
        Ok(())
    }

    /// Read one whole frame (handshake only; the main loop splits frames itself).
    async fn read_frame(&mut self, frame_max: u32) -> AmqpResult<Option<RawFrame>> {
        loop {
            match split_frame(&mut self.rbuf, frame_max) {
                Split::Frame(f) => return Ok(Some(f)),
                Split::TooLarge { size } => {
                    return Err(AmqpError::frame_error(format!(
                        "frame size {size} exceeds frame_max {frame_max}"
                    )))
                }
                Split::BadFrameEnd => {
                    return Err(AmqpError::frame_error("invalid frame end octet"))
                }
                Split::Incomplete => {}
            }
            match self.fill().await {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    async fn write_now(&mut self, bytes: &[u8]) {
        if let Some(w) = self.wr.as_mut() {
            let _ = w.write_all(bytes).await;
            let _ = w.flush().await;
        }
    }
}

async fn send_method(io: &mut Io, class: AMQPClass) {
    let mut b = BytesMut::new();
    encode_method(&mut b, 0, class);
    io.write_now(&b).await;
}

/// State of one connection after the handshake.
pub struct Conn {
    pub(crate) id: u64,
    broker: Arc<Broker>,
    vhost: Arc<VHost>,
    user: Arc<User>,
    /// The user's permissions in the vhost, compiled; checked where RabbitMQ checks them.
    authz: Authz,
    /// This connection in its vhost's and user's usage counts (limits).
    slot: ConnectionSlot,
    peer: SocketAddr,
    frame_max: u32,
    channel_max: u16,
    caps: ClientCaps,
    /// Indexed by channel number; None = not open.
    channels: Vec<Option<Box<Channel>>>,
    /// Bytes encoded by this task, handed to the writer in one push per batch.
    wbuf: BytesMut,
    out: Arc<OutBuf>,
    /// Cloned into every consumer this connection creates; queues push deliveries here.
    events_tx: mpsc::UnboundedSender<ClientEvent>,
    /// Channels with confirms to send at the end of this batch.
    confirm_dirty: Vec<u16>,
    /// Acks and no-ack deliveries of this batch, applied to their queues at its end.
    settles: channel::Settles,
    /// Scratch for routing.
    route_out: Vec<Arc<Queue>>,
    route_seen: Vec<usize>,
    /// connection.close sent (by us or answered): stop processing, wait for close-ok.
    closing: bool,
    /// Framing was lost (bad frame): ignore further input.
    desynced: bool,
    /// Set when the connection should end now.
    done: bool,
    /// The connection's clock: `now_ms` is `clock.elapsed()`, read once per batch.
    clock: Instant,
    now_ms: u64,
    /// When the consumer-timeout timer must next look at the channels (ms on `clock`;
    /// `timeout::NEVER` when no delivery with a timeout is unacked).
    next_timeout_check: u64,
    /// A queue this connection published into is congested: stop reading until it drains.
    flow_wait: Option<Arc<Queue>>,
    /// A log sync with its confirm waiter, held to the end of the batch so that a run of
    /// publishes asks once (see `defer_sync`).
    pending_sync: Option<(Arc<Queue>, crate::broker::persist::ConfirmWaiter)>,
    /// This connection in the broker's registry (counters, channels, consumers).
    pub(crate) info: Arc<ConnectionInfo>,
    /// A publish arrived while a resource alarm was on: block at the end of this batch.
    block_pending: bool,
    /// Blocked by an alarm: the socket is not read until every alarm clears.
    blocked: bool,
    /// connection.blocked was sent (so connection.unblocked is owed).
    sent_blocked: bool,
}

/// Serve one accepted socket until it closes.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_as(stream, peer, local, None, broker, shutdown).await;
}

/// Serve one accepted stream; `cert_user` is the user a verified TLS client certificate names,
/// which the EXTERNAL mechanism logs in as.
pub async fn serve_as<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    cert_user: Option<String>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Past max_handshakes, the socket is closed at once (dropped): a flood of idle sockets
    // cannot hold more than that many buffers and handshake timers.
    let Some(slot) = admit(&broker) else { return };
    let deadline = handshake_deadline(&broker);
    serve_admitted(
        stream, peer, local, cert_user, None, broker, shutdown, slot, deadline,
    )
    .await;
}

/// A place in the handshake (`limits.max_handshakes`), or None: drop the socket.
pub fn admit(broker: &Arc<Broker>) -> Option<HandshakeSlot> {
    broker
        .admission
        .begin_handshake(broker.config.limits.max_handshakes)
}

/// When a handshake starting now must be done (`limits.handshake_timeout`).
pub fn handshake_deadline(broker: &Broker) -> tokio::time::Instant {
    let limit = Duration::from_secs(broker.config.limits.handshake_timeout.max(1));
    tokio::time::Instant::now() + limit
}

/// Serve a stream that already holds a handshake place, with the handshake due by `deadline`
/// (a TLS listener takes both before its TLS handshake, so that one deadline and one place
/// cover both handshakes).
#[allow(clippy::too_many_arguments)]
pub async fn serve_admitted<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    cert_user: Option<String>,
    tls: Option<crate::broker::registry::TlsDetails>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    handshaking: HandshakeSlot,
    deadline: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut io = Io {
        rd: Box::new(rd),
        wr: Some(Box::new(wr)),
        rbuf: BytesMut::with_capacity(HANDSHAKE_CHUNK),
        chunk: HANDSHAKE_CHUNK,
        max_chunk: HANDSHAKE_CHUNK,
    };
    // One deadline for the whole handshake, however the peer paces its bytes (slowloris).
    let result = tokio::time::timeout_at(
        deadline,
        handshake::run(&mut io, &broker, peer, cert_user.as_deref()),
    )
    .await;
    drop(handshaking);
    let neg = match result {
        Ok(Ok(n)) => n,
        Ok(Err(HandshakeEnd::Close(e))) => {
            tracing::warn!(%peer, code = e.code, "handshake failed: {}", e.text);
            send_method(&mut io, handshake::close_method(&e)).await;
            // Give the client a moment to read the close before the socket goes.
            let _ = tokio::time::timeout(Duration::from_millis(500), io.fill()).await;
            return;
        }
        Ok(Err(HandshakeEnd::Dropped)) => return,
        Err(_) => {
            let secs = broker.config.limits.handshake_timeout;
            tracing::debug!(%peer, "handshake not completed within {secs}s: connection dropped");
            return;
        }
    };
    // Held until the connection ends: counts it against limits.max_connections.
    let _open = neg.open_slot;
    io.max_chunk = MAX_CHUNK;
    let Some(wr) = io.wr.take() else { return };
    let out = Arc::new(OutBuf::default());
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let id = broker.next_id();
    let info = Arc::new(ConnectionInfo::new(
        ConnectionMeta {
            id,
            peer,
            local,
            user: neg.user.name.clone(),
            vhost: neg.vhost.name.clone(),
            auth_mechanism: neg.mechanism,
            client_properties: neg.client_properties,
            user_provided_name: neg.client_name,
            frame_max: neg.frame_max,
            channel_max: neg.channel_max,
            heartbeat: neg.heartbeat,
            connected_at: crate::broker::now_ms(),
            tls,
        },
        events_tx.clone(),
    ));
    broker.registry.add(info.clone());
    let stall = match broker.config.limits.write_stall_timeout {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let writer = tokio::spawn(writer::run(out.clone(), wr, info.clone(), stall));
    let mut conn = Conn {
        id,
        broker: broker.clone(),
        authz: Authz::new(broker.clone(), &neg.user.name, &neg.vhost.name),
        slot: neg.slot,
        vhost: neg.vhost,
        user: neg.user,
        peer,
        frame_max: neg.frame_max,
        channel_max: neg.channel_max,
        caps: neg.caps,
        channels: Vec::new(),
        // Grown on demand (and then kept, swapped with the writer's): an idle connection
        // holds no output buffer worth counting.
        wbuf: BytesMut::new(),
        out: out.clone(),
        events_tx,
        confirm_dirty: Vec::new(),
        settles: channel::Settles::default(),
        route_out: Vec::new(),
        route_seen: Vec::new(),
        closing: false,
        desynced: false,
        done: false,
        clock: Instant::now(),
        now_ms: 0,
        next_timeout_check: timeout::NEVER,
        flow_wait: None,
        pending_sync: None,
        info,
        block_pending: false,
        blocked: false,
        sent_blocked: false,
    };
    tracing::info!(%peer, user = %conn.user.name, vhost = %conn.vhost.name, client = %conn.info.meta.user_provided_name, "connection opened");
    let reason = conn
        .run(&mut io, &mut events_rx, neg.heartbeat, &mut shutdown)
        .await;
    conn.teardown(&mut events_rx);
    broker.unregister(conn.id);
    tracing::info!(%peer, user = %conn.user.name, vhost = %conn.vhost.name, "connection closed: {reason}");
    out.close();
    // A peer that stopped reading would keep the writer (and the socket) forever.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

impl Conn {
    /// The main loop; returns why it ended.
    async fn run(
        &mut self,
        io: &mut Io,
        events: &mut mpsc::UnboundedReceiver<ClientEvent>,
        heartbeat: u16,
        shutdown: &mut watch::Receiver<bool>,
    ) -> String {
        let hb = (heartbeat > 0).then(|| Duration::from_secs(u64::from(heartbeat)));
        let mut tick = tokio::time::interval(hb.map_or(Duration::from_secs(3600), |d| d / 2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        let mut last_written = 0u64;
        let mut close_deadline: Option<Instant> = None;
        // The consumer-timeout timer, reset only when its deadline moves.
        let mut timeout_timer = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let mut timer_set_for = timeout::NEVER;
        let mut alarms = self.broker.alarms.subscribe();
        self.on_alarm_change(*alarms.borrow_and_update());
        // Any frames that arrived together with the handshake's last frame.
        if !io.rbuf.is_empty() {
            self.process_frames(&mut io.rbuf);
        }
        loop {
            self.end_batch();
            if self.done || self.out.failed() {
                if self.out.stalled() {
                    let secs = self.broker.config.limits.write_stall_timeout;
                    tracing::warn!(peer = %self.peer, user = %self.user.name, "client stopped reading: no write progress for {secs}s, closing the connection");
                    return format!("client stopped reading (no write progress for {secs}s)");
                }
                return "closed".into();
            }
            if self.block_pending {
                self.block();
            }
            let queued = self.out.queued();
            let backlogged = queued > writer::HIGH_WATER;
            // Output this large: stop reading until the peer takes some (see writer::READ_PAUSE).
            let out_full = queued > writer::READ_PAUSE;
            if self.next_timeout_check != timer_set_for {
                timer_set_for = self.next_timeout_check;
                if timer_set_for != timeout::NEVER {
                    let at = self.clock + Duration::from_millis(timer_set_for);
                    timeout_timer.as_mut().reset(at.into());
                }
            }
            let flow = self.flow_wait.clone();
            let reading = flow.is_none() && !self.blocked && !out_full;
            if !reading {
                // The socket is not read (alarm, flow control, full output): the client's
                // heartbeats wait in it, so that silence is ours and does not count.
                last_read = Instant::now();
            }
            tokio::select! {
                r = io.fill(), if reading => match r {
                    Ok(0) => return "peer closed the socket".into(),
                    Err(e) => return format!("read error: {e}"),
                    Ok(n) => {
                        last_read = Instant::now();
                        self.touch_clock();
                        self.info.recv_oct.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        self.info.recv_cnt.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.process_frames(&mut io.rbuf);
                    }
                },
                r = alarms.changed() => {
                    if r.is_ok() {
                        let mask = *alarms.borrow_and_update();
                        self.on_alarm_change(mask);
                    }
                }
                Some(ev) = events.recv(), if !backlogged => {
                    self.touch_clock();
                    self.handle_event(ev);
                    for _ in 0..255 {
                        // Large bodies: hand what is encoded to the writer first.
                        if self.wbuf.len() > writer::HIGH_WATER {
                            break;
                        }
                        match events.try_recv() {
                            Ok(ev) => self.handle_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = self.out.drained.notified(), if backlogged => {
                    // Frames left unhandled while the output was full.
                    if !io.rbuf.is_empty() {
                        self.process_frames(&mut io.rbuf);
                    }
                }
                _ = self.out.dead.notified() => {}
                _ = timeout_timer.as_mut(), if timer_set_for != timeout::NEVER && !self.closing => {
                    timer_set_for = timeout::NEVER;
                    self.touch_clock();
                    self.check_consumer_timeouts();
                }
                _ = async { if let Some(q) = &flow { q.flow_wait().await } }, if flow.is_some() => {
                    self.flow_wait = None;
                }
                _ = tick.tick() => {
                    if let Some(d) = close_deadline {
                        if Instant::now() >= d {
                            return "close-ok not received in time".into();
                        }
                    }
                    if let Some(hb) = hb {
                        if last_read.elapsed() > hb * 2 {
                            return "missed heartbeats from client".into();
                        }
                        let w = self.out.written.load(std::sync::atomic::Ordering::Relaxed);
                        if w == last_written && self.out.queued() == 0 && self.wbuf.is_empty() {
                            self.wbuf.extend_from_slice(&crate::protocol::frame::HEARTBEAT);
                        }
                        last_written = w;
                    }
                }
                _ = shutdown.changed(), if !self.closing => {
                    self.info.set_state(ConnState::Closing);
                    self.close_connection(AmqpError::connection_forced(
                        "broker forced connection closure with reason 'shutdown'",
                    ));
                }
            }
            if self.closing && close_deadline.is_none() {
                close_deadline = Some(Instant::now() + Duration::from_secs(3));
                tick = tokio::time::interval(Duration::from_millis(250));
            }
        }
    }

    /// A publish is being handled: if an alarm is on, this connection is blocked once the batch
    /// is done (RabbitMQ blocks publishing connections only). One relaxed load per publish.
    #[inline]
    pub(super) fn check_alarm(&mut self) {
        if self.broker.alarms.active() != 0 {
            self.block_pending = true;
        }
    }

    /// Stop reading the socket and tell the client why (if it understands connection.blocked).
    fn block(&mut self) {
        self.block_pending = false;
        let mask = self.broker.alarms.active();
        if self.blocked || mask == 0 || self.closing {
            return;
        }
        self.blocked = true;
        self.info.set_state(ConnState::Blocked);
        if self.caps.connection_blocked {
            let reason = crate::broker::alarms::reason(mask);
            self.send(
                0,
                AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Blocked(
                    amq_protocol::protocol::connection::Blocked {
                        reason: reason.into(),
                    },
                )),
            );
            self.sent_blocked = true;
        }
        tracing::info!(peer = %self.peer, "connection blocked: {}", crate::broker::alarms::reason(mask));
        self.end_batch();
    }

    /// The alarms changed to `mask`: mark the state, and unblock when they all cleared.
    fn on_alarm_change(&mut self, mask: u8) {
        if self.closing {
            return;
        }
        if mask != 0 {
            if !self.blocked {
                self.info.set_state(ConnState::Blocking);
            }
            return;
        }
        self.info.set_state(ConnState::Running);
        if !self.blocked {
            return;
        }
        self.blocked = false;
        if self.sent_blocked {
            self.sent_blocked = false;
            self.send(
                0,
                AMQPClass::Connection(amq_protocol::protocol::connection::AMQPMethod::Unblocked(
                    amq_protocol::protocol::connection::Unblocked {},
                )),
            );
        }
        tracing::info!(peer = %self.peer, "connection unblocked");
    }

    /// Finish a batch: send pending confirms, return no-ack credit, hand bytes to the writer.
    fn end_batch(&mut self) {
        self.flush_sync();
        // After connection.close (sent or answered) only close-ok may follow.
        if !self.closing && !self.done {
            self.flush_confirms();
        }
        self.settles.apply();
        self.out.push(&mut self.wbuf);
    }

    /// Give back everything this connection held: consumers, unacked and in-flight deliveries,
    /// exclusive queues.
    fn teardown(&mut self, events: &mut mpsc::UnboundedReceiver<ClientEvent>) {
        for id in 0..self.channels.len() {
            if let Some(ch) = self.channels[id].take() {
                self.release_channel(ch);
            }
        }
        events.close();
        while let Ok(ev) = events.try_recv() {
            if let ClientEvent::Deliver(d) = ev {
                d.queue.clone().give_back(d);
            }
        }
        self.vhost.drop_exclusive(self.id);
        self.end_batch();
    }
}
